"""Several streams' windows in one refinement call (batch B = number of windows).

Each stream's window is prepared alone (`online.prepare_window`: its own frames, queries, carry, batch of
one); here the inputs are stacked along the batch axis, the streams' query counts padded to the largest, and
the one output split back. Padding tracks start at feature pixel (0, 0) with zero supports and logits (finite,
as the attention's zero weights need) and are masked out of the only path between tracks, the virtual tracks'
gather (`UpdateTransformer.forward`'s `track_mask`): the real tracks' outputs do not depend on them. The
correlation lookup, the time attention and the heads are per track, the encoder's features per frame.
Padding costs what real tracks cost; `max_padding` bounds it by splitting the windows into several calls.
Batched products reorder arithmetic: outputs equal the streams' own calls to float rounding (checked in
test/test_core_batch.py), not bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .correlation import WindowFeatures
from .model import CoTracker3
from .online import WindowInputs, refine_inputs
from .windows import IterationEstimate


def _pad_tracks(x: Tensor, count: int, dim: int) -> Tensor:
    """Zero-pad the track axis `dim` of `x` to `count`."""
    missing = count - x.shape[dim]
    if not missing:
        return x
    shape = list(x.shape)
    shape[dim] = missing
    return torch.cat([x, x.new_zeros(shape)], dim=dim)


def stack_inputs(
    inputs: Sequence[WindowInputs],
) -> tuple[WindowFeatures, list[Tensor], IterationEstimate, Tensor | None]:
    """The refinement arguments of several windows of batch one, stacked: features (B, S, R, C), supports per
    level (B, N, K, C) and the starting estimate (B, S, N, ...) with N the largest query count, and the
    (B, N) bool mask of the real tracks (None when every window has N)."""
    counts = [item.count for item in inputs]
    n = max(counts)
    features = inputs[0].features._replace(rows=torch.cat([item.features.rows for item in inputs]))
    levels = len(inputs[0].support)
    support = [torch.cat([_pad_tracks(item.support[lv], n, 1) for item in inputs]) for lv in range(levels)]
    init = IterationEstimate(*(torch.cat([_pad_tracks(item.init[f], n, 2) for item in inputs]) for f in range(3)))
    mask = None
    if min(counts) != n:
        mask = torch.arange(n, device=init.coords.device) < torch.tensor(counts, device=init.coords.device)[:, None]
    return features, support, init, mask


def padding_groups(counts: Sequence[int], max_padding: float = math.inf) -> list[list[int]]:
    """Indices of `counts` (query counts of windows) grouped into calls whose padding tracks are at most
    `max_padding` times their real tracks: largest counts first, each joining the current group while that holds
    (inf: one group; 0: only equal counts share a call)."""
    groups: list[list[int]] = []
    for index in sorted(range(len(counts)), key=lambda i: -counts[i]):
        if groups:
            group = groups[-1]
            real = sum(counts[i] for i in group) + counts[index]
            if counts[group[0]] * (len(group) + 1) - real <= max_padding * real:
                group.append(index)
                continue
        groups.append([index])
    return groups


def refine_batch(
    model: CoTracker3,
    inputs: Sequence[WindowInputs],
    iters: int,
    refine: Callable[..., list[IterationEstimate]] | None = None,
    max_padding: float = math.inf,
) -> list[IterationEstimate]:
    """Each window's final estimate (batch of one, (1, S, N_i, ...), coords in model pixels) from one call of
    `iters` refinement iterations over all of them (over each of `padding_groups(counts, max_padding)`); a
    window alone runs exactly as `online.refine_inputs` does. `refine` replaces `model.refine` (a compiled
    one, say)."""
    out: list[IterationEstimate | None] = [None] * len(inputs)
    for group in padding_groups([item.count for item in inputs], max_padding):
        if len(group) == 1:
            out[group[0]] = refine_inputs(model, inputs[group[0]], iters, refine)
            continue
        features, support, init, mask = stack_inputs([inputs[i] for i in group])
        final = (refine or model.refine)(features, support, init, iters, mask)[-1]
        for b, i in enumerate(group):
            out[i] = IterationEstimate(*(x[b : b + 1, :, : inputs[i].count] for x in final))
    return out


__all__ = ["padding_groups", "refine_batch", "stack_inputs"]
