"""One model, many weight vectors, one forward pass: the "point-batched" evaluation behind the
loss surfaces of `skipviz.landscape` (every grid point of a loss landscape is a set of weights).
It runs the ops of `program.compile_model`, the engine's one interpreter of a traced model.

Every parameter gets a leading points dimension P and the data is repeated P times along the
batch dimension, (P * n, ...). Layers without parameters then already do the right thing; the
Linear, Conv1d and eval-mode BatchNorm1d layers run the batched kernels of `kernels`.
`graph.prove` first checks on the traced graph that this is exact for the model (rows
never mix, parameters are read only by their layers, nothing is overwritten while still
needed); a model it refuses is evaluated by `torch.func.vmap` instead.

Running the program rather than the modules allows what a layer-by-layer call cannot: an
eval-mode batch norm runs folded into the Linear or Conv1d before it (the same function, one
pass over the activations less), and without autograd activations, additions and a residual
block's "+ x" (accumulated straight into the skip tensor) run in place on tensors nothing else
reads.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping

import torch
import torch.fx as fx
from torch import nn

from ...errors import SkipvizValueError
from . import kernels
from .graph import per_signature, prove
from .program import ADDITIONS, FUNCTIONS, IN_PLACE, Kind, Op, Program, compile_model

Params = Mapping[str, torch.Tensor]


class PointEvaluator:
    """Evaluate `model` at P weight vectors at once: `evaluator(params, buffers, x)`.

    params: {name: (P, *shape)} for every parameter; buffers: {name: tensor} shared by all points
    (batch-norm statistics); x: (n, ...) one input batch. Returns (P, n, ...), the outputs of P
    separate `model(x)` calls. Raises ValueError with `graph.prove`'s reason for a model it
    cannot evaluate exactly; with an `example` input, the proof also checks the batch dimension
    of every value (see `graph.prove`). Use `evaluator_for`, which compiles once per model
    signature and input shape.
    """

    def __init__(self, model: nn.Module, example: torch.Tensor | None = None):
        program = compile_model(model, example)
        if not isinstance(program, Program):
            raise SkipvizValueError(f"point-batched evaluation cannot be proven exact for this model: {program}")
        self.model, self.program, self.ops = model, program, program.ops
        self.traced = program.traced
        readers: dict[fx.Node, list[Op]] = {}
        for op in self.ops:
            for source in op.inputs:
                readers.setdefault(source, []).append(op)
        # Inputs read only by Linear layers: those read one copy of x for every point.
        self.shared_inputs = {st.node for st in self.ops if st.kind is Kind.INPUT and st.node in readers
                              and all(r.kind is Kind.LINEAR for r in readers[st.node])}
        self.final = {st.node for st in self.ops if st.kind is Kind.LINEAR and st.node.users
                      and all(u.op == "output" for u in st.node.users)}
        self.into = self._accumulations(readers)

    def _accumulations(self, readers: dict[fx.Node, list[Op]]) -> dict[fx.Node, tuple]:
        """LINEAR op's node -> (other, addition) when its output is only added to `other`, an
        earlier value this addition is the last to read and nobody reads in between: the
        product can accumulate into other's tensor."""
        order = {st.node: i for i, st in enumerate(self.ops)}
        found = {}
        for op in self.ops:
            out = op.node
            if op.kind is not Kind.LINEAR or len(out.users) != 1:
                continue
            (add,) = out.users
            if add.target not in ADDITIONS or len(add.args) != 2 or add.kwargs \
                    or not all(isinstance(a, fx.Node) for a in add.args) or add.args[0] is add.args[1]:
                continue
            other = add.args[1] if add.args[0] is out else add.args[0]
            if other in order and add in order and other in self.ops[order[add]].dying \
                    and order[other] < order[out] \
                    and not any(order[out] < order[r.node] < order[add] for r in readers.get(other, [])):
                found[out] = (other, add)
        return found

    def __call__(self, params: Params, buffers: Params, x: torch.Tensor) -> torch.Tensor:
        return self.run(self.prepare(params, buffers), buffers, x)

    def prepare(self, params: Params, buffers: Params) -> dict[str, torch.Tensor]:
        """The parameters with every folded batch norm folded into the layer before it. Slices
        along the points dimension are valid prepared parameters too (prepare once, run by
        chunks)."""
        prepared = dict(params)
        for op in self.ops:
            if not op.norm:
                continue
            name, norm = op.layer, op.norm
            scale, shift = kernels.affine(buffers[norm + ".running_mean"], buffers[norm + ".running_var"],
                                          params.get(norm + ".weight"), params.get(norm + ".bias"), op.eps)
            prepared[name + ".weight"], prepared[name + ".bias"] = kernels.fold(
                params[name + ".weight"], params.get(name + ".bias"), scale, shift)
        return prepared

    def run(self, prepared: Params, buffers: Params, x: torch.Tensor) -> torch.Tensor:
        """Outputs (P, n, ...) for parameters from `prepare`."""
        return self._run(len(next(iter(prepared.values()))), prepared, buffers, x)

    def _run(self, points: int, params: Params, buffers: Params, x: torch.Tensor) -> torch.Tensor:
        """The ops on (P * n, ...) activations -> outputs (P, n, ...)."""
        env: dict[fx.Node, object] = {}
        owned: set[fx.Node] = set()  # new tensors nothing outside this run refers to
        inplace = not torch.is_grad_enabled()  # autograd may have saved a tensor for its backward
        accumulated: dict[fx.Node, fx.Node] = {}  # additions a Linear already did -> its result

        def value(arg):
            return fx.node.map_arg(arg, env.__getitem__)

        for op in self.ops:
            node, kind, fresh = op.node, op.kind, True
            if kind is Kind.LINEAR:
                w, b = params.get(op.layer + ".weight"), params.get(op.layer + ".bias")
                source = env[op.inputs[0]]
                other, addition = self.into.get(node, (None, None))
                if other is not None and inplace and other in owned \
                        and kernels.linear_into(points, source, w, b, env[other]):
                    result = env[other]
                    accumulated[addition] = other
                else:
                    result = kernels.linear(points, source, w, b, op.inputs[0] in self.shared_inputs,
                                            node in self.final)
            elif kind is Kind.ACT:
                (source,) = op.inputs
                if inplace and source in owned and source in op.writable:
                    result = IN_PLACE[op.activation](env[source])
                else:
                    result = FUNCTIONS[op.activation](env[source])
            elif kind is Kind.ADD:
                if node in accumulated:
                    result = env[accumulated[node]]
                else:
                    result, fresh = _add(node, value, inplace, owned, op.writable)
            elif kind is Kind.SCALE:
                result = op.number * env[op.inputs[0]]
            elif kind is Kind.CONV:
                m = self.program.module(op.layer)
                result = kernels.conv1d(points, env[op.inputs[0]], params[op.layer + ".weight"],
                                        params.get(op.layer + ".bias"), m.stride, m.padding,
                                        m.dilation, m.groups)
            elif kind is Kind.NORM:
                result = kernels.batch_norm(points, env[op.inputs[0]], buffers[op.layer + ".running_mean"],
                                            buffers[op.layer + ".running_var"], params.get(op.layer + ".weight"),
                                            params.get(op.layer + ".bias"), op.eps)
            elif kind is Kind.ALIAS:
                (source,) = op.inputs
                result, fresh = env[source], source in owned and source in op.dying
            elif kind is Kind.INPUT:  # Linear layers read one copy of x for every point
                shared = node in self.shared_inputs
                result, fresh = (x if shared else x.repeat(points, *[1] * (x.dim() - 1))), False
            elif kind is Kind.OUTPUT:
                out = value(node.args[0])
                final = isinstance(node.args[0], fx.Node) and node.args[0] in self.final
                return out if final else out.reshape(points, len(x), *out.shape[1:])
            elif kind is Kind.ATTR:
                target = str(node.target)
                result, fresh = buffers[target] if target in buffers else getattr(self.traced, target), False
            elif node.op == "call_module":
                result, fresh = self.program.module(str(node.target))(*value(node.args), **value(node.kwargs)), False
            elif node.op == "call_function":
                result, fresh = node.target(*value(node.args), **value(node.kwargs)), False
            else:
                this, *rest = value(node.args)
                result, fresh = getattr(this, node.target)(*rest, **value(node.kwargs)), False
            env[node] = result
            if fresh:
                owned.add(node)
            for source in op.dying:
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
    """The PointEvaluator of `model` for inputs shaped like x (n, ...): a pure function of the
    model's `graph.signature` and the input's shape, compiled once for each; None when
    `graph.prove` refuses the model (`refusal` says why)."""
    def make(m: nn.Module) -> PointEvaluator | None:
        try:
            return PointEvaluator(m, x)
        except ValueError:
            return None

    return per_signature(_EVALUATORS, model, make, tuple(x.shape[1:]))


def refusal(model: nn.Module, x: torch.Tensor | None = None) -> str | None:
    """Why the point-batched path refuses `model` (on inputs like x), or None."""
    return prove(model, x).reason
