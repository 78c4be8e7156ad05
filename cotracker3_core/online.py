"""Sliding-window state of the streaming engine (and the benchmarks' re-encoding baseline).

The state is an explicit value: the per-frame feature pyramids of the frames the next window will use,
the queries (with their supports once sampled), and the previous window's estimates for the frames it
shares with the next one. Nothing here grows with the length of the stream.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .correlation import WindowFeatures
from .model import CoTracker3
from .windows import IterationEstimate, carry_forward, initial_estimates


@dataclass
class QueryState:
    """Per-query tensors, batch-first.

    frames: (B, N) absolute frame index of each query; xy: (B, N, 2) in feature pixels;
    support: per level (B, N, K, C), zero until sampled; sampled: (B, N) bool;
    carried: (B, N) bool, the query took part in the previous window (its estimates can seed the next).
    """

    frames: Tensor
    xy: Tensor
    support: list[Tensor]
    sampled: Tensor
    carried: Tensor

    @property
    def count(self) -> int:
        return self.frames.shape[1]


@dataclass
class WindowState:
    """Everything a sliding-window tracker needs between windows.

    features: frame index -> that frame's pyramid as `WindowFeatures` (one frame: rows (B, 1, R, C)), for
        frames >= next_start. The lookup's row layout is made once per frame, on arrival.
    carry: the last window's estimates for frames [next_start, next_start + window_len - step), in
        feature pixels and logits, (B, F, N, ...).
    """

    queries: QueryState
    features: dict[int, WindowFeatures] = field(default_factory=dict)
    frames_seen: int = 0
    next_start: int = 0
    carry: IterationEstimate | None = None

    def nbytes(self) -> int:
        """Bytes held in tensors by this state."""
        tensors = [f.rows for f in self.features.values()]
        q = self.queries
        tensors += [q.frames, q.xy, q.sampled, q.carried, *q.support]
        if self.carry is not None:
            tensors += list(self.carry)
        return sum(t.numel() * t.element_size() for t in tensors)


def empty_queries(model: CoTracker3, batch: int, device: torch.device, dtype: torch.dtype) -> QueryState:
    cfg = model.config
    k = cfg.support_size
    return QueryState(
        frames=torch.zeros(batch, 0, dtype=torch.long, device=device),
        xy=torch.zeros(batch, 0, 2, device=device),
        support=[torch.zeros(batch, 0, k, cfg.latent_dim, device=device, dtype=dtype) for _ in range(cfg.corr_levels)],
        sampled=torch.zeros(batch, 0, dtype=torch.bool, device=device),
        carried=torch.zeros(batch, 0, dtype=torch.bool, device=device),
    )


def append_queries(state: WindowState, frames: Tensor, xy: Tensor) -> None:
    """Add (B, M) frames and (B, M, 2) feature-pixel positions; they are sampled at their window.

    All-or-nothing: the new tensors are built first and swapped in together, so a failure (e.g. out of
    memory) leaves the state as it was.
    """
    q = state.queries
    b, m = frames.shape
    grown = QueryState(
        frames=torch.cat([q.frames, frames.to(q.frames)], dim=1),
        xy=torch.cat([q.xy, xy.to(q.xy)], dim=1),
        support=[torch.cat([s, s.new_zeros(b, m, *s.shape[2:])], dim=1) for s in q.support],
        sampled=torch.cat([q.sampled, q.sampled.new_zeros(b, m)], dim=1),
        carried=torch.cat([q.carried, q.carried.new_zeros(b, m)], dim=1),
    )
    carry = state.carry
    if carry is not None:
        carry = IterationEstimate(
            *(torch.cat([x, x.new_zeros(x.shape[0], x.shape[1], m, *x.shape[3:])], dim=2) for x in carry)
        )
    state.queries, state.carry = grown, carry


def keep_queries(state: WindowState, keep: Tensor) -> None:
    """Keep only the queries at indices `keep` (1-D long tensor), freeing the others' memory (all-or-nothing,
    like `append_queries`)."""
    q = state.queries
    kept = QueryState(
        frames=q.frames[:, keep],
        xy=q.xy[:, keep],
        support=[s[:, keep].clone() for s in q.support],
        sampled=q.sampled[:, keep],
        carried=q.carried[:, keep],
    )
    carry = None if state.carry is None else IterationEstimate(*(x[:, :, keep].clone() for x in state.carry))
    state.queries, state.carry = kept, carry


def add_frame_features(state: WindowState, pyramid: list[Tensor]) -> int:
    """Cache one frame's per-level (B, C, H_l, W_l) features; returns its frame index."""
    index = state.frames_seen
    state.features[index] = WindowFeatures.from_pyramid([level[:, None] for level in pyramid])
    state.frames_seen += 1
    return index


def replace_window_features(state: WindowState, pyramid: list[Tensor]) -> None:
    """Give the next window's frames anew: per level (S, C, H_l, W_l) features of frames next_start ..
    next_start + S - 1, replacing whatever was cached (the re-encoding baseline encodes every window whole)."""
    state.features.clear()
    state.frames_seen = state.next_start
    for k in range(pyramid[0].shape[0]):
        add_frame_features(state, [level[k : k + 1] for level in pyramid])


