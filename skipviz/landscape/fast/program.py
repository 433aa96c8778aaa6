"""The fast engine's one interpreter of a model: the graph `graph.prove` accepted, compiled once
into a list of `Op`s, one vocabulary (`Kind`) and one table of activations (`graph.ACTIVATIONS`).
Two runners execute the same program:

- `points.PointEvaluator`: P weight vectors in one forward pass (the loss surfaces);
- `rop.hessian_operator`: Hessian-vector products by Pearlmutter's R-operator (the curvature).

Compiling does what neither runner should repeat: an eval-mode batch norm read only by the
Linear or Conv1d before it is folded into that layer (the norm's node becomes a LINEAR or CONV
op with `norm` set, and the layer's own node disappears), and each op learns which values
it is the last to read, so that a runner may drop them or write into them.
"""

from __future__ import annotations

import enum
import operator
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.fx as fx
from torch import nn

from .graph import ACTIVATIONS, foldable, prove, users_of_module

FUNCTIONS: dict[str, Callable] = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}
IN_PLACE: dict[str, Callable] = {"relu": torch.relu_, "tanh": torch.tanh_, "sigmoid": torch.sigmoid_}
ADDITIONS = (operator.add, torch.add)


class Kind(enum.Enum):
    """What an op computes. CALL is any other node, run as the graph would run it."""

    INPUT, OUTPUT, ATTR, LINEAR, CONV, NORM, ACT, ADD, SCALE, ALIAS, CALL = range(11)


@dataclass(frozen=True)
class Op:
    """One value of the program: `node`'s, computed from `inputs`."""

    kind: Kind
    node: fx.Node
    inputs: tuple[fx.Node, ...]   # the nodes among its arguments, in order, repeats kept
    args: tuple = ()              # its arguments as the graph has them (for the layer, if folded)
    plain: bool = True            # one or two arguments, all nodes or numbers, no keywords
    layer: str = ""               # LINEAR, CONV, NORM: the module's name
    norm: str = ""                # LINEAR, CONV: the batch norm folded into it ("" if none)
    eps: float = 0.0              # NORM, or the folded norm's
    activation: str = ""          # ACT: a key of FUNCTIONS
    number: float | None = None   # ADD of a number, SCALE: the number
    dying: tuple[fx.Node, ...] = ()            # values this op is the last to read
    writable: frozenset[fx.Node] = frozenset()  # of those, the ones it reads once


@dataclass(frozen=True)
class Program:
    """A proven model's ops. `module(name)` is a layer of the traced graph."""

    traced: fx.GraphModule
    ops: tuple[Op, ...]

    def module(self, name: str) -> nn.Module:
        return self.traced.get_submodule(name)


def _number(a: object) -> bool:
    return isinstance(a, (int, float)) and not isinstance(a, bool)


def compile_model(model: nn.Module, example: torch.Tensor | None = None) -> Program | str:
    """The model (in its current mode) as a Program, or the reason `graph.prove` refuses it
    (with `example` (n, ...), the proof also checks the batch dimension of every value)."""
    proof = prove(model, example)
    if proof.graph is None:
        return proof.reason
    traced = proof.graph
    calls = users_of_module(traced)
    layer_of = {next(iter(n.users)): n for n in traced.graph.nodes if foldable(traced, n, calls)}
    folded = set(layer_of.values())
    nodes = [n for n in traced.graph.nodes if n not in folded]
    sources = {n: layer_of.get(n, n).all_input_nodes for n in nodes}
    last_reader = {source: node for node in nodes for source in sources[node]}
    ops = []
    for node in nodes:
        op = _classify(traced, node, layer_of.get(node))
        args = op.args
        dying = tuple(s for s in sources[node] if last_reader.get(s) is node)
        once = {a for a in args if isinstance(a, fx.Node) and sum(b is a for b in args) == 1}
        ops.append(_with(op, dying=dying, writable=frozenset(a for a in dying if a in once)))
    return Program(traced, tuple(ops))


def _with(op: Op, **changes: object) -> Op:
    return Op(**{**op.__dict__, **changes})


def _classify(traced: fx.GraphModule, node: fx.Node, layer: fx.Node | None) -> Op:
    """`node` as a Op; `layer` is the Linear or Conv1d node folded into it (node is the norm)."""
    source = layer if layer is not None else node
    args = source.args
    inputs = tuple(a for a in args if isinstance(a, fx.Node))
    numbers = [float(a) for a in args if _number(a)]
    plain = not source.kwargs and len(args) in (1, 2) and len(inputs) + len(numbers) == len(args)
    base = dict(node=node, inputs=inputs, args=args, plain=plain)
    if node.op == "placeholder":
        return Op(Kind.INPUT, **{**base, "plain": True})
    if node.op == "output":
        return Op(Kind.OUTPUT, **{**base, "plain": len(inputs) == len(args)})
    if node.op == "get_attr":
        return Op(Kind.ATTR, **base)
    if node.op == "call_module":
        module = traced.get_submodule(node.target)
        if layer is not None:
            kind = Kind.LINEAR if isinstance(traced.get_submodule(layer.target), nn.Linear) else Kind.CONV
            return Op(kind, layer=str(layer.target), norm=str(node.target), eps=module.eps, **base)
        if isinstance(module, nn.Linear):
            return Op(Kind.LINEAR, layer=str(node.target), **base)
        if isinstance(module, nn.Conv1d):
            return Op(Kind.CONV, layer=str(node.target), **base)
        if isinstance(module, nn.BatchNorm1d):  # prove() admits eval mode with statistics only
            return Op(Kind.NORM, layer=str(node.target), eps=module.eps, **base)
        if type(module) in ACTIVATIONS and len(args) == 1 == len(inputs) and not node.kwargs:
            return Op(Kind.ACT, activation=ACTIVATIONS[type(module)], **base)
        if isinstance(module, nn.Dropout) and not module.training and len(inputs) == 1:
            return Op(Kind.ALIAS, **base)
        return Op(Kind.CALL, **base)
    if node.op == "call_function" and plain and inputs:
        if node.target in ACTIVATIONS and len(args) == 1:
            return Op(Kind.ACT, activation=ACTIVATIONS[node.target], **base)
        if node.target in ADDITIONS and len(args) == 2:
            return Op(Kind.ADD, number=numbers[0] if numbers else None, **base)
        if node.target is operator.mul and len(numbers) == 1:
            return Op(Kind.SCALE, number=numbers[0], **base)
    if node.op == "call_function" and node.target in ADDITIONS and len(args) == 2 and not node.kwargs:
        return Op(Kind.ADD, **base)  # of something not a node or number: points only
    return Op(Kind.CALL, **base)
