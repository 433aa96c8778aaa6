"""A tiny causal decoder-only transformer (notebook 09), written plainly: learned token and position
embeddings, `depth` blocks of causal self-attention and an MLP, each a residual branch, then a
linear read-out at every position.

Where the LayerNorm sits is the `norm` setting (Xiong et al. 2020):
  pre:  x = x + a Attn(LN(x));  x = x + a MLP(LN(x));  a final LN before the read-out (GPT-2)
  post: x = LN(x + a Attn(x));  x = LN(x + a MLP(x))                      (Vaswani et al. 2017)
  none: x = x + a Attn(x);      x = x + a MLP(x)
The branch scale a is a number (1; or small, as notebook 02's 1/sqrt(L) over the 2 depth branches) or 'rezero': one learned
scalar per branch that starts at 0 (Bachlechner et al. 2020), so every block starts as the identity.

Two skips per block, in order `[attention 0, MLP 0, attention 1, MLP 1, ...]`: with a skip off
the branch's output replaces the stream instead of being added to it (for post-LN, LN(a F(x))).

Written out in notebook 09, §1 (`causal_attention`, `pre_ln_block`, `post_ln_block`).
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from .._validation import check_choice, check_int, check_positive, check_seed
from ..errors import SkipvizValueError
from .core import ModelConfig, SkipNet, check_budget, check_depth, seeded

PLACEMENTS = ("pre", "post", "none")


def check_heads(d_model: object, heads: object) -> tuple[int, int]:
    """d_model and heads as ints, d_model a multiple of heads (each head gets d_model / heads)."""
    d_model, heads = check_int("d_model", d_model), check_int("heads", heads)
    if d_model % heads:
        raise SkipvizValueError(f"d_model must be a multiple of heads (each head gets d_model / heads "
                                f"dimensions); got d_model={d_model}, heads={heads}")
    check_budget("TransformerBlock", 12 * d_model ** 2, d_model=d_model)
    return d_model, heads


def check_branch_scale(value: object) -> float | str:
    """A positive number, or 'rezero'."""
    if isinstance(value, str):
        return check_choice("branch_scale", value, ("rezero",))
    return check_positive("branch_scale", value)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which position t reads only positions 0..t.

    forward: x (batch, T, d_model) -> (batch, T, d_model), for any T <= the model's seq_len.
    """

    def __init__(self, d_model: int, heads: int):
        super().__init__()
        d_model, heads = check_heads(d_model, heads)
        self.heads = heads
        self.qkv = nn.Linear(d_model, 3 * d_model)  # queries, keys and values in one product
        self.proj = nn.Linear(d_model, d_model)

    def extra_repr(self) -> str:
        return f"heads={self.heads}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, T, d = x.shape
        # (batch, T, 3d) -> three (batch, heads, T, d / heads)
        q, k, v = self.qkv(x).view(batch, T, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // self.heads)  # (batch, heads, T, T)
        future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)  # key after query
        weights = scores.masked_fill(future, float("-inf")).softmax(dim=-1)
        out = (weights @ v).transpose(1, 2).reshape(batch, T, d)  # heads side by side again
        return self.proj(out)


class TransformerBlock(nn.Module):
    """One layer: an attention branch, then an MLP branch (d_model -> 4 d_model -> d_model, GELU).

    forward(x, skip_attention=True, skip_mlp=True): (batch, T, d_model) -> the same shape.
    """

    def __init__(self, d_model: int, heads: int, norm: str = "pre", branch_scale: float | str = 1.0):
        super().__init__()
        d_model, heads = check_heads(d_model, heads)
        self.norm = check_choice("norm", norm, PLACEMENTS)
        self.branch_scale = check_branch_scale(branch_scale)
        self.attention = CausalSelfAttention(d_model, heads)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))
        make_norm = (lambda: nn.LayerNorm(d_model)) if self.norm != "none" else nn.Identity
        self.norm_attention, self.norm_mlp = make_norm(), make_norm()
        if self.branch_scale == "rezero":
            self.alpha_attention = nn.Parameter(torch.zeros(()))
            self.alpha_mlp = nn.Parameter(torch.zeros(()))

    def extra_repr(self) -> str:
        return f"norm={self.norm!r}, branch_scale={self.branch_scale!r}"

    def _scale(self, which: str) -> float | torch.Tensor:
        return getattr(self, f"alpha_{which}") if self.branch_scale == "rezero" else self.branch_scale

    def sublayer(self, x: torch.Tensor, which: str, skip: bool = True) -> torch.Tensor:
        """x after the 'attention' or 'mlp' branch and its skip, with the LayerNorm where `norm` puts it."""
        branch, norm, a = getattr(self, which), getattr(self, f"norm_{which}"), self._scale(which)
        if self.norm == "post":
            update = a * branch(x)
            return norm(x + update if skip else update)
        update = a * branch(norm(x))  # for 'none', norm is the identity
        return x + update if skip else update

    def forward(self, x: torch.Tensor, skip_attention: bool = True, skip_mlp: bool = True) -> torch.Tensor:
        x = self.sublayer(x, "attention", skip_attention)
        return self.sublayer(x, "mlp", skip_mlp)


