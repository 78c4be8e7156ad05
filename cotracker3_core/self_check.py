"""Start-up self-check of a streaming tracker: refuse a model that cannot produce usable tracks before it
meets a real stream.

Three checks, cheapest first: the weights are finite (a checkpoint with NaN weights can carry a valid
checksum: it was saved that way), the model resolution leaves at least one feature pixel at the coarsest
correlation level, and one small dummy window (a few synthetic frames, a couple of queries) runs and gives
finite tracks. The dummy window costs a few encoder passes and one refinement: well under a second for
``lite`` at 144x192 on a CPU.
"""

from __future__ import annotations

import time

import numpy as np

from .streaming import StreamingTracker

__all__ = ["SelfCheckError", "min_model_side", "self_check"]


class SelfCheckError(ValueError):
    """The tracker cannot produce usable tracks (non-finite weights or outputs, unusable model resolution)."""


def min_model_side(stride: int, corr_levels: int) -> int:
    """Smallest model-resolution side (pixels) that leaves one feature pixel at the coarsest pyramid level:
    the encoder divides by ``stride``, each further correlation level halves."""
    return stride * 2 ** (corr_levels - 1)


def self_check(tracker: StreamingTracker, frames: int = 2, points: int = 2) -> float:
    """Check the tracker on a dummy window, then reset it (call it before streaming).

    Args:
        tracker: the engine to check; its stream state is reset afterwards.
        frames: synthetic frames pushed (at the model resolution), then flushed as one window.
        points: queries placed on the first frame.
    Returns:
        the seconds the check took.
    Raises:
        SelfCheckError: with what is wrong and what to change.
    """
    started = time.perf_counter()
    config = tracker.model.config
    bad = [name for name, t in tracker.model.state_dict().items() if t.is_floating_point() and not t.isfinite().all()]
    if bad:
        raise SelfCheckError(
            f"the model's weights hold NaN or infinite values in {len(bad)} tensor(s) (e.g. {', '.join(bad[:3])}): "
            "the checkpoint is broken (a diverged training run?); use another checkpoint"
        )
    h, w = (int(v) for v in config.model_resolution)
    side = min_model_side(config.stride, config.corr_levels)
    if min(h, w) < side:
        raise SelfCheckError(
            f"model_resolution [{h}, {w}] is too small: the encoder (stride {config.stride}) and the "
            f"{config.corr_levels}-level correlation pyramid need at least {side} pixels per side"
        )
    tracker.reset()
    nonfinite_before = tracker.nonfinite_frames
    try:
        rng = np.random.default_rng(0)
        texture = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        for i in range(frames):
            tracker.push(np.roll(texture, i, axis=1), i + 1)  # one pixel of motion per frame
        xy = np.stack([np.linspace(w / 4, 3 * w / 4, points), np.full(points, h / 2)], axis=1)
        tracker.add_queries(xy, stamp=1)
        emitted = tracker.flush()
    except (RuntimeError, ValueError) as exc:  # torch refusing a shape, or the engine refusing the dummy input
        raise SelfCheckError(f"the model fails on a dummy window at model_resolution [{h}, {w}]: {exc}") from exc
    finally:
        tracker.reset()
    if not any(len(t.ids) for t in emitted):
        raise SelfCheckError("the model emitted no tracks for the dummy window's queries")
    nonfinite = tracker.nonfinite_frames - nonfinite_before  # the engine counts the frames it emitted with NaN/inf
    if nonfinite:
        raise SelfCheckError(
            f"the model gives non-finite tracks (NaN or infinite) on {nonfinite} frame(s) of a dummy window: "
            "broken weights or an unusable architecture/resolution"
        )
    return time.perf_counter() - started
