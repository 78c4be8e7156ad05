"""One camera of the tracker node: its ROS side (publishers, depth input, counters) beside its core state
(`cotracker3_core.cameras.CameraStream`), the metadata kept with each frame, and its /diagnostics status."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from std_msgs.msg import Header

from cotracker3_core.cameras import CameraStream
from cotracker3_core.streaming import StreamingTracker

from . import diagnostics as diag
from .depth_input import DepthFrame, DepthInput


class FrameMeta(NamedTuple):
    """What the node keeps of an image while its frame is in the window: the header its tracks copy, the
    image size (H, W), the pixels while debug_image has readers, and its depth (with depth_topic)."""

    header: Header
    size: tuple[int, int]
    pixels: np.ndarray | None = None
    depth: DepthFrame | None = None


@dataclass(eq=False)
class Camera(CameraStream):
    """One camera's ROS side beside its core state (`CameraStream`: session, queue, losses): its publishers,
    depth input, counters. Queue items are (sequence number, message, monotonic arrival, arrival stamp in ns)."""

    tracks_pub: Any = None
    refined_pub: Any = None
    debug_pub: Any = None
    depth: DepthInput | None = None
    topic: str = ""
    stats: diag.Stats = field(default_factory=diag.Stats)
    last_image: float = field(default_factory=time.monotonic)
    timeout_warned: bool = False  # worker thread only
    nonfinite_reported: int = 0  # tracker.nonfinite_frames at the last diagnostics

    @property
    def tracker(self) -> StreamingTracker:
        return self.session.tracker

    def image_timed_out(self, timeout_s: float) -> bool:
        """Whether no image arrived for ``timeout_s`` (0: never), True only on the first check that finds it (a
        warning is then due); `timeout_warned` stays set until an image arrives."""
        silent = timeout_s > 0 and time.monotonic() - self.last_image > timeout_s
        first = silent and not self.timeout_warned
        self.timeout_warned = silent
        return first

    @property
    def label(self) -> str:
        """Prefix of its log lines: "" for the single camera."""
        return f"camera {self.name}: " if self.name else ""


def camera_status(
    cam: Camera, node_name: str, fqn: str, checkpoint: str, stats_lock: threading.Lock,
    batched_windows: int | None = None,
) -> DiagnosticStatus:
    """One camera's status: ``<node>: tracking`` for the single camera, ``<node>/<camera>: tracking`` for each
    of several (``fqn``: the node's full name, ``checkpoint``: its parameter; the counters under ``stats_lock``;
    ``batched_windows``: its windows refined together with other cameras', when the node batches them)."""
    tracker = cam.tracker
    dropped, nonfinite = cam.queue.dropped, tracker.nonfinite_frames
    with stats_lock:
        values, period_dropped = cam.stats.period_values(dropped)
        values.update(
            {
                diag.ACTIVE_QUERIES: str(len(tracker.query_ids)),
                diag.DEVICE: str(tracker.device),
                diag.CHECKPOINT: checkpoint or "(none: untrained weights)",
                diag.UNTRAINED: str(tracker.untrained).lower(),
                diag.LAST_ERROR: cam.stats.last_error,
                diag.LAST_IMAGE_AGE: f"{time.monotonic() - cam.last_image:.1f}",
                diag.NONFINITE_TOTAL: str(nonfinite),
            }
        )
    if batched_windows is not None:
        values[diag.BATCHED_TOTAL] = str(batched_windows)
    depth_values, depth_problem = cam.depth.diagnostics() if cam.depth is not None else ({}, "")
    values.update(depth_values)
    status = DiagnosticStatus(
        name=f"{node_name}{'/' + cam.name if cam.name else ''}{diag.STATUS_SUFFIX}",
        hardware_id=f"{fqn} on {tracker.device}",
    )
    if nonfinite > cam.nonfinite_reported:
        status.level = DiagnosticStatus.ERROR
        status.message = f"{nonfinite - cam.nonfinite_reported} frame(s) with NaN/inf tracks (sent not visible)"
    elif tracker.untrained:
        status.level, status.message = DiagnosticStatus.WARN, "untrained weights: tracks are noise"
    elif period_dropped:
        status.level, status.message = DiagnosticStatus.WARN, (
            f"{period_dropped} frame(s) dropped or lost: tracker too slow"
        )
    elif cam.timeout_warned:
        status.level, status.message = DiagnosticStatus.WARN, f"no image for {values[diag.LAST_IMAGE_AGE]} s"
    elif depth_problem:
        status.level, status.message = DiagnosticStatus.WARN, depth_problem
    else:
        status.level, status.message = DiagnosticStatus.OK, "tracking"
    status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
    cam.nonfinite_reported = nonfinite
    return status
