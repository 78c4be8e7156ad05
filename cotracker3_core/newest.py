"""Newest-frame updates of the streaming engine (``StreamConfig.update = "newest"``).

Every pushed frame is encoded once and answered on its push. The window is the `window_len` newest frames;
its older frames keep the estimates they were answered with (or that a periodic re-estimate gave them), and
the correlation embeddings at those estimates (the costly part of their transformer tokens) are cached per
frame and leave with the frame. Per push, only the newest frame is looked up and refined: its estimate starts
from a motion prior (each track's recent velocity, `extrapolate_motion`), the model's tokens of the whole
window are assembled from the cache plus the newest frame's lookup, the update transformer runs over the
window as usual (its time attention spans it) except that its final layer computes only the newest frame,
and only the newest frame's update is applied.

Everything here reuses the network's own stages (`CorrelationEncoder`, `CoTracker3.assemble_tokens`,
`CoTracker3.updates`); the per-frame step `refine_newest` is a pure function whose tensor shapes depend only
on (window_len, N), so it can be compiled or captured.

Shapes: B batch (1 in the engine), S = window_len slots oldest first (slot S-1 is the newest frame), N
queries, D the transformer's input width, L*E the correlation embedding width. Units: coordinates in
feature pixels (model pixels / stride) unless named otherwise; visibility and confidence as logits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .correlation import WindowFeatures
from .model import CoTracker3
from .online import WindowState, append_queries
from .windows import IterationEstimate, extrapolate_motion


@dataclass
class NewestCache:
    """What the per-frame path keeps for the window's frames.

    coords: (B, S, N, 2) feature pixels; vis, conf: (B, S, N) logits; corr: (B, S, N, L*E) float32, the
    correlation embeddings at `coords` (each frame's fixed token part); support: (B, N, L, C, K), the query
    supports in the lookup's layout (`CorrelationEncoder.prepare_support`), in the features' dtype.
    A query's slots before its own frame (and a stream's slots before its first frame) repeat the slot of
    that frame.
    """

    coords: Tensor
    vis: Tensor
    conf: Tensor
    corr: Tensor
    support: Tensor

    @property
    def estimate(self) -> IterationEstimate:
        return IterationEstimate(self.coords, self.vis, self.conf)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.coords, self.vis, self.conf, self.corr, self.support))

    def select(self, keep: Tensor) -> NewestCache:
        """Only the queries at indices `keep` (1-D long), copied so that the others' memory is freed."""
        return NewestCache(
            *(x[:, :, keep].clone() for x in (self.coords, self.vis, self.conf, self.corr)),
            self.support[:, keep].clone(),
        )


def empty_cache(model: CoTracker3, batch: int, device: torch.device) -> NewestCache:
    """A cache without queries (zero-size tensors of the right shapes)."""
    cfg = model.config
    s, levels = model.window_len, cfg.corr_levels
    return NewestCache(
        coords=torch.zeros(batch, s, 0, 2, device=device),
        vis=torch.zeros(batch, s, 0, device=device),
        conf=torch.zeros(batch, s, 0, device=device),
        corr=torch.zeros(batch, s, 0, levels * cfg.corr_embed_dim, device=device),
        support=torch.zeros(batch, 0, levels, cfg.latent_dim, cfg.support_size, device=device),
    )


def keep_newest_frames(window: WindowState, count: int) -> None:
    """Free the cached features of frames older than the `count` newest (the window's start follows). Never
    moves the start back, so it leaves a window-mode schedule (the periodic re-estimate) alone."""
    first = window.frames_seen - count
    if first > window.next_start:
        for index in [i for i in window.features if i < first]:
            del window.features[index]
        window.next_start = first


def motion_prior(cache: NewestCache) -> IterationEstimate:
    """Starting estimate of the next frame, (B, 1, N, ...): the tracks' recent velocity continued one frame
    (`extrapolate_motion`), the newest frame's visibility and confidence logits."""
    coords = extrapolate_motion(cache.coords, 1)[:, -1:]
    return IterationEstimate(coords, cache.vis[:, -1:], cache.conf[:, -1:])


def refine_newest(
    model: CoTracker3,
    frame: WindowFeatures,
    support: Tensor,
    estimate: IterationEstimate,
    older_corr: Tensor,
    time_embedding: Tensor,
    iters: int,
) -> tuple[IterationEstimate, Tensor]:
    """The per-frame step: refine the newest slot of a window whose older slots stay fixed.

    Args:
        model: the network.
        frame: the newest frame's features (one frame).
        support: (B, N, L, C, K) prepared query supports.
        estimate: (B, S, N, ...) the window's estimates, the newest slot at its starting value.
        older_corr: (B, S-1, N, L*E) cached correlation embeddings of the older slots.
        time_embedding: (1, S, D).
        iters: refinement iterations.
    Returns:
        (newest, corr): the newest slot's estimate (B, 1, N, ...) in feature pixels and logits, and its
        correlation embeddings (B, 1, N, L*E, float32) at that estimate, for the cache.
    """
    coords, vis, conf = estimate
    older = IterationEstimate(coords[:, :-1], vis[:, :-1], conf[:, :-1])
    new = IterationEstimate(coords[:, -1:], vis[:, -1:], conf[:, -1:])
    for _ in range(iters):
        corr = model.correlation(frame, support, new.coords).float()
        window = IterationEstimate(*(torch.cat([o, n], dim=1) for o, n in zip(older, new, strict=True)))
        tokens = model.assemble_tokens(window, torch.cat([older_corr, corr], dim=1), time_embedding)
        delta = model.updates(tokens, last=1).to(new.coords.dtype)  # (B, 1, N, 4)
        new = IterationEstimate(
            new.coords + delta[..., :2], new.vis_logits + delta[..., 2], new.conf_logits + delta[..., 3]
        )
    return new, model.correlation(frame, support, new.coords).float()


