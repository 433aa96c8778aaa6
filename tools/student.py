"""Student copies of the notebooks, made from the reference notebooks in notebooks/.

    python tools/student.py [--out build/student] [--execute]

nbgrader's ClearSolutions replaces every `### BEGIN SOLUTION` ... `### END SOLUTION` region with
`# YOUR CODE HERE` / `raise NotImplementedError()`, and every model-answer cell (marked as an
nbgrader solution cell) with "YOUR ANSWER HERE"; nbconvert's ClearOutputPreprocessor removes the
stored outputs. Cells that now raise NotImplementedError get the `raises-exception` tag, so that
the notebook still runs top to bottom (nbclient and nbval honour it). Everything else — text,
figures' code, widgets, checks — is left as it is. The result is deterministic: the same source
gives byte-identical files.

--execute runs every student copy in FAST mode and fails unless the only errors are the stubs'
NotImplementedError, and unless the copy gives nothing away: no output of a student copy may
carry a check's verdict other than "not done yet" (a verdict on a published answer would show
the answer's diagnosis), nor any feedback message printed by the reference's check cells.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import nbformat
from nbconvert.preprocessors import ClearOutputPreprocessor
from nbgrader.preprocessors import ClearSolutions

ROOT = Path(__file__).resolve().parents[1]
STUB = "raise NotImplementedError()"


def student_copy(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The student version of a reference notebook (a new object; `nb` is not changed)."""
    nb = nbformat.from_dict(nb)
    nb, _ = ClearSolutions(enforce_metadata=True).preprocess(nb, {})
    nb, _ = ClearOutputPreprocessor().preprocess(nb, {})
    nb.metadata.pop("widgets", None)  # the stored widget state belongs to the reference outputs
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code" and STUB in cell.source:
            tags = cell.metadata.setdefault("tags", [])
            if "raises-exception" not in tags:
                tags.append("raises-exception")
    return nb


def write_all(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        target = out / path.name
        nbformat.write(student_copy(nbformat.read(path, as_version=4)), target)
        written.append(target)
    return written


def execute(path: Path) -> list[str]:
    """Run a student copy in FAST mode, in a fresh interpreter (one kernel per process); return
    the problems (errors other than the stubs')."""
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
            if o.output_type == "error" and not (o.ename == "NotImplementedError"
                                                 and "raises-exception" in cell.metadata.get("tags", [])):
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
