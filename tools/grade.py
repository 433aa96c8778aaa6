"""Grade a class's homework: `make grade SUBMISSIONS=folder` (or an LMS zip).

    python tools/grade.py SUBMISSIONS [--out build/grades] [--timeout 300]
    python tools/grade.py --export [--out build/grades]   # grades.csv and feedback again, with the grades given by hand

SUBMISSIONS is a folder with one subfolder per student (the student's id is the folder's name)
holding the notebooks they handed in, or the zip an LMS exports with one file per student and
notebook, named `<student>_<anything>_<notebook>.ipynb` (sorted by nbgrader's zip_collect).

For every notebook handed in, nbgrader's autograde runs it in FAST mode in the course folder
build/course (made by tools/homework.py: the same release the students got) with a per-cell
timeout, then generate_feedback writes the feedback. The result, in --out:
- grades.csv: one row per student, one column per exercise (points; empty while an answer in
  words awaits grading by hand in nbgrader's formgrader), the total, the maximum, and notes;
- exercises.csv: each exercise's notebook, points and how it is graded;
- feedback/<student>/<notebook>.html: the graded notebook as the student will see it (without
  the hidden tests' code).

A broken submission costs only what it breaks, with a note saying why; the others are graded as
usual. An infinite loop: the cell is interrupted after the timeout (0 for its test). A deleted
or damaged cell: a graded cell is put back from the release, damaged nbgrader metadata is removed
(0 for an answer that is gone). A changed test cell: graded with the original (nbgrader
overwrites it). A file that is not a notebook: 0 for that notebook. A renamed notebook: found by
its graded cells and graded. A kernel that dies: the cell that kills it is replaced by an error
and the notebook graded again (0 for that exercise).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import sys
import tempfile
import zipfile
from collections import defaultdict
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import homework  # noqa: E402

KILLED = ("raise RuntimeError('skipviz grading: this cell stopped the kernel (os._exit, a crash or "
          "running out of memory) and was not run')")


# ---------------------------------------------------------------------------- collecting


def _student_id(name: str) -> str:
    """nbgrader's student id for a folder or file prefix: letters, digits and . _ - @ only."""
    return re.sub(r"[^\w.@-]+", "_", name).strip("_") or "unnamed"


def collect(submissions: Path, work: Path) -> dict[str, list[Path]]:
    """Student id -> the .ipynb files they handed in."""
    if submissions.is_file() and zipfile.is_zipfile(submissions):
        return zip_collect(submissions, work)
    if not submissions.is_dir():
        raise SystemExit(f"SUBMISSIONS must be a folder or a .zip; got {submissions}")
    found: dict[str, list[Path]] = {}
    for path in sorted(submissions.iterdir()):
        if path.is_dir() and not path.name.startswith((".", "__")):   # .ipynb_checkpoints, __MACOSX
            student = _student_id(path.name)
            if student in found:
                raise SystemExit(f"two folders give the student id {student!r} (ids keep letters, digits "
                                 f"and . _ - @): rename one of them in {submissions}")
            files = [p for p in path.rglob("*.ipynb") if not any(part.startswith((".", "__")) for part in p.parts)]
            found[student] = _preferred_first(files)
    return found


def _preferred_first(files: list[Path]) -> list[Path]:
    """A student's files in the order they are taken: a notebook's exact name first, then the
    newest; a later copy of the same notebook is noted and not graded."""
    return sorted(files, key=lambda p: (not any(p.name == n.name for n in homework.notebooks()), -p.stat().st_mtime))


def zip_collect(archive: Path, work: Path) -> dict[str, list[Path]]:
    """An LMS export, one file per student and notebook named `<student>_..._<notebook>.ipynb`
    (folders inside the zip are fine), sorted by nbgrader's zip_collect into a scratch course."""
    scratch = work / "zip-course"
    found: dict[str, list[Path]] = defaultdict(list)
    for path in homework.notebooks():
        name = path.stem
        (scratch / "downloaded" / name / "archive").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(archive, scratch / "downloaded" / name / "archive" / archive.name)
        regexp = rf".*/(?P<student_id>[^/_]+)_(?:[^/]*_)?(?P<file_id>{re.escape(name)}\.ipynb)$"
        homework.nbgrader(scratch, "zip_collect", name, "--force", f"--FileNameCollectorPlugin.named_regexp={regexp}",
                          f"--CourseDirectory.root={scratch}")
        for got in sorted((scratch / "submitted").glob(f"*/{name}/{name}.ipynb")):
            found[_student_id(got.parts[-3])].append(got)
    return {student: _preferred_first(files) for student, files in found.items()}


