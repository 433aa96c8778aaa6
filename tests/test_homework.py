"""The homework's one source: nbgrader's metadata in the notebooks agrees with the points table
(tools/homework.toml), every graded check raises when the answer is wrong, and the hand-out link
has the documented form. (The release, grading and hub run in `make test-all`.)"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import nbformat
import pytest

from skipviz import exercises

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import homework  # noqa: E402
import hub  # noqa: E402

NOTEBOOKS = homework.notebooks()


def test_the_notebooks_metadata_is_the_points_table():
    assert homework.write_metadata(check=True) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_answer_is_graded_and_every_notebook_has_a_hidden_test(path):
    nb = nbformat.read(path, as_version=4)
    table = homework.load_points()[path.stem]
    graded = {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")}
    assert sum(int(c.metadata["nbgrader"]["points"]) for c in graded.values()) == sum(table.values())
    tests = [c for c in graded.values() if c.metadata["nbgrader"]["locked"]]
    assert tests and all(c.source.replace("### END HIDDEN TESTS", "").rstrip().endswith(".assert_ok()") for c in tests)
    assert sum("### BEGIN HIDDEN TESTS" in c.source for c in tests) == 1
    for c in graded.values():   # answers in words are graded by hand, never locked
        if c.cell_type == "markdown":
            assert c.metadata["nbgrader"]["solution"] and not c.metadata["nbgrader"]["locked"]


def test_a_table_out_of_step_with_a_notebook_is_refused():
    path = NOTEBOOKS[0]
    nb = nbformat.read(path, as_version=4)
    table = dict(homework.load_points()[path.stem])
    missing = dict(table)
    missing.pop(next(iter(missing)))
    with pytest.raises(SystemExit, match="has no points"):
        homework.with_metadata(nb, missing, path.stem)
    with pytest.raises(SystemExit, match="which no cell has"):
        homework.with_metadata(nb, {**table, "nb01-ex9": 3}, path.stem)
    unasserted = copy.deepcopy(nb)
    for cell in unasserted.cells:
        cell.source = cell.source.replace(".assert_ok()", "")
    with pytest.raises(SystemExit, match="must end in .assert_ok()"):
        homework.with_metadata(unasserted, table, path.stem)


def test_assert_ok_raises_the_checks_own_line_and_passes_a_right_answer(capsys):
    wrong = exercises.check_leaky_relu_factor(0.9)
    with pytest.raises(exercises.CheckFailed) as info:
        wrong.assert_ok()
    assert str(info.value) == wrong.message
    assert info.value._render_traceback_() == ["❌ " + wrong.message]   # no traceback, no code
    assert isinstance(info.value, AssertionError)
    right = exercises.check_leaky_relu_factor((1 / 3 * (1 + 0.2 ** 2) / 2) ** 0.5)
    assert right.assert_ok() is None   # no result: nbgrader would read a number as partial credit


def test_the_hub_link_is_the_documented_pattern():
    assert hub.link("https://github.com/you/homework", "https://hub.example.edu/") == (
        "https://hub.example.edu/hub/user-redirect/git-pull?repo=https%3A%2F%2Fgithub.com%2Fyou%2Fhomework"
        "&branch=main&urlpath=lab%2Ftree%2Fhomework")
    assert hub.link("https://gitlab.com/a/hw.git", "https://h", branch="week 2", notebook="01_x.ipynb").endswith(
        "&branch=week%202&urlpath=lab%2Ftree%2Fhw.git%2F01_x.ipynb")
    guide = (ROOT / "docs" / "homework.md").read_text(encoding="utf-8")
    assert hub.link("https://github.com/you/homework", "https://hub.example.edu") in guide
