"""One model, many weight vectors, one forward pass: the "point-batched" evaluation behind the
loss surfaces of `skipviz.landscape` (every grid point of a loss landscape is a set of weights).

Every parameter gets a leading points dimension P and the data is repeated P times along the
batch dimension, (P * n, ...). Layers without parameters then already do the right thing; the
Linear, Conv1d and eval-mode BatchNorm1d layers run the batched kernels of `skipviz.kernels`.
`skipviz.graph.prove` first checks on the traced graph that this is exact for the model (rows
never mix, parameters are read only by their layers, nothing is overwritten while still
needed); a model it refuses is evaluated by `torch.func.vmap` instead.

The evaluator runs the traced graph itself, which allows what a layer-by-layer call cannot:
an eval-mode batch norm is folded into the Linear or Conv1d before it (the same function, one
pass over the activations less), and without autograd activations, additions and a residual
block's "+ x" (accumulated straight into the skip tensor) run in place on tensors nothing else
reads.
"""

from __future__ import annotations

import enum
import operator
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from . import kernels
from .errors import SkipvizValueError
from .graph import ACTIVATIONS, foldable, per_signature, prove, users_of_module

Params = Mapping[str, torch.Tensor]

_INPLACE = {torch.relu: torch.relu_, torch.tanh: torch.tanh_, torch.sigmoid: torch.sigmoid_}
_FUNCTIONS = {torch.relu: torch.relu, F.relu: torch.relu, torch.tanh: torch.tanh,
              torch.sigmoid: torch.sigmoid}
_ADDITIONS = (operator.add, torch.add)


class Kind(enum.Enum):
    INPUT, OUTPUT, ATTR, LINEAR, CONV, NORM, ALIAS, ACTIVATION, ADD, CALL = range(10)


@dataclass(frozen=True)
class Step:
    """One node of the graph, as the evaluator runs it (worked out once per trace)."""

    kind: Kind
    node: fx.Node
    dying: tuple[fx.Node, ...]    # the values this step is the last to read: dropped after it
    writable: frozenset[fx.Node]  # of those, the ones it reads once: free to be overwritten
    layer: str = ""               # LINEAR, CONV, NORM: the module's name
    shared: bool = False          # INPUT read only by Linear layers / LINEAR reading that input
    final: bool = False           # LINEAR read only by the output: returns (P, n, ...)
    into: tuple[fx.Node, fx.Node] | None = None  # LINEAR: (value, addition), see _accumulations
    function: Callable | None = None  # ACTIVATION: the out-of-place function