# ---------------------------------------------------------------------------- repairing


def _release() -> dict[str, nbformat.NotebookNode]:
    return {p.stem: nbformat.read(homework.COURSE / "release" / p.stem / p.name, as_version=4)
            for p in homework.notebooks()}


def _grade_ids(nb: nbformat.NotebookNode) -> list[str]:
    ids = []
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader")
        if isinstance(meta, dict) and isinstance(meta.get("grade_id"), str):
            ids.append(meta["grade_id"])
    return ids


def identify(path: Path, nb: nbformat.NotebookNode | None, release: dict) -> str | None:
    """The notebook a submitted file is: by its name, else by its graded cells' ids."""
    for name in release:
        if path.stem == name or path.name.endswith(f"{name}.ipynb"):
            return name
    if nb is None:
        return None
    ids = set(_grade_ids(nb))
    best = max(release, key=lambda name: len(ids & set(_grade_ids(release[name]))))
    return best if ids & set(_grade_ids(release[best])) else None


def repair(nb: nbformat.NotebookNode, reference: nbformat.NotebookNode) -> list[str]:
    """Make a submission gradable, in place; the notes on what was wrong with it.

    nbgrader puts back a deleted graded cell and the original of a changed test cell itself
    (OverwriteCells); here a cell's nbgrader metadata that nbgrader would refuse, or that names no
    cell of the release, is removed, and a graded cell's metadata is restored from the release."""
    notes = []
    released = {cell.metadata["nbgrader"]["grade_id"]: cell for cell in reference.cells
                if "nbgrader" in cell.metadata}
    seen = set()
    for i, cell in enumerate(nb.cells):
        meta = cell.get("metadata", {}).get("nbgrader")
        if meta is None:
            continue
        grade_id = meta.get("grade_id") if isinstance(meta, dict) else None
        if grade_id in released and grade_id not in seen:
            seen.add(grade_id)
            original = released[grade_id]
            if meta != original.metadata["nbgrader"] or cell.cell_type != original.cell_type:
                notes.append(f"cell {grade_id}: its nbgrader metadata had been changed; restored")
                cell.metadata["nbgrader"] = json.loads(json.dumps(original.metadata["nbgrader"]))
            if original.metadata["nbgrader"].get("locked") and cell.source != original.source:
                notes.append(f"cell {grade_id}: the test had been changed; graded with the original")
        else:
            match = _lost_answer(cell, reference, seen) if grade_id not in seen else None
            if match is not None:   # an answer cell whose metadata was damaged: known by its first line
                seen.add(match)
                cell.metadata["nbgrader"] = json.loads(json.dumps(released[match].metadata["nbgrader"]))
                notes.append(f"cell {match}: its nbgrader metadata was damaged; restored")
                continue
            what = "a copy of" if grade_id in seen else "damaged"
            notes.append(f"cell {i + 1}: {what} nbgrader metadata removed")
            del cell.metadata["nbgrader"]
    for grade_id, cell in released.items():
        if grade_id not in seen and cell.metadata["nbgrader"].get("grade"):
            kind = "answer" if cell.metadata["nbgrader"].get("solution") else "test"
            notes.append(f"cell {grade_id}: the {kind} cell had been deleted; put back from the release")
        elif grade_id not in seen:
            notes.append(f"cell {grade_id}: the answer cell had been deleted (0 for its exercise)")
    return notes


def _lost_answer(cell, reference: nbformat.NotebookNode, seen: set) -> str | None:
    """The grade id of the released answer cell not yet found whose first line this cell's is."""
    first = next((line for line in cell.source.splitlines() if line.strip()), None)
    for original in reference.cells:
        meta = original.metadata.get("nbgrader", {})
        if meta.get("solution") and meta["grade_id"] not in seen and original.cell_type == cell.cell_type \
                and first is not None and first == next((x for x in original.source.splitlines() if x.strip()), None):
            return meta["grade_id"]
    return None


def read_submission(path: Path) -> tuple[nbformat.NotebookNode | None, str | None]:
    try:
        nb = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
        if not isinstance(nb.get("cells"), list):
            raise ValueError("no cells")
        for cell in nb.cells:   # what a student's editor may leave behind, filled in
            cell.setdefault("metadata", nbformat.NotebookNode())
            if cell.get("cell_type") == "code":
                cell.setdefault("outputs", [])
                cell.setdefault("execution_count", None)
        return nb, None
    except (ValueError, UnicodeDecodeError, AttributeError, TypeError, KeyError) as err:
        reason = " ".join(str(err).split())[:120]
        return None, f"not a notebook that can be read ({type(err).__name__}: {reason}); 0 for it"


