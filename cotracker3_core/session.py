"""A tracking session: what a live consumer of the streaming engine does around it, independent of ROS.

The ROS node and the bag evaluation both drive the engine through this layer, so that they cannot differ:

- a frame whose stamp is not later than the previous one, or whose size differs, ends the stream: the window
  is flushed (its tracks are still delivered) and the engine is reset before the frame is pushed;
- an automatic grid of queries is placed on frame `grid_query_frame` of every stream (`grid_size` > 0);
- per-frame metadata given with a frame (a message header, the pixels for a debug image) is handed back
  with that frame's tracks, and forgotten once the frame has left the window.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .streaming import FrameSizeError, FrameTracks, StampOrderError, StreamingTracker


@dataclass
class Emitted:
    """The tracks of one frame with the metadata given when it was pushed (None if none was)."""

    tracks: FrameTracks
    meta: Any = None


@dataclass
class Restart:
    """A stream ended: why, what the flush delivered, and the flush's error (the reset happens regardless)."""

    reason: str
    flushed: list[Emitted] = field(default_factory=list)
    flush_error: Exception | None = None


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
    rejected: the engine refused the frame (bad array); nothing else happened after the restart.
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
    """

    def __init__(self, tracker: StreamingTracker, grid_size: int = 0, grid_query_frame: int = 0) -> None:
        self.tracker = tracker
        self.grid_size = grid_size
        self.grid_query_frame = grid_query_frame
        self._meta: dict[int, Any] = {}

    def push(self, frame: np.ndarray, stamp: int, meta: Any = None) -> SessionStep:
        """Push one (H, W, 3) RGB frame with its stamp (ns) and metadata, restarting the stream first when the
        stamp or the size breaks it."""
        step = SessionStep()
        stamp = int(stamp)
        try:
            try:
                t0 = time.perf_counter()
                emitted = self.tracker.push(frame, stamp)
            except (StampOrderError, FrameSizeError) as exc:  # refused before encoding: a new stream starts
                step.restart = self.restart(_restart_reason(exc))
                t0 = time.perf_counter()
                emitted = self.tracker.push(frame, stamp)
        except ValueError as exc:
            step.rejected = exc
            return step
        step.push_s = time.perf_counter() - t0
        self._meta[stamp] = meta
        index = self.tracker.frames_seen - 1
        if self.grid_size > 0 and index == self.grid_query_frame:
            step.grid = self._add_grid(index, stamp, (int(frame.shape[0]), int(frame.shape[1])))
        step.emitted = self._with_meta(emitted)
        self._prune()
        return step

    def restart(self, reason: str) -> Restart:
        """Flush the window (its tracks are returned), then reset the engine and forget all metadata."""
        restart = Restart(reason)
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


def _restart_reason(exc: StampOrderError | FrameSizeError) -> str:
    if isinstance(exc, StampOrderError):
        return f"image stamp {exc.stamp} ns is not later than the previous one ({exc.last} ns)"
    return f"image size changed from {exc.expected} to {exc.size}"
