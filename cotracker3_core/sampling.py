"""Bilinear sampling of feature maps at pixel coordinates.

Coordinates are in pixels of the sampled map with pixel centres at integers (x right, y down); points
outside the map take the value of the nearest border pixel, as the official model does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def bilinear_sample(features: Tensor, xy: Tensor) -> Tensor:
    """Sample (B, C, H, W) features at (B, P, Q, 2) pixel coordinates -> (B, C, P, Q)."""
    h, w = features.shape[-2:]
    scale = xy.new_tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)])
    grid = xy * scale - 1.0
    return F.grid_sample(features, grid.to(features.dtype), align_corners=True, padding_mode="border")


def neighbourhood_offsets(radius: int, device: torch.device | None = None) -> Tensor:
    """The (2r+1)^2 integer offsets of a square neighbourhood as (K, 2) (dx, dy).

    dx varies slowest: the official checkpoints' correlation MLP expects this flattening order.
    """
    d = torch.arange(-radius, radius + 1, dtype=torch.float32, device=device)
    dx, dy = torch.meshgrid(d, d, indexing="ij")
    return torch.stack([dx, dy], dim=-1).reshape(-1, 2)