# ---------------------------------------------------------------------------- grading


def _env() -> dict:
    return {**os.environ, "SKIPVIZ_FAST": "1", "SKIPVIZ_PROGRESS": "0", "PYTHONWARNINGS": "ignore"}


def autograde(assignment: str, student: str) -> bool:
    run = homework.nbgrader(homework.COURSE, "autograde", assignment, f"--student={student}", "--force",
                            env=_env(), check=False)
    out = homework.COURSE / "autograded" / student / assignment / f"{assignment}.ipynb"
    return run.returncode == 0 and out.exists()


def killer_cell(path: Path, timeout: int) -> int | None:
    """The index of the cell whose run kills the kernel, running the notebook as nbgrader would."""
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, allow_errors=True, interrupt_on_timeout=True,
                            kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    old = dict(os.environ)
    os.environ.update(_env())
    try:
        with client.setup_kernel():
            for i, cell in enumerate(nb.cells):
                try:
                    client.execute_cell(cell, i)
                except DeadKernelError:
                    return i
    except DeadKernelError:
        return None
    finally:
        os.environ.clear()
        os.environ.update(old)
    return None


def grade_one(student: str, name: str, nb: nbformat.NotebookNode, timeout: int) -> list[str]:
    """Autograde one repaired submission; a kernel that dies costs the cell that killed it."""
    folder = homework.COURSE / "submitted" / student / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.ipynb"
    notes = []
    for _ in range(5):
        nbformat.write(nb, path)
        if autograde(name, student):
            graded = nbformat.read(homework.COURSE / "autograded" / student / name / f"{name}.ipynb", as_version=4)
            for cell in graded.cells:
                for out in cell.get("outputs", []):
                    if out.get("output_type") == "error" and out.get("ename") in ("CellTimeoutError", "KeyboardInterrupt"):
                        where = cell.metadata.get("nbgrader", {}).get("grade_id") or cell.source.strip()[:40]
                        note = f"{name}: a cell ran longer than {timeout} s and was stopped ({where!r})"
                        if note not in notes:
                            notes.append(note)
            return notes
        i = killer_cell(path, timeout)
        if i is None:
            break
        cell = nb.cells[i]
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("locked"):   # a test that runs the student's code: stub the answer it tests
            answer = _exercise(meta.get("grade_id", ""))
            target = next((c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == answer), None)
            if target is None:
                break
            target.source = KILLED
            notes.append(f"{name}: the kernel died while checking {answer}; that answer was not run (0 for it)")
        else:
            cell.source = KILLED
            notes.append(f"{name}: cell {i + 1} stopped the kernel and was not run")
    notes.append(f"{name}: could not be graded (0 for it): nbgrader's autograde failed")
    return notes


def _exercise(grade_id: str) -> str:
    """The exercise a graded cell belongs to: its answer's grade id (`nb01-ex4-test`, `nb01-ex4-hidden`
    -> `nb01-ex4`)."""
    return grade_id.removesuffix("-test").removesuffix("-hidden")


def exercises(release: dict) -> list[tuple[str, str, int, str]]:
    """(notebook, exercise, points, how graded) in notebook order; a hidden test belongs to its
    exercise."""
    rows = []
    for name, nb in release.items():
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            if not meta.get("grade"):
                continue
            exercise = _exercise(meta["grade_id"])
            how = "by hand" if meta.get("solution") else "automatically"
            if rows and rows[-1][1] == exercise:
                rows[-1] = (name, exercise, rows[-1][2] + meta["points"], how)
            else:
                rows.append((name, exercise, meta["points"], how))
    return rows


def scores(assignments: list[str], students: list[str]) -> dict[str, dict[str, float | None]]:
    """student -> exercise -> points (None: awaiting a grade by hand), from nbgrader's gradebook."""
    from nbgrader.api import Gradebook, MissingEntry

    result: dict[str, dict[str, float | None]] = {s: {} for s in students}
    with Gradebook(f"sqlite:///{homework.COURSE / 'gradebook.db'}", homework.COURSE_ID) as gb:
        for student in students:
            for assignment in assignments:
                try:
                    sub = gb.find_submission_notebook(assignment, assignment, student)
                except MissingEntry:
                    continue
                for grade in sub.grades:
                    exercise = _exercise(grade.name)
                    score = None if grade.needs_manual_grade and grade.manual_score is None else grade.score
                    prev = result[student].get(exercise, 0.0)
                    result[student][exercise] = None if score is None or prev is None else prev + score
    return result