@dataclasses.dataclass(frozen=True)
class TinyTransformerConfig(ModelConfig):
    """TinyTransformer's configuration; every field checked once, here."""

    model = "TinyTransformer"
    vocab_size: int
    seq_len: int
    d_model: int = 64
    depth: int = 4
    heads: int = 4
    norm: str = "pre"
    branch_scale: float | str = 1.0
    seed: int | None = 0

    def __post_init__(self) -> None:
        self._set("vocab_size", check_int("vocab_size", self.vocab_size, minimum=2))
        self._set("seq_len", check_int("seq_len", self.seq_len))
        d_model, heads = check_heads(self.d_model, self.heads)
        self._set("d_model", d_model)
        self._set("heads", heads)
        self._set("depth", check_depth("depth", self.depth))
        self._set("norm", check_choice("norm", self.norm, PLACEMENTS))
        self._set("branch_scale", check_branch_scale(self.branch_scale))
        self._set("seed", check_seed("seed", self.seed, allow_none=True))
        d = self.d_model
        self.check_budget(d * (2 * self.vocab_size + self.seq_len + 12 * self.depth * d),
                          "d_model", "depth", "vocab_size", "seq_len")

    def input_size(self) -> tuple[str, int]:
        return "seq_len", self.seq_len

    def output_size(self) -> tuple[str, int]:
        return "vocab_size", self.vocab_size

    def label_shape(self) -> tuple[int, ...]:
        return (self.seq_len,)


def check_tokens(net: TinyTransformer, inputs: tuple) -> None:
    """A forward pre-hook: x must be (batch, seq_len) token ids 0..vocab_size-1, as integers or as
    the whole-number floats skipviz's data sets hold."""
    x = inputs[0] if inputs else None
    c = net.config
    if not isinstance(x, torch.Tensor):
        return  # torch.fx tracing passes proxies; a real call with a non-tensor fails in forward
    if x.dim() != 2 or x.shape[1] != c.seq_len or len(x) == 0:
        raise SkipvizValueError(f"x must have shape (batch, {c.seq_len}) for TinyTransformer(seq_len={c.seq_len}); "
                                f"got {tuple(x.shape)}")
    if x.is_complex() or x.dtype == torch.bool or (x.is_floating_point() and not torch.equal(x, x.round())) \
            or x.min() < 0 or x.max() >= c.vocab_size:
        raise SkipvizValueError(f"x must hold token ids, whole numbers in 0..{c.vocab_size - 1} "
                                f"(vocab_size={c.vocab_size}); got dtype {x.dtype}, values "
                                f"{float(x.real.min()) if x.is_complex() else float(x.min()):g}.."
                                f"{float(x.real.max()) if x.is_complex() else float(x.max()):g}")


class TinyTransformer(SkipNet):
    """A causal decoder-only transformer: token ids (batch, seq_len) -> logits (batch, seq_len,
    vocab_size), position t predicting from tokens 0..t. `model.blocks` are its layers; `model.skips`
    has two entries per layer, `[attention 0, MLP 0, attention 1, ...]`.
    """

    Config = TinyTransformerConfig

    def __init__(self, vocab_size: int, seq_len: int, d_model: int = 64, depth: int = 4, heads: int = 4,
                 norm: str = "pre", branch_scale: float | str = 1.0, seed: int | None = 0):
        super().__init__()
        self.config = c = self.Config(vocab_size, seq_len, d_model, depth, heads, norm, branch_scale, seed)
        with seeded(c.seed):
            self.tokens = nn.Embedding(c.vocab_size, c.d_model)
            self.positions = nn.Embedding(c.seq_len, c.d_model)
            self.blocks = nn.ModuleList(TransformerBlock(c.d_model, c.heads, c.norm, c.branch_scale)
                                        for _ in range(c.depth))
            # Pre-LN leaves the stream unnormalized, so it is normalized once before the read-out.
            self.norm_out = nn.LayerNorm(c.d_model) if c.norm == "pre" else nn.Identity()
            self.head = nn.Linear(c.d_model, c.vocab_size)
            # Xavier-normal weights and zero biases, the initialization Xiong et al. analyse; the
            # embeddings keep torch's N(0, 1), so the stream starts at the scale LayerNorm outputs.
            for module in self.modules():
                if isinstance(module, nn.Linear):
                    nn.init.xavier_normal_(module.weight)
                    nn.init.zeros_(module.bias)
        self._init_skips(2 * c.depth)
        self.register_forward_pre_hook(check_tokens)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Token ids (batch, T) -> the stream's start x_0 = token + position embedding (batch, T, d_model)."""
        where = torch.arange(x.shape[1], device=x.device)
        return self.tokens(x.long()) + self.positions(where)

    def readout(self, h: torch.Tensor) -> torch.Tensor:
        """A stream state (batch, T, d_model) -> logits (batch, T, vocab_size); applied to the stream
        after an earlier layer it is the logit lens."""
        return self.head(self.norm_out(h))

    def residual_stream(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[x_0, the stream after attention 0, after MLP 0, ...]: 2 depth + 1 states (batch, T, d_model)."""
        states = [self.embed(x)]
        for i, block in enumerate(self.blocks):
            states.append(block.sublayer(states[-1], "attention", self._skips[2 * i]))
            states.append(block.sublayer(states[-1], "mlp", self._skips[2 * i + 1]))
        return states

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        for i, block in enumerate(self.blocks):
            h = block(h, self._skips[2 * i], self._skips[2 * i + 1])
        return self.readout(h)
