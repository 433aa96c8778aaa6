"""`make grade` on a simulated class (tests/homework_class.py): the reference answers score full
marks, the untouched copies 0, typical mistakes 0 for their exercise (a tailored answer loses the
hidden test's point), and each broken submission loses only what it breaks, with a note; the
feedback shows the check's one line and never a hidden test or a reference solution line."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tools"))
import homework  # noqa: E402
import homework_class  # noqa: E402

NAMES = [p.stem for p in homework.notebooks()]
TIMEOUT = 30   # the infinite loop costs this once


COURSE = {}   # the scratch nbgrader course of this module (never the lecturer's build/course)


def make_grade(submissions: Path, out: Path) -> dict[str, dict[str, str]]:
    env = {**os.environ, "SKIPVIZ_COURSE": str(COURSE["path"])}
    run = subprocess.run(["make", "--no-print-directory", "grade", f"SUBMISSIONS={submissions}",
                          f"GRADE_TIMEOUT={TIMEOUT}", f"GRADES={out}"], cwd=ROOT, capture_output=True, text=True,
                         env=env)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    with open(out / "grades.csv", newline="", encoding="utf-8") as f:
        return {row["student"]: row for row in csv.DictReader(f)}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    COURSE["path"] = tmp_path_factory.mktemp("course")
    release = tmp_path_factory.mktemp("release")
    subprocess.run([sys.executable, str(ROOT / "tools" / "student.py"), "--out", str(release)], check=True,
                   capture_output=True)
    submissions = tmp_path_factory.mktemp("class")
    homework_class.write_class(submissions, release, NAMES)
    out = tmp_path_factory.mktemp("grades")
    return make_grade(submissions, out), out


def exercise_table(out: Path) -> list[dict[str, str]]:
    with open(out / "exercises.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_the_reference_answers_score_every_automatic_point_and_await_the_rest(graded):
    grades, out = graded
    table = exercise_table(out)
    auto = [r for r in table if r["graded"] == "automatically"]
    assert {r["notebook"] for r in auto} == set(NAMES) and len(auto) >= 17
    for r in table:
        got = grades["ada"][r["exercise"]]
        assert got == (r["points"] if r in auto else ""), (r, got)
    assert grades["ada"]["to_grade_by_hand"] == str(len(table) - len(auto))
    assert float(grades["ada"]["total"]) == sum(float(r["points"]) for r in auto)
    assert grades["ada"]["notes"] == ""


def test_no_untouched_copy_scores_a_point(graded):
    grades, out = graded
    for r in exercise_table(out):
        assert grades["stub"][r["exercise"]] == "0", r
    assert grades["stub"]["total"] == "0" and grades["stub"]["to_grade_by_hand"] == "0"


def test_typical_mistakes_lose_their_exercise_and_a_tailored_answer_loses_the_hidden_point(graded):
    grades, out = graded
    for r in exercise_table(out):
        if r["graded"] != "automatically":
            continue
        expected = homework_class.TYPICAL_POINTS.get(r["exercise"], int(r["points"]))
        assert grades["typical"][r["exercise"]] == str(expected), r


@pytest.mark.parametrize("student", sorted(homework_class.BROKEN_POINTS))
def test_a_broken_submission_loses_only_what_it_breaks_with_a_note(graded, student):
    grades, out = graded
    points, word = homework_class.BROKEN_POINTS[student]
    for exercise, expected in points.items():
        assert grades[student][exercise] == str(expected), (student, exercise, grades[student])
    assert word in grades[student]["notes"], grades[student]["notes"]


def solution_lines() -> set[str]:
    """The lines inside the notebooks' solution and hidden-test regions that appear nowhere else
    in them (a line such as `with torch.no_grad():` is also in the lecture's code)."""
    inside_lines, outside_lines = set(), set()
    for name in NAMES:
        for cell in nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4).cells:
            inside = False
            for line in cell.source.splitlines():
                if "### BEGIN" in line:
                    inside = True
                elif "### END" in line:
                    inside = False
                elif len(line.strip()) > 12:
                    (inside_lines if inside else outside_lines).add(line.strip())
    return inside_lines - outside_lines


def _text(page: Path) -> str:
    text = re.sub(r"<(style|script)\b.*?</\1>", "", page.read_text(encoding="utf-8"), flags=re.S)
    text = re.sub(r"<[^>]+>", "", text)
    for entity, char in (("&quot;", '"'), ("&#39;", "'"), ("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&")):
        text = text.replace(entity, char)
    return text


def test_feedback_shows_the_one_line_verdict_and_no_hidden_test_or_solution(graded):
    grades, out = graded
    secret = solution_lines()
    hidden = [line for line in secret if ".assert_ok()" in line]
    assert len(hidden) >= 7
    pages = sorted((out / "feedback").glob("*/*.html"))
    assert {p.parent.name for p in pages} == set(grades) - {"notjson"}
    for page in pages:   # every student's feedback, the reference answers' too
        text = _text(page)
        assert not [line for line in hidden if line in text] and "HIDDEN TESTS" not in text, page
    for page in (out / "feedback" / "stub").glob("*.html"):   # the others wrote reference lines themselves
        assert not [line for line in secret if line in _text(page)], page
    typical = _text(out / "feedback" / "typical" / "01_vanishing_gradients.html")
    assert "averaged the slopes" in typical and "square root is missing" in typical
    assert "Traceback (most recent call last)" not in typical and "❌" in typical


def test_an_lms_zip_is_sorted_by_zip_collect(tmp_path, graded):
    _, out = graded
    folder = tmp_path / "export"
    folder.mkdir()
    ada = next((out.parent).glob("class*/ada/01_vanishing_gradients.ipynb"), None)
    release = next((out.parent).glob("release*/01_vanishing_gradients.ipynb"))
    shutil.copyfile(ada, folder / "ada_1234_assignsubmission_file_01_vanishing_gradients.ipynb")
    shutil.copyfile(release, folder / "bob_99_01_vanishing_gradients.ipynb")
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in folder.iterdir():
            z.write(f, f"submissions/{f.name}")
    grades = make_grade(archive, tmp_path / "grades")
    assert set(grades) == {"ada", "bob"}
    assert grades["ada"]["nb01-ex4"] == "3" and grades["bob"]["nb01-ex4"] == "0"
