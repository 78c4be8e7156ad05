"""Behaviour of the streaming engine: encoder reuse, query management, bounded state, bad input.

Small architectures at small resolutions keep these fast; the engine's numbers are checked against the
official implementation in test_core_parity.py.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from cotracker3_core import build_model
from cotracker3_core.config import preset
from cotracker3_core.query_admission import MAX_ID
from cotracker3_core.streaming import QueryLimitError, StreamConfig, StreamingTracker

TINY = preset("tiny")
RES = (32, 48)


def make_tracker(step: int = 8, resolution=RES, seed: int = 0, iters: int = 6) -> StreamingTracker:
    torch.manual_seed(seed)
    model = build_model("online", model_resolution=resolution, **TINY)
    return StreamingTracker(model, StreamConfig(model_resolution=resolution, step=step, device="cpu", iters=iters))


def frames(n: int, h: int = 40, w: int = 60, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (h, w + n, 3), dtype=np.uint8)
    return [np.ascontiguousarray(base[:, i : i + w]) for i in range(n)]  # a panning camera


def snapshot(tracker: StreamingTracker):
    return (tracker.query_ids, tracker.frames_seen, tracker.window_stamps, tracker.state_nbytes(), tracker.frame_size)


def test_each_frame_is_encoded_once():
    tracker = make_tracker()
    encoded = []
    tracker.model.encoder.register_forward_hook(lambda m, inp, out: encoded.append(inp[0].shape[0]))
    video = frames(45)
    for i, f in enumerate(video):
        tracker.push(f, stamp=i + 1)
        if i == 0:
            tracker.add_queries([[10, 10], [30, 20]])
    tracker.flush()
    assert sum(encoded) == len(video)


@pytest.mark.parametrize("step", [1, 2, 4, 8])
def test_every_frame_emitted_once_and_refined_at_most_once(step):
    tracker = make_tracker(step=step)
    video = frames(30)
    new, refined = [], []
    for i, f in enumerate(video):
        out = tracker.push(f, stamp=(i + 1) * 10)
        if i == 0:
            tracker.add_queries([[5, 5]], ids=[42])
        out += []
        for ft in out:
            (refined if ft.refined else new).append(ft.frame_index)
            assert ft.stamp == (ft.frame_index + 1) * 10
            assert ft.ids.tolist() == [42]
            assert ft.xy.shape == (1, 2) and ft.xy.dtype == np.float32
    for ft in tracker.flush():
        (refined if ft.refined else new).append(ft.frame_index)
    assert sorted(new) == list(range(30))
    assert len(set(refined)) == len(refined)
    assert set(refined) <= set(new)
    # The first window runs once 16 frames are in; later ones every `step` frames.
    assert len(refined) > 0


def test_add_and_remove_queries_mid_stream():
    tracker = make_tracker()
    video = frames(48)
    first = None
    history: dict[int, list] = {}
    for i, f in enumerate(video):
        out = tracker.push(f, stamp=1000 + i)
        if i == 0:
            first = tracker.add_queries([[10, 10], [20, 20], [40, 30]])
        if i == 20:
            stamp = tracker.window_stamps[2]  # an older frame still in the window
            added = tracker.add_queries([[15, 25]], stamp=stamp, ids=[100])
            added_frame = stamp - 1000
            before_removal = tracker.state_nbytes()
            tracker.remove_queries([first[1]])
            assert tracker.state_nbytes() < before_removal  # its support and estimates are freed
        for ft in out:
            history.setdefault(ft.frame_index, []).append(ft)
    for ft in tracker.flush():
        history.setdefault(ft.frame_index, []).append(ft)
    assert first == [0, 1, 2] and added == [100]
    assert tracker.query_ids == [0, 2, 100]
    latest = {k: v[-1] for k, v in history.items()}
    # Before the change every frame carries the three original ids.
    assert latest[5].ids.tolist() == [0, 1, 2]
    # Afterwards the removed id is gone; the new one appears from its own frame on, never before it.
    final_frames = [k for k in latest if k > 30]
    assert final_frames and all(latest[k].ids.tolist() == [0, 2, 100] for k in final_frames)
    for k, v in history.items():
        for ft in v:
            if 100 in ft.ids:
                assert k >= added_frame
    tracked = [latest[k].xy[latest[k].ids.tolist().index(100)] for k in final_frames]
    assert np.isfinite(tracked).all()


def test_ids_are_assigned_after_callers_ids():
    tracker = make_tracker()
    tracker.push(frames(1)[0], stamp=1)
    assert tracker.add_queries([[1, 1]], ids=[7]) == [7]
    assert tracker.add_queries([[2, 2], [3, 3]]) == [8, 9]


def test_empty_query_set_idles_and_still_emits_frames():
    tracker = make_tracker()
    calls = []
    tracker.model.transformer.register_forward_hook(lambda *a: calls.append(1))
    emitted = []
    for i, f in enumerate(frames(40)):
        emitted += tracker.push(f, stamp=i + 1)
    assert not calls
    assert [e.frame_index for e in emitted] == list(range(len(emitted)))
    assert all(len(e.ids) == 0 for e in emitted)


def rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.slow
def test_state_and_memory_bounded_over_5000_frames():
    # One refinement iteration keeps 5,000 frames quick; the state's size does not depend on it.
    tracker = make_tracker(resolution=(32, 32), iters=1)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (20, 60, 3), dtype=np.uint8)
    state_at, rss_at = {}, {}
    for i in range(5000):
        frame = np.roll(base, i % 40, axis=1)[:, :20]
        tracker.push(frame, stamp=i + 1)
        if i == 0:
            tracker.add_queries(rng.uniform(0, 19, (32, 2)))
        if i + 1 in (1000, 5000):
            state_at[i + 1], rss_at[i + 1] = tracker.state_nbytes(), rss_bytes()
    growth_mb = (rss_at[5000] - rss_at[1000]) / 2**20
    print(f"engine state {state_at[1000]} B at frame 1000, {state_at[5000]} B at 5000; RSS growth {growth_mb:.2f} MB")
    assert state_at[1000] == state_at[5000]
    assert growth_mb <= 20


@pytest.fixture()
def running_tracker() -> StreamingTracker:
    tracker = make_tracker()
    for i, f in enumerate(frames(20)):
        tracker.push(f, stamp=(i + 1) * 100)
        if i == 0:
            tracker.add_queries([[10, 10]], ids=[5])
    return tracker


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda t: t.push(np.zeros((40, 60), np.uint8), 10_000), "must be \\(H, W, 3\\)"),
        (lambda t: t.push(np.zeros((40, 60, 4), np.uint8), 10_000), "must be \\(H, W, 3\\)"),
        (lambda t: t.push(np.zeros((40, 60, 3), np.int32), 10_000), "dtype"),
        (lambda t: t.push(np.full((40, 60, 3), np.nan, np.float32), 10_000), "NaN"),
        (lambda t: t.push(np.zeros((30, 60, 3), np.uint8), 10_000), "differs from the stream"),
        (lambda t: t.push(np.zeros((40, 60, 3), np.uint8), 2000), "not later"),
        (lambda t: t.push(np.zeros((40, 60, 3), np.uint8), 100), "not later"),
        (lambda t: t.add_queries([[1.0, float("nan")]]), "NaN"),
        (lambda t: t.add_queries([[1.0, float("inf")]]), "NaN or infinite"),
        (lambda t: t.add_queries([[1.0, 2.0, 3.0]]), "\\(N, 2\\)"),
        (lambda t: t.add_queries([[100.0, 5.0]]), "outside"),
        (lambda t: t.add_queries([[-1.0, 5.0]]), "outside"),
        (lambda t: t.add_queries([[5.0, 5.0]], stamp=100), "not a frame in the window"),
        (lambda t: t.add_queries([[5.0, 5.0]], stamp=12_345), "not a frame in the window"),
        (lambda t: t.add_queries([[5.0, 5.0], [6, 6]], ids=[1, 1]), "duplicate"),
        (lambda t: t.add_queries([[5.0, 5.0]], ids=[5]), "already in use"),
        (lambda t: t.add_queries([[5.0, 5.0]], ids=[1, 2]), "ids given"),
        (lambda t: t.remove_queries([99]), "unknown query ids"),
        (lambda t: t.add_mask_queries(np.ones((10, 10), np.uint8), 4), "mask is"),
        (lambda t: t.add_mask_queries(np.zeros((40, 60), np.uint8), 4), "no grid point"),
        (lambda t: t.add_mask_queries(np.ones((40, 60), np.uint8), 5000), "grid_size 5000"),
        (lambda t: t.add_queries(np.ones((5_000, 2), np.float32)), "at most 4096"),
        (lambda t: t.add_queries([[5.0, 5.0]], ids=[MAX_ID + 1]), "uint32"),
        (lambda t: t.add_queries([[5.0, 5.0]], ids=[-1]), "uint32"),
    ],
)
def test_bad_input_is_rejected_and_state_untouched(running_tracker, call, message):
    before = snapshot(running_tracker)
    with pytest.raises(ValueError, match=message):
        call(running_tracker)
    assert snapshot(running_tracker) == before
    # ... and the engine keeps serving.
    out = running_tracker.push(frames(21)[20], stamp=2_100) + running_tracker.push(frames(22)[21], stamp=2_200)
    assert all(ft.ids.tolist() == [5] for ft in out)


def test_queries_before_first_frame_are_rejected():
    tracker = make_tracker()
    with pytest.raises(ValueError, match="no frame"):
        tracker.add_queries([[1, 1]])


def test_mask_queries_and_reset():
    tracker = make_tracker()
    video = frames(3)
    tracker.push(video[0], stamp=1)
    mask = np.zeros((40, 60), np.uint8)
    mask[10:30, 20:50] = 255
    ids = tracker.add_mask_queries(mask, grid_size=8)
    assert ids and tracker.query_ids == ids
    tracker.reset()
    assert tracker.query_ids == [] and tracker.frame_size is None and tracker.frames_seen == 0
    tracker.push(np.zeros((20, 20, 3), np.uint8), stamp=1)  # a new stream may have another size
    assert tracker.frame_size == (20, 20)


def test_threshold_is_tunable_and_checked():
    tracker = make_tracker()
    tracker.visibility_threshold = 0.2
    assert tracker.visibility_threshold == 0.2
    with pytest.raises(ValueError):
        tracker.visibility_threshold = 1.5


@pytest.mark.parametrize("bad", [dict(step=3), dict(step=16), dict(precision="fp8"), dict(device="tpu"), dict(iters=0)])
def test_stream_config_validation(bad):
    with pytest.raises(ValueError):
        StreamConfig(**bad)


def limited_tracker(max_points: int, per_request: int) -> StreamingTracker:
    model = build_model("online", model_resolution=RES, **TINY)
    config = StreamConfig(model_resolution=RES, step=8, device="cpu", max_points=max_points,
                          max_points_per_request=per_request)
    tracker = StreamingTracker(model, config)
    tracker.push(frames(1)[0], stamp=1)
    return tracker


def test_point_limits_refuse_whole_requests():
    tracker = limited_tracker(max_points=10, per_request=6)
    assert tracker.add_queries(np.full((6, 2), 5.0)) == list(range(6))
    before = snapshot(tracker)
    with pytest.raises(QueryLimitError, match="at most 6 \\(max_points_per_request\\)"):
        tracker.add_queries(np.full((7, 2), 5.0))
    with pytest.raises(QueryLimitError, match="would make 11 tracked; at most 10"):
        tracker.add_queries(np.full((5, 2), 5.0))  # within the request limit, over the total: nothing added
    with pytest.raises(QueryLimitError, match="grid_size 3"):  # 3x3 = 9 grid points > 6 per request
        tracker.add_mask_queries(np.ones((40, 60), bool), 3)
    assert snapshot(tracker) == before
    assert tracker.add_queries(np.full((4, 2), 5.0)) == [6, 7, 8, 9]  # exactly up to the limit
    tracker.remove_queries([0, 1])
    assert tracker.add_mask_queries(np.ones((40, 60), bool), 1) == [10]  # room again after a removal


def test_automatic_ids_never_pass_uint32():
    tracker = limited_tracker(max_points=10, per_request=10)
    assert tracker.add_queries([[5.0, 5.0]], ids=[MAX_ID]) == [MAX_ID]
    before = snapshot(tracker)
    with pytest.raises(QueryLimitError, match="automatic ids exhausted"):
        tracker.add_queries([[6.0, 6.0]])
    assert snapshot(tracker) == before
    assert tracker.add_queries([[6.0, 6.0]], ids=[7]) == [7]  # explicit ids still work
    tracker.reset()
    tracker.push(frames(1)[0], stamp=1)
    assert tracker.add_queries([[6.0, 6.0]]) == [0]  # a reset starts the ids over
