"""Every outcome sentence of a notebook's results text is backed by a claim (tools/claim_coverage.py)."""

import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import claim_coverage  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_outcome_sentence_has_a_claim(path):
    missing = claim_coverage.unbacked(path)
    assert not missing, "\n".join(f"cell {s.cell}: {s.text}" for s in missing)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_the_paper_marker_only_follows_a_citation(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for sentence in claim_coverage.sentences(cell.source) + re.split(r"(?<=\.)\s+", cell.source):
            if claim_coverage.PAPER in sentence:
                assert re.search(r"et al\.|\b(19|20)\d\d\b|paper|blog|lecture|[A-Z]\w+'s", sentence), sentence


def _notebook(*cells):
    nb = nbformat.v4.new_notebook()
    for kind, source in cells:
        if kind == "code":
            cell = nbformat.v4.new_code_cell(source)
            cell.outputs = [nbformat.v4.new_output("stream", text="x\n")]
        else:
            cell = nbformat.v4.new_markdown_cell(source)
        nb.cells.append(cell)
    return nb


def test_the_tool_flags_an_unbacked_outcome_and_passes_backed_cited_and_asked_ones(tmp_path):
    nb = _notebook(
        ("code", 'claim("the residual net reaches a lower training loss than the plain net", True)'),
        ("markdown", "**What to see:** the residual net reaches a lower training loss than the plain net. "
                     "The plain net stays above 2.0 for every seed. "
                     "He et al. report 6.4% error. <!-- paper -->\n\n*Question.* Which one grows faster?"),
        ("markdown", "## Summary\n\n- Skips make every gradient 10 times larger."),
        ("markdown", "## Exercises\n\nThe plain net is worse in 3 of 5 cases."),
    )
    path = tmp_path / "99_test.ipynb"
    nbformat.write(nb, path)
    flagged = [s.text for s in claim_coverage.unbacked(path)]
    assert flagged == ["The plain net stays above 2.0 for every seed.", "- Skips make every gradient 10 times larger."]
