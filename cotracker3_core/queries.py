"""Query-point helpers: regular grids and grids restricted to a mask."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def grid_points(size: int, extent: tuple[int, int], device: torch.device | str | None = None) -> Tensor:
    """A size x size grid over an (H, W) image as (1, size*size, 2) x/y pixels, row-major.

    The grid keeps a margin of W/64 from the border, as the official predictors place it; points are
    clamped to the image so that images narrower than 64 px still get valid points.
    """
    h, w = extent
    if size < 1:
        raise ValueError(f"grid size must be >= 1, got {size}")
    if size == 1:
        return torch.tensor([[[w / 2, h / 2]]], device=device)
    margin = w / 64
    ys = torch.linspace(margin, h - margin, size, device=device)
    xs = torch.linspace(margin, w - margin, size, device=device)
    gy, gx = torch.meshgrid(ys.clamp(0, h - 1), xs.clamp(0, w - 1), indexing="ij")
    return torch.stack([gx, gy], dim=-1).reshape(1, -1, 2)


def mask_grid_points(mask: np.ndarray, size: int) -> np.ndarray:
    """Grid points (M, 2) x/y over the mask's image that fall inside it (nonzero), RoboTAP-style."""
    mask = np.asarray(mask)
    if mask.ndim != 2 or min(mask.shape) == 0:
        raise ValueError(f"mask must be a non-empty (H, W) array, got shape {mask.shape}")
    pts = grid_points(size, mask.shape)[0].numpy()
    rows = np.clip(np.round(pts[:, 1]).astype(int), 0, mask.shape[0] - 1)
    cols = np.clip(np.round(pts[:, 0]).astype(int), 0, mask.shape[1] - 1)
    return pts[mask[rows, cols] != 0].astype(np.float32)
