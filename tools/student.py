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
NotImplementedError.
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


def _run_one(path: Path) -> None:
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
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
