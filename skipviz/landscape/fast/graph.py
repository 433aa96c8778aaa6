"""What the fast loss-landscape paths may assume about a model, proven on its traced graph.

`points` runs P weight vectors through one pass by stacking the data P times along the batch
dimension, and `rop` writes out Hessian-vector products layer by layer. Both are
exact only for graphs in which every row of the batch is computed on its own, every parameter
is read by a layer they know, and no value is overwritten while something still needs it.
`prove(model)` traces the model with torch.fx and checks exactly that, node by node, against
a list of operations known to act row by row; anything not on the list is refused with the
reason, and the callers then use the reference path (`torch.func.vmap` over `functional_call`,
or autograd). The rules:

- every parameter belongs to one module and is read only by that module's call (no tied
  weights, no `self.lin.weight` in `forward`), and that module is a Linear, a Conv1d with
  numeric zero padding, or an eval-mode BatchNorm1d with running statistics;
- every other operation is elementwise, a concatenation or reduction over non-batch
  dimensions, a pooling layer or a shape change that keeps dimension 0: nothing mixes rows;
- an in-place activation (`ReLU(inplace=True)`) writes only into a value nobody reads after it.
"""

from __future__ import annotations

import operator
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

LAYERS = (nn.Linear, nn.Conv1d, nn.BatchNorm1d)
# The engine's one table of activations: what `program` compiles to an ACT op, by name.
ACTIVATIONS: dict[object, str] = {
    nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", torch.relu: "relu", F.relu: "relu",
    torch.tanh: "tanh", F.tanh: "tanh", torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid"}
_ROW_WISE_MODULES = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.SiLU, nn.LeakyReLU, nn.ELU, nn.Identity,
                     nn.Dropout, nn.AvgPool1d, nn.MaxPool1d, nn.AdaptiveAvgPool1d, nn.Flatten)
_ELEMENTWISE = {operator.add, operator.sub, operator.mul, operator.truediv, operator.neg,
                torch.add, torch.sub, torch.mul, torch.relu, torch.tanh, torch.sigmoid, torch.exp,
                torch.abs, torch.zeros_like, torch.ones_like, F.relu, F.tanh, F.sigmoid, F.gelu,
                F.silu, F.leaky_relu, F.elu, F.max_pool1d, F.avg_pool1d}
_ELEMENTWISE_METHODS = {"relu", "tanh", "sigmoid", "exp", "abs", "add", "sub", "mul", "div",
                        "contiguous"}
# Methods and functions that keep rows apart when the dimension they act on is not 0.
_DIM_METHODS = {"unsqueeze": "dim", "squeeze": "dim", "mean": "dim", "sum": "dim", "amax": "dim",
                "flatten": "start_dim", "softmax": "dim", "log_softmax": "dim"}
# Operations whose result is always a new tensor: an in-place write into it touches nothing else.
_FRESH = {operator.add, operator.sub, operator.mul, operator.truediv, torch.add, torch.sub,
          torch.mul, torch.cat}
_DIM_FUNCTIONS = {torch.cat: "dim", torch.flatten: "start_dim", torch.mean: "dim",
                  torch.sum: "dim", torch.softmax: "dim", F.softmax: "dim"}


@dataclass(frozen=True)
class Proof:
    """The result of `prove`: the traced graph when the fast paths may run the model, else None
    and the reason (one sentence naming the node or parameter)."""

    graph: fx.GraphModule | None
    reason: str | None = None


