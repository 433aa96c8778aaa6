"""Exact Hessian-vector products of an MLP by Pearlmutter's R-operator, written out layer by layer.

The Hessian of the mean loss L(w) times a vector v is the directional derivative of the gradient,
H v = d/de grad L(w + e v) at e = 0. Pearlmutter (1994) computes it by applying R{.} = d/de(.) to
every line of the forward and the backward pass. For a Linear layer z = x W^T + b, with adjoints
z_bar = dL/dz, tangents x_dot = R{x} and the direction's (V_W, V_b) for this layer:

    forward      z_dot     = x V_W^T + x_dot W^T + V_b
    backward     R{x_bar}  = z_bar_dot W + z_bar V_W
                 R{W_bar}  = z_bar_dot^T x + z_bar^T x_dot       (H v's entries for W)
                 R{b_bar}  = z_bar_dot summed over the batch     (H v's entries for b)

and an activation a = f(z) contributes a_dot = f'(z) z_dot and R{z_bar} = f'(z) a_bar_dot
+ f''(z) z_dot a_bar (f'' = 0 for ReLU). The forward values and the adjoints do not depend on v:
they are computed once, and every product then costs one tangent pass forward and one backward,
six matrix products and a sum per Linear layer, with no autograd graph to walk: on the MLPs of
notebook 04 about half the time of autograd's second backward pass (`make bench`).

An eval-mode batch norm right after a Linear layer is folded into it: the network is run in
parameters phi with W* = s W and b* = s (b - mean) + beta, s = gamma / sqrt(var + eps), which
saves the passes over the activations the batch norm would cost. Back in the model's own
parameters theta, the chain rule gives H v = J^T H_phi (J v) + S v: J is the Jacobian of phi
with respect to theta, and S = sum_k (dL/dphi_k) d^2 phi_k / d theta^2 is there because phi
multiplies gamma by W and by b. Both are sparse and fixed at the weights, so they cost two
sparse products per call (see `_Operator._fold` and `_Operator._second_derivatives`).

The model is traced once with torch.fx. Supported: Linear, eval-mode BatchNorm1d on (batch,
features), ReLU / Tanh / Sigmoid (as modules or functions), eval-mode Dropout, additions and
multiplication by a number (residual branches, scaled skips); inputs (batch, features); the loss
is mean cross-entropy or mean squared error. Anything else makes `hessian_operator` return None,
and the caller falls back to autograd.

Every weight vector has a leading points dimension P, as in `skipviz.batched`: P sets of weights
(the grid points of a curvature map) are multiplied through at once with batched matrix products.
"""

from __future__ import annotations

import operator
import warnings
import weakref
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from ._validation import check_choice
from .batched import affine, foldable, per_signature, trace

Matvec = Callable[[torch.Tensor], torch.Tensor]
Step = tuple  # (kind, node, inputs, details); see _step

