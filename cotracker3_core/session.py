"""A tracking session: what a live consumer of the streaming engine does around it, independent of ROS.

The ROS node and the bag evaluation both drive the engine through this layer, so that they cannot differ:

- only a real break ends the stream: a frame of another size, or a stamp earlier than the previous one by
  more than `time_jump_tolerance_ns` (a bag looping, simulated time restarting). The window is flushed (its
  tracks are still delivered), the engine is reset (the `Restart` names the ids it dropped, so a client can
  re-add its points) and the frame starts the new stream;
- small glitches only cost the frame: a zero stamp, a repeated stamp, a stamp slightly earlier than the
  previous one (within the tolerance) or a malformed frame is rejected (`SessionStep.rejected`) and the
  stream goes on with every query intact;
- an automatic grid of queries is placed on frame `grid_query_frame` of every stream (`grid_size` > 0);
- per-frame metadata given with a frame (a message header, the pixels for a debug image) is handed back
  with that frame's tracks, and forgotten once the frame has left the window.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .multi_stream import MultiStreamTracker
from .streaming import FrameSizeError, FrameTracks, StampOrderError, StreamingTracker


@dataclass
class Emitted:
    """The tracks of one frame with the metadata given when it was pushed (None if none was)."""

    tracks: FrameTracks
    meta: Any = None


#: Default of `TrackingSession.time_jump_tolerance_ns` (and of the node's ``time_jump_tolerance_s``).
DEFAULT_TIME_JUMP_TOLERANCE_NS = 1_000_000_000


class StampGlitchError(ValueError):
    """A frame's stamp is zero, repeated or slightly out of order: the frame is dropped, the stream goes on.

    kind: "zero", "repeated" or "out of order" (a short key, e.g. for throttled logs and counters).
    """

    def __init__(self, kind: str, text: str) -> None:
        super().__init__(text)
        self.kind = kind


@dataclass
class Restart:
    """A stream ended: why, what the flush delivered, the flush's error (the reset happens regardless), and the
    ids of the queries the reset dropped."""

    reason: str
    flushed: list[Emitted] = field(default_factory=list)
    flush_error: Exception | None = None
    dropped_ids: list[int] = field(default_factory=list)


@dataclass
class GridResult:
    """The automatic grid placed on a frame: its query ids, or why it could not be placed."""

    frame_index: int
    ids: list[int] = field(default_factory=list)
    error: str = ""


@dataclass
class SessionStep:
    """What one pushed frame caused.

    restart: the stream restart the frame triggered before it was pushed, or None.
    rejected: the frame was refused (bad array, or a `StampGlitchError`); nothing else happened.
    emitted: tracks the push emitted (new and refined), with their metadata.
    grid: the automatic grid placed on this frame, or None.
    push_s: seconds spent in the engine's push.
    """

    restart: Restart | None = None
    rejected: ValueError | None = None
    emitted: list[Emitted] = field(default_factory=list)
    grid: GridResult | None = None
    push_s: float = 0.0


class TrackingSession:
    """Drives a `StreamingTracker` as a live consumer does (see the module docstring).

    Args:
        tracker: the engine.
        grid_size: automatic grid of grid_size x grid_size points; 0: none. Settable at any time.
        grid_query_frame: frame of each stream (counted from its start) the grid is placed on.
        time_jump_tolerance_ns: a stamp earlier than the previous one by more than this restarts the stream;
            by less, the frame is only rejected.
    """

    def __init__(
        self,
        tracker: StreamingTracker,
        grid_size: int = 0,
        grid_query_frame: int = 0,
        time_jump_tolerance_ns: int = DEFAULT_TIME_JUMP_TOLERANCE_NS,
    ) -> None:
        if time_jump_tolerance_ns < 0:
            raise ValueError(f"time_jump_tolerance_ns must be >= 0, got {time_jump_tolerance_ns}")
        self.tracker = tracker
        self.grid_size = grid_size
        self.grid_query_frame = grid_query_frame
        self.time_jump_tolerance_ns = int(time_jump_tolerance_ns)
        self._meta: dict[int, Any] = {}

    def push(self, frame: np.ndarray, stamp: int, meta: Any = None) -> SessionStep:
        """Push one (H, W, 3) RGB frame with its stamp (ns) and metadata, restarting the stream first when the
        size or a large jump back in time breaks it (see the module docstring)."""
        step = self.admit(frame, stamp)
        if step.rejected is None:
            t0 = time.perf_counter()
            emitted = self.tracker.push(frame, stamp)
            self.complete(step, frame, stamp, emitted, time.perf_counter() - t0, meta)
        return step

    def admit(self, frame: np.ndarray, stamp: int) -> SessionStep:
        """The first half of `push`, for a caller that runs the engine itself (`push_sessions`): check the frame and
        its stamp, restarting the stream first when they break it; ``step.rejected`` says why the frame cannot be
        pushed (nothing else happened then). An admitted frame must be pushed, then given to `complete`."""
        step = SessionStep()
        stamp = int(stamp)
        try:
            if stamp <= 0:
                raise StampGlitchError("zero", f"image stamp is {stamp}: the camera does not stamp its images "
                                       "(use stamp_source receive or auto)")
            try:
                self.tracker.check_push(frame, stamp)
            except StampOrderError as exc:
                back_ns = exc.last - exc.stamp
                if back_ns == 0:
                    raise StampGlitchError("repeated", f"image stamp {stamp} ns repeats the previous one") from None
                if back_ns <= self.time_jump_tolerance_ns:
                    raise StampGlitchError(
                        "out of order", f"image stamp {stamp} ns is {back_ns / 1e6:.1f} ms earlier than the previous "
                        f"one (within time_jump_tolerance_s: frame dropped, no reset)") from None
                step.restart = self.restart(f"time went back {back_ns / 1e9:.3f} s (image stamp {stamp} ns after "
                                            f"{exc.last} ns)")
            except FrameSizeError as exc:  # raised after every other check: the frame itself is fine
                step.restart = self.restart(f"image size changed from {exc.expected} to {exc.size}")
        except ValueError as exc:
            step.rejected = exc
        return step

    def complete(
        self, step: SessionStep, frame: np.ndarray, stamp: int, emitted: list[FrameTracks], push_s: float,
        meta: Any = None,
    ) -> SessionStep:
        """The second half of `push`: what the engine's push of an admitted frame emitted (``push_s`` seconds)
        joined with the metadata, the automatic grid placed when this is its frame."""
        stamp = int(stamp)
        step.push_s = push_s
        self._meta[stamp] = meta
        index = self.tracker.frames_seen - 1
        if self.grid_size > 0 and index == self.grid_query_frame:
            step.grid = self._add_grid(index, stamp, (int(frame.shape[0]), int(frame.shape[1])))
        step.emitted = self._with_meta(emitted)
        self._prune()
        return step

    def restart(self, reason: str) -> Restart:
        """Flush the window (its tracks are returned), then reset the engine and forget all metadata."""
        restart = Restart(reason, dropped_ids=self.tracker.query_ids)
        try:
            restart.flushed = self._with_meta(self.tracker.flush())
        except Exception as exc:  # a failing flush must not block the reset
            restart.flush_error = exc
        self._meta.clear()
        self.tracker.reset()
        return restart

    def finish(self) -> list[Emitted]:
        """Flush the window at the end of a stream (the engine keeps its state: `restart` resets it)."""
        return self._with_meta(self.tracker.flush())

    def meta(self, stamp: int) -> Any:
        """Metadata of a frame still in the window, or None."""
        return self._meta.get(int(stamp))

    def _add_grid(self, index: int, stamp: int, size: tuple[int, int]) -> GridResult:
        result = GridResult(index)
        try:
            result.ids = self.tracker.add_mask_queries(np.ones(size, dtype=bool), self.grid_size, stamp=stamp)
        except ValueError as exc:
            result.error = str(exc)
        return result

    def _with_meta(self, emitted: list[FrameTracks]) -> list[Emitted]:
        return [Emitted(tracks, self._meta.get(tracks.stamp)) for tracks in emitted]

    def _prune(self) -> None:
        """Forget the metadata of frames that left the window."""
        stamps = self.tracker.window_stamps
        oldest = min(stamps) if stamps else None
        for stamp in [s for s in self._meta if oldest is None or s < oldest]:
            del self._meta[stamp]


def push_sessions(
    engine: MultiStreamTracker, frames: Mapping[Hashable, tuple[TrackingSession, np.ndarray, int, Any]]
) -> dict[Hashable, SessionStep]:
    """`TrackingSession.push` for several cameras at once, the engine run once for all of them: camera ->
    (its session, frame, stamp, metadata); each session's tracker must be ``engine[camera]``. The frames are
    admitted one by one (glitches, restarts), the admitted ones pushed together (`MultiStreamTracker.push_many`:
    one encoder call, the due windows in one refinement call), then completed. Returns camera -> its step;
    ``push_s`` is the shared engine time."""
    steps = {camera: session.admit(frame, stamp) for camera, (session, frame, stamp, _) in frames.items()}
    admitted = {
        camera: (frame, stamp) for camera, (_, frame, stamp, _) in frames.items() if steps[camera].rejected is None
    }
    t0 = time.perf_counter()
    emitted = engine.push_many(admitted)
    push_s = time.perf_counter() - t0
    for camera, (frame, stamp) in admitted.items():
        session, _, _, meta = frames[camera]
        session.complete(steps[camera], frame, stamp, emitted[camera], push_s, meta)
    return steps
