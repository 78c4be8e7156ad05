"""The engine's start-up self-check (`cotracker3_core.self_check`) and its handling of non-finite outputs at run
time: a tiny untrained model on the CPU, no ROS."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cotracker3_core import build_model
from cotracker3_core.config import preset
from cotracker3_core.self_check import SelfCheckError, min_model_side, self_check
from cotracker3_core.streaming import StreamConfig, StreamingTracker

TINY = preset("tiny")


def make_tracker(resolution: tuple[int, int] = (32, 48)) -> StreamingTracker:
    torch.manual_seed(0)
    model = build_model("online", model_resolution=resolution, window_len=8, **TINY)
    return StreamingTracker(model, StreamConfig(model_resolution=resolution, step=4, iters=1, device="cpu"))


def test_a_sound_model_passes_and_the_tracker_is_left_reset() -> None:
    tracker = make_tracker()
    seconds = self_check(tracker)
    assert 0.0 < seconds < 30.0
    assert tracker.frames_seen == 0 and tracker.query_ids == [] and tracker.frame_size is None
    assert tracker.nonfinite_frames == 0


def test_nan_weights_are_refused_before_running() -> None:
    tracker = make_tracker()
    with torch.no_grad():
        next(tracker.model.parameters()).fill_(float("nan"))
    with pytest.raises(SelfCheckError, match="weights hold NaN or infinite values in 1 tensor"):
        self_check(tracker)


def test_non_finite_outputs_are_refused() -> None:
    tracker = make_tracker()
    with torch.no_grad():  # finite weights that overflow float32 on the way: NaN/inf tracks
        for p in tracker.model.parameters():
            p.mul_(1e30)
    with pytest.raises(SelfCheckError, match="non-finite tracks"):
        self_check(tracker)
    assert tracker.frames_seen == 0  # reset even when refused


def test_a_resolution_too_small_for_the_pyramid_is_refused() -> None:
    tracker = make_tracker((4, 4))
    side = min_model_side(tracker.model.config.stride, tracker.model.config.corr_levels)
    with pytest.raises(SelfCheckError, match=rf"model_resolution \[4, 4\] is too small.*at least {side} pixels"):
        self_check(tracker)
    assert issubclass(SelfCheckError, ValueError)  # callers refusing bad configuration catch ValueError


def test_non_finite_estimates_are_sent_as_not_visible_and_counted() -> None:
    tracker = make_tracker()
    with torch.no_grad():
        for p in tracker.model.transformer.parameters():
            p.fill_(float("nan"))
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    tracker.push(frame, 1)
    tracker.add_queries([[10.0, 10.0], [20.0, 15.0]], stamp=1)
    emitted = [t for i in range(2, 9) for t in tracker.push(frame, i)] + tracker.flush()
    tracked = [t for t in emitted if len(t.ids)]
    assert tracked and tracker.nonfinite_frames == len(tracked)
    for t in tracked:
        assert not t.visible.any()
        assert (t.visibility == 0).all() and (t.confidence == 0).all()
