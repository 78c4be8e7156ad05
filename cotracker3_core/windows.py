"""The sliding-window schedule, defined once: how a window starts, runs, hands on its carry, and which
frames it emits.

Every path that slides windows over frames uses these functions: the whole-clip online model
(`CoTracker3._track_sliding`, through `track_window`), the explicit window state of the streaming engine
(`online.prepare_window` / `finish_window`: `initial_estimates` and `carry_forward` apart, so that several
streams can share one refinement call), the benchmarks' re-encoding baseline and the replay tool's expectation
of what the node has published.

Units: `track_window` takes its starting estimates (query positions, carry) in feature pixels (model pixels
/ stride) and returns the refinement's iterations in model pixels (the resized frame the network sees);
the carry it hands on is in feature pixels again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor

if TYPE_CHECKING:  # the model imports this module
    from .correlation import WindowFeatures
    from .model import CoTracker3


class IterationEstimate(NamedTuple):
    """Tracks of one window: coords (B, S, N, 2), vis_logits and conf_logits (B, S, N).

    The unit of `coords` depends on the boundary and is named where the value crosses one: starting
    estimates and carries are in feature pixels; refinement outputs are in model pixels.
    """

    coords: Tensor
    vis_logits: Tensor
    conf_logits: Tensor


# -- the schedule -------------------------------------------------------------------------------------


def window_starts(num_frames: int, window_len: int, step: int) -> range:
    """First frames of the windows covering a clip of `num_frames` (at least one window; the last one may
    reach past the clip, whose last frame is then repeated)."""
    count = max(1, -(-(num_frames - window_len) // step) + 1)
    return range(0, count * step, step)


def initial_estimates(
    query_xy: Tensor,
    window_len: int,
    carry: IterationEstimate | None = None,
    use_carry: Tensor | None = None,
    extrapolate: bool = False,
) -> IterationEstimate:
    """Starting point of a window, in feature pixels and logits.

    Tracks start at their query point with zero visibility/confidence logits; where `use_carry` (B, N) is
    set, they start from `carry` ((B, C, N, ...) estimates of the first C frames of this window, made by
    the previous window), its last frame repeated over the rest of the window. With `extrapolate`, the
    coordinates of the rest of the window continue the carried motion instead (see `extrapolate_motion`).
    """
    b, n, _ = query_xy.shape
    coords = query_xy[:, None].expand(b, window_len, n, 2)
    vis = query_xy.new_zeros(b, window_len, n)
    conf = query_xy.new_zeros(b, window_len, n)
    if carry is None:
        return IterationEstimate(coords, vis, conf)
    fill = window_len - carry.coords.shape[1]

    def extend(x: Tensor) -> Tensor:
        return torch.cat([x, x[:, -1:].expand(-1, fill, *x.shape[2:])], dim=1)

    carried_coords = extrapolate_motion(carry.coords, fill) if extrapolate else extend(carry.coords)
    mask = use_carry[:, None, :]
    return IterationEstimate(
        torch.where(mask[..., None], carried_coords, coords),
        torch.where(mask, extend(carry.vis_logits), vis),
        torch.where(mask, extend(carry.conf_logits), conf),
    )


#: Carried frames over which `extrapolate_motion` measures the velocity.
MOTION_SPAN = 4


def extrapolate_motion(coords: Tensor, fill: int) -> Tensor:
    """(B, C, N, 2) carried coordinates -> (B, C + fill, N, 2), the new frames continuing the mean velocity
    of the last `MOTION_SPAN` carried frames (a constant-velocity guess; the last position when C == 1)."""
    span = min(MOTION_SPAN, coords.shape[1] - 1)
    last = coords[:, -1:]
    if span < 1 or fill <= 0:
        return torch.cat([coords, last.expand(-1, max(fill, 0), -1, -1)], dim=1)
    velocity = (last - coords[:, -1 - span : -span]) / span  # (B, 1, N, 2) per frame
    ahead = torch.arange(1, fill + 1, dtype=coords.dtype, device=coords.device).view(1, fill, 1, 1)
    return torch.cat([coords, last + velocity * ahead], dim=1)


def track_window(
    model: CoTracker3,
    window: list[Tensor] | WindowFeatures,
    support: list[Tensor],
    query_xy: Tensor,
    carry: IterationEstimate | None,
    use_carry: Tensor,
    step: int,
    iters: int,
    *,
    motion_init: bool = False,
    refine: Callable[..., list[IterationEstimate]] | None = None,
) -> tuple[list[IterationEstimate], IterationEstimate]:
    """Run one window given the previous window's carry: initial estimates -> refinement -> next carry.

    Args:
        model: the network (its `refine` and config).
        window: the window's `window_len` frames of features, as `CoTracker3.refine` takes them.
        support: per level (B, N, K, C) query supports, zero for queries not started yet.
        query_xy: (B, N, 2) query positions in feature pixels.
        carry: the previous window's estimates of this window's first frames (feature pixels), or None.
        use_carry: (B, N) bool, the queries that start from `carry` (ignored without one).
        step: frames between this window and the next.
        iters: refinement iterations.
        motion_init: continue the carried motion over the new frames (see `extrapolate_motion`).
        refine: replacement for `model.refine` with the same signature (a compiled one, say).

    Returns:
        (iterations, carry): every iteration's estimate (model pixels), and the carry for the next window:
        the final estimate of frames [step, window_len) in feature pixels.
    """
    init = initial_estimates(
        query_xy, model.window_len, carry, use_carry if carry is not None else None, extrapolate=motion_init
    )
    iterations = (refine or model.refine)(window, support, init, iters)
    return iterations, carry_forward(iterations[-1], step, model.config.stride)


def carry_forward(final: IterationEstimate, step: int, stride: int) -> IterationEstimate:
    """The carry a window hands on: its final estimate (coords in model pixels) of frames [step, S), coords
    divided by `stride` into feature pixels, (B, S - step, N, ...)."""
    return IterationEstimate(final.coords[:, step:] / stride, final.vis_logits[:, step:], final.conf_logits[:, step:])


# -- what a window emits ------------------------------------------------------------------------------


class EmissionPlan(NamedTuple):
    """Frame indices a window emits: `refined` re-estimates frames already emitted, `new` are emitted for the
    first time. The two ranges are contiguous: together they are `frames`."""

    refined: range
    new: range

    @property
    def frames(self) -> range:
        return range(self.refined.start, self.new.stop)


def emission_plan(start: int, available: int, emitted_until: int, step: int) -> EmissionPlan:
    """Which frames the window at `start` (holding `available` real frames) emits, when frames
    [0, emitted_until) were emitted before.

    A frame is emitted new from the first window that holds it, and refined once, by the next window: so a
    later window re-emits only the `step` frames before `emitted_until` (the first window emits all of its
    frames). Pure: the caller advances its own `emitted_until` to `plan.new.stop`.
    """
    end = start + available
    refine_from = max(start, emitted_until - step) if start > 0 else start
    new_from = max(refine_from, emitted_until)
    return EmissionPlan(
        refined=range(refine_from, max(refine_from, min(emitted_until, end))),
        new=range(new_from, max(new_from, end)),
    )


def frames_emitted(pushed: int, window_len: int, step: int) -> int:
    """How many frames a stream has emitted as new once `pushed` frames went in (no flush): none until the
    first window is full, then every frame of every window that ran."""
    emitted, start = 0, 0
    while pushed >= start + window_len:
        emitted = emission_plan(start, window_len, emitted, step).new.stop
        start += step
    return emitted


__all__ = [
    "EmissionPlan",
    "IterationEstimate",
    "MOTION_SPAN",
    "carry_forward",
    "emission_plan",
    "extrapolate_motion",
    "frames_emitted",
    "initial_estimates",
    "track_window",
    "window_starts",
]
