"""Student copies of the notebooks: nbgrader's hand-out, made from the reference notebooks.

    python tools/student.py [--out build/student] [--execute]

The copies are the notebooks nbgrader's generate_assignment releases (tools/homework.py): every
`### BEGIN SOLUTION` ... `### END SOLUTION` region becomes `# YOUR CODE HERE` /
`raise NotImplementedError()`, every model answer in words "YOUR ANSWER HERE", the hidden tests'
code is removed, the outputs are cleared, and the cells that raise until the student answers (the
stubs and the graded checks) are tagged `raises-exception`, so that the notebook still runs top to
bottom. Everything else — text, figures' code, widgets, checks — is left as it is. The same
source gives byte-identical files; `make grade` grades against the same release.

--execute runs every student copy in FAST mode and fails unless the only errors are the stubs'
NotImplementedError and the graded checks' "not done yet", and unless the copy gives nothing
away: no output may carry a check's verdict other than "not done yet" (a verdict on a published
answer would show the answer's diagnosis), nor any feedback message printed by the reference's
check cells.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import homework  # noqa: E402


def write_all(out: Path, course: Path | None = None) -> list[Path]:
    """The student copies in `out`, released by nbgrader from the course folder `course`
    (build/course; a temporary one when `out` is not build/student)."""
    if course is not None:
        return homework.release(out, root=course)
    if out.resolve() == homework.STUDENT.resolve():
        return homework.release(out)
    with tempfile.TemporaryDirectory() as tmp:
        return homework.release(out, root=Path(tmp) / "course")


def execute(path: Path) -> list[str]:
    """Run a student copy in FAST mode, in a fresh interpreter (one kernel per process); return
    the problems (errors other than the stubs' and the unanswered checks')."""
    run = subprocess.run([sys.executable, __file__, "--run-one", str(path)], capture_output=True,
                         text=True, env={**os.environ, "SKIPVIZ_FAST": "1", "SKIPVIZ_PROGRESS": "0"})
    problems = [line for line in run.stdout.splitlines() if line.startswith("PROBLEM ")]
    if run.returncode != 0 and not problems:
        problems.append(f"{path.name}: the run failed: {run.stderr.strip().splitlines()[-1:]}")
    return [p.removeprefix("PROBLEM ") for p in problems]


def _output_text(cell: nbformat.NotebookNode) -> str:
    parts = []
    for o in cell.get("outputs", []):
        parts.append(o.get("text", ""))
        parts.append("\n".join(o.get("traceback", [])))   # a CheckFailed shows as "❌ message" here
        for key in ("text/plain", "text/html"):
            parts.append(o.get("data", {}).get(key, ""))
    return "\n".join("".join(p) if isinstance(p, list) else p for p in parts)


def _check_messages(reference: nbformat.NotebookNode) -> list[str]:
    """The feedback lines the reference's check cells printed (without the ✅/❌ mark)."""
    found = []
    for cell in reference.cells:
        if (cell.cell_type == "code" and "exercises.check_" in cell.source
                and "feedback-demo" not in cell.metadata.get("tags", [])):
            for line in _output_text(cell).splitlines():
                line = line.strip().strip("'\"")
                if line[:1] in "✅❌" and len(line) > 20:
                    found.append(line[1:].strip())
    return found


def leaks(copy: nbformat.NotebookNode, reference: nbformat.NotebookNode) -> list[str]:
    """What an executed student copy gives away: verdicts other than "not done yet", and any
    feedback message of the reference's check cells. A cell tagged `feedback-demo` (a wrong answer
    to a question the notebook does not ask, shown to explain the feedback) is left out."""
    problems = []
    messages = _check_messages(reference)
    for i, cell in enumerate(copy.cells):
        if "feedback-demo" in cell.metadata.get("tags", []):
            continue   # shows the feedback on a wrong answer to a question the student is not asked
        text = _output_text(cell)
        for line in text.splitlines():
            line = line.strip().strip("'\"")
            if line and line[0] in "✅❌" and "not done yet" not in line:
                problems.append(f"cell {i} prints a verdict on a published answer: {line[:80]}")
        problems += [f"cell {i} prints the reference's feedback: {m[:80]}" for m in messages if m in text]
    return problems


def _run_one(path: Path) -> None:
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    reference = nbformat.read(ROOT / "notebooks" / path.name, as_version=4)
    for problem in leaks(nb, reference):
        print(f"PROBLEM {path.name} {problem}")
    for i, cell in enumerate(nb.cells):
        for o in cell.get("outputs", []):
            if o.output_type != "error":
                continue
            expected = (o.ename == "NotImplementedError" or o.ename == "CheckFailed"
                        and o.evalue.startswith("not done yet"))
            if not (expected and "raises-exception" in cell.metadata.get("tags", [])):
                print(f"PROBLEM {path.name} cell {i}: {o.ename}: {o.evalue}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "student")
    parser.add_argument("--execute", action="store_true", help="run each copy in FAST mode")
    parser.add_argument("--run-one", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_one:
        _run_one(args.run_one)
        return 0
    problems = []
    for path in write_all(args.out):
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}", flush=True)
        if args.execute:
            found = execute(path)
            problems += found
            print(f"  ran in FAST mode: {'ok' if not found else '; '.join(found)}", flush=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