class PointEvaluator:
    """Evaluate `model` at P weight vectors at once: `evaluator(params, buffers, x)`.

    params: {name: (P, *shape)} for every parameter; buffers: {name: tensor} shared by all points
    (batch-norm statistics); x: (n, ...) one input batch. Returns (P, n, ...), the outputs of P
    separate `model(x)` calls. Raises ValueError with `graph.prove`'s reason for a model it
    cannot evaluate exactly; with an `example` input, the proof also checks the batch dimension
    of every value (see `graph.prove`). Use `evaluator_for`, which traces once per model
    signature and input shape.
    """

    def __init__(self, model: nn.Module, example: torch.Tensor | None = None):
        proof = prove(model, example)
        if proof.graph is None:
            raise SkipvizValueError(f"point-batched evaluation cannot be proven exact for this model: {proof.reason}")
        self.model, self.traced = model, proof.graph
        nodes = list(self.traced.graph.nodes)
        self.modules = {n: self.traced.get_submodule(n.target) for n in nodes if n.op == "call_module"}
        calls = users_of_module(self.traced)
        self.folds = {n: next(iter(n.users)) for n in nodes if foldable(self.traced, n, calls)}
        self.folded_norms = set(self.folds.values())
        last_reader = {source: node for node in nodes for source in node.all_input_nodes}
        self.into = self._accumulations(nodes, last_reader)
        # Inputs read only by Linear layers: those read one copy of x for every point.
        self.shared_inputs = {n for n in nodes if n.op == "placeholder" and n.users
                              and all(isinstance(self.modules.get(u), nn.Linear) for u in n.users)}
        self.steps = [self._step(node, last_reader) for node in nodes]

    def _accumulations(self, nodes: list[fx.Node], last_reader: dict) -> dict[fx.Node, tuple]:
        """Linear node -> (other, addition) when the Linear's output (after its folded norm) is
        only added to `other`, an earlier value this addition is the last to read and nobody
        reads in between: the product can accumulate into other's tensor."""
        order = {node: i for i, node in enumerate(nodes)}
        found = {}
        for layer, module in self.modules.items():
            out = self.folds.get(layer, layer)
            if not isinstance(module, nn.Linear) or len(out.users) != 1:
                continue
            (add,) = out.users
            if add.target not in _ADDITIONS or len(add.args) != 2 or add.kwargs \
                    or not all(isinstance(a, fx.Node) for a in add.args) or add.args[0] is add.args[1]:
                continue
            other = add.args[1] if add.args[0] is out else add.args[0]
            if last_reader.get(other) is add and order[other] < order[layer] \
                    and not any(order[layer] < order[r] < order[add] for r in other.users):
                found[layer] = (other, add)
        return found

    def _step(self, node: fx.Node, last_reader: dict) -> Step:
        dying = tuple(s for s, reader in last_reader.items() if reader is node)
        once = {a for a in node.args if isinstance(a, fx.Node) and sum(b is a for b in node.args) == 1}
        base = dict(node=node, dying=dying, writable=frozenset(a for a in dying if a in once))
        module = self.modules.get(node)
        simple = len(node.args) == 1 and not node.kwargs and isinstance(node.args[0], fx.Node)
        if node.op == "placeholder":
            return Step(Kind.INPUT, shared=node in self.shared_inputs, **base)
        if node.op == "output":
            return Step(Kind.OUTPUT, final=self._final(node.args[0]), **base)
        if node.op == "get_attr":
            return Step(Kind.ATTR, **base)
        if isinstance(module, nn.Linear):
            return Step(Kind.LINEAR, layer=str(node.target), final=self._final(node),
                        shared=node.args[0] in self.shared_inputs, into=self.into.get(node), **base)
        if isinstance(module, nn.Conv1d):
            return Step(Kind.CONV, layer=str(node.target), **base)
        if isinstance(module, nn.BatchNorm1d):
            kind = Kind.ALIAS if node in self.folded_norms else Kind.NORM
            return Step(kind, layer=str(node.target), **base)
        function = ACTIVATIONS.get(type(module)) if module is not None else _FUNCTIONS.get(node.target)
        if function is not None and simple:
            return Step(Kind.ACTIVATION, function=function, **base)
        if node.target in _ADDITIONS and len(node.args) == 2 and not node.kwargs:
            return Step(Kind.ADD, **base)
        return Step(Kind.CALL, **base)

    def _final(self, node: object) -> bool:
        """A Linear read only by the graph's output returns its result split by point, so that
        a narrow output layer need not copy its strided result."""
        return isinstance(node, fx.Node) and isinstance(self.modules.get(node), nn.Linear) \
            and all(user.op == "output" for user in node.users)

    def __call__(self, params: Params, buffers: Params, x: torch.Tensor) -> torch.Tensor:
        return self.run(self.prepare(params, buffers), buffers, x)

    def prepare(self, params: Params, buffers: Params) -> dict[str, torch.Tensor]:
        """The parameters with every foldable batch norm folded into the layer before it. Slices
        along the points dimension are valid prepared parameters too (prepare once, run by
        chunks)."""
        prepared = dict(params)
        for layer, norm_node in self.folds.items():
            name, norm = str(layer.target), str(norm_node.target)
            scale, shift = kernels.affine(buffers[norm + ".running_mean"], buffers[norm + ".running_var"],
                                          params.get(norm + ".weight"), params.get(norm + ".bias"),
                                          self.modules[norm_node].eps)
            prepared[name + ".weight"], prepared[name + ".bias"] = kernels.fold(
                params[name + ".weight"], params.get(name + ".bias"), scale, shift)
        return prepared

    def run(self, prepared: Params, buffers: Params, x: torch.Tensor) -> torch.Tensor:
        """Outputs (P, n, ...) for parameters from `prepare`."""
        return self._run(len(next(iter(prepared.values()))), prepared, buffers, x)

    def _run(self, points: int, params: Params, buffers: Params, x: torch.Tensor) -> torch.Tensor:
        """The steps on (P * n, ...) activations -> outputs (P, n, ...)."""
        env: dict[fx.Node, object] = {}
        owned: set[fx.Node] = set()  # new tensors nothing outside this run refers to
        inplace = not torch.is_grad_enabled()  # autograd may have saved a tensor for its backward
        accumulated: dict[fx.Node, fx.Node] = {}  # additions a Linear already did -> its result

        def value(arg):
            return fx.node.map_arg(arg, env.__getitem__)

        for step in self.steps:
            node, kind, fresh = step.node, step.kind, True
            if kind is Kind.LINEAR:
                w, b = params.get(step.layer + ".weight"), params.get(step.layer + ".bias")
                source = env[node.args[0]]
                other, addition = step.into or (None, None)
                if other is not None and inplace and other in owned \
                        and kernels.linear_into(points, source, w, b, env[other]):
                    result = env[other]
                    accumulated[addition] = other
                else:
                    result = kernels.linear(points, source, w, b, step.shared, step.final)
            elif kind is Kind.ACTIVATION:
                (source,) = node.args
                if inplace and source in owned and source in step.writable:
                    result = _INPLACE[step.function](env[source])
                else:
                    result = step.function(env[source])
            elif kind is Kind.ADD:
                if node in accumulated:
                    result = env[accumulated[node]]
                else:
                    result, fresh = _add(node, value, inplace, owned, step.writable)
            elif kind is Kind.CONV:
                m = self.modules[node]
                result = kernels.conv1d(points, env[node.args[0]], params[step.layer + ".weight"],
                                        params.get(step.layer + ".bias"), m.stride, m.padding,
                                        m.dilation, m.groups)
            elif kind is Kind.NORM:
                result = kernels.batch_norm(points, env[node.args[0]], buffers[step.layer + ".running_mean"],
                                            buffers[step.layer + ".running_var"], params.get(step.layer + ".weight"),
                                            params.get(step.layer + ".bias"), self.modules[node].eps)
            elif kind is Kind.ALIAS:
                result = env[node.args[0]]
            elif kind is Kind.INPUT:  # Linear layers read one copy of x for every point
                result, fresh = (x if step.shared else x.repeat(points, *[1] * (x.dim() - 1))), False
            elif kind is Kind.OUTPUT:
                out = value(node.args[0])
                return out if step.final else out.reshape(points, len(x), *out.shape[1:])
            elif kind is Kind.ATTR:
                target = str(node.target)
                result, fresh = buffers[target] if target in buffers else getattr(self.traced, target), False
            elif node.op == "call_module":
                result, fresh = self.modules[node](*value(node.args), **value(node.kwargs)), False
            elif node.op == "call_function":
                result, fresh = node.target(*value(node.args), **value(node.kwargs)), False
            else:
                this, *rest = value(node.args)
                result, fresh = getattr(this, node.target)(*rest, **value(node.kwargs)), False
            env[node] = result
            if fresh:
                owned.add(node)
            for source in step.dying:
                del env[source]
                owned.discard(source)
        raise RuntimeError("the traced graph has no output")  # fx graphs always have one