def grade(submissions: Path, out: Path, timeout: int = 300) -> Path:
    homework.generate(homework.COURSE, timeout)   # the release the students got, and its gradebook entries
    release = _release()
    notes: dict[str, list[str]] = defaultdict(list)
    handed_in: dict[str, set[str]] = defaultdict(set)
    with tempfile.TemporaryDirectory() as tmp:
        classes = collect(submissions, Path(tmp))
        for student, files in sorted(classes.items()):
            # this batch replaces what this student handed in before; other students keep theirs
            for folder in ("submitted", "autograded", "feedback"):
                shutil.rmtree(homework.COURSE / folder / student, ignore_errors=True)
            if not files:
                notes[student].append("no notebook (.ipynb) in the student's folder")
            for path in files:
                nb, problem = read_submission(path)
                name = identify(path, nb, release)
                if name is None:
                    notes[student].append(f"{path.name}: {problem or 'matches no notebook of the course'}; not graded")
                    continue
                if name in handed_in[student]:
                    notes[student].append(f"{path.name}: a second copy of {name}; not graded")
                    continue
                handed_in[student].add(name)
                if path.name != f"{name}.ipynb":
                    notes[student].append(f"{path.name}: renamed; graded as {name}.ipynb")
                if nb is None:
                    notes[student].append(f"{name}: {problem}")
                    continue
                notes[student] += [f"{name}: {n}" for n in repair(nb, release[name])]
                print(f"grading {student} / {name}", flush=True)
                notes[student] += grade_one(student, name, nb, timeout)
    assignments = [name for name in release if any(name in h for h in handed_in.values())]
    students = sorted(classes)
    for student in students:
        for name in assignments:
            if name not in handed_in[student]:
                notes[student].append(f"{name}: not handed in (0 for it)")
    return write_results(out, release, assignments, students, notes)


def export(out: Path) -> Path:
    """grades.csv again from the course's gradebook, after grading by hand in the formgrader: the
    students, notebooks and notes of the last `make grade` into `out` (its batch.json)."""
    if not (out / "batch.json").exists():
        raise SystemExit(f"{out} holds no grading run (batch.json): run make grade first")
    batch = json.loads((out / "batch.json").read_text())
    return write_results(out, _release(), batch["assignments"], batch["students"], batch["notes"])


def write_results(out: Path, release: dict, assignments: list[str], students: list[str],
                  notes: dict[str, list[str]]) -> Path:
    """grades.csv and exercises.csv from the gradebook, and each student's feedback made afresh
    (so that grades given by hand since the last run are in it)."""
    out.mkdir(parents=True, exist_ok=True)
    for assignment in assignments:
        homework.nbgrader(homework.COURSE, "generate_feedback", assignment, "--force", env=_env(), check=False)
    batch = {"assignments": assignments, "students": students, "notes": notes}
    (out / "batch.json").write_text(json.dumps(batch, indent=1, sort_keys=True))
    rows = [r for r in exercises(release) if r[0] in assignments]
    with open(out / "exercises.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["notebook", "exercise", "points", "graded"])
        w.writerows(rows)
    got = scores(assignments, students)
    with open(out / "grades.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["student", *[r[1] for r in rows], "total", "max", "to_grade_by_hand", "notes"])
        for student in students:
            points = [got[student].get(r[1], 0.0) for r in rows]
            w.writerow([student, *["" if p is None else f"{p:g}" for p in points],
                        f"{sum(p for p in points if p is not None):g}", f"{sum(r[2] for r in rows):g}",
                        sum(p is None for p in points), " | ".join(notes.get(student, []))])
    shutil.rmtree(out / "feedback", ignore_errors=True)
    for html in sorted((homework.COURSE / "feedback").glob("*/*/*.html")):
        student = html.parts[-3]
        if student not in students or html.parent.name not in assignments:
            continue
        target = out / "feedback" / student / html.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(html, target)
    return out / "grades.csv"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("submissions", type=Path, nargs="?")
    parser.add_argument("--export", action="store_true", help="only write grades.csv from the gradebook")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "grades")
    parser.add_argument("--timeout", type=int, default=300, help="seconds a cell may run (default 300)")
    args = parser.parse_args(argv)
    if args.export:
        print(f"wrote {export(args.out)}")
        return 0
    if args.submissions is None:
        parser.error("give the folder (or zip) of submissions, or --export")
    csv_path = grade(args.submissions, args.out, args.timeout)
    print(f"wrote {csv_path} and {args.out / 'feedback'}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