def window_ready(state: WindowState, window_len: int) -> bool:
    return state.frames_seen >= state.next_start + window_len


def _advance(state: WindowState, window_len: int, step: int) -> tuple[int, int]:
    """Slide to the next window: returns (start, available) of the window being left and frees the features
    no later window needs."""
    start = state.next_start
    available = min(state.frames_seen - start, window_len)
    if available <= 0:
        raise RuntimeError("no frames to track")
    state.next_start = start + step
    for index in [i for i in state.features if i < state.next_start]:
        del state.features[index]
    return start, available


def skip_window(state: WindowState, window_len: int, step: int) -> tuple[int, int]:
    """Slide past the next window without running the model (no queries to track); the carry is dropped.
    Returns (start, available) as `run_window` does."""
    state.carry = None
    return _advance(state, window_len, step)


@dataclass
class WindowInputs:
    """What `CoTracker3.refine` takes for the window at `start`, batch of one stream.

    start: the window's first frame index; available: how many real frames it holds (the rest repeat the last);
    features: its `window_len` frames; support: per level (B, N, K, C) query supports, zero for queries not
    started yet; init: the starting estimate (B, S, N, ...) in feature pixels and logits.
    """

    start: int
    available: int
    features: WindowFeatures
    support: list[Tensor]
    init: IterationEstimate

    @property
    def count(self) -> int:
        """N, the queries tracked."""
        return self.init.coords.shape[2]


def prepare_window(model: CoTracker3, state: WindowState, step: int, motion_init: bool = False) -> WindowInputs:
    """The inputs of the window starting at `state.next_start`, over the frames cached so far; the state is
    not slid yet (`finish_window` does, given the refinement's output).

    A window short of frames (the end of a stream) repeats its last frame, as the official predictor pads
    the final chunk. Queries whose frame lies in the window get their support sampled now; queries whose
    frame lies beyond it take part with a zero support, as in the reference model.
    """
    s = model.window_len
    start = state.next_start
    available = min(state.frames_seen - start, s)
    if available <= 0:
        raise RuntimeError("no frames to track")
    frames = [state.features[i] for i in range(start, start + available)]
    frames += [frames[-1]] * (s - available)
    window = WindowFeatures.cat(frames)
    q = state.queries
    if q.count:
        _sample_new_supports(model, q, window.levels(), start, available)
    started = q.sampled[:, :, None, None]
    use_carry = q.carried & (q.frames < start + s - step)
    init = initial_estimates(
        q.xy, s, state.carry, use_carry if state.carry is not None else None, extrapolate=motion_init
    )
    return WindowInputs(start, available, window, [sup * started for sup in q.support], init)


def refine_inputs(
    model: CoTracker3,
    inputs: WindowInputs,
    iters: int,
    refine: Callable[..., list[IterationEstimate]] | None = None,
) -> IterationEstimate:
    """The final estimate (coords in model pixels) of `iters` refinement iterations of one window's inputs;
    `refine` replaces `model.refine` (a compiled one, say)."""
    return (refine or model.refine)(inputs.features, inputs.support, inputs.init, iters)[-1]


def finish_window(
    model: CoTracker3, state: WindowState, inputs: WindowInputs, final: IterationEstimate, step: int
) -> IterationEstimate:
    """Take the window's final estimate (model pixels, (B, S, N, ...)) into the state: the carry for the next
    window, every query now carried, the state slid by `step`. Returns the estimate trimmed to the real
    frames."""
    state.carry = carry_forward(final, step, model.config.stride)
    state.queries.carried = torch.ones_like(state.queries.carried)
    _advance(state, model.window_len, step)
    return IterationEstimate(*(x[:, : inputs.available] for x in final))


def run_window(
    model: CoTracker3,
    state: WindowState,
    step: int,
    iters: int,
    motion_init: bool = False,
    refine: Callable[..., list[IterationEstimate]] | None = None,
) -> tuple[int, int, IterationEstimate]:
    """Track the window starting at `state.next_start` over the frames cached so far, then slide the state to
    the next window: `prepare_window` -> `refine_inputs` -> `finish_window` (the schedule of `track_window`
    on the explicit state, in stages so that several streams' windows can share one refinement call).

    Args:
        motion_init: start the window's new frames from the carried tracks' recent motion (constant
            velocity) instead of their last position; off as trained.
        refine: replacement for `model.refine` with the same signature (a compiled one, say).

    Returns:
        (start, frames, estimate): the window's first frame index, how many real frames it held, and the
        final estimate trimmed to them (coords in model pixels, logits).
    """
    inputs = prepare_window(model, state, step, motion_init)
    final = refine_inputs(model, inputs, iters, refine)
    return inputs.start, inputs.available, finish_window(model, state, inputs, final, step)


def _sample_new_supports(model: CoTracker3, q: QueryState, pyramid: list[Tensor], start: int, available: int) -> None:
    pending = (~q.sampled) & (q.frames >= start) & (q.frames < start + available)
    if not pending.any():
        return
    support = model.sample_support(pyramid, (q.frames - start).clamp(0, available - 1), q.xy)
    mask = pending[:, :, None, None]
    q.support = [torch.where(mask, new.to(old.dtype), old) for old, new in zip(q.support, support, strict=True)]
    q.sampled = q.sampled | pending