def _add(node: fx.Node, value, inplace: bool, owned: set, writable: frozenset) -> tuple[object, bool]:
    """a + b, written into a or b when that one is ours, dies here and has the result's shape
    and dtype; returns (result, whether it is a new tensor of ours)."""
    a, b = node.args
    va, vb = value(a), value(b)
    if not (isinstance(va, torch.Tensor) and isinstance(vb, torch.Tensor)):
        return va + vb, isinstance(va, torch.Tensor) or isinstance(vb, torch.Tensor)
    if inplace and va.shape == vb.shape and va.dtype == vb.dtype:
        for mine, t, u in ((a, va, vb), (b, vb, va)):
            if mine in owned and mine in writable:
                return t.add_(u), True
    return va + vb, True


_EVALUATORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def evaluator_for(model: nn.Module, x: torch.Tensor) -> PointEvaluator | None:
    """The PointEvaluator of `model` for inputs shaped like x (n, ...), reused while the model's
    `graph.signature` stays the same; None when `graph.prove` refuses it (`refusal` says why)."""
    def make(m: nn.Module) -> PointEvaluator | None:
        try:
            return PointEvaluator(m, x)
        except ValueError:
            return None

    return per_signature(_EVALUATORS, model, make, tuple(x.shape[1:]))


def refusal(model: nn.Module, x: torch.Tensor | None = None) -> str | None:
    """Why the point-batched path refuses `model` (on inputs like x), or None."""
    return prove(model, x).reason
