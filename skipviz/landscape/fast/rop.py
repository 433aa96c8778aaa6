"""Exact Hessian-vector products of an MLP by Pearlmutter's R-operator, written out layer by layer
(notebook 04 derives them and checks them against `jvp(grad(...))`).

H v is the directional derivative of the gradient, H v = d/de grad L(w + e v) at e = 0.
Pearlmutter (1994) applies R{.} = d/de(.) to every line of the forward and the backward pass.
For a Linear layer z = x W^T + b, with adjoints z_bar = dL/dz, tangents x_dot = R{x} and the
direction's (V_W, V_b) for this layer:

    forward      z_dot     = x V_W^T + x_dot W^T + V_b
    backward     R{x_bar}  = z_bar_dot W + z_bar V_W
                 R{W_bar}  = z_bar_dot^T x + z_bar^T x_dot       (H v's entries for W)
                 R{b_bar}  = z_bar_dot summed over the batch     (H v's entries for b)

An activation a = f(z) gives a_dot = f'(z) z_dot and R{z_bar} = f'(z) a_bar_dot + f''(z) z_dot a_bar;
an eval-mode batch norm y = x_hat gamma + beta, x_hat = (x - mean) r, is handled the same way,
and one that follows a Linear layer is folded into it (see `_Operator`: one pass over the
activations less per layer, which is most of the speed). Values and adjoints do not depend on v,
so they are computed once; each product is then one tangent pass forward and one backward, with
no autograd graph to walk: on notebook 04's MLPs faster than autograd's second
backward pass (`make bench`). The loss's own first and second derivatives with respect to the
outputs come from autograd on `training.loss_for_targets`, the one definition of the loss.

One file of about 430 lines, because the operator's layout, forward, backward and tangent
passes share one set of slots and are checked together. It runs the ops of `program.compile_model`, the engine's one interpreter of a traced model.
Supported (checked on the traced graph, `graph.prove`, then per op): Linear, eval-mode
BatchNorm1d, ReLU / Tanh / Sigmoid, eval-mode Dropout, additions, a number added or multiplied;
inputs and outputs (batch, features). Anything else: `hessian_operator` returns None and the
caller uses autograd. Every weight has a leading points dimension P: P weight vectors (the grid
points of a curvature map) are multiplied through at once.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping

import torch
import torch.fx as fx
from torch import nn

from ..._validation import check_model, show
from ...errors import SkipvizValueError
from ...training import check_input_fits, loss_for_targets
from . import kernels
from .graph import per_signature
from .program import Kind, Op, Program, compile_model
from .sparse import SparseParts, csr

__all__ = ["hessian_operator", "plan", "refusal"]

Matvec = Callable[[torch.Tensor], torch.Tensor]

# The ops the R-operator writes out; a program with any other is left to autograd.
SUPPORTED = (Kind.INPUT, Kind.OUTPUT, Kind.LINEAR, Kind.NORM, Kind.ACT, Kind.ADD, Kind.SCALE, Kind.ALIAS)
_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _reason(program: Program | str) -> str | None:
    """Why the R-operator cannot run `program` (or the proof's reason, given instead), or None."""
    if not isinstance(program, Program):
        return program
    op = next((op for op in program.ops if op.kind not in SUPPORTED or not op.plain), None)
    if op is not None:
        return (f"{op.node.op} {op.node.target}: not an operation the R-operator writes out (Linear, "
                "eval-mode BatchNorm1d, ReLU/Tanh/Sigmoid, Dropout, additions, scalings)")
    if sum(op.kind is Kind.INPUT for op in program.ops) != 1:
        return "the model must have exactly one input"
    return None


def plan(model: nn.Module) -> list[Op] | None:
    """The model's program (`program.compile_model`) when the R-operator can run every op of
    it, else None; a pure function of the model's `graph.signature`, compiled once for each."""
    check_model("model", model)

    def make(m: nn.Module) -> list[Op] | None:
        program = compile_model(m)
        return None if _reason(program) is not None else list(program.ops)

    return per_signature(_PLANS, model, make)


def refusal(model: nn.Module) -> str | None:
    """Why the R-operator does not take `model` (in its current mode), or None."""
    check_model("model", model)
    return _reason(compile_model(model))


def _activation(name: str, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(f(z), f'(z), f''(z) or None where it is zero almost everywhere)."""
    if name == "relu":
        return torch.relu(z), (z > 0).to(z.dtype), None
    a = torch.tanh(z) if name == "tanh" else torch.sigmoid(z)
    d1 = 1 - a * a if name == "tanh" else a * (1 - a)
    return a, d1, (-2 * a * d1 if name == "tanh" else d1 * (1 - 2 * a))


def _add(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    """a + b, where None stands for zero."""
    if a is None:
        return b
    return a if b is None else a + b


class _Operator:
    """H v for P weight vectors at once. The products run in the folded parameters phi (each
    Linear's W* = s W and b* = s (b - mean) + beta with s = gamma / sqrt(var + eps) where a batch
    norm is folded into it, the other layers' own parameters); J maps the directions of the
    model's parameters theta to phi's, and by the chain rule H v = J^T H_phi J v + S v, where
    S = sum_k dL/dphi_k d^2 phi_k / dtheta^2 is there because phi multiplies gamma by W and b.
    Values, adjoints, J and S are computed when it is made; each call is one tangent pass
    forward, one backward and two sparse products (J, and [J^T S] on the stacked [H_phi u; v])."""

    def __init__(self, ops: list[Op], params: Mapping[str, torch.Tensor],
                 buffers: Mapping[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor):
        self.ops, self.params, self.buffers = ops, params, buffers
        first = params[next(iter(params))]
        self.points, self.dtype = len(first), first.dtype
        self.readers = {st.node: sum(st.node in other.inputs for other in ops) for st in ops}
        jacobian = self._layout()
        self.value: dict[fx.Node, torch.Tensor] = {}
        self.saved: dict[fx.Node, tuple] = {}
        for op in ops:
            if op.kind is Kind.INPUT:
                self.value[op.node] = x.unsqueeze(0).expand(self.points, -1, -1)
            elif op.kind is Kind.OUTPUT:
                self.output = op.inputs[0]
            else:
                self.value[op.node] = self._forward(op)
        out = self.value[self.output]
        if out.dim() != 3:
            raise SkipvizValueError("the R-operator products need outputs (batch, outputs)")
        # The loss's derivatives with respect to the outputs, by autograd on its one definition:
        # the gradient with its (small) graph once, each product one backward pass through it.
        # The points' losses are independent, so the gradient of their sum holds each one's own.
        leaf = out.detach().requires_grad_(True)
        with torch.enable_grad():
            out_grad = torch.autograd.grad(loss_for_targets(leaf, y, points=True).sum(), leaf, create_graph=True)[0]
        self.output_hessian = lambda t: torch.autograd.grad(out_grad, leaf, t, retain_graph=True)[0]
        self.adjoint = self._backward(out_grad.detach())
        P, n_phi, n_theta = self.points, self.n_phi, self.n_theta
        self.jacobian = csr([jacobian.entries((n_phi, n_theta))], (P * n_phi, P * n_theta), self.dtype)
        back = [jacobian.entries((n_theta, n_phi), transpose=True)]
        second = self._second_derivatives()
        if second.rows:
            back.append(second.entries((n_theta, n_theta), col_offset=P * n_phi))
        self.back = csr(back, (P * n_theta, P * (n_phi + n_theta)), self.dtype)

    def _layout(self) -> SparseParts:
        """Lays out phi, one slot per (op, 'weight' / 'bias') with its values (P, ...), and
        returns the entries of J = dphi/dtheta (theta flat in the order of `params`)."""
        P, params, buffers = self.points, self.params, self.buffers
        sizes = {name: t[0].numel() for name, t in params.items()}
        offsets = dict(zip(sizes, torch.tensor([0, *sizes.values()]).cumsum(0).tolist()))
        self.n_theta = sum(sizes.values())
        self.phi: dict[tuple[fx.Node, str], torch.Tensor] = {}
        self.folds: dict[fx.Node, tuple] = {}  # folds with a gamma: what S needs
        jacobian = SparseParts(P)
        end = 0

        def slot(node: fx.Node, role: str, value: torch.Tensor) -> torch.Tensor:
            nonlocal end
            self.phi[node, role] = value
            start, end = end, end + value[0].numel()
            return torch.arange(start, end).view(value.shape[1:])

        def theta(name: str) -> torch.Tensor:
            return torch.arange(offsets[name], offsets[name] + sizes[name]).view(params[name].shape[1:])

        def identity(node: fx.Node, role: str, name: str, default: torch.Tensor) -> None:
            if name in params:
                jacobian.add(slot(node, role, params[name]), theta(name), torch.ones(()))
            else:  # e.g. a Linear without bias: a slot fixed at zero, with no column in J
                slot(node, role, default.expand(P, *default.shape))

        for op in self.ops:
            node, weight, bias = op.node, op.layer + ".weight", op.layer + ".bias"
            if op.kind is Kind.NORM:
                ones = torch.ones_like(buffers[op.layer + ".running_var"])
                identity(node, "weight", weight, ones)
                identity(node, "bias", bias, torch.zeros_like(ones))
            elif op.kind is Kind.LINEAR and not op.norm:
                w = params[weight]
                identity(node, "weight", weight, w[0])
                identity(node, "bias", bias, torch.zeros(w.shape[1], dtype=self.dtype))
            elif op.kind is Kind.LINEAR:
                # W* = s W, b* = s c + beta with s = gamma r, r = 1 / sqrt(var + eps), c = b - mean:
                # J's entries are the partial derivatives of W* and b*.
                w = params[weight]
                gamma, beta = params.get(op.norm + ".weight"), params.get(op.norm + ".bias")
                r = torch.rsqrt(buffers[op.norm + ".running_var"] + op.eps).expand(P, -1)
                c = -buffers[op.norm + ".running_mean"].expand(P, -1)
                if bias in params:
                    c = params[bias] + c
                s = r if gamma is None else gamma * r
                iw = slot(node, "weight", w * s.unsqueeze(2))
                ib = slot(node, "bias", s * c + (0 if beta is None else beta))
                jacobian.add(iw, theta(weight), s.unsqueeze(2).expand_as(w))  # dW*/dW
                if bias in params:
                    jacobian.add(ib, theta(bias), s)  # db*/db
                if gamma is not None:
                    tg = theta(op.norm + ".weight")
                    jacobian.add(iw, tg.unsqueeze(1).expand_as(iw), w * r.unsqueeze(2))  # dW*/dgamma
                    jacobian.add(ib, tg, r * c)  # db*/dgamma
                    self.folds[node] = (op.inputs[0], r, theta(weight), tg,
                                        theta(bias) if bias in params else None)
                if beta is not None:
                    jacobian.add(ib, theta(op.norm + ".bias"), torch.ones(()))  # db*/dbeta
        self.n_phi = end
        self.slots = list(self.phi)
        self.slot_sizes = [self.phi[k][0].numel() for k in self.slots]
        return jacobian

    def _second_derivatives(self) -> SparseParts:
        """The entries of S. Only folds contribute: W* and b* are bilinear in (gamma, W) and
        (gamma, b) with mixed derivatives r, so S pairs W_ij with gamma_i (entry
        (dL/dW*)_ij r_i) and b_i with gamma_i (entry (dL/db*)_i r_i), both ways round."""
        second = SparseParts(self.points)
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

    def _forward(self, op: Op) -> torch.Tensor:
        """One op's value (P, n, C) at the weights, computed unfolded as the model computes it
        (a ReLU input within float32 rounding of zero must fall on the same side as in the
        model); saves what its products need."""
        x = self.value[op.inputs[0]]
        if x.dim() != 3:
            raise SkipvizValueError("the R-operator products need activations (batch, features)")
        P, n = x.shape[:2]
        if op.kind in (Kind.LINEAR, Kind.NORM):
            name = op.norm or op.layer
            if op.kind is Kind.LINEAR:
                x = kernels.linear(P, x.reshape(P * n, -1), self.params[op.layer + ".weight"],
                                   self.params.get(op.layer + ".bias")).view(P, n, -1)
                if not op.norm:
                    return x
            mean, var = self.buffers[name + ".running_mean"], self.buffers[name + ".running_var"]
            gamma, beta = self.params.get(name + ".weight"), self.params.get(name + ".bias")
            if op.kind is Kind.NORM:
                r = torch.rsqrt(var + op.eps)
                self.saved[op.node] = ((x - mean) * r, (self.phi[op.node, "weight"] * r).unsqueeze(1), r)
            return kernels.batch_norm(P, x.reshape(P * n, -1), mean, var, gamma, beta, op.eps).view(P, n, -1)
        if op.kind is Kind.ACT:
            a, d1, d2 = _activation(op.activation, x)
            self.saved[op.node] = (d1, d2)
            return a
        if op.kind is Kind.ADD:
            return x + (op.number if op.number is not None else self.value[op.inputs[1]])
        if op.kind is Kind.SCALE:
            return op.number * x
        return x  # ALIAS

    def _backward(self, out_adjoint: torch.Tensor) -> dict[fx.Node, torch.Tensor]:
        """dL/d(value) of every node the loss depends on."""
        adjoint = {self.output: out_adjoint}
        for op in reversed(self.ops):
            g = adjoint.get(op.node)
            if g is None or op.kind in (Kind.INPUT, Kind.OUTPUT):
                continue
            if op.kind is Kind.LINEAR:
                back = torch.bmm(g, self.phi[op.node, "weight"])
            elif op.kind is Kind.NORM:
                back = g * self.saved[op.node][1]
            elif op.kind is Kind.ACT:
                d1, d2 = self.saved[op.node]
                back = g * d1
                if d2 is not None:  # f''(z) a_bar, for the products
                    self.saved[op.node] = (d1, d2 * g)
            elif op.kind is Kind.SCALE:
                back = op.number * g
            else:  # ADD, ALIAS
                back = g
            for source in op.inputs:
                if source.op != "placeholder":
                    adjoint[source] = _add(adjoint.get(source), back)
        return adjoint

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        """v (P, n) flat like the parameters -> H v (P, n), each row at its own weights."""
        P = self.points
        v = v.to(self.dtype)
        u = (self.jacobian @ v.reshape(-1, 1)).view(P, self.n_phi)
        direction = {k: t.view(P, *self.phi[k].shape[1:]) for k, t in zip(self.slots, u.split(self.slot_sizes, 1))}
        tangent = self._tangents(direction)
        out_dot = tangent.get(self.output)
        result = self._tangent_backward(direction, tangent, self.output_hessian(
            torch.zeros_like(self.value[self.output]) if out_dot is None else out_dot))
        hu = torch.cat([result[k].reshape(P, -1) if k in result else torch.zeros(P, size, dtype=self.dtype)
                        for k, size in zip(self.slots, self.slot_sizes)], dim=1)
        return (self.back @ torch.cat([hu.reshape(-1), v.reshape(-1)]).unsqueeze(1)).view(P, self.n_theta)

    def _tangents(self, direction: Mapping[tuple, torch.Tensor]) -> dict[fx.Node, torch.Tensor | None]:
        """R{value} of every node along the direction u = J v (None where it is zero)."""
        tangent: dict[fx.Node, torch.Tensor | None] = {}
        fresh: set[fx.Node] = set()  # tangents made by their own op (new tensors)
        for op in self.ops:
            node = op.node
            if op.kind in (Kind.INPUT, Kind.OUTPUT):
                continue
            source = tangent.get(op.inputs[0])
            if op.kind is Kind.LINEAR:
                t = torch.baddbmm(direction[node, "bias"].unsqueeze(1), self.value[op.inputs[0]],
                                  direction[node, "weight"].transpose(1, 2))
                if source is not None:
                    t.baddbmm_(source, self.phi[node, "weight"].transpose(1, 2))
            elif op.kind is Kind.NORM:
                normalized, scale, _ = self.saved[node]
                t = torch.addcmul(direction[node, "bias"].unsqueeze(1), normalized, direction[node, "weight"].unsqueeze(1))
                if source is not None:
                    t.addcmul_(source, scale)
            elif op.kind is Kind.ACT:
                d1, d2 = self.saved[node]
                if source is None:
                    t = None
                elif d2 is None and op.inputs[0] in fresh and self.readers[op.inputs[0]] == 1:
                    t = source.mul_(d1)  # nothing else reads the source's tangent (f'' = 0)
                else:
                    t = source * d1
            elif op.kind is Kind.ADD:
                t = _add(source, None if op.number is not None else tangent.get(op.inputs[1]))
            elif op.kind is Kind.SCALE:
                t = None if source is None else op.number * source
            else:
                t = source
            tangent[node] = t
            if t is not None and op.kind in (Kind.LINEAR, Kind.NORM, Kind.ACT, Kind.SCALE):
                fresh.add(node)
        return tangent

    def _tangent_backward(self, direction: Mapping[tuple, torch.Tensor],
                          tangent: Mapping[fx.Node, torch.Tensor | None], out_bar_dot: torch.Tensor
                          ) -> dict[tuple, torch.Tensor]:
        """R{dL/dphi} for every slot of phi: H_phi u."""
        bar_dot: dict[fx.Node, torch.Tensor] = {self.output: out_bar_dot}
        owned = {self.output}  # nodes whose bar_dot tensor no other node holds
        result: dict[tuple, torch.Tensor] = {}
        for op in reversed(self.ops):
            node = op.node
            g_dot, g = bar_dot.pop(node, None), self.adjoint.get(node)
            if op.kind in (Kind.INPUT, Kind.OUTPUT) or g is None:
                continue
            source = op.inputs[0]
            x, x_dot = self.value[source], tangent.get(source)
            if op.kind is Kind.LINEAR:
                # R{W_bar} = g_dot^T x + g^T x_dot; R{b_bar} = sum g_dot; back = g_dot W + g V_W
                uw = None if g_dot is None else torch.bmm(g_dot.transpose(1, 2), x)
                if x_dot is not None:
                    uw = torch.bmm(g.transpose(1, 2), x_dot) if uw is None else uw.baddbmm_(g.transpose(1, 2), x_dot)
                if uw is not None:
                    result[node, "weight"] = uw
                if g_dot is not None:
                    result[node, "bias"] = g_dot.sum(1)
                if source not in self.adjoint:  # the first layer: nothing to pass back
                    continue
                back = torch.bmm(g, direction[node, "weight"])
                if g_dot is not None:
                    back.baddbmm_(g_dot, self.phi[node, "weight"])
            elif op.kind is Kind.NORM:
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
            elif op.kind is Kind.ACT:
                d1, d2a = self.saved[node]
                back = None if g_dot is None else (g_dot.mul_(d1) if node in owned else g_dot * d1)
                if d2a is not None and x_dot is not None:
                    back = _add(back, d2a * x_dot)
            elif op.kind is Kind.SCALE:
                back = None if g_dot is None else op.number * g_dot
            else:  # ADD, ALIAS: the same tensor goes on
                back = g_dot
            if back is None:
                continue
            targets = [t for t in op.inputs if t in self.adjoint]
            # A target may overwrite its tensor later only if no other node holds it.
            exclusive = len(targets) == 1 and (op.kind not in (Kind.ADD, Kind.ALIAS) or node in owned)
            for t in targets:
                before = bar_dot.get(t)
                if before is None:
                    bar_dot[t] = back
                    owned.add(t) if exclusive else owned.discard(t)
                elif t in owned:
                    before.add_(back)
                else:
                    bar_dot[t] = before + back
                    owned.add(t)
        return result


def hessian_operator(model: nn.Module, params: Mapping[str, torch.Tensor],
                     buffers: Mapping[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor
                     ) -> Matvec | None:
    """matvec(v (P, n)) -> (P, n): row p is the Hessian of the mean loss over (x, y)
    (`training.loss_for_targets`) with respect to all parameters, at the weights params[...][p],
    times v[p]; None when the model is not an MLP the R-operator supports.

    params: {name: (P, *shape)} for every parameter, in `model.named_parameters()` order (the
    flat layout of v); buffers: {name: tensor}; x: (n, features); y: (n,) class labels or
    (n, outputs) float targets.

    Notebook 04, §5 writes out the equations for a Linear layer and checks this against jvp(grad).
    """
    check_input_fits(model, x, y)
    if not isinstance(params, Mapping) or not all(isinstance(v, torch.Tensor) for v in params.values()):
        raise SkipvizValueError(f"params must be a dict {{name: (P, *shape) tensor}}; got {show(params)}")
    if not isinstance(buffers, Mapping):
        raise SkipvizValueError(f"buffers must be a dict {{name: tensor}}; got {show(buffers)}")
    names = [n for n, _ in model.named_parameters()]
    if list(params) != names:
        raise SkipvizValueError("params must hold every parameter of the model, by name, in "
                         "model.named_parameters() order")
    ops = plan(model)
    if ops is None or x.dim() != 2:
        return None
    try:
        return _Operator(ops, params, buffers, x, y)
    except ValueError:  # a shape the products do not handle (e.g. 3-D activations)
        return None
