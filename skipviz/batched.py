"""One model, many weight vectors, one forward pass: the "point-batched" evaluation behind
`skipviz.landscape` (every point of a loss-landscape grid is a full set of weights).

The trick: give every parameter a leading points dimension P and feed the data repeated P times
along the batch dimension, (P * n, ...). Layers without parameters (activations, additions,
pooling, reshapes of the feature dimensions) then already do the right thing, because the batch
dimension keeps the points apart. Only the layers with parameters need to know which rows
belong to which point, and they get batched kernels:

- Linear    -> one `baddbmm`: (P, n, in) @ (P, in, out) + bias, the bias add fused in;
- Conv1d    -> one grouped convolution with P * groups groups;
- BatchNorm -> eval mode only: y = x * s + (beta - mean * s), s = gamma / sqrt(var + eps), one
  fused multiply-add (training-mode batch norm would mix the points, so it is an error).

`PointEvaluator` traces the model once with torch.fx and then runs the graph itself, which lets
it do what a layer-by-layer call cannot: fold an eval-mode batch norm into the Linear or Conv1d
that feeds it (per point: W' = s W, b' = s (b - mean) + beta: the same function, one pass over
the activations less), and, without autograd, run activations and additions in place on tensors
nothing else will read, down to accumulating a residual block's product straight into its
skip tensor (x + W h computed as one baddbmm_ into x). On a plane through weight space
(`on_plane`: weights W_0 + a D_1 + b D_2, as in a loss landscape) the folds and the products of
the layers that read the input are affine in (a, b) (while the directions leave the norms'
scales alone), so they are done once per plane instead of once per chunk of points.

A model fx cannot trace runs through `functional_call` under `PointBatched`, a
TorchFunctionMode that routes the same three layers to the same kernels. A model with any other
layer with parameters is not supported (`supported`); `landscape` then uses torch.func.vmap.
"""

from __future__ import annotations

import operator
import weakref
from collections.abc import Callable, Mapping

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.overrides import TorchFunctionMode

SUPPORTED_LAYERS = (nn.Linear, nn.Conv1d, nn.BatchNorm1d)

Params = Mapping[str, torch.Tensor]


def supported(model: nn.Module) -> bool:
    """True when every module with parameters of its own is a Linear, Conv1d or BatchNorm1d."""
    return all(isinstance(m, SUPPORTED_LAYERS) for m in model.modules()
               if any(True for _ in m.parameters(recurse=False)))


# ---------------------------------------------------------------- batched kernels


def _linear(points: int, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
            shared: bool = False, split: bool = False) -> torch.Tensor:
    """x (P*n, ..., in), weight (P, out, in), bias (P, out) or None -> (P*n, ..., out), or, with
    split=True, (P, n, ..., out), possibly a strided view (for the model's output).
    shared=True: x (n, ..., in) is the same for every point (read P times, not copied)."""
    if points == 1:  # one point: a plain linear layer (cheaper to differentiate twice than bmm)
        out = F.linear(x, weight[0], None if bias is None else bias[0])
        return out.unsqueeze(0) if split else out
    xs = x.reshape(1, -1, x.shape[-1]).expand(points, -1, -1) if shared \
        else x.reshape(points, -1, x.shape[-1])
    lead = (points * x.shape[0], *x.shape[1:-1]) if shared else x.shape[:-1]
    if weight.shape[1] < _NARROW:
        # Few outputs (a classifier's 10): the product with the rows as columns, W x^T, is 2-3x
        # faster on CPU (measured); it comes back as a strided view.
        xt = xs.transpose(1, 2)
        out = (torch.bmm(weight, xt) if bias is None
               else torch.baddbmm(bias.unsqueeze(2), weight, xt)).transpose(1, 2)
    else:
        wt = weight.transpose(1, 2)
        out = torch.bmm(xs, wt) if bias is None else torch.baddbmm(bias.unsqueeze(1), xs, wt)
    if split:
        return out.reshape(points, -1, *lead[1:], weight.shape[1])  # (P, n, ..., out)
    return out.reshape(*lead, weight.shape[1])


