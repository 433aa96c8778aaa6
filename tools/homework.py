"""Homework from the reference notebooks: nbgrader's metadata, the course folder, the hand-out.

    python tools/homework.py metadata [--check]   # nbgrader metadata in notebooks/ from tools/homework.toml
    python tools/homework.py release              # build/course, then the student copies in build/student

One table, tools/homework.toml, gives each exercise its points. `metadata` writes nbgrader's cell
metadata into the reference notebooks from it (with --check it only reports what differs):
- an answer in code (an nbgrader solution cell) is graded by the check cell that follows it; that
  cell becomes a locked, autograded test cell `<id>-test` with the exercise's points, and must end
  in `.assert_ok()`, so that it raises (scores 0) when the check fails;
- an answer in words (a Markdown solution cell) becomes a manually graded answer cell;
- `<id>-hidden` is the code cell after that check holding `### BEGIN HIDDEN TESTS`.

`release` lays out the nbgrader course in build/course (`source/<notebook>/<notebook>.ipynb`: one
assignment per notebook) and runs nbgrader's generate_assignment, which removes the solutions and
the hidden tests, clears the outputs and records each graded cell's checksum in the course's
gradebook (which `make grade` then grades against). The released notebooks are the student copies:
build/student/ holds the same files.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

try:
    import tomllib
except ImportError:  # Python 3.10: pip's vendored copy
    from pip._vendor import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "tools" / "homework.toml"
# The nbgrader course folder (its gradebook holds every grade): SKIPVIZ_COURSE moves it, e.g. out of
# build/ (which `make clean` removes), or to a scratch folder for the tests.
COURSE = Path(os.environ.get("SKIPVIZ_COURSE") or ROOT / "build" / "course").resolve()
STUDENT = ROOT / "build" / "student"
STUB = "raise NotImplementedError()"
HIDDEN = "### BEGIN HIDDEN TESTS"
COURSE_ID = "skipviz"


def notebooks() -> list[Path]:
    return sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def load_points(path: Path = TABLE) -> dict[str, dict[str, int]]:
    with open(path, "rb") as f:
        return tomllib.load(f)


def _nbgrader(grade_id: str, *, grade: bool, solution: bool, locked: bool, points: int | None = None) -> dict:
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3, "solution": solution}
    if points is not None:
        meta["points"] = points
    return meta


def with_metadata(nb: nbformat.NotebookNode, points: dict[str, int], name: str) -> nbformat.NotebookNode:
    """A copy of a reference notebook with nbgrader's metadata as the table gives it.

    Raises SystemExit naming the cell when the notebook and the table disagree (an answer cell
    without points, points for no cell, a check that does not assert)."""
    nb = nbformat.from_dict(nb)
    unused = dict(points)
    problems = []
    pending = None          # the code answer whose check comes next: (grade id, cell index)
    after_test = None       # the id whose hidden-test cell may come next
    for i, cell in enumerate(nb.cells):
        meta = cell.metadata.get("nbgrader", {})
        role = meta.get("grade_id", "")
        if meta.get("solution"):
            if role not in unused:
                problems.append(f"cell {i}: answer cell {role!r} has no points in {TABLE.name} [{name}]")
                continue
            if cell.cell_type == "markdown":
                cell.metadata["nbgrader"] = _nbgrader(role, grade=True, solution=True, locked=False,
                                                      points=unused.pop(role))
            else:
                cell.metadata["nbgrader"] = _nbgrader(role, grade=False, solution=True, locked=False)
                pending = (role, i)
            after_test = None
            continue
        if cell.cell_type != "code":
            continue
        if pending and "exercises.check_" in cell.source:
            role = pending[0]
            if not cell.source.rstrip().endswith(".assert_ok()"):
                problems.append(f"cell {i}: the check of {role!r} must end in .assert_ok(), so that a wrong "
                                "answer fails the graded cell")
            cell.metadata["nbgrader"] = _nbgrader(f"{role}-test", grade=True, solution=False, locked=True,
                                                  points=unused.pop(role, 0))
            after_test, pending = role, None
            continue
        if HIDDEN in cell.source:
            key = f"{after_test}-hidden"
            if after_test is None or key not in unused:
                problems.append(f"cell {i}: hidden tests must follow a graded check and have points "
                                f"in {TABLE.name} as <id>-hidden")
                continue
            cell.metadata["nbgrader"] = _nbgrader(key, grade=True, solution=False, locked=True,
                                                  points=unused.pop(key))
        elif "nbgrader" in cell.metadata:
            problems.append(f"cell {i}: nbgrader metadata on a cell that is neither an answer nor its check")
        after_test = None
    if pending:
        problems.append(f"cell {pending[1]}: answer cell {pending[0]!r} has no check cell after it")
    problems += [f"{TABLE.name} [{name}] gives points to {key!r}, which no cell has" for key in unused]
    if problems:
        raise SystemExit(f"{name}: " + "; ".join(problems))
    return nb


def write_metadata(check: bool = False) -> list[str]:
    """Write (or, with check, only compare) every notebook's nbgrader metadata; the names that
    differ(ed)."""
    table = load_points()
    unknown = set(table) - {p.stem for p in notebooks()}
    if unknown:
        raise SystemExit(f"{TABLE.name} names notebooks that do not exist: {sorted(unknown)}")
    changed = []
    for path in notebooks():
        nb = nbformat.read(path, as_version=4)
        new = with_metadata(nb, table.get(path.stem, {}), path.stem)
        if new != nb:
            changed.append(path.name)
            if not check:
                nbformat.write(new, path)
    return changed


# ---------------------------------------------------------------------------- the course folder

CONFIG = '''\
# nbgrader's configuration for the skipviz course (written by tools/homework.py; do not edit).
import sys
sys.path.insert(0, {tools!r})
from nbgrader.preprocessors import ClearHiddenTests, GetGrades
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.converters.generate_assignment import GenerateAssignment
import homework

c = get_config()
c.CourseDirectory.course_id = {course_id!r}
c.CourseDirectory.root = {root!r}
# The student copies: nbgrader's steps, then skipviz's (see homework.StudentCopy).
c.GenerateAssignment.preprocessors = GenerateAssignment.class_traits()["preprocessors"].default() + [homework.StudentCopy]
c.ClearSolutions.enforce_metadata = True
# A cell that runs longer than this (seconds) is interrupted and scores 0; the next cells still run.
c.Execute.timeout = {timeout}
# A graded cell the student deleted is put back from the release (its first line says so).
c.OverwriteCells.add_missing_cells = True
# Feedback shows the autograded notebook without the hidden tests' code, and a graded cell's error
# as one line (a traceback would print the hidden code it ran).
c.GenerateFeedback.preprocessors = [GetGrades, homework.OneLineErrors, ClearHiddenTests, CSSHTMLHeaderPreprocessor]
'''


def _student_copy(nb: nbformat.NotebookNode) -> None:
    """skipviz's part of a student copy, in place: no stored widget state or timings, and the cells
    that raise until the student answers (the stubs, the graded checks) tagged `raises-exception`,
    so that "Run all" (nbclient, nbval, JupyterLab) goes on past them."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        graded_check = cell.metadata.get("nbgrader", {}).get("grade") and ".assert_ok()" in cell.source
        if cell.cell_type == "code" and (STUB in cell.source or graded_check):
            tags = cell.metadata.setdefault("tags", [])
            if "raises-exception" not in tags:
                tags.append("raises-exception")