def prove(model: nn.Module, example: torch.Tensor | None = None) -> Proof:
    """Trace `model` (in its current train/eval mode) and check the rules of the module
    docstring; nn.Identity nodes are removed from the graph. With an `example` input (n, ...),
    the graph is also run on batches of 2 and 3 copies of its first row, and every value
    computed from the input must keep the batch as its first dimension in both (`_batch_kept`):
    this resolves negative dimensions and `...` indexing, which the rules alone must refuse."""
    named = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in named:
            return Proof(None, f"parameters {named[id(p)]!r} and {name!r} are one tensor (tied weights)")
        named[id(p)] = name
    # Every module holding parameters must be a layer the fast paths know: checked here, before
    # tracing, so that a model torch.fx cannot trace is still refused with this reason.
    for name, module in model.named_modules():
        if not isinstance(module, LAYERS) and any(True for _ in module.parameters(recurse=False)):
            return Proof(None, f"module {name or type(model).__name__!r}: {type(module).__name__} has parameters "
                               "and is not one of " + ", ".join(t.__name__ for t in LAYERS))
    try:
        traced = fx.symbolic_trace(model)
    except Exception as err:  # Python the tracer cannot follow (data-dependent control flow, ...)
        return Proof(None, f"torch.fx cannot trace the model ({type(err).__name__}: {err})")
    for node in list(traced.graph.nodes):
        if node.op == "call_module" and isinstance(traced.get_submodule(node.target), nn.Identity):
            node.replace_all_uses_with(node.args[0])
            traced.graph.erase_node(node)
    nodes = list(traced.graph.nodes)
    order = {node: i for i, node in enumerate(nodes)}
    ranks = None
    if example is not None:
        ranks, reason = _batch_kept(traced, example)
        if reason is not None:
            return Proof(None, reason)
    for node in nodes:
        reason = _refusal(traced, node, order, ranks)
        if reason is not None:
            return Proof(None, f"{node.op} {node.target}: {reason}")
    return Proof(traced)


def _batch_kept(traced: fx.GraphModule, example: torch.Tensor) -> tuple[dict[fx.Node, int], str | None]:
    """Run the graph on 2 and 3 copies of example[0]: ({node: rank of its input tensor}, None)
    when every tensor computed from the input has the batch size as its first dimension in both
    runs, else ({}, the reason)."""
    ranks: dict[fx.Node, int] = {}
    for batch in (2, 3):
        sample = example[:1].expand(batch, *example.shape[1:]).clone()
        values: dict[fx.Node, object] = {}
        try:
            with torch.no_grad():
                ShapeRecorder(traced, values).run(sample)
        except Exception as err:
            return {}, f"the model fails on a batch of {batch} ({type(err).__name__}: {err})"
        for node, value in values.items():
            if node.op in ("get_attr", "output") or not isinstance(value, torch.Tensor):
                continue
            if value.dim() == 0 or value.shape[0] != batch:
                return {}, f"{node.op} {node.target}: its result {tuple(value.shape)} on a batch of " \
                           f"{batch} does not keep the batch as its first dimension"
        ranks = {node: values[node.args[0]].dim() for node in values
                 if node.args and isinstance(node.args[0], fx.Node)
                 and isinstance(values.get(node.args[0]), torch.Tensor)}
    return ranks, None


class ShapeRecorder(fx.Interpreter):
    """Runs a graph and keeps every node's value (for `_batch_kept`)."""

    def __init__(self, module: fx.GraphModule, values: dict):
        super().__init__(module)
        self.values = values

    def run_node(self, node: fx.Node) -> object:
        self.values[node] = result = super().run_node(node)
        return result


def _refusal(traced: fx.GraphModule, node: fx.Node, order: dict[fx.Node, int],
             ranks: dict[fx.Node, int] | None) -> str | None:
    """Why `node` breaks a rule, or None; `ranks` (from `_batch_kept`) resolves negative
    dimensions and `...` indexing."""
    rank = None if ranks is None else ranks.get(node)
    if node.op in ("placeholder", "output"):
        return None
    if node.op == "get_attr":
        try:
            traced.get_parameter(str(node.target))
        except AttributeError:
            return None  # a buffer or constant: the same for every row
        return "reads a parameter outside its layer"
    if node.op == "call_module":
        module = traced.get_submodule(node.target)
        if isinstance(module, LAYERS):
            return _layer_refusal(module, node)
        if not isinstance(module, _ROW_WISE_MODULES) or getattr(module, "return_indices", False) \
                or (isinstance(module, nn.Flatten) and module.start_dim == 0) \
                or (isinstance(module, nn.Dropout) and module.training):
            return f"{type(module).__name__} is not known to keep the rows of a batch apart"
        return _inplace_refusal(node, order) if getattr(module, "inplace", False) else None
    target = node.target
    if node.op == "call_method":
        if target in _ELEMENTWISE_METHODS:
            return None
        if target in _DIM_METHODS:
            return _dim_refusal(node, _DIM_METHODS[target], rank)
        if target in ("relu_", "tanh_", "sigmoid_"):
            return _inplace_refusal(node, order)
        return f"method {target!r} is not known to keep the rows of a batch apart"
    if target in _ELEMENTWISE:
        return _inplace_refusal(node, order) if node.kwargs.get("inplace") else None
    if target in _DIM_FUNCTIONS:
        return _dim_refusal(node, _DIM_FUNCTIONS[target], rank)
    if target is operator.getitem:
        index = node.args[1]
        index = index if isinstance(index, tuple) else (index,)
        if index and (index[0] == slice(None) or (index[0] is Ellipsis and rank is not None and all(
                isinstance(i, slice) for i in index[1:]) and len(index) - 1 < rank)):
            return None
        return "indexing that may select rows of the batch"
    return f"{getattr(target, '__name__', target)} is not known to keep the rows of a batch apart"


