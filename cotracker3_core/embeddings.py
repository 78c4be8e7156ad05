"""Fixed (non-learned) encodings: displacement Fourier features and the sin-cos time embedding."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def fourier_encode(x: Tensor, degrees: int) -> Tensor:
    """(..., D) -> (..., D + 2 * D * degrees): x, then sin and cos of x * 2^k for k < degrees.

    Sines come first, octave-major within each half ([x_0 2^0 .. x_D 2^0, x_0 2^1, ...]).
    """
    scales = 2.0 ** torch.arange(degrees, dtype=x.dtype, device=x.device)
    xb = (x[..., None, :] * scales[:, None]).flatten(-2)
    # cos(a) = sin(a + pi/2): one sin call over both halves, as the official model computes it.
    return torch.cat([x, torch.sin(torch.cat([xb, xb + 0.5 * math.pi], dim=-1))], dim=-1)


def displacement_encoding(coords: Tensor, scale: Tensor, degrees: int) -> Tensor:
    """Fourier code of each point's displacement to its neighbours in time.

    Args:
        coords: (B, S, N, 2) track estimates in feature pixels.
        scale: (2,) normaliser (feature-map width and height at model resolution).
        degrees: octaves.
    Returns:
        (B, S, N, 4 + 8 * degrees): [to-next (dx, dy), from-previous (dx, dy)] encoded; zero displacement
        at the clip ends.
    """
    to_next = F.pad(coords[:, :-1] - coords[:, 1:], (0, 0, 0, 0, 0, 1)) / scale
    from_prev = F.pad(coords[:, 1:] - coords[:, :-1], (0, 0, 0, 0, 1, 0)) / scale
    return fourier_encode(torch.cat([to_next, from_prev], dim=-1), degrees)


def sincos_time_embedding(length: int, dim: int) -> Tensor:
    """(1, length, dim) 1-D sin-cos embedding of the positions 0..length-1 (computed in float64)."""
    if dim % 2:
        raise ValueError(f"time embedding dim must be even, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))
    pos = torch.linspace(0, length - 1, length, dtype=torch.float32).to(torch.float64)
    angles = pos[:, None] * omega[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)[None].float()


def resample_time_embedding(embedding: Tensor, length: int) -> Tensor:
    """Linearly resample a (1, W, D) embedding to (1, length, D) when a clip differs from the window."""
    if embedding.shape[1] == length:
        return embedding
    dtype = embedding.dtype
    resized = F.interpolate(embedding.float().transpose(1, 2), size=length, mode="linear")
    return resized.transpose(1, 2).to(dtype)
