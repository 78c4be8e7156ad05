"""4D correlation between query supports and track neighbourhoods, embedded by an MLP.

For each track and frame, the features in a (2r+1)^2 neighbourhood around the current estimate are
correlated with the features in a (2r+1)^2 support around the query point (sampled once, on the query
frame). The (2r+1)^4 dot products of each pyramid level are flattened and embedded by a shared MLP.

How the lookup is computed: the neighbourhood's points sit at integer offsets from a fractional centre, so
all of them share the same four bilinear weights. Instead of interpolating (2r+1)^2 feature vectors per
point, the lookup gathers the (2r+2)^2 integer pixels around the centre, correlates them with the support
in one batched matrix product, and interpolates the correlations (index clamping at the border equals
`grid_sample`'s border padding with aligned corners). All levels go through one gather and one product,
from a window layout (`WindowFeatures`) built once per window rather than once per iteration.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import Mlp
from .sampling import bilinear_sample, neighbourhood_offsets

#: Scratch elements per chunk of tracks in a lookup (gathered pixels, their correlations, the interpolated
#: volume): bounds its memory whatever the number of tracks. Larger chunks fall out of the cache and, past
#: glibc's 32 MB mmap threshold, pay fresh page faults on every allocation.
LOOKUP_CHUNK_ELEMENTS = 1 << 22


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


class WindowFeatures(NamedTuple):
    """A window's feature pyramid laid out for neighbourhood lookups.

    rows: (B, S, R, C), every pixel of every level as a row of C channels, R = sum over levels of H_l * W_l;
    shapes: (H_l, W_l) per level; offsets: first row of each level.
    """

    rows: Tensor
    shapes: tuple[tuple[int, int], ...]
    offsets: tuple[int, ...]

    @classmethod
    def from_pyramid(cls, pyramid: list[Tensor], dtype: torch.dtype | None = None) -> WindowFeatures:
        """Per level (B, S, C, H_l, W_l) -> the row layout (one copy), optionally cast to `dtype`."""
        shapes = tuple((int(level.shape[-2]), int(level.shape[-1])) for level in pyramid)
        offsets, total = [], 0
        for h, w in shapes:
            offsets.append(total)
            total += h * w
        b, s, c = pyramid[0].shape[:3]
        rows = torch.empty(b, s, total, c, dtype=dtype or pyramid[0].dtype, device=pyramid[0].device)
        for (h, w), offset, level in zip(shapes, offsets, pyramid, strict=True):
            rows[:, :, offset : offset + h * w].view(b, s, h, w, c).copy_(level.permute(0, 1, 3, 4, 2))
        return cls(rows, shapes, tuple(offsets))

    @classmethod
    def cat(cls, parts: list[WindowFeatures]) -> WindowFeatures:
        """Concatenate along the frame axis (a part may appear several times)."""
        return cls(torch.cat([p.rows for p in parts], dim=1), parts[0].shapes, parts[0].offsets)

    def frames(self, first: int, last: int) -> WindowFeatures:
        """Frames [first, last) (a view)."""
        return self._replace(rows=self.rows[:, first:last])

    def levels(self) -> list[Tensor]:
        """Per level (B, S, C, H_l, W_l) views of the rows."""
        return [
            self.rows[:, :, offset : offset + h * w].unflatten(2, (h, w)).permute(0, 1, 4, 2, 3)
            for (h, w), offset in zip(self.shapes, self.offsets, strict=True)
        ]

    def nbytes(self) -> int:
        return self.rows.numel() * self.rows.element_size()


def neighbourhood_correlation(features: WindowFeatures, support: Tensor, xy: Tensor, radius: int) -> Tensor:
    """Correlation of each track's neighbourhoods with its supports, every level at once.

    Args:
        features: the window's features, S frames.
        support: (B, N, L, C, K) query supports, K = (2r+1)^2, channels first (the product's layout).
        xy: (B, S, N, 2) track estimates in level-0 feature pixels.
        radius: r.
    Returns:
        (B, S, N, L, K * K), neighbourhood-major and support-minor, in the dtype of `features.rows`.
    """
    rows, shapes, offsets = features
    b, s, r_total, c = rows.shape
    n, levels, _, k = support.shape[1:]
    p = 2 * radius + 2  # integer pixels spanned by a neighbourhood at a fractional centre
    device = xy.device
    scale = torch.tensor([0.5**i for i in range(levels)], dtype=xy.dtype, device=device)
    pts = xy[..., None, :] * scale[:, None]  # (B, S, N, L, 2) in each level's pixels
    corner = pts.floor()
    frac = (pts - corner).to(rows.dtype)
    corner = corner.long() - radius
    widths = torch.tensor([w for _, w in shapes], device=device)
    heights = torch.tensor([h for h, _ in shapes], device=device)
    steps = torch.arange(p, device=device)
    px = torch.minimum((corner[..., 0, None] + steps).clamp_(min=0), widths[:, None] - 1)  # (B, S, N, L, P)
    py = torch.minimum((corner[..., 1, None] + steps).clamp_(min=0), heights[:, None] - 1)
    base = torch.tensor(offsets, device=device) + (torch.arange(b * s, device=device) * r_total).view(b, s, 1, 1)
    # (B, S, N, L, Px, Py): x-major like `neighbourhood_offsets`.
    index = (base[..., None, None] + (py * widths[:, None])[..., None, :] + px[..., :, None])
    index = index.permute(0, 2, 3, 1, 4, 5).reshape(b * n * levels, -1)  # rows grouped per (track, level)
    patches = rows.view(-1, c).index_select(0, index.view(-1)).view(b * n * levels, s * p * p, c)
    corr = torch.bmm(patches, support.reshape(b * n * levels, c, k))  # (B*N*L, S*P*P, K)
    corr = corr.view(b, n, levels, s, p, p, k).permute(0, 3, 1, 2, 4, 5, 6)  # (B, S, N, L, Px, Py, K)
    fx = frac[..., 0, None, None, None]
    fy = frac[..., 1, None, None, None]
    left, right = corr[..., :-1, :, :], corr[..., 1:, :, :]
    top = torch.lerp(left[..., :-1, :], right[..., :-1, :], fx)  # row y0 of each neighbour, interpolated in x
    bottom = torch.lerp(left[..., 1:, :], right[..., 1:, :], fx)
    return torch.lerp(top, bottom, fy).reshape(b, s, n, levels, -1)


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

    @staticmethod
    def prepare_support(support: list[Tensor], dtype: torch.dtype | None = None) -> Tensor:
        """Per level (B, N, K, C) supports -> (B, N, L, C, K), the lookup's layout (one copy)."""
        stacked = torch.stack(support, dim=2)
        return stacked.to(dtype or stacked.dtype).transpose(-1, -2).contiguous()

    def forward(
        self, pyramid: list[Tensor] | WindowFeatures, support: list[Tensor] | Tensor, xy: Tensor
    ) -> Tensor:
        """Correlation embeddings for every frame of a window.

        Args:
            pyramid: per level (B, S, C, H_l, W_l) window features, or their `WindowFeatures` (build it once
                per window when looking up several times).
            support: per level (B, N, K, C) query supports (zeros for queries not yet seen), or the output of
                `prepare_support`.
            xy: (B, S, N, 2) current track estimates in level-0 feature pixels.
        Returns:
            (B, S, N, levels * embed_dim).
        """
        if not isinstance(pyramid, WindowFeatures):
            pyramid = WindowFeatures.from_pyramid(pyramid)
        pyramid = pyramid._replace(rows=pyramid.rows.contiguous())
        if not isinstance(support, Tensor):
            support = self.prepare_support(support, pyramid.rows.dtype)
        support = support.to(pyramid.rows.dtype)
        b, s, n, _ = xy.shape
        c, k = pyramid.rows.shape[-1], support.shape[-1]
        per_track = b * self.levels * s * ((2 * self.radius + 2) ** 2 * (c + k) + k * k)
        chunk = max(1, LOOKUP_CHUNK_ELEMENTS // per_track)
        out = None
        for first in range(0, n, chunk):
            last = min(n, first + chunk)
            part = support[:, first:last].contiguous()
            volume = neighbourhood_correlation(pyramid, part, xy[:, :, first:last], self.radius)
            emb = self.mlp(volume).flatten(-2)  # (B, S, n, L * E)
            if chunk >= n:
                return emb
            if out is None:
                out = emb.new_empty(b, s, n, emb.shape[-1])
            out[:, :, first:last] = emb
        return out
