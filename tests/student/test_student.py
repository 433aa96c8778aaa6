"""The student copies (`make student`): made by nbgrader from the reference notebooks, identical
from run to run, without a single solution line, and with every check saying "not done yet" to
the stubs. Needs the `student` extra (nbgrader); `make test-student` runs it."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "tests"))
import student  # noqa: E402
from exercise_cells import check_cells, run_exercise  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
IDS = [p.stem for p in NOTEBOOKS]


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> dict[str, nbformat.NotebookNode]:
    """The student copies nbgrader releases, by notebook file name (one release for the module)."""
    out = tmp_path_factory.mktemp("student")
    return {p.name: nbformat.read(p, as_version=4)
            for p in student.write_all(out, course=tmp_path_factory.mktemp("course"))}


def without_hidden_tests(source: str) -> str:
    return re.sub(r"\n?### BEGIN HIDDEN TESTS\n.*?### END HIDDEN TESTS", "", source, flags=re.S)


def solution_lines(nb: nbformat.NotebookNode) -> list[str]:
    """Every line inside a solution region, and every line of a model-answer cell."""
    lines = []
    for cell in nb.cells:
        is_solution = cell.metadata.get("nbgrader", {}).get("solution", False)
        inside = False
        for line in cell.source.splitlines():
            if line.strip() == "### BEGIN SOLUTION":
                inside = True
            elif line.strip() == "### END SOLUTION":
                inside = False
            elif (inside or (is_solution and "### BEGIN SOLUTION" not in cell.source)) and line.strip():
                lines.append(line.strip())
    return lines


def test_two_runs_give_byte_identical_copies(tmp_path):
    first = student.write_all(tmp_path / "a")
    second = student.write_all(tmp_path / "b")
    assert [p.name for p in first] == [p.name for p in NOTEBOOKS]
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_no_solution_line_reaches_the_student_copy(path, released):
    reference = nbformat.read(path, as_version=4)
    copy = released[path.name]
    hidden = solution_lines(reference)
    assert len(hidden) >= 4, "every notebook has coding exercises and model answers"
    # A line the reference also shows outside its solutions (a spot-the-bug listing shares most of
    # its lines with the fix) is given to the student anyway: it is not a leak.
    given = {line.strip() for cell in reference.cells if not cell.metadata.get("nbgrader", {}).get("solution")
             and "### BEGIN SOLUTION" not in cell.source for line in cell.source.splitlines()}
    text = "\n".join(line.strip() for cell in copy.cells for line in cell.source.splitlines())
    leaked = [line for line in hidden if line in text.splitlines() and len(line) > 12 and line not in given]
    assert not leaked
    assert not any(c.get("outputs") for c in copy.cells if c.cell_type == "code")
    # Everything that is not a solution is unchanged, cell for cell, but for the hidden tests.
    assert len(copy.cells) == len(reference.cells)
    hidden = [ref for ref in reference.cells if "### BEGIN HIDDEN TESTS" in ref.source]
    assert hidden, "every notebook has a graded cell with hidden tests"
    for ref, new in zip(reference.cells, copy.cells):
        if not ref.metadata.get("nbgrader", {}).get("solution"):
            assert new.source == without_hidden_tests(ref.source)
            assert "HIDDEN TESTS" not in new.source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_every_check_says_not_done_yet_to_the_stub(path, released):
    copy = released[path.name]
    pairs = check_cells(copy)
    assert len(pairs) >= 2
    for solution, check in pairs:
        result = run_exercise(solution, check)
        assert not result.ok and result.message.startswith("not done yet"), (check.source, result)


def test_a_copy_that_prints_a_verdict_or_the_references_feedback_is_caught():
    reference = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("exercises.check_x(Answer)")])
    reference.cells[0].outputs = [nbformat.v4.new_output("stream", text="❌ the input reaches only the first half\n")]
    copy = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(check(Published))"),
                                           nbformat.v4.new_code_cell("exercises.check_x(Answer)")])
    copy.cells[0].outputs = [nbformat.v4.new_output("stream", text="❌ the input reaches only the first half\n")]
    copy.cells[1].outputs = [nbformat.v4.new_output("stream", text="❌ not done yet: Answer is still the stub\n")]
    problems = student.leaks(copy, reference)
    assert any("verdict on a published answer" in p for p in problems)
    assert any("reference's feedback" in p for p in problems)
    copy.cells[0].outputs = []
    assert student.leaks(copy, reference) == []


def test_a_feedback_demo_on_a_question_not_asked_is_not_a_leak():
    reference = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("exercises.check_x(Answer)")])
    demo = nbformat.v4.new_code_cell("print(exercises.check_block(PlainTwoLayers, block='v1'))")
    demo.metadata["tags"] = ["feedback-demo"]
    demo.outputs = [nbformat.v4.new_output("stream", text="❌ your block computes σ(W₂ σ(W₁x))\n")]
    copy = nbformat.v4.new_notebook(cells=[demo])
    assert student.leaks(copy, reference) == []
    demo.metadata["tags"] = []
    assert student.leaks(copy, reference) != []
