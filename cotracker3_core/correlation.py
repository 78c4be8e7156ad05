"""4D correlation between query supports and track neighbourhoods, embedded by an MLP.

For each track and frame, the features in a (2r+1)^2 neighbourhood around the current estimate are
correlated with the features in a (2r+1)^2 support around the query point (sampled once, on the query
frame). The (2r+1)^4 dot products of each pyramid level are flattened and embedded by a shared MLP.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import Mlp
from .sampling import bilinear_sample, neighbourhood_offsets


def build_pyramid(features: Tensor, levels: int) -> list[Tensor]:
    """(..., C, H, W) L2-normalised features -> list of `levels` maps, each 2x average-pooled."""
    pyramid = [features]
    lead = features.shape[:-3]
    for _ in range(levels - 1):
        f = pyramid[-1]
        pooled = F.avg_pool2d(f.reshape(-1, *f.shape[-3:]), 2, stride=2)
        pyramid.append(pooled.reshape(*lead, *pooled.shape[-3:]))
    return pyramid


def sample_neighbourhoods(features: Tensor, xy: Tensor, radius: int) -> Tensor:
    """Features around points.

    Args:
        features: (M, C, H, W) one map per row of `xy`.
        xy: (M, N, 2) centres in pixels of that map.
    Returns:
        (M, N, K, C) with K = (2r+1)^2 in `neighbourhood_offsets` order.
    """
    offsets = neighbourhood_offsets(radius, xy.device).to(xy.dtype)  # (K, 2)
    points = xy[:, :, None, :] + offsets  # (M, N, K, 2)
    sampled = bilinear_sample(features, points)  # (M, C, N, K)
    return sampled.permute(0, 2, 3, 1)


class CorrelationEncoder(nn.Module):
    """Embeds the multi-level 4D correlation of each (frame, track) pair.

    Args:
        levels: pyramid levels.
        radius: neighbourhood and support radius r.
        hidden_dim / embed_dim: MLP widths ((2r+1)^4 -> hidden -> embed).
    """

    def __init__(self, levels: int, radius: int, hidden_dim: int, embed_dim: int) -> None:
        super().__init__()
        self.levels = levels
        self.radius = radius
        support = (2 * radius + 1) ** 2
        self.mlp = Mlp(support * support, hidden_dim, embed_dim)

    def sample_support(self, pyramid: list[Tensor], xy: Tensor) -> list[Tensor]:
        """Query supports from the query frame's pyramid.

        Args:
            pyramid: per level (B, C, H_l, W_l) features of each query's own frame (one row per batch
                element; callers gather per-query frames into B*N rows as needed).
            xy: (B, N, 2) query positions in level-0 feature pixels.
        Returns:
            per level (B, N, K, C).
        """
        return [
            sample_neighbourhoods(level, xy / 2**i, self.radius) for i, level in enumerate(pyramid)
        ]

    def forward(self, pyramid: list[Tensor], support: list[Tensor], xy: Tensor) -> Tensor:
        """Correlation embeddings for every frame of a window.

        Args:
            pyramid: per level (B, S, C, H_l, W_l) window features.
            support: per level (B, N, K, C) query supports (zeros for queries not yet seen).
            xy: (B, S, N, 2) current track estimates in level-0 feature pixels.
        Returns:
            (B, S, N, levels * embed_dim).
        """
        b, s, n, _ = xy.shape
        embeddings = []
        for i, level in enumerate(pyramid):
            neigh = sample_neighbourhoods(level.flatten(0, 1), xy.reshape(b * s, n, 2) / 2**i, self.radius)
            neigh = neigh.view(b, s, n, -1, neigh.shape[-1])  # (B, S, N, K, C)
            # (B, S, N, K, C) x (B, 1, N, C, K) -> (B, S, N, K, K): neighbourhood-major, support-minor.
            volume = neigh @ support[i].transpose(-1, -2)[:, None]
            embeddings.append(self.mlp(volume.reshape(b, s, n, -1)))
        return torch.cat(embeddings, dim=-1)