_NARROW = 16  # Linear layers with fewer outputs than this use the W x^T form


def _conv1d(points: int, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
            stride=1, padding=0, dilation=1, groups: int = 1) -> torch.Tensor:
    """x (P*n, C, L), weight (P, O, C/groups, k), bias (P, O) -> (P*n, O, L'): the points become
    groups of one convolution over the channels of all points side by side."""
    n = x.shape[0] // points
    xs = x.reshape(points, n, *x.shape[1:]).transpose(0, 1).reshape(n, points * x.shape[1], -1)
    out = F.conv1d(xs, weight.reshape(-1, *weight.shape[2:]),
                   None if bias is None else bias.reshape(-1), stride, padding, dilation,
                   groups * points)
    out = out.reshape(n, points, weight.shape[1], -1).transpose(0, 1)
    return out.reshape(points * n, weight.shape[1], -1)


def affine(mean: torch.Tensor, var: torch.Tensor, weight: torch.Tensor | None,
            bias: torch.Tensor | None, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode batch norm as y = x * scale + shift: (scale, shift), each (C,) or (P, C)."""
    scale = torch.rsqrt(var + eps)
    if weight is not None:
        scale = weight * scale
    shift = -mean * scale
    if bias is not None:
        shift = shift + bias
    return scale, shift


def _batch_norm_eval(points: int, x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor,
                     weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float
                     ) -> torch.Tensor:
    """Eval-mode batch norm on x (P*n, C) or (P*n, C, L); weight and bias (P, C) or None;
    running mean and var (C,), shared by the points."""
    scale, shift = affine(mean, var, weight, bias, eps)
    shape = (points if scale.dim() == 2 else 1, 1, -1, *[1] * (x.dim() - 2))
    xs = x.reshape(points, -1, *x.shape[1:])
    return torch.addcmul(shift.view(shape), xs, scale.view(shape)).reshape(x.shape)


def _arguments(args: tuple, kwargs: dict, names: tuple[str, ...], defaults: dict) -> list:
    """Positional-or-keyword arguments of a torch.nn.functional call, by name."""
    values = dict(defaults)
    values.update(zip(names, args))
    values.update(kwargs)
    return [values[name] for name in names]


_BATCH_NORM_ARGS = ("input", "running_mean", "running_var", "weight", "bias", "training",
                    "momentum", "eps")
_BATCH_NORM_DEFAULTS = {"weight": None, "bias": None, "training": False, "momentum": 0.1, "eps": 1e-5}
_CONV_ARGS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_CONV_DEFAULTS = {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1}


class PointBatched(TorchFunctionMode):
    """Inside this mode, Linear, Conv1d and eval-mode BatchNorm accept parameters with a leading
    points dimension `points` and inputs of batch P * n (see the module docstring)."""

    def __init__(self, points: int):
        super().__init__()
        self.points = points

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear:
            x, weight, bias = _arguments(args, kwargs, ("input", "weight", "bias"), {"bias": None})
            if weight.dim() == 3:
                return _linear(self.points, x, weight, bias)
        elif func is F.conv1d:
            x, weight, *rest = _arguments(args, kwargs, _CONV_ARGS, _CONV_DEFAULTS)
            if weight.dim() == 4:
                return _conv1d(self.points, x, weight, *rest)
        elif func is F.batch_norm:
            x, mean, var, weight, bias, training, _, eps = _arguments(
                args, kwargs, _BATCH_NORM_ARGS, _BATCH_NORM_DEFAULTS)
            if training or mean is None or var is None:
                raise ValueError("batch norm in training mode (or without running statistics) "
                                 "mixes the points of a batched evaluation; use eval mode")
            return _batch_norm_eval(self.points, x, mean, var, weight, bias, eps)
        return func(*args, **kwargs)


# ---------------------------------------------------------------- the traced evaluator

# Operations that always return a new tensor (never a view of an input), and their in-place twins.
_INPLACE_MODULES = {nn.ReLU: torch.relu_, nn.Tanh: torch.tanh_, nn.Sigmoid: torch.sigmoid_}
_INPLACE_FUNCTIONS = {torch.relu: torch.relu_, F.relu: torch.relu_, torch.tanh: torch.tanh_,
                      torch.sigmoid: torch.sigmoid_}
_ADDITIONS = (operator.add, torch.add)


def trace(model: nn.Module) -> fx.GraphModule | None:
    """The model's graph (Linear, Conv1d, BatchNorm and activations as leaves), or None when fx
    cannot trace it or it reads a parameter outside a supported layer."""
    try:
        traced = fx.symbolic_trace(model)
    except Exception:  # any Python the tracer cannot follow: use the mode instead
        return None
    parameter_names = {name for name, _ in model.named_parameters()}
    for node in list(traced.graph.nodes):  # nn.Identity (e.g. "no norm") would hide patterns
        if node.op == "call_module" and isinstance(traced.get_submodule(node.target), nn.Identity) \
                and len(node.args) == 1 and not node.kwargs:
            node.replace_all_uses_with(node.args[0])
            traced.graph.erase_node(node)
    for node in traced.graph.nodes:
        if node.op == "get_attr" and str(node.target) in parameter_names:
            return None
        if node.op == "call_module":
            module = traced.get_submodule(node.target)
            has_params = any(True for _ in module.parameters(recurse=False))
            if has_params and not isinstance(module, SUPPORTED_LAYERS):
                return None
    return traced


def foldable(traced: fx.GraphModule, node: fx.Node) -> bool:
    """A Linear or Conv1d whose only reader is an eval-mode batch norm with running statistics."""
    if node.op != "call_module" or len(node.users) != 1:
        return False
    if not isinstance(traced.get_submodule(node.target), (nn.Linear, nn.Conv1d)):
        return False
    (user,) = node.users
    if user.op != "call_module" or user.args[:1] != (node,) or len(user.args) != 1 or user.kwargs:
        return False
    norm = traced.get_submodule(user.target)
    return isinstance(norm, nn.BatchNorm1d) and not norm.training and norm.running_mean is not None


class PointEvaluator:
    """Evaluate `model` at P weight vectors at once: `evaluator(params, buffers, x)`.

    params: {name: (P, *shape)} for every parameter; buffers: {name: tensor} shared by all points
    (batch-norm statistics); x: (n, ...) one input batch. Returns (P, n, ...), the outputs of P
    separate `model(x)` calls. The model must be in eval mode. It is traced when the evaluator
    is made: use `evaluator_for(model)`, which makes a new one when the model has changed.
    """

    def __init__(self, model: nn.Module):
        if not supported(model):
            raise ValueError("point-batched evaluation needs a model whose layers with parameters "
                             f"are all {', '.join(t.__name__ for t in SUPPORTED_LAYERS)}")
        self.model = model
        self.traced = trace(model)
        if self.traced is None:
            return
        self.nodes = list(self.traced.graph.nodes)
        self.modules = {node: self.traced.get_submodule(node.target)
                        for node in self.nodes if node.op == "call_module"}
        # Linear/Conv1d node -> the batch-norm node folded into it.
        self.folds = {node: next(iter(node.users)) for node in self.nodes
                      if foldable(self.traced, node)}
        self.folded_norms = set(self.folds.values())
        self.shared_inputs = {node for node in self.nodes if node.op == "placeholder" and all(
            isinstance(self.modules.get(user), nn.Linear) and user.args == (node,)
            for user in node.users)}
        # For each node, the values it is the last to read: dropped after it runs, and free to
        # be overwritten by it.
        last_reader: dict[fx.Node, fx.Node] = {}
        for node in self.nodes:
            for source in node.all_input_nodes:
                last_reader[source] = node
        self.dies_at: dict[fx.Node, set[fx.Node]] = {}
        for source, reader in last_reader.items():
            self.dies_at.setdefault(reader, set()).add(source)
        self.accumulate = self._accumulations(last_reader)
        self.accumulated_into = {add: other for other, add in self.accumulate.values()}
        self.steps = self._plan()

    def _accumulations(self, last_reader: dict[fx.Node, fx.Node]) -> dict[fx.Node, tuple[fx.Node, fx.Node]]:
        """Linear node -> (other, addition) where the Linear's output (after its folded batch norm)
        is only added to `other`, a value computed earlier that this addition is the last to
        read and that nobody reads in between: the matrix product can then accumulate straight
        into other's tensor (a residual block's "+ x"), saving a pass over the activations."""
        order = {node: i for i, node in enumerate(self.nodes)}
        found = {}
        for layer, module in self.modules.items():
            if not isinstance(module, nn.Linear):
                continue
            out = self.folds.get(layer, layer)
            if len(out.users) != 1:
                continue
            (add,) = out.users
            if add.op != "call_function" or add.target not in _ADDITIONS or len(add.args) != 2 \
                    or add.kwargs or not all(isinstance(a, fx.Node) for a in add.args):
                continue
            other = add.args[1] if add.args[0] is out else add.args[0]
            if other is out or last_reader.get(other) is not add or order[other] > order[layer]:
                continue
            if any(order[layer] < order[reader] < order[add] for reader in other.users):
                continue
            found[layer] = (other, add)
        return found

    def __call__(self, params: Params, buffers: Params, x: torch.Tensor) -> torch.Tensor:
        return self.run(self.prepare(params, buffers), buffers, x)

    def prepare(self, params: Params, buffers: Params) -> dict[str, torch.Tensor]:
        """The parameters with every foldable batch norm folded into the layer before it (per
        point: W' = s W and b' = s (b - mean) + beta, s = gamma / sqrt(var + eps)). Slices of
        the result along the points dimension are valid prepared parameters too, so a caller
        can prepare all its points once and run them chunk by chunk."""
        return self._fold(params, buffers, params, centred=True)

    def _fold(self, params: Params, buffers: Params, gammas: Params, centred: bool
              ) -> dict[str, torch.Tensor]:
        """`prepare`, with each norm's scale taken from `gammas`' weights; centred=False leaves
        out the running mean, which gives the linear part of the fold (see `on_plane`)."""
        prepared = dict(params)
        if self.traced is None:
            return prepared
        for layer, norm_node in self.folds.items():
            name, norm_name = str(layer.target), str(norm_node.target)
            weight, bias = params[name + ".weight"], params.get(name + ".bias")
            mean = buffers[norm_name + ".running_mean"]
            scale, shift = affine(mean if centred else torch.zeros_like(mean),
                                  buffers[norm_name + ".running_var"],
                                  gammas.get(norm_name + ".weight"), params.get(norm_name + ".bias"),
                                  self.modules[norm_node].eps)
            scale = scale.expand(len(weight), -1)  # (P, out) even when the norm has no parameters
            prepared[name + ".weight"] = weight * scale.view(*scale.shape, *[1] * (weight.dim() - 2))
            prepared[name + ".bias"] = shift.expand(len(weight), -1) if bias is None \
                else torch.addcmul(shift, bias, scale)
        return prepared

    def on_plane(self, origin: Params, directions: Params, buffers: Params, x: torch.Tensor
                 ) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """A function rows (P, k) -> outputs (P, n, ...) of the model at the weights
        origin + rows @ directions, for origin {name: (1, *shape)} and directions
        {name: (k, *shape)} (a line, k = 1, or a plane, k = 2, through the weights space).

        Two steps are affine in the weights, so they are done once here instead of once per
        chunk of points: the batch-norm folds (a fold's scale depends only on the norm's weight),
        and the Linear layers that read the input x, whose outputs at every point are
        Z_0 + sum_i rows_i Z_i, with Z_i = x D_i^T + d_i computed once: one matrix product of
        inner size k per chunk instead of one of inner size in_features.
        None when the model runs through the mode, or when a direction moves the weight of a
        folded batch norm (its scale then changes from point to point): use `prepare` and `run`.
        """
        if self.traced is None:
            return None
        for norm_node in self.folded_norms:
            moved = directions.get(str(norm_node.target) + ".weight")
            if moved is not None and bool(moved.any()):
                return None
        # The directions' folds take their scales from the origin's norm weights.
        directions = self._fold(directions, buffers, origin, centred=False)
        origin = self.prepare(origin, buffers)
        # Input layers: their outputs, once at the origin and once along each direction.
        fixed = {}
        for kind, node, details, _, _ in self.steps:
            if kind == "linear" and details[3]:
                weight_name, bias_name = details[0], details[1]
                at_origin = _linear(1, x, origin[weight_name], origin.get(bias_name))
                along = torch.stack([F.linear(x, d) for d in directions[weight_name]])
                if bias_name in directions:
                    along = along + directions[bias_name].view(len(along), *[1] * (x.dim() - 1), -1)
                fixed[node] = (at_origin.reshape(1, -1), along.reshape(len(along), -1),
                               at_origin.shape, details[5])
        # The per-chunk weights leave out what no step reads then: the input layers' parameters
        # and the folded norms' (unless another call of the same module reads them).
        still_read = {str(node.target) for node in self.modules
                      if node not in fixed and node not in self.folded_norms}
        unread = {str(node.target) for node in [*fixed, *self.folded_norms]} - still_read
        names = [name for name in origin if name.rpartition(".")[0] not in unread]
        shapes = [origin[name].shape[1:] for name in names]
        start = torch.cat([origin[name].reshape(1, -1) for name in names], dim=1)
        basis = torch.cat([directions[name].reshape(len(directions[name]), -1) for name in names],
                          dim=1)
        sizes = [s.numel() for s in shapes]

        def outputs(rows: torch.Tensor) -> torch.Tensor:
            points = len(rows)
            flat = torch.addmm(start, rows, basis)
            params = {name: part.view(points, *shape) for name, shape, part in
                      zip(names, shapes, torch.split(flat, sizes, dim=1))}
            given = {}
            for node, (z0, zs, shape, final) in fixed.items():
                out = torch.addmm(z0, rows, zs)
                given[node] = out.view(points, *shape) if final else out.view(points * shape[0], *shape[1:])
            return self._run(points, params, buffers, x, given)

        return outputs

    def run(self, prepared: Params, buffers: Params, x: torch.Tensor) -> torch.Tensor:
        """Outputs (P, n, ...) for parameters from `prepare`."""
        points = len(next(iter(prepared.values())))
        if self.traced is None:
            repeated = x.repeat(points, *[1] * (x.dim() - 1))
            with PointBatched(points):
                out = functional_call(self.model, (dict(prepared), dict(buffers)), (repeated,))
            return out.reshape(points, len(x), *out.shape[1:])
        return self._run(points, prepared, buffers, x)

    def _plan(self) -> list[tuple]:
        """The graph as a list of steps (kind, node, details, values dying here, values this node
        may overwrite), worked out once so that running a chunk costs little Python."""
        steps = []
        for node in self.nodes:
            dying = tuple(self.dies_at.get(node, ()))
            once = {a for a in node.args if isinstance(a, fx.Node)
                    and sum(b is a for b in node.args) == 1}
            writable = frozenset(a for a in dying if a in once)
            module = self.modules.get(node)
            simple = len(node.args) == 1 and not node.kwargs and isinstance(node.args[0], fx.Node)
            if node.op == "placeholder":
                kind, details = "input", node in self.shared_inputs
            elif node.op == "output":
                # A Linear read only by the output returns its result split by point already.
                source = node.args[0]
                kind, details = "output", (source, self._final_linear(source))
            elif node.op == "get_attr":
                kind, details = "attr", node.target
            elif isinstance(module, nn.Linear):
                name = str(node.target)
                kind, details = "linear", (name + ".weight", name + ".bias", node.args[0],
                                           node.args[0] in self.shared_inputs,
                                           self.accumulate.get(node), self._final_linear(node))
            elif isinstance(module, nn.BatchNorm1d) and node in self.folded_norms:
                kind, details = "alias", node.args[0]  # folded into the layer before it
            elif type(module) in _INPLACE_MODULES and simple:
                # nn.ReLU(inplace=True) returns its input's tensor, which may not be ours.
                kind, details = "activation", (module, _INPLACE_MODULES[type(module)],
                                               not getattr(module, "inplace", False))
            elif node.op == "call_module":
                kind, details = "module", None
            elif node.op == "call_function" and node.target in _INPLACE_FUNCTIONS and simple:
                kind, details = "activation", (node.target, _INPLACE_FUNCTIONS[node.target], True)
            elif node.op == "call_function" and node.target in _ADDITIONS \
                    and len(node.args) == 2 and not node.kwargs:
                kind, details = "add", None
            elif node.op == "call_function":
                kind, details = "function", None
            else:
                kind, details = "method", None
            steps.append((kind, node, details, dying, writable))
        return steps

    def _final_linear(self, node: object) -> bool:
        """A Linear read only by the graph's output: it returns its result split by point,
        (P, n, ..., out), so that a narrow output layer need not copy its strided result."""
        return isinstance(node, fx.Node) and isinstance(self.modules.get(node), nn.Linear) \
            and bool(node.users) and all(user.op == "output" for user in node.users)

    def _run(self, points: int, params: Params, buffers: Params, x: torch.Tensor,
             given: Mapping[fx.Node, torch.Tensor] | None = None) -> torch.Tensor:
        """The plan's steps on (P * n, ...) activations -> outputs (P, n, ...); `given` holds
        the outputs of Linear layers computed elsewhere (new tensors, see `on_plane`)."""
        given = given or {}
        env: dict[fx.Node, object] = {}
        owned: set[fx.Node] = set()  # new tensors nothing outside this run refers to
        inplace_ok = not torch.is_grad_enabled()  # autograd may have saved them for the backward
        accumulated: set[fx.Node] = set()  # additions already done by a Linear (see _accumulations)

        def value(arg):
            return fx.node.map_arg(arg, env.__getitem__)

        for kind, node, details, dying, writable in self.steps:
            fresh = True
            if kind == "linear":
                weight_name, bias_name, source, shared, accumulate, final = details
                weight, bias = params.get(weight_name), params.get(bias_name)
                if node in given:
                    result = given[node]
                elif accumulate is not None and inplace_ok and accumulate[0] in owned \
                        and _linear_into(points, env[source], weight, bias, env[accumulate[0]]):
                    result = env[accumulate[0]]
                    accumulated.add(accumulate[1])
                else:
                    result = _linear(points, env[source], weight, bias, shared, final)
            elif kind == "activation":
                function, inplace, fresh = details
                (source,) = node.args
                if inplace_ok and source in owned and source in writable:
                    result, fresh = inplace(env[source]), True
                else:
                    result = function(env[source])
            elif kind == "alias":
                result = env[details]
            elif kind == "add":
                if node in accumulated:
                    result = env[self.accumulated_into[node]]
                else:
                    result, fresh = self._add(node, value, inplace_ok, owned, writable)
            elif kind == "input":
                # Linear layers read the one copy of the input for every point; anything else
                # gets it repeated along the batch dimension.
                result = x if details else x.repeat(points, *[1] * (x.dim() - 1))
                fresh = False
            elif kind == "output":
                source, split = details
                out = value(source)
                return out if split else out.reshape(points, len(x), *out.shape[1:])
            elif kind == "attr":
                result = buffers[details] if details in buffers else getattr(self.traced, details)
                fresh = False
            elif kind == "module":
                result, fresh = self._module(node, points, params, buffers, value)
            elif kind == "function":
                result, fresh = node.target(*value(node.args), **value(node.kwargs)), False
            else:  # a method call
                this, *rest = value(node.args)
                result, fresh = getattr(this, node.target)(*rest, **value(node.kwargs)), False
            env[node] = result
            if fresh:
                owned.add(node)
            for source in dying:
                del env[source]
                owned.discard(source)
        raise RuntimeError("the traced graph has no output")  # fx graphs always have one

    def _module(self, node: fx.Node, points: int, params: Params, buffers: Params, value
                ) -> tuple[object, bool]:
        """A call_module node other than a Linear or an activation -> (result, whether the
        result is a new tensor)."""
        name, module = str(node.target), self.modules[node]
        if isinstance(module, nn.Conv1d):
            if module.padding_mode != "zeros" or isinstance(module.padding, str):
                raise ValueError("point-batched Conv1d supports numeric zero padding only")
            (x,) = value(node.args)
            return _conv1d(points, x, params[name + ".weight"], params.get(name + ".bias"),
                           module.stride, module.padding, module.dilation, module.groups), True
        if isinstance(module, nn.BatchNorm1d):
            if module.training or module.running_mean is None:
                raise ValueError("batch norm in training mode (or without running statistics) "
                                 "mixes the points of a batched evaluation; use eval mode")
            (x,) = value(node.args)
            return _batch_norm_eval(points, x, buffers[name + ".running_mean"],
                                    buffers[name + ".running_var"], params.get(name + ".weight"),
                                    params.get(name + ".bias"), module.eps), True
        return module(*value(node.args), **value(node.kwargs)), False

    @staticmethod
    def _add(node: fx.Node, value, inplace_ok: bool, owned: set[fx.Node], writable: frozenset
             ) -> tuple[object, bool]:
        """a + b, written into a or b when that one is ours, dies here and has the result's
        shape and dtype already."""
        a, b = node.args
        va, vb = value(a), value(b)
        if not (isinstance(va, torch.Tensor) and isinstance(vb, torch.Tensor)):
            return va + vb, isinstance(va, torch.Tensor) or isinstance(vb, torch.Tensor)
        if inplace_ok and va.shape == vb.shape and va.dtype == vb.dtype:
            if a in owned and a in writable:
                return va.add_(vb), True
            if b in owned and b in writable:
                return vb.add_(va), True
        return va + vb, True


def _linear_into(points: int, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                 target: torch.Tensor) -> bool:
    """target += the Linear's output (x (P*n, in), weight (P, out, in)), in place, when shapes and
    layout allow; whether it was done."""
    if not target.is_contiguous() or target.shape != (*x.shape[:-1], weight.shape[1]) \
            or target.dtype != weight.dtype:
        return False
    if target.untyped_storage().data_ptr() == x.untyped_storage().data_ptr():
        return False  # x is (part of) the target: adding the bias first would change the input

    acc = target.view(points, -1, weight.shape[1])
    if bias is not None:
        acc.add_(bias.unsqueeze(1))
    acc.baddbmm_(x.reshape(points, -1, x.shape[-1]), weight.transpose(1, 2))
    return True


# The evaluator of each model, remade when anything its trace depends on has changed.
_EVALUATORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def signature(model: nn.Module) -> tuple:
    """What a trace depends on besides tensor values: the modules, their train/eval modes and
    every plain-valued attribute (skips, block kinds, scales, strides, ...)."""
    parts = []
    for name, module in model.named_modules():
        plain = tuple(sorted((k, v if not isinstance(v, list) else tuple(v))
                             for k, v in vars(module).items()
                             if isinstance(v, (bool, int, float, str)) or (
                                 isinstance(v, list) and all(isinstance(e, (bool, int, float, str)) for e in v))))
        parts.append((name, type(module), plain))
    return tuple(parts)


def evaluator_for(model: nn.Module) -> PointEvaluator | None:
    """A PointEvaluator of `model`, reused while the model's structure, mode and settings
    (`signature`) stay the same; None when the model is not `supported`."""
    if not supported(model):
        return None
    return per_signature(_EVALUATORS, model, PointEvaluator)


def per_signature(store: weakref.WeakKeyDictionary, model: nn.Module,
                  make: Callable[[nn.Module], object]) -> object:
    """make(model), kept in `store` (keyed weakly by the model) and made again only when the
    model's `signature` has changed: a trace stays valid while the signature does."""
    current = signature(model)
    cached = store.get(model)
    if cached is None or cached[0] != current:
        cached = (current, make(model))
        store[model] = cached
    return cached[1]
