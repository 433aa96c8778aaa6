"""Find the exercises in a notebook and run them outside it: each solution cell (nbgrader metadata
`solution: true`, code) with the cell that checks it (the first code cell from there on that calls
`exercises.check_...`). Shared by tests/test_exercises.py (the reference answers pass) and
tests/student/ (the stubs say "not done yet")."""

from __future__ import annotations

import math

import nbformat
import torch
from torch import nn

from skipviz import exercises, landscape, models, paths, probes


def check_cells(nb: nbformat.NotebookNode) -> list[tuple[nbformat.NotebookNode, nbformat.NotebookNode]]:
    pairs = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or not cell.metadata.get("nbgrader", {}).get("solution"):
            continue
        for later in nb.cells[i:]:
            if later.cell_type == "code" and "exercises.check_" in later.source:
                pairs.append((cell, later))
                break
    return pairs


def run_exercise(solution: nbformat.NotebookNode, check: nbformat.NotebookNode) -> exercises.CheckResult:
    """Execute the solution cell (a stub's NotImplementedError is what a student sees too), then
    the check cell, and return the check's result (the CheckResult a graded cell's `.assert_ok()`
    asserts)."""
    namespace = {"math": math, "torch": torch, "nn": nn, "relu": torch.relu, "exercises": exercises,
                 "models": models, "paths": paths, "probes": probes, "landscape": landscape}
    try:
        exec(compile(solution.source, "<solution>", "exec"), namespace)
    except NotImplementedError:
        pass
    source = check.source.replace("# NBVAL_CHECK_OUTPUT\n", "")
    if solution is not check:
        body, last = source.rsplit("\n", 1) if "\n" in source.strip() else ("", source)
        exec(compile(body, "<check>", "exec"), namespace)
        return eval(compile(last.strip().removesuffix(".assert_ok()"), "<check>", "eval"), namespace)
    body, last = source.rstrip().rsplit("\n", 1)
    exec(compile(body, "<check>", "exec"), namespace)
    return eval(compile(last.strip().removesuffix(".assert_ok()"), "<check>", "eval"), namespace)