def _layer_refusal(module: nn.Module, node: fx.Node) -> str | None:
    if len(node.args) != 1 or node.kwargs:
        return "a layer called with extra arguments"
    if isinstance(module, nn.Conv1d) and (module.padding_mode != "zeros" or isinstance(module.padding, str)):
        return "a Conv1d with padding other than numeric zeros"
    if isinstance(module, nn.BatchNorm1d) and (module.training or module.running_mean is None):
        return "batch norm with the batch's own statistics (training mode, or no running statistics)"
    return None


def _dim_refusal(node: fx.Node, keyword: str, rank: int | None) -> str | None:
    """Refuse unless the operation's dimension(s) are given and none is the batch's, 0 (a
    negative one counts from the input's `rank`, when known)."""
    default = 0 if node.target is torch.cat else None
    dims = node.kwargs.get(keyword, node.args[1] if len(node.args) > 1 else default)
    dims = dims if isinstance(dims, (tuple, list)) else (dims,)
    if all(isinstance(d, int) and not isinstance(d, bool)
           and (d >= 1 or (rank is not None and -rank < d < 0)) for d in dims):
        return None
    return f"acts on dimension {dims if len(dims) > 1 else dims[0]}, which may be the batch's"


def _inplace_refusal(node: fx.Node, order: dict[fx.Node, int]) -> str | None:
    """An in-place write is safe when its input is a value no later node reads."""
    written = node.args[0]
    fresh = isinstance(written, fx.Node) and (
        (written.op == "call_module" and isinstance(node.graph.owning_module.get_submodule(written.target), LAYERS))
        or (written.op == "call_function" and written.target in _FRESH))
    if not fresh:
        return "an in-place write into a value that may share memory with another (an input, a view)"
    if any(order[user] > order[node] for user in written.users if user is not node):
        return f"an in-place write into {written.name}, which is read again later"
    return None


def users_of_module(graph: fx.GraphModule) -> dict[str, int]:
    """How many nodes call each module (a layer called twice shares its weights)."""
    calls: dict[str, int] = {}
    for node in graph.graph.nodes:
        if node.op == "call_module":
            calls[str(node.target)] = calls.get(str(node.target), 0) + 1
    return calls


def foldable(graph: fx.GraphModule, node: fx.Node, calls: dict[str, int]) -> bool:
    """A Linear or Conv1d called once, whose only reader is a batch norm called once: the norm
    can be folded into its weights (per point W' = s W, b' = s (b - mean) + beta)."""
    if node.op != "call_module" or len(node.users) != 1 or calls[str(node.target)] != 1:
        return False
    if not isinstance(graph.get_submodule(node.target), (nn.Linear, nn.Conv1d)):
        return False
    (user,) = node.users
    return user.op == "call_module" and calls[str(user.target)] == 1 \
        and isinstance(graph.get_submodule(user.target), nn.BatchNorm1d)


def signature(model: nn.Module) -> tuple:
    """What a trace depends on besides tensor values: the modules, their train/eval modes and
    every plain-valued attribute (skips, block kinds, scales, strides, ...)."""
    def plain(v: object) -> bool:
        return isinstance(v, (bool, int, float, str))

    return tuple((name, type(m), tuple(sorted(
        (k, tuple(v) if isinstance(v, list) else v) for k, v in vars(m).items()
        if plain(v) or (isinstance(v, list) and all(map(plain, v))))))
        for name, m in model.named_modules())


def per_signature(store: weakref.WeakKeyDictionary, model: nn.Module,
                  make: Callable[[nn.Module], object], extra: tuple = ()) -> object:
    """make(model), kept in `store` (keyed weakly by the model) and made again only when the
    model's `signature` (or `extra`, e.g. the input's shape) has changed: a trace stays valid
    while the signature does."""
    current = (signature(model), extra)
    cached = store.get(model)
    if cached is None or cached[0] != current:
        cached = (current, make(model))
        store[model] = cached
    return cached[1]
