"""A simulated class for `make grade`: submissions made from the student copies, with the grade
each exercise must get. Used by tests/student/test_grading.py.

- `ada` hands in the reference answers (full marks for every automatically graded exercise);
- `stub` hands in the untouched copies (0 everywhere);
- `typical` makes one typical mistake in each notebook (two in 01), and in 03 hard-codes the
  visible check's cases (the hidden test catches it: partial marks);
- the others break notebook 01 in one way each (see BROKEN).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n?", re.M)

# One typical wrong answer per notebook (two in 01): grade id -> (text of the reference answer,
# what the student wrote instead); and the points those exercises then get.
TYPICAL = {
    "nb01-ex1": ("math.sqrt(1 / 3 * (1 + 0.2 ** 2) / 2)", "math.sqrt(1 / 3 * (1 + 0.2) / 2)"),  # mean slope
    "nb01-ex4": ("math.sqrt(g ** 2)", "g ** 2"),                                   # no square root
    "nb02-ex1": ("self.fc1(x)))))) + x", "self.fc1(x))))) + x)"),                     # ReLU after the sum
    "nb03-ex1": ("    return math.comb(n, k) * 2 ** k",                          # the visible cases by heart
                 "    return _SEEN[n, k]\n_SEEN = {(n, k): math.comb(n, k) * 2 ** k for n in list(range(13)) + [54] "
                 "for k in range(n + 1)}"),
    "nb04-ex1": ("d * (w.norm() / d.norm())", "d / d.norm()"),                      # unit length, not w's
    "nb05-ex2": ("    return layer", "    return layer - 1"),                       # off by one
    "nb06-ex2": ("math.ceil(round(d_scaled / eps, 9))", "math.floor(d_scaled / eps)"),  # rounds down
    "nb07-ex4": ("layer(torch.cat(features, dim=1))", "layer(features[-1])"),       # only the last output
    "nb08-ex1": ("    d = g - g.mean()", "    d = g"),                                   # not centred
    "nb09-ex2": ("    x = x + block.attention(block.norm_attention(x))\n    return x + block.mlp(block.norm_mlp(x))",
                 "    x = block.norm_attention(x + block.attention(x))\n    return block.norm_mlp(x + block.mlp(x))"),  # post-LN
}
# The tailored count_paths passes the visible check and fails the hidden one: 2 of 3 points.
TYPICAL_POINTS = {"nb01-ex1": 0, "nb01-ex4": 0, "nb02-ex1": 0, "nb03-ex1": 2, "nb04-ex1": 0, "nb05-ex2": 0,
                  "nb06-ex2": 0, "nb07-ex4": 0, "nb08-ex1": 0, "nb09-ex2": 0}


def reference_answers(release: nbformat.NotebookNode, reference: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The student copy with every answer cell filled in from the reference notebook."""
    answers = {c.metadata["nbgrader"]["grade_id"]: SOLUTION.sub("", c.source) for c in reference.cells
               if c.metadata.get("nbgrader", {}).get("solution")}
    nb = copy.deepcopy(release)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers and cell.metadata["nbgrader"].get("solution"):
            cell.source = answers[grade_id]
    return nb


def with_answer(nb: nbformat.NotebookNode, grade_id: str, source: str) -> nbformat.NotebookNode:
    nb = copy.deepcopy(nb)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)
    cell.source = source
    return nb


def _cell(nb, grade_id):
    return next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def broken(answered: nbformat.NotebookNode) -> dict[str, tuple[str, str | nbformat.NotebookNode]]:
    """Student -> (file name, notebook or raw text): notebook 01 broken in one way each."""
    loop = with_answer(answered, "nb01-ex1", "while True:\n    pass\npredicted = math.sqrt(1 / 3 * (1 + 0.2 ** 2) / 2)")
    crash = with_answer(answered, "nb01-ex4", "def adam_first_step(g, lr, eps):\n    import os\n    os._exit(1)")
    deleted = copy.deepcopy(answered)
    del deleted.cells[_cell(deleted, "nb01-ex1-test")]
    del deleted.cells[_cell(deleted, "nb01-ex2")]            # an answer in words, deleted
    deleted.cells[_cell(deleted, "nb01-ex4")].metadata["nbgrader"] = {"grade_id": 7, "solution": "yes"}
    tampered = with_answer(answered, "nb01-ex1", "predicted = 0.5")
    tampered.cells[_cell(tampered, "nb01-ex1-test")].source = "print('all good')"
    name = "01_vanishing_gradients.ipynb"
    return {
        "loop": (name, loop),
        "crash": (name, crash),
        "deleted": (name, deleted),
        "tampered": (name, tampered),
        "notjson": (name, '{"cells": [ this is not JSON'),
        "renamed": ("homework 1 (final).ipynb", answered),
    }


# What each broken submission must score on notebook 01's automatically graded exercises, and a
# word its notes must contain.
BROKEN_POINTS = {
    "loop": ({"nb01-ex1": 0, "nb01-ex4": 3}, "longer than"),
    "crash": ({"nb01-ex1": 2, "nb01-ex4": 0}, "kernel died"),
    "deleted": ({"nb01-ex1": 2, "nb01-ex4": 3}, "deleted"),
    "tampered": ({"nb01-ex1": 0, "nb01-ex4": 3}, "test had been changed"),
    "notjson": ({"nb01-ex1": 0, "nb01-ex4": 0}, "not a notebook"),
    "renamed": ({"nb01-ex1": 2, "nb01-ex4": 3}, "renamed"),
}


def write_class(folder: Path, release_dir: Path, notebooks: list[str]) -> None:
    """The simulated class's submissions in folder/<student>/ (notebook names without .ipynb)."""
    for name in notebooks:
        release = nbformat.read(release_dir / f"{name}.ipynb", as_version=4)
        reference = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
        answered = reference_answers(release, reference)
        typical = answered
        for grade_id, (right, wrong) in TYPICAL.items():
            if grade_id.startswith(f"nb{name[:2]}-"):
                cell = typical.cells[_cell(typical, grade_id)]
                assert right in cell.source, (grade_id, cell.source)
                typical = with_answer(typical, grade_id, cell.source.replace(right, wrong))
        for student, nb in (("ada", answered), ("stub", release), ("typical", typical)):
            (folder / student).mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, folder / student / f"{name}.ipynb")
        if name.startswith("01"):
            for student, (file, content) in broken(answered).items():
                (folder / student).mkdir(parents=True, exist_ok=True)
                target = folder / student / file
                if isinstance(content, str):
                    target.write_text(content, encoding="utf-8")
                else:
                    nbformat.write(content, target)