_ACTIVATION_MODULES = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid"}
_ACTIVATION_FUNCTIONS = {torch.relu: "relu", F.relu: "relu", torch.tanh: "tanh", F.tanh: "tanh",
                         torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid"}
_ADDITIONS = (operator.add, torch.add)


def _number(a: object) -> bool:
    return isinstance(a, (int, float)) and not isinstance(a, bool)


def _step(traced: fx.GraphModule, node: fx.Node, folded: dict[fx.Node, fx.Node]) -> Step | None:
    """One node as (kind, node, inputs, details), or None when the R-operator cannot handle it.

    kinds and details: input; output; linear (the Linear's name, and (name, module) of the batch
    norm folded into it or None; the step's node is the batch norm's when folded); norm ((name,
    module)); act (relu, tanh or sigmoid); add (a number added, or None for two nodes); scale (the
    number multiplied); alias (eval-mode dropout)."""
    args = node.args
    if node.op == "placeholder":
        return ("input", node, (), None)
    if node.op == "output":
        return ("output", node, (args[0],), None) if isinstance(args[0], fx.Node) else None
    if node.kwargs:
        return None
    if node.op == "call_module":
        if len(args) != 1 or not isinstance(args[0], fx.Node):
            return None
        module = traced.get_submodule(node.target)
        if isinstance(module, nn.Linear):
            norm = folded.get(node)
            fold = None if norm is None else (str(norm.target), traced.get_submodule(norm.target))
            return ("linear", norm or node, args, (str(node.target), fold))
        if isinstance(module, nn.BatchNorm1d) and not module.training \
                and module.running_mean is not None:
            return ("norm", node, args, (str(node.target), module))
        if type(module) in _ACTIVATION_MODULES:
            return ("act", node, args, _ACTIVATION_MODULES[type(module)])
        if isinstance(module, nn.Dropout) and not module.training:
            return ("alias", node, args, None)
        return None
    if node.op != "call_function" or len(args) not in (1, 2):
        return None
    nodes = tuple(a for a in args if isinstance(a, fx.Node))
    numbers = [a for a in args if _number(a)]
    if node.target in _ACTIVATION_FUNCTIONS and len(args) == 1 and nodes:
        return ("act", node, nodes, _ACTIVATION_FUNCTIONS[node.target])
    if node.target in _ADDITIONS and len(args) == 2:
        if len(nodes) == 2:
            return ("add", node, nodes, None)
        if len(nodes) == 1 and len(numbers) == 1:
            return ("add", node, nodes, numbers[0])
    if node.target is operator.mul and len(args) == 2 and len(nodes) == 1 and len(numbers) == 1:
        return ("scale", node, nodes, float(numbers[0]))
    return None


# Each model's plan, remade when anything the trace depends on has changed (batched.signature).
_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def plan(model: nn.Module) -> list[Step] | None:
    """The model's traced graph as steps the R-operator can run, each batch norm that follows a
    Linear layer folded into it; None when some step is not supported (see the module docstring).
    Traced once per model and signature."""
    return per_signature(_PLANS, model, _plan)


def _plan(model: nn.Module) -> list[Step] | None:
    traced = trace(model)
    if traced is None:
        return None
    nodes = list(traced.graph.nodes)
    folded = {node: next(iter(node.users)) for node in nodes if foldable(traced, node)
              and isinstance(traced.get_submodule(node.target), nn.Linear)}
    skipped = set(folded.values())
    steps = []
    for node in nodes:
        if node in skipped:
            continue
        step = _step(traced, node, folded)
        if step is None:
            return None
        steps.append(step)
    if sum(kind == "input" for kind, *_ in steps) != 1:
        return None
    return steps


def _activation(name: str, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(f(z), f'(z), f''(z) or None when it is zero almost everywhere)."""
    if name == "relu":
        return torch.relu(z), (z > 0).to(z.dtype), None
    if name == "tanh":
        a = torch.tanh(z)
        d1 = 1 - a * a
        return a, d1, -2 * a * d1
    a = torch.sigmoid(z)
    d1 = a * (1 - a)
    return a, d1, d1 * (1 - 2 * a)


def _add(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    """a + b, where None stands for zero."""
    if a is None:
        return b
    return a if b is None else a + b


def _linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """x (P, n, in), w (P, out, in), b (P, out) or None -> (P, n, out); for one point, the
    model's own F.linear, so that the values match the model's to the last bit."""
    if len(x) == 1:
        return F.linear(x[0], w[0], None if b is None else b[0]).unsqueeze(0)
    return torch.bmm(x, w.transpose(1, 2)) if b is None \
        else torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))


def _batch_norm(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, gamma: torch.Tensor | None,
                beta: torch.Tensor | None, eps: float) -> torch.Tensor:
    """Eval-mode batch norm of x (P, n, C) with gamma, beta (P, C) or None; for one point, the
    model's own F.batch_norm."""
    if len(x) == 1:
        return F.batch_norm(x[0], mean, var, None if gamma is None else gamma[0],
                            None if beta is None else beta[0], False, 0.0, eps).unsqueeze(0)
    scale, shift = affine(mean, var, gamma, beta, eps)  # each (C,) or (P, C)
    return torch.addcmul(shift.expand(len(x), -1).unsqueeze(1), x,
                         scale.expand(len(x), -1).unsqueeze(1))


class _Sparse:
    """Entries of a sparse matrix that is the same at every point but for its values: rows,
    columns (k,) and values (P, k), collected piece by piece; `block_diagonal` lays the P copies
    out along the diagonal."""

    def __init__(self, points: int):
        self.points, self.rows, self.cols, self.values = points, [], [], []

    def add(self, rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor) -> None:
        """Entries at (rows, cols), index tensors of one shape; values a scalar tensor (the same
        everywhere) or (P, *that shape)."""
        self.rows.append(rows.reshape(-1))
        self.cols.append(cols.reshape(-1))
        flat = values.reshape(1, 1) if values.dim() == 0 else values.reshape(self.points, -1)
        self.values.append(flat.expand(self.points, len(self.rows[-1])))

    def block_diagonal(self, shape: tuple[int, int], col_offset: int = 0
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(rows, cols, values) of the P blocks, block p at rows p * shape[0] and columns
        col_offset + p * shape[1]."""
        rows, cols = torch.cat(self.rows), torch.cat(self.cols)
        shift = torch.arange(self.points).unsqueeze(1)
        return ((rows + shift * shape[0]).reshape(-1),
                (cols + shift * shape[1] + col_offset).reshape(-1),
                torch.cat(self.values, dim=1).reshape(-1))


def _csr(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, shape: tuple[int, int],
         dtype: torch.dtype) -> torch.Tensor:
    """A compressed-sparse-row matrix of `shape` from its entries (repeated entries add up)."""
    with warnings.catch_warnings():  # CSR support is marked beta; its products are what we use
        warnings.simplefilter("ignore", UserWarning)
        coo = torch.sparse_coo_tensor(torch.stack([rows, cols]), values.to(dtype), shape,
                                      check_invariants=False)
        return coo.coalesce().to_sparse_csr()


def _output_hessian(loss: str, out: torch.Tensor, y: torch.Tensor
                    ) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """The gradient of the summed per-point mean loss with respect to the outputs (P, n, K), and
    the map out_dot -> its Hessian times out_dot, in closed form (`landscape._losses`' losses)."""
    if loss == "cross_entropy":
        # L = mean over n of -log softmax(o)[y]: gradient (p - onehot) / n,
        # Hessian times t: (p * t - p (p . t)) / n, row by row.
        n = out.shape[1]
        p = torch.softmax(out, dim=-1)
        grad = p.clone()
        grad.scatter_add_(-1, y.view(1, -1, 1).expand(len(out), -1, 1),
                          torch.full((len(out), n, 1), -1.0, dtype=out.dtype))
        grad /= n
        p_n = p / n

        def hessian(t: torch.Tensor) -> torch.Tensor:
            return p_n * (t - (p * t).sum(-1, keepdim=True))

        return grad, hessian
    # L = mean over the n * K entries of (o - y)^2: gradient 2 (o - y) / (n K), Hessian 2 / (n K).
    diff = out - y
    c = 2.0 / diff[0].numel()
    return c * diff, lambda t: c * t


class _Operator:
    """H v for P weight vectors at once (see the module docstring). The products run in the
    folded parameters phi (each Linear's W* and b*, each standalone batch norm's gamma and
    beta); J maps the original parameters' directions to phi's, and H v = J^T H_phi J v + S v.
    Forward values, adjoints, J and S are computed when it is made; each call is one tangent
    pass forward, one backward, and two sparse products."""

    def __init__(self, steps: list[Step], params: Mapping[str, torch.Tensor],
                 buffers: Mapping[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, loss: str,
                 names: Sequence[str]):
        self.steps = steps
        first = params[names[0]]
        self.points, self.dtype = len(first), first.dtype
        # How many steps read each value: a tangent read only by the ReLU after it can be
        # multiplied by the mask in place.
        self.readers: dict[fx.Node, int] = {}
        for _, _, inputs, _ in steps:
            for source in inputs:
                self.readers[source] = self.readers.get(source, 0) + 1
        jacobian = self._fold(params, buffers, names)
        self.value: dict[fx.Node, torch.Tensor] = {}
        self.saved: dict[fx.Node, tuple] = {}
        out = self._forward_pass(x, buffers)
        out_grad, self.output_hessian = _output_hessian(loss, out, y)
        self.adjoint = self._backward(out_grad)
        second = self._second_derivatives()
        P = self.points
        shape = (self.n_phi, self.n_theta)
        rows, cols, values = jacobian.block_diagonal(shape)
        self.jacobian = _csr(rows, cols, values, (P * self.n_phi, P * self.n_theta), self.dtype)
        # [J^T S] as one matrix: H v = J^T u + S v from the stacked [u; v] in one product.
        parts = [(cols, rows, values)]
        if second.rows:
            parts.append(second.block_diagonal((self.n_theta, self.n_theta), col_offset=P * self.n_phi))
        rows, cols, values = (torch.cat(t) for t in zip(*parts))
        self.back = _csr(rows, cols, values, (P * self.n_theta, P * (self.n_phi + self.n_theta)),
                         self.dtype)

    def _fold(self, params: Mapping[str, torch.Tensor], buffers: Mapping[str, torch.Tensor],
              names: Sequence[str]) -> _Sparse:
        """Lays out phi, one slot per parameter of the folded network (self.phi, values (P, ...)),
        and returns the entries of J, the Jacobian of phi with respect to theta (the flat layout
        of the original parameters, in `names` order)."""
        P = self.points
        sizes = [params[n][0].numel() for n in names]
        offsets = dict(zip(names, torch.tensor([0, *sizes]).cumsum(0).tolist()))
        self.n_theta = sum(sizes)
        self.phi: dict[tuple[fx.Node, str], torch.Tensor] = {}  # (node, "weight"/"bias") -> (P, ...)
        self.folds: dict[fx.Node, tuple] = {}  # folds with a gamma: what S needs
        # The model's own parameters of each Linear and batch-norm step, None where absent:
        # (weight, bias, batch norm folded into it or None) and (gamma, beta).
        self.original: dict[fx.Node, tuple] = {}
        jacobian = _Sparse(P)
        end = 0

        def slot(node: fx.Node, role: str, value: torch.Tensor) -> torch.Tensor:
            """Adds a slot to phi; returns the flat indices of its entries."""
            nonlocal end
            self.phi[node, role] = value
            start, end = end, end + value[0].numel()
            return torch.arange(start, end).view(value.shape[1:])

        def theta(name: str) -> torch.Tensor:
            return torch.arange(offsets[name], offsets[name] + sizes[names.index(name)]) \
                .view(params[name].shape[1:])

        def identity(node: fx.Node, role: str, name: str, default: torch.Tensor) -> None:
            if name in params:
                jacobian.add(slot(node, role, params[name]), theta(name), torch.ones(()))
            else:  # e.g. a Linear without bias: a slot fixed at zero, with no column in J
                slot(node, role, default.expand(P, *default.shape))

        for kind, node, inputs, details in self.steps:
            if kind == "norm":
                name, module = details
                self.original[node] = (params.get(name + ".weight"), params.get(name + ".bias"))
                ones = torch.ones(module.num_features, dtype=self.dtype)
                identity(node, "weight", name + ".weight", ones)
                identity(node, "bias", name + ".bias", torch.zeros_like(ones))
                continue
            if kind != "linear":
                continue
            linear, fold = details
            weight, bias = linear + ".weight", linear + ".bias"
            w = params[weight]
            self.original[node] = (w, params.get(bias), None if fold is None else (
                *fold, params.get(fold[0] + ".weight"), params.get(fold[0] + ".bias")))
            if fold is None:
                identity(node, "weight", weight, w[0])
                identity(node, "bias", bias, torch.zeros(w.shape[1], dtype=self.dtype))
                continue
            # W* = s W, b* = s c + beta with s = gamma r, r = 1 / sqrt(var + eps), c = b - mean:
            # J's entries are the partial derivatives of W* and b*.
            norm, module = fold
            gamma, beta = params.get(norm + ".weight"), params.get(norm + ".bias")
            r = torch.rsqrt(buffers[norm + ".running_var"] + module.eps).expand(P, -1)
            c = -buffers[norm + ".running_mean"].expand(P, -1)
            if bias in params:
                c = params[bias] + c
            s = r if gamma is None else gamma * r
            iw = slot(node, "weight", w * s.unsqueeze(2))
            ib = slot(node, "bias", s * c + (0 if beta is None else beta))

            jacobian.add(iw, theta(weight), s.unsqueeze(2).expand_as(w))  # dW*/dW
            if bias in params:
                jacobian.add(ib, theta(bias), s)  # db*/db
            if gamma is not None:
                tg = theta(norm + ".weight")
                jacobian.add(iw, tg.unsqueeze(1).expand_as(iw), w * r.unsqueeze(2))  # dW*/dgamma
                jacobian.add(ib, tg, r * c)  # db*/dgamma
                self.folds[node] = (inputs[0], r, theta(weight), tg,
                                    theta(bias) if bias in params else None)
            if beta is not None:
                jacobian.add(ib, theta(norm + ".bias"), torch.ones(()))  # db*/dbeta
        self.n_phi = end
        self.slots = list(self.phi)
        self.slot_sizes = [self.phi[k][0].numel() for k in self.slots]
        return jacobian

    def _forward_pass(self, x: torch.Tensor, buffers: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Every node's value at the weights (self.value); returns the outputs (P, n, K)."""
        out = None
        for kind, node, inputs, details in self.steps:
            if kind == "input":
                if x.dim() != 2:
                    raise ValueError("the R-operator products need inputs (batch, features)")
                self.value[node] = x.unsqueeze(0).expand(self.points, -1, -1)
            elif kind == "output":
                out, self.output = self.value[inputs[0]], inputs[0]
            else:
                self.value[node] = self._forward(kind, node, inputs, details, buffers)
        if out is None or out.dim() != 3:
            raise ValueError("the R-operator products need outputs (batch, outputs)")
        return out

    def _second_derivatives(self) -> _Sparse:
        """The entries of S = sum_k g'_k d^2 phi_k / d theta^2, with g' the gradient with respect
        to phi. Only folds contribute: W* = gamma r W and b* = gamma r (b - mean) + beta are
        bilinear in (gamma, W) and (gamma, b) with mixed derivatives r, so S pairs W_ij with
        gamma_i (entry g'_ij r_i, g' = dL/dW*) and b_i with gamma_i (entry dL/db*_i r_i), both
        ways round."""
        second = _Sparse(self.points)
        for node, (source, r, tw, tg, tb) in self.folds.items():
            g = self.adjoint.get(node)
            if g is None:
                continue
            gw = torch.bmm(g.transpose(1, 2), self.value[source]) * r.unsqueeze(2)
            tge = tg.unsqueeze(1).expand_as(tw)
            second.add(tw, tge, gw)
            second.add(tge, tw, gw)
            if tb is not None:
                gb = g.sum(1) * r
                second.add(tb, tg, gb)
                second.add(tg, tb, gb)
        return second

    def _forward(self, kind: str, node: fx.Node, inputs: tuple, details,
                 buffers: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """One node's value at the weights (P, n, C), and what its products will need."""
        source = self.value[inputs[0]]
        if source.dim() != 3:
            raise ValueError("the R-operator products need activations (batch, features)")
        if kind == "linear":
            return self._linear_value(node, source, buffers)
        if kind == "norm":
            name, module = details
            mean, var = buffers[name + ".running_mean"], buffers[name + ".running_var"]
            r = torch.rsqrt(var + module.eps)
            gamma = self.phi[node, "weight"]
            self.saved[node] = ((source - mean) * r, (gamma * r).unsqueeze(1), r)
            return _batch_norm(source, mean, var, *self.original[node], module.eps)
        if kind == "act":
            a, d1, d2 = _activation(details, source)
            self.saved[node] = (d1, d2)
            return a
        if kind == "add":
            return source + (details if details is not None else self.value[inputs[1]])
        if kind == "scale":
            return details * source
        return source  # alias

    def _linear_value(self, node: fx.Node, x: torch.Tensor, buffers: Mapping[str, torch.Tensor]
                      ) -> torch.Tensor:
        """A Linear step's value, computed unfolded, as the model computes it: a ReLU input within
        float32 rounding of zero must fall on the same side as in the model, or H v changes
        (folded, two of notebook 04's four million ReLU inputs flipped: 3e-4 relative error)."""
        w, b, fold = self.original[node]
        z = _linear(x, w, b)
        if fold is None:
            return z
        name, module, gamma, beta = fold
        return _batch_norm(z, buffers[name + ".running_mean"], buffers[name + ".running_var"],
                           gamma, beta, module.eps)

    def _backward(self, out_adjoint: torch.Tensor) -> dict[fx.Node, torch.Tensor]:
        """The adjoint dL/d(value) of every node the loss depends on through parameters."""
        adjoint: dict[fx.Node, torch.Tensor] = {self.output: out_adjoint}
        for kind, node, inputs, details in reversed(self.steps):
            g = adjoint.get(node)
            if g is None or kind in ("input", "output"):
                continue
            if kind == "linear":
                back = torch.bmm(g, self.phi[node, "weight"])
            elif kind == "norm":
                back = g * self.saved[node][1]
            elif kind == "act":
                d1, d2 = self.saved[node]
                back = g * d1
                if d2 is not None:  # f''(z) a_bar, for the products
                    self.saved[node] = (d1, d2 * g)
            elif kind == "scale":
                back = details * g
            else:  # add, alias
                back = g
            for source in inputs:
                if source.op != "placeholder":  # the data needs no adjoint
                    adjoint[source] = _add(adjoint.get(source), back)
        return adjoint

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        """v (P, n) flat like the parameters -> H v (P, n), each row at its own weights."""
        v = v.to(self.dtype)
        u = (self.jacobian @ v.reshape(-1, 1)).view(self.points, self.n_phi)
        direction = dict(zip(self.slots, (t.view(self.points, *self.phi[k].shape[1:])
                                          for k, t in zip(self.slots, u.split(self.slot_sizes, 1)))))
        tangent = self._tangents(direction)
        out_dot = tangent.get(self.output)
        out_bar_dot = self.output_hessian(torch.zeros_like(self.adjoint[self.output])
                                          if out_dot is None else out_dot)
        result = self._tangent_backward(direction, tangent, out_bar_dot)
        hu = torch.cat([result[k].reshape(self.points, -1) if k in result
                        else torch.zeros(self.points, size, dtype=self.dtype)
                        for k, size in zip(self.slots, self.slot_sizes)], dim=1)
        stacked = torch.cat([hu.reshape(-1), v.reshape(-1)]).unsqueeze(1)
        return (self.back @ stacked).view(self.points, self.n_theta)

    def _tangents(self, direction: Mapping[tuple, torch.Tensor]) -> dict[fx.Node, torch.Tensor | None]:
        """R{value} of every node along the direction (None where it is zero)."""
        tangent: dict[fx.Node, torch.Tensor | None] = {}
        fresh: set[fx.Node] = set()  # tangents made by their own step, shared with no other
        for kind, node, inputs, details in self.steps:
            if kind in ("input", "output"):
                continue
            source = tangent.get(inputs[0])
            made = kind in ("linear", "norm", "act", "scale")
            if kind == "linear":
                vw, vb = direction[node, "weight"], direction[node, "bias"]
                t = torch.baddbmm(vb.unsqueeze(1), self.value[inputs[0]], vw.transpose(1, 2))
                if source is not None:
                    t.baddbmm_(source, self.phi[node, "weight"].transpose(1, 2))
            elif kind == "norm":
                normalized, scale, _ = self.saved[node]
                t = torch.addcmul(direction[node, "bias"].unsqueeze(1), normalized,
                                  direction[node, "weight"].unsqueeze(1))
                if source is not None:
                    t.addcmul_(source, scale)
            elif kind == "act":
                d1, d2 = self.saved[node]
                if source is None:
                    t = None
                elif d2 is None and inputs[0] in fresh and self.readers[inputs[0]] == 1:
                    t = source.mul_(d1)  # nothing else reads the source's tangent (f'' = 0)
                else:
                    t = source * d1
            elif kind == "add":
                other = None if details is not None else tangent.get(inputs[1])
                t = _add(source, other)
                made = source is not None and other is not None
            elif kind == "scale":
                t = None if source is None else details * source
            else:
                t = source
            tangent[node] = t
            if made and t is not None:
                fresh.add(node)
        return tangent

    def _tangent_backward(self, direction: Mapping[tuple, torch.Tensor],
                          tangent: Mapping[fx.Node, torch.Tensor | None], out_bar_dot: torch.Tensor
                          ) -> dict[tuple, torch.Tensor]:
        """R{dL/d(phi)} for every slot of phi: H_phi u."""
        bar_dot: dict[fx.Node, torch.Tensor | None] = {self.output: out_bar_dot}
        owned = {self.output}  # nodes whose bar_dot tensor no other node holds
        result: dict[tuple, torch.Tensor] = {}
        for kind, node, inputs, details in reversed(self.steps):
            g_dot = bar_dot.pop(node, None)
            mine = node in owned
            g = self.adjoint.get(node)
            if kind in ("input", "output") or g is None:
                continue
            source = inputs[0]
            x, x_dot = self.value[source], tangent.get(source)
            if kind == "linear":
                # R{W_bar} = g_dot' x + g' x_dot; R{b_bar} = sum of g_dot; back = g_dot W + g V_W
                uw = None if g_dot is None else torch.bmm(g_dot.transpose(1, 2), x)
                if x_dot is not None:
                    uw = torch.bmm(g.transpose(1, 2), x_dot) if uw is None \
                        else uw.baddbmm_(g.transpose(1, 2), x_dot)
                if uw is not None:
                    result[node, "weight"] = uw
                if g_dot is not None:
                    result[node, "bias"] = g_dot.sum(1)
                if source not in self.adjoint:  # the first layer: nothing to pass back
                    continue
                back = torch.bmm(g, direction[node, "weight"])
                if g_dot is not None:
                    back.baddbmm_(g_dot, self.phi[node, "weight"])
            elif kind == "norm":
                normalized, scale, r = self.saved[node]
                ug = None if g_dot is None else (g_dot * normalized).sum(1)
                if x_dot is not None:
                    ug = _add(ug, (g * x_dot).sum(1) * r)
                if ug is not None:
                    result[node, "weight"] = ug
                if g_dot is not None:
                    result[node, "bias"] = g_dot.sum(1)
                back = g * (direction[node, "weight"] * r).unsqueeze(1)
                if g_dot is not None:
                    back.addcmul_(g_dot, scale)
            elif kind == "act":
                d1, d2a = self.saved[node]
                back = None if g_dot is None else (g_dot.mul_(d1) if mine else g_dot * d1)
                if d2a is not None and x_dot is not None:
                    back = _add(back, d2a * x_dot)
            elif kind == "scale":
                back = None if g_dot is None else details * g_dot
            else:  # add, alias: the same tensor goes on
                back = g_dot
            if back is None:
                continue
            targets = [s for s in inputs if s in self.adjoint]
            exclusive = len(targets) == 1 and (kind not in ("add", "alias") or mine)
            for s in targets:
                before = bar_dot.get(s)
                if before is None:
                    bar_dot[s] = back
                    if exclusive:
                        owned.add(s)
                    else:
                        owned.discard(s)
                elif s in owned:
                    before.add_(back)
                else:
                    bar_dot[s] = before + back
                    owned.add(s)
        return result


LOSSES = ("cross_entropy", "mse")


def hessian_operator(model: nn.Module, params: Mapping[str, torch.Tensor],
                     buffers: Mapping[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                     loss: str) -> Matvec | None:
    """matvec(v (P, n)) -> (P, n): row p is the Hessian of the mean loss over (x, y) with respect
    to all parameters, at the weights params[...][p], times v[p]; or None when the model is not
    an MLP the R-operator supports (the caller then uses autograd).

    params: {name: (P, *shape)} for every parameter of `model.named_parameters()`, whose order
    is the flat layout of v; buffers: {name: tensor} (batch-norm statistics); x: (n, features);
    y: (n,) class labels for loss "cross_entropy", (n, outputs) targets for "mse" (the mean over
    all n * outputs entries). Forward values and adjoints are computed here, once; each call
    costs one tangent pass and one backward pass.
    """
    check_choice("loss", loss, LOSSES)
    names = [n for n, _ in model.named_parameters()]
    if set(names) != set(params):
        raise ValueError("params must hold every parameter of the model, by name")
    steps = plan(model)
    if steps is None or x.dim() != 2:
        return None
    try:
        return _Operator(steps, params, buffers, x, y, loss, names)
    except ValueError:  # a shape the products do not handle (e.g. 3-D activations)
        return None
