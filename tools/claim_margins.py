"""How far each claim was from failing: the rewrite `make claims` runs on, and the report.

`with_margins(nb)` rewrites every claim(statement, condition) of a notebook so that the
condition's comparisons return skipviz.claims.Margin values (true or false as before, plus a
slack: the distance from the bound relative to the compared sizes, 0 on the edge). `report`
reads the logs of several seeds and prints, per claim, the smallest slack and the slack's mean
over its seed-to-seed spread, worst first.
"""

from __future__ import annotations

import ast
import json
import math
import statistics
from pathlib import Path

OPS = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=",
       ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not"}
HELPERS = "__import__('skipviz.claims', fromlist=['claims'])"


class _Margins:
    """A claim's condition with its truth-valued parts rewritten to keep their slack: the condition
    itself, the operands of `and`, and the element of all(...). Anything else (a comparison inside a
    list, an index, a function's argument) is left exactly as it is."""

    def _helper(self, name: str) -> ast.expr:
        return ast.Attribute(ast.parse(HELPERS, mode="eval").body, name, ast.Load())

    def truth(self, node: ast.expr) -> ast.expr:
        if isinstance(node, ast.Compare):
            args = [node.left]
            for op, right in zip(node.ops, node.comparators):
                args += [ast.Constant(OPS[type(op)]), right]
            return ast.Call(self._helper("margin_compare"), args, [])
        if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And):
            thunks = [ast.Lambda(ast.arguments([], [], None, [], [], None, []), self.truth(v)) for v in node.values]
            return ast.Call(self._helper("margin_and"), thunks, [])
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "all"
                and len(node.args) == 1 and isinstance(node.args[0], ast.GeneratorExp)):
            gen = node.args[0]
            gen = ast.GeneratorExp(self.truth(gen.elt), gen.generators)
            return ast.Call(self._helper("margin_all"), [gen], [])
        return node


class _Claims(ast.NodeTransformer):
    def visit_Call(self, node: ast.Call) -> ast.expr:
        self.generic_visit(node)
        if isinstance(node.func, ast.Name) and node.func.id == "claim" and len(node.args) >= 2:
            node.args[1] = _Margins().truth(node.args[1])
        return node


def with_margins(source: str) -> str:
    """A code cell's source with its claims' conditions rewritten; unchanged if it has no claim or
    does not parse (IPython magics)."""
    if "claim(" not in source:
        return source
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    return ast.unparse(ast.fix_missing_locations(_Claims().visit(tree)))


def fragile(slacks: list[float]) -> bool:
    """The margin policy: a claim that failed for a seed, or whose slack varies over the seeds with a
    mean less than three standard deviations above zero, is fragile: a new seed could break it.
    A slack that is the same for every seed (an exact count, a fixed matrix) is not."""
    if min(slacks) <= 0:
        return True
    if len(slacks) < 2:
        return False
    spread = statistics.stdev(slacks)
    return spread > 0 and statistics.mean(slacks) / spread < 3


def report(logs: dict[tuple[str, int], Path], worst: int = 25) -> list[str]:
    """Lines of the margin report from {(notebook, seed): log}: how many claims have a size, how
    many break the margin policy (`fragile`), and the claims closest to failing with their smallest
    slack over the seeds and z = mean / standard deviation of the slack."""
    slacks: dict[tuple[str, str], dict[int, float | None]] = {}
    for (notebook, seed), path in logs.items():
        if not path.exists():
            continue
        seen: dict[str, int] = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            n = seen[entry["statement"]] = seen.get(entry["statement"], 0) + 1
            key = (notebook, entry["statement"] + (f" [{n}]" if n > 1 else ""))
            slacks.setdefault(key, {})[seed] = entry["slack"]
    rows = []
    for (notebook, statement), per_seed in slacks.items():
        values = [v for v in per_seed.values() if v is not None]
        if not values:
            continue
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        z = statistics.mean(values) / spread if spread > 0 else math.inf
        rows.append((fragile(values), min(values), z, notebook, statement, len(values)))
    rows.sort(key=lambda r: (not r[0], min(r[1], r[2] / 10), r[1]))
    lines = [f"{len(rows)} claims with a size, {sum(r[0] for r in rows)} below the margin policy "
             "(z = mean slack / its spread over the seeds at least 3). "
             f"The {min(worst, len(rows))} closest to failing (slack: distance from the bound relative to the "
             "compared sizes, 0 on the edge; z inf: the same for every seed):"]
    for is_fragile, smallest, z, notebook, statement, n in rows[:worst]:
        mark = "!" if is_fragile else " "
        lines.append(f" {mark} slack {smallest:6.3f}  z {z:6.1f}  ({n} seeds)  {notebook[:2]}  {statement[:100]}")
    return lines
