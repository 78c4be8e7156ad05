"""Reusable transformer blocks: MLP, multi-head attention, self- and cross-attention blocks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Mlp(nn.Module):
    """Two linear layers with an activation between them.

    Args:
        in_features: input width.
        hidden_features: width of the hidden layer.
        out_features: output width (defaults to in_features).
        approximate_gelu: use the tanh approximation of GELU (the transformer blocks do; the
            correlation MLP uses the exact one).
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        out_features: int | None = None,
        approximate_gelu: bool = False,
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU(approximate="tanh" if approximate_gelu else "none")
        self.fc2 = nn.Linear(hidden_features, out_features or in_features)

    def forward(self, x: Tensor) -> Tensor:
        """(..., in_features) -> (..., out_features)."""
        lead = x.shape[:-1]
        # One 2-D product: with more than three dimensions, autocast's bf16 path on CPU otherwise runs a
        # batched product against a copy of the weight per leading index.
        x = x.reshape(-1, x.shape[-1])
        hidden = _fused_linear_gelu(x, self.fc1, self.act.approximate)
        if hidden is None:
            hidden = self.act(self.fc1(x))
        x = self.fc2(hidden)
        return x.view(*lead, x.shape[-1])


def _fused_linear_gelu(x: Tensor, linear: nn.Linear, approximate: str) -> Tensor | None:
    """GELU(linear(x)) in one oneDNN call under CPU bf16 autocast, where PyTorch's separate GELU kernel costs
    half as much as the product itself; None elsewhere (and in training, and if the op is unavailable)."""
    if (
        x.device.type != "cpu"
        or torch.is_grad_enabled()
        or not torch.is_autocast_enabled("cpu")
        or torch.get_autocast_dtype("cpu") != torch.bfloat16
        or not _FUSED["available"]
    ):
        return None
    dtype = torch.bfloat16
    try:
        return torch.ops.mkldnn._linear_pointwise(
            x.to(dtype), linear.weight.to(dtype), linear.bias.to(dtype), "gelu", [], approximate
        )
    except (RuntimeError, AttributeError):  # a build without the oneDNN op: fall back for good
        _FUSED["available"] = False
        return None


_FUSED = {"available": True}


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention with a separate query projection and a fused key/value projection.

    Args:
        dim: token width (queries and output).
        num_heads: number of heads; each head has dim // num_heads channels.
        context_dim: width of the key/value tokens (defaults to dim).
    """

    def __init__(self, dim: int, num_heads: int, context_dim: int | None = None) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(context_dim or dim, 2 * dim)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: Tensor, context: Tensor | None = None, context_mask: Tensor | None = None) -> Tensor:
        """x: (B, Nq, C), context: (B, Nk, Cc) or None for self-attention -> (B, Nq, C); context_mask: (B, Nk)
        bool, the context tokens attended to (None: all; each row needs one)."""
        context = x if context is None else context
        b, nq, c = x.shape
        h = self.num_heads
        q = self.to_q(x).view(b, nq, h, c // h).transpose(1, 2)  # (B, h, Nq, c/h)
        k, v = self.to_kv(context).view(b, context.shape[1], 2, h, c // h).permute(2, 0, 3, 1, 4)
        mask = None if context_mask is None else context_mask[:, None, None, :]  # (B, 1, 1, Nk)
        out = attention(q, k, v, mask)  # (B, h, Nq, c/h)
        return self.to_out(out.transpose(1, 2).reshape(b, nq, c))


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
    """Softmax attention of (..., Nq, D) queries over (..., Nk, D) keys and values; `mask` (broadcast to
    (..., Nq, Nk), bool): the keys each query attends to (None: all). A masked key's weight is exactly zero,
    so its value (which must be finite) adds nothing.

    On CPU the plain product is used: for this model's short sequences (16 frames, 64 virtual tracks)
    PyTorch's fused CPU kernel is 2-3x slower (measured with torch 2.13, fp32 and bf16). Elsewhere the fused
    kernel, which never materialises the (Nq, Nk) scores.
    """
    if q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(dim=-1) @ v


class SelfAttentionBlock(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x)); norms without affine."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = MultiHeadAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), approximate_gelu=True)

    def forward(self, x: Tensor, last: int = 0) -> Tensor:
        """(B, L, C) -> (B, L, C); with `last` > 0 only the last `last` tokens' outputs, (B, last, C) (they
        still attend to every token)."""
        if last:
            normed = self.norm1(x)
            x = x[:, -last:] + self.attn(normed[:, -last:], normed)
            return x + self.mlp(self.norm2(x))
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class CrossAttentionBlock(nn.Module):
    """Pre-norm block in which tokens attend to a context; the context norm has learned affine terms."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.norm_context = nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), approximate_gelu=True)

    def forward(self, x: Tensor, context: Tensor, context_mask: Tensor | None = None) -> Tensor:
        """x: (B, Nq, C) tokens, context: (B, Nk, C) -> (B, Nq, C); context_mask: (B, Nk) bool, the context
        tokens attended to (None: all)."""
        x = x + self.attn(self.norm1(x), self.norm_context(context), context_mask)
        return x + self.mlp(self.norm2(x))