try:
    from nbgrader.preprocessors import NbGraderPreprocessor

    class StudentCopy(NbGraderPreprocessor):
        """The last step of nbgrader's generate_assignment here (see `_student_copy`)."""

        def preprocess(self, nb, resources):
            _student_copy(nb)
            return nb, resources
    class OneLineErrors(NbGraderPreprocessor):
        """In the feedback, an error in a graded test cell shows as one line, "❌ Name: message":
        a traceback through the cell would print its code, hidden tests included."""

        def preprocess_cell(self, cell, resources, index):
            if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("locked"):
                for out in cell.get("outputs", []):
                    if out.get("output_type") == "error":
                        line = out.evalue if out.ename == "CheckFailed" else f"{out.ename}: {out.evalue}"
                        out.traceback = ["❌ " + line]
            return cell, resources
except ImportError:   # nbgrader is the `student` extra; `metadata` does not need it
    pass


def write_course(timeout: int = 300, root: Path = COURSE) -> Path:
    """build/course: nbgrader_config.py and source/<notebook>/<notebook>.ipynb, one assignment per
    notebook (a file left by an earlier run is replaced)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "nbgrader_config.py").write_text(CONFIG.format(tools=str(ROOT / "tools"), course_id=COURSE_ID,
                                                          root=str(root), timeout=int(timeout)))
    source = root / "source"
    table = load_points()
    for path in notebooks():
        nb = nbformat.read(path, as_version=4)
        with_metadata(nb, table.get(path.stem, {}), path.stem)   # refuses a notebook out of step
        folder = source / path.stem
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, folder / path.name)
    return root


def nbgrader(root: Path, *args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run an nbgrader command in the course folder (its output captured)."""
    cmd = [sys.executable, "-m", "nbgrader", *args]
    env = dict(os.environ if env is None else env)
    # nbgrader runs the venv's `alembic` (its database migrations) by name
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    run = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env=env)
    if "Exception while loading config file" in run.stderr:   # nbgrader would go on without it
        raise SystemExit(f"nbgrader could not read {root / 'nbgrader_config.py'}:\n{run.stderr[-3000:]}")
    if check and run.returncode != 0:
        raise SystemExit(f"nbgrader {' '.join(args)} failed:\n{run.stdout[-3000:]}{run.stderr[-3000:]}")
    return run


def generate(root: Path = COURSE, timeout: int = 300) -> None:
    """The course folder written afresh and every assignment generated by nbgrader: the release
    (root/release/) and the gradebook's record of every graded cell."""
    write_course(timeout=timeout, root=root)
    for path in notebooks():
        nbgrader(root, "generate_assignment", path.stem, "--force", "--create")


def release(out: Path = STUDENT, root: Path = COURSE) -> list[Path]:
    """Generate every assignment with nbgrader, then copy the released notebooks to `out`."""
    generate(root)
    written = []
    out.mkdir(parents=True, exist_ok=True)
    for path in notebooks():
        released = root / "release" / path.stem / path.name
        shutil.copyfile(released, out / path.name)
        written.append(out / path.name)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    meta = sub.add_parser("metadata", help="write nbgrader metadata into notebooks/ from the points table")
    meta.add_argument("--check", action="store_true", help="only report the notebooks that differ")
    rel = sub.add_parser("release", help="nbgrader's generate_assignment, then the copies in build/student")
    rel.add_argument("--out", type=Path, default=STUDENT)
    args = parser.parse_args(argv)
    if args.command == "metadata":
        changed = write_metadata(check=args.check)
        verb = "differ from" if args.check else "updated from"
        print(f"{len(changed)} notebooks {verb} {TABLE.name}: {', '.join(changed) or '-'}")
        return 1 if args.check and changed else 0
    for path in release(args.out):
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
