"""The window schedule, the emission plan and the ROS-free session layer (cotracker3_core.windows / session)."""

from __future__ import annotations

import numpy as np
import pytest

from cotracker3_core import build_model
from cotracker3_core.config import preset
from cotracker3_core.session import StampGlitchError, TrackingSession
from cotracker3_core.streaming import (
    FrameSizeError,
    NotInWindowError,
    StampOrderError,
    StreamConfig,
    StreamingTracker,
    StreamState,
)
from cotracker3_core.windows import emission_plan, frames_emitted, window_starts

SIZE = (32, 32)
WINDOW, STEP = 4, 2


@pytest.fixture(scope="module")
def model():
    return build_model("online", window_len=WINDOW, model_resolution=SIZE, **preset("tiny"))


def make_tracker(model) -> StreamingTracker:
    config = StreamConfig(device="cpu", model_resolution=SIZE, window_len=WINDOW, step=STEP, iters=1)
    return StreamingTracker(model, config)


def frame(value: int, size: tuple[int, int] = SIZE) -> np.ndarray:
    return np.random.default_rng(value).integers(0, 256, (*size, 3), dtype=np.uint8)


def test_window_starts_cover_the_clip() -> None:
    assert list(window_starts(16, 16, 8)) == [0]
    assert list(window_starts(24, 16, 8)) == [0, 8]
    assert list(window_starts(25, 16, 8)) == [0, 8, 16]  # the last window is padded
    assert list(window_starts(5, 16, 8)) == [0]


def test_emission_plan() -> None:
    first = emission_plan(0, 16, 0, 8)
    assert (first.refined, first.new) == (range(0, 0), range(0, 16))
    second = emission_plan(8, 16, 16, 8)
    assert (second.refined, second.new, second.frames) == (range(8, 16), range(16, 24), range(8, 24))
    low_latency = emission_plan(4, 16, 16, 4)  # step 4: only the step frames before emitted_until are refined
    assert (low_latency.refined, low_latency.new) == (range(12, 16), range(16, 20))
    flush = emission_plan(8, 12, 16, 8)  # a short final window
    assert (flush.refined, flush.new) == (range(8, 16), range(16, 20))


@pytest.mark.parametrize("step", [1, 2, 4, 8])
def test_frames_emitted_follows_the_plan(step: int) -> None:
    assert [frames_emitted(p, 16, step) for p in (0, 15)] == [0, 0]
    assert frames_emitted(16, 16, step) == 16
    assert frames_emitted(16 + step, 16, step) == 16 + step
    assert frames_emitted(16 + step + step - 1, 16, step) == 16 + step


def test_stream_state_is_one_value_replaced_by_reset(model) -> None:
    tracker = make_tracker(model)
    for i in range(3):
        tracker.push(frame(i), 100 + i)
    state = tracker.state
    assert isinstance(state, StreamState)
    assert (state.frame_size, state.last_stamp, state.window_stamps) == (SIZE, 102, [100, 101, 102])
    ids = tracker.add_queries(np.array([[3.0, 4.0]]), stamp=101)
    assert state.ids == ids and state.next_id == 1
    tracker.reset()
    assert tracker.state is not state and tracker.state.ids == [] and tracker.frame_size is None


def test_typed_errors(model) -> None:
    tracker = make_tracker(model)
    with pytest.raises(NotInWindowError):
        tracker.add_queries(np.array([[1.0, 1.0]]))
    tracker.push(frame(0), 10)
    with pytest.raises(StampOrderError) as stamp_error:
        tracker.push(frame(1), 10)
    assert (stamp_error.value.stamp, stamp_error.value.last) == (10, 10)
    with pytest.raises(FrameSizeError) as size_error:
        tracker.push(frame(1, (16, 16)), 11)
    assert (size_error.value.size, size_error.value.expected) == ((16, 16), SIZE)
    with pytest.raises(NotInWindowError):
        tracker.add_queries(np.array([[1.0, 1.0]]), stamp=999)


def test_session_restarts_places_the_grid_and_hands_back_metadata(model) -> None:
    session = TrackingSession(make_tracker(model), grid_size=2, grid_query_frame=1, time_jump_tolerance_ns=10)
    steps = [session.push(frame(i), 100 + i, meta=f"m{i}") for i in range(5)]
    assert steps[0].grid is None and steps[1].grid.ids == [0, 1, 2, 3] and not steps[1].grid.error
    emitted = [e for s in steps for e in s.emitted]
    assert emitted and all(e.meta == f"m{e.tracks.stamp - 100}" for e in emitted)
    assert set(session._meta) <= set(session.tracker.window_stamps)  # forgotten once out of the window

    back = session.push(frame(9), 50, meta="again")  # time went back 54 ns > 10: flush, reset, then push
    assert back.restart is not None and back.restart.reason.startswith("time went back")
    assert back.restart.dropped_ids == [0, 1, 2, 3]
    assert [e.tracks.stamp for e in back.restart.flushed] and session.tracker.frames_seen == 1
    session.push(frame(9), 51)
    resized = session.push(frame(10, (16, 16)), 200)
    assert resized.restart.reason == f"image size changed from {SIZE} to (16, 16)"
    assert resized.restart.dropped_ids == [0, 1, 2, 3]  # the grid of the stream that started at 50
    again = session.push(frame(11, (16, 16)), 201)
    assert again.grid is not None and len(again.grid.ids) == 4  # the grid again, on frame 1 of the new stream

    bad = session.push(np.full((16, 16, 3), np.nan, np.float32), 202)
    assert isinstance(bad.rejected, ValueError) and bad.restart is None and not bad.emitted


@pytest.mark.parametrize(
    "frame_and_stamp, kind",
    [
        ((frame(7), 0), "zero"),
        ((frame(7), 103), "repeated"),
        ((frame(7), 98), "out of order"),  # 5 ns back, within the tolerance
    ],
)
def test_stamp_glitches_cost_only_the_frame(model, frame_and_stamp, kind) -> None:
    session = TrackingSession(make_tracker(model), grid_size=2, time_jump_tolerance_ns=10)
    for i in range(4):
        session.push(frame(i), 100 + i)
    ids, stamps = session.tracker.query_ids, session.tracker.window_stamps
    step = session.push(*frame_and_stamp)
    assert isinstance(step.rejected, StampGlitchError) and step.rejected.kind == kind
    assert step.restart is None and not step.emitted
    assert (session.tracker.query_ids, session.tracker.window_stamps) == (ids, stamps)
    assert session.push(frame(8), 104).rejected is None  # the stream goes on


def test_malformed_frame_is_rejected_before_any_reset(model) -> None:
    session = TrackingSession(make_tracker(model), grid_size=2)
    for i in range(3):
        session.push(frame(i), 100 + i)
    ids = session.tracker.query_ids
    tiny = session.push(np.zeros((1, 1, 3), np.uint8), 50)  # too small *and* back in time: no reset
    assert isinstance(tiny.rejected, ValueError) and tiny.restart is None
    assert session.tracker.query_ids == ids and session.tracker.frames_seen == 3