def answer_newest(
    model: CoTracker3,
    cache: NewestCache,
    frame: WindowFeatures,
    iters: int,
    step: Callable[..., tuple[IterationEstimate, Tensor]] = refine_newest,
) -> tuple[NewestCache, IterationEstimate]:
    """Slide the window one frame and refine the newest (`refine_newest`, or `step`, a compiled one).

    Returns the new cache and the newest frame's estimate, (B, 1, N, ...) in model pixels and logits.
    """
    prior = motion_prior(cache)
    window = IterationEstimate(*(torch.cat([x[:, 1:], p], dim=1) for x, p in zip(cache.estimate, prior, strict=True)))
    new, corr = step(model, frame, cache.support, window, cache.corr[:, 1:], model.time_embedding, iters)
    slid = NewestCache(
        *(torch.cat([x[:, 1:], n], dim=1) for x, n in zip(cache.estimate, new, strict=True)),
        corr=torch.cat([cache.corr[:, 1:], corr], dim=1),
        support=cache.support,
    )
    stride = model.config.stride
    return slid, IterationEstimate(new.coords * stride, new.vis_logits, new.conf_logits)


def add_newest_queries(
    model: CoTracker3, window: WindowState, cache: NewestCache, frames: Tensor, xy: Tensor
) -> NewestCache:
    """Add (B, M) queries, all on one frame of the window, at (B, M, 2) feature pixels.

    Their supports are sampled now (the per-frame path needs them at the next push), with the same sampling
    the window schedule uses, and recorded in the window state as sampled (`append_queries` adds them there).
    Their slots from their frame to the newest hold the query point with zero logits and the lookups there;
    earlier slots repeat their frame's slot. Computed before the state changes: a failure leaves it as it was.
    Returns the new cache.
    """
    b, m = frames.shape
    if not m:
        append_queries(window, frames, xy)
        return cache
    frame = int(frames[0, 0])
    newest = window.frames_seen - 1
    feats = window.features[frame]
    support = model.sample_support(feats.levels(), torch.zeros_like(frames), xy)  # per level (B, M, K, C)
    prepared = model.correlation.prepare_support(support, feats.rows.dtype)
    span = WindowFeatures.cat([window.features[i] for i in range(frame, newest + 1)])
    count = newest - frame + 1
    corr = model.correlation(span, prepared, xy[:, None].expand(b, count, m, 2)).float()
    s = model.window_len
    corr = torch.cat([corr[:, :1].expand(b, s - count, m, corr.shape[-1]), corr], dim=1)
    coords = xy[:, None].expand(b, s, m, 2).to(cache.coords.dtype)
    zeros = cache.vis.new_zeros(b, s, m)
    grown = NewestCache(
        coords=torch.cat([cache.coords, coords], dim=2),
        vis=torch.cat([cache.vis, zeros], dim=2),
        conf=torch.cat([cache.conf, zeros], dim=2),
        corr=torch.cat([cache.corr, corr], dim=2),
        support=torch.cat([cache.support, prepared.to(cache.support.dtype)], dim=1)
        if cache.support.shape[1]
        else prepared,
    )
    append_queries(window, frames, xy)
    q = window.queries
    for level, new in zip(q.support, support, strict=True):
        level[:, -m:] = new.to(level.dtype)
    q.sampled[:, -m:] = True
    return grown


def adopt_window(
    model: CoTracker3, cache: NewestCache, features: WindowFeatures, estimate: IterationEstimate
) -> NewestCache:
    """The cache after a full-window re-estimate: `estimate` ((B, S, N, ...) model pixels and logits, the
    window of `features`, S frames ending at the newest) replaces every slot, and the slots' correlation
    embeddings are looked up anew at it."""
    coords = estimate.coords / model.config.stride
    corr = model.correlation(features, cache.support, coords).float()
    return NewestCache(coords, estimate.vis_logits, estimate.conf_logits, corr, cache.support)


__all__ = [
    "NewestCache",
    "add_newest_queries",
    "adopt_window",
    "answer_newest",
    "empty_cache",
    "keep_newest_frames",
    "motion_prior",
    "refine_newest",
]
