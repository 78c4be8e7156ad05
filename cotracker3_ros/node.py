"""ROS 2 node that tracks points on a camera stream with CoTracker3: a thin shell over
`cotracker3_core.streaming.StreamingTracker`.

Threads: the executor's callbacks only enqueue images into a bounded drop-oldest queue (`queue_size`);
one worker thread converts them, runs the engine, publishes the tracks and the diagnostics. Services run
in their own callback group and take the engine lock, so they wait at most one tracking step.

Subscribed: ``image`` (sensor_msgs/Image) or, with ``compressed: true``, ``image/compressed``
(sensor_msgs/CompressedImage); SensorDataQoS, overridable through ROS QoS overrides
(``qos_overrides./image.subscription.reliability`` ...).
With ``depth_topic`` set, also the aligned depth image and ``camera_info_topic`` (`depth_input`).
Published: ``tracks`` and ``tracks_refined`` (cotracker3_msgs/Tracks, header copied from the image),
``debug_image`` (sensor_msgs/Image), ``tracks/points`` (sensor_msgs/PointCloud2, with depth), ``/diagnostics``.
Services (private, under the node's name: ``/tracker_node/add_points`` in the root namespace): ``~/add_points``,
``~/add_mask_points``, ``~/remove_points`` (cotracker3_msgs/srv), ``~/reset`` (std_srvs/Trigger).
Parameters: see `cotracker3_ros.params`.

Run: ``ros2 run cotracker3_ros tracker_node --ros-args --params-file config/tracker.yaml`` or
``python -m cotracker3_ros.node --ros-args ...``.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # python -m cotracker3_ros.node: signal handlers first, then the heavy imports below
    from cotracker3_ros.lifecycle import main as _main

    sys.exit(_main())

import threading
import time
import traceback
from typing import Any, NamedTuple

import numpy as np
import torch
from cotracker3_msgs.msg import Tracks
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from cotracker3_core import hub
from cotracker3_core.intake import DropOldestQueue, LossCounter, frame_stamp
from cotracker3_core.self_check import self_check
from cotracker3_core.session import Emitted, Restart, StampGlitchError, TrackingSession
from cotracker3_core.streaming import StreamingTracker

from . import diagnostics as diag
from .conversions import frame_tracks_to_msg, message_to_rgb, ns_to_time, rgb_to_image, time_to_ns
from .debug_image import draw_tracks
from .depth_input import DepthFrame, DepthInput
from .lifecycle import main
from .params import (
    NODE_NAME,
    PARAMS,
    ParamSpec,
    check_grid_param,
    check_node_params,
    parse_arch,
    stream_config_from_params,
)
from .services import QueryServices

__all__ = ["NODE_NAME", "TrackerNode", "main", "parse_arch", "stream_config_from_params"]

#: Longest time a reset waits for the frames received before it to be tracked; what is left is dropped
#: (counted), so a reset never waits on a backlog.
RESET_WAIT_S = 2.0
#: Seconds between two log lines for the same reason of rejecting frames.
REJECT_LOG_PERIOD_S = 5.0
_LIVE_PARAMS = {p.name for p in PARAMS if not p.read_only}


# --- parameters ------------------------------------------------------------------------------------


def _descriptor(spec: ParamSpec) -> ParameterDescriptor:
    d = ParameterDescriptor(
        description=spec.description, read_only=spec.read_only, additional_constraints=spec.constraints
    )
    if spec.range is not None:
        if isinstance(spec.default, float):
            d.floating_point_range = [
                FloatingPointRange(from_value=float(spec.range[0]), to_value=float(spec.range[1]))
            ]
        else:
            d.integer_range = [IntegerRange(from_value=int(spec.range[0]), to_value=int(spec.range[1]), step=1)]
    return d


# --- the node ----------------------------------------------------------------------------------------


class _FrameMeta(NamedTuple):
    """What the node keeps of an image while its frame is in the window: the header its tracks copy, the
    image size (H, W), the pixels while debug_image has readers, and its depth (with depth_topic)."""

    header: Header
    size: tuple[int, int]
    pixels: np.ndarray | None = None
    depth: DepthFrame | None = None


class TrackerNode(Node):
    """CoTracker3 on a camera stream (see the module docstring for topics, services and threads).

    Args:
        node_name: ROS node name.
        tracker: an already built engine (tests, demos); by default it is built from the parameters.
        **kwargs: passed to rclpy's Node (``context``, ``parameter_overrides``, ``namespace``...).
    """

    def __init__(self, node_name: str = NODE_NAME, *, tracker: StreamingTracker | None = None, **kwargs: Any) -> None:
        # First: destroy_node (called by the context's shutdown) must work on a node whose start-up failed.
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        super().__init__(node_name, **kwargs)
        for spec in PARAMS:
            self.declare_parameter(spec.name, spec.default, _descriptor(spec))
        values = {spec.name: self.get_parameter(spec.name).value for spec in PARAMS}
        self._publish_refined = bool(values["publish_refined"])
        self._mask_grid_size = int(values["mask_grid_size"])
        self._diag_period = float(values["diagnostics_period"])
        self._checkpoint = values["checkpoint"]
        self._stamp_source = values["stamp_source"]
        self._image_timeout_s = float(values["image_timeout_s"])
        check_node_params(values)
        threads = int(values["num_threads"]) or (os.cpu_count() or 1)
        torch.set_num_threads(threads)

        if tracker is None:
            config = stream_config_from_params(values).resolved()
            self.get_logger().info(
                f"loading CoTracker3: checkpoint={config.checkpoint or '(none: untrained)'} device={config.device} "
                f"model_resolution={list(config.model_resolution)} window_len={config.window_len} "
                f"step={config.step} iters={config.iters}"
            )
            tracker = StreamingTracker.from_config(config)
            self_check(tracker)  # NaN weights or an unusable resolution: refuse now, not on the first frame
        self._tracker = tracker
        if self._checkpoint and hub.official_name_for(self._checkpoint) is not None:
            self.get_logger().warning(
                f"using the official CoTracker3 weights '{self._checkpoint}': licensed CC BY-NC 4.0, "
                "non-commercial use only (https://creativecommons.org/licenses/by-nc/4.0/)"
            )
        if tracker.untrained:
            self.get_logger().warning(
                "UNTRAINED WEIGHTS: no checkpoint given, the published tracks are noise; set the 'checkpoint' "
                "parameter (the shipped default is lite) to track for real"
            )
        self.get_logger().info(f"tracker ready on {tracker.device}")

        # Engine and session state: touched by the worker and by the services, always under this lock.
        self._engine_lock = threading.Lock()
        self._session = TrackingSession(
            tracker, int(values["grid_size"]), int(values["grid_query_frame"]),
            time_jump_tolerance_ns=round(float(values["time_jump_tolerance_s"]) * 1e9),
        )
        self._stats = diag.Stats()
        self._reject_logged: dict[str, float] = {}  # worker thread only
        self._stats_lock = threading.Lock()
        self._losses = LossCounter()  # image callback only
        self._last_image = time.monotonic()
        self._timeout_warned = False  # worker thread only
        # Items are (sequence number, message, monotonic arrival time, arrival stamp in ns of the node clock).
        # The sequence numbers let a reset wait for the frames received before it: a dropped frame always has
        # a later one behind it in the queue.
        self._queue: DropOldestQueue[tuple[int, Image | CompressedImage, float, int]] = DropOldestQueue(
            values["queue_size"]
        )
        self._progress = threading.Condition()
        self._seq_received = 0
        self._seq_done = 0

        self._tracks_pub = self.create_publisher(
            Tracks, "tracks", 10, qos_overriding_options=QoSOverridingOptions.with_default_policies()
        )
        self._refined_pub = self.create_publisher(
            Tracks, "tracks_refined", 10, qos_overriding_options=QoSOverridingOptions.with_default_policies()
        )
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._debug_pub = None
        if values["debug_image"]:
            self._debug_pub = self.create_publisher(
                Image, "debug_image", QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
            )

        if values["compressed"]:
            msg_type, topic = CompressedImage, "image/compressed"
        else:
            msg_type, topic = Image, "image"
        self._image_sub = self.create_subscription(
            msg_type,
            topic,
            self._on_image,
            qos_profile_sensor_data,
            qos_overriding_options=QoSOverridingOptions.with_default_policies(),
        )

        self._depth = DepthInput.create(self, values, getattr(self._image_sub, "topic_name", topic))  # None: off

        self._query_services = QueryServices(
            self, tracker, self._engine_lock, self.flush_and_reset, lambda: self._mask_grid_size
        )

        # Registered after the declarations: rclpy calls it for declare_parameter too.
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._nonfinite_reported = 0  # tracker.nonfinite_frames at the last diagnostics
        self._worker = threading.Thread(target=self._run_worker, name="cotracker3_worker", daemon=True)
        self._worker.start()
        # Subscription.topic_name is missing from older rclpy releases.
        self.get_logger().info(
            f"subscribed to {getattr(self._image_sub, 'topic_name', topic)} ({msg_type.__name__}); publishing "
            f"{self._tracks_pub.topic_name}"
        )

    # -- public helpers (tests, demo) -------------------------------------------------------------------

    @property
    def tracker(self) -> StreamingTracker:
        return self._tracker

    @property
    def dropped_frames(self) -> int:
        return self._queue.dropped

    @property
    def pending_frames(self) -> int:
        """Frames received but not yet pushed into the engine."""
        return len(self._queue)

    def flush_and_reset(self, reason: str = "reset requested", wait_s: float = RESET_WAIT_S) -> int:
        """Finish the frames received so far (up to ``wait_s``), publish the tracks of the frames still in
        the window, then start a new stream.

        Returns the number of frames whose tracks the flush emitted.
        """
        with self._progress:
            target = self._seq_received
            self._progress.wait_for(lambda: self._seq_done >= target or self._stop.is_set(), timeout=wait_s)
        with self._engine_lock:
            # A backlog left after wait_s is dropped (and counted), not waited for; later frames stay.
            self._queue.drop_where(lambda item: item[0] <= target)
            return self._restart_locked(reason, warn=False)

    def stop_worker(self, timeout_s: float = 10.0) -> bool:
        """Stop the worker (it finishes its current step, up to ``timeout_s``) and release waiting resets;
        returns whether it has stopped."""
        self._stop.set()
        if self._worker is None:  # start-up failed before the worker existed
            return True
        self._queue.close()
        with self._progress:
            self._progress.notify_all()
        if self._worker.is_alive() and threading.current_thread() is not self._worker:
            self._worker.join(timeout=timeout_s)
        return not self._worker.is_alive()

    def destroy_node(self) -> None:
        self.stop_worker()
        super().destroy_node()

    # -- callbacks: enqueue only ----------------------------------------------------------------------

    def _on_image(self, msg: Image | CompressedImage, info: dict[str, Any]) -> None:
        # rclpy passes the middleware's MessageInfo to a callback that cannot be called with the message alone
        # (so no default for ``info``): its sequence numbers count the frames lost before this callback.
        arrival_ns = self.get_clock().now().nanoseconds
        self._losses.observe(info, time_to_ns(msg.header.stamp))
        with self._progress:
            self._seq_received += 1
            seq = self._seq_received
        self._last_image = time.monotonic()
        self._queue.put((seq, msg, self._last_image, arrival_ns))
        with self._stats_lock:
            self._stats.received += 1
            self._stats.period_received += 1
            self._stats.lost = self._losses.lost

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        updates: dict[str, Any] = {}
        for param in params:
            if param.name not in _LIVE_PARAMS:
                continue  # read-only ones are refused by rclpy itself; qos_overrides.* are not ours
            if param.name == "visibility_threshold":
                value = float(param.value)
                if not 0.0 <= value <= 1.0:
                    return SetParametersResult(successful=False, reason="visibility_threshold must be in [0, 1]")
            if param.name in ("grid_size", "mask_grid_size"):
                try:
                    check_grid_param(param.name, int(param.value), self._tracker.config.max_points_per_request)
                except ValueError as exc:
                    return SetParametersResult(successful=False, reason=str(exc))
            updates[param.name] = param.value
        if "visibility_threshold" in updates:
            self._tracker.visibility_threshold = float(updates["visibility_threshold"])
        if "publish_refined" in updates:
            self._publish_refined = bool(updates["publish_refined"])
        if "grid_size" in updates:
            self._session.grid_size = int(updates["grid_size"])
        if "grid_query_frame" in updates:
            self._session.grid_query_frame = int(updates["grid_query_frame"])
        if "mask_grid_size" in updates:
            self._mask_grid_size = int(updates["mask_grid_size"])
        if "image_timeout_s" in updates:
            self._image_timeout_s = float(updates["image_timeout_s"])
        for name, value in updates.items():
            self.get_logger().info(f"parameter {name} set to {value}")
        return SetParametersResult(successful=True)

    # -- worker -----------------------------------------------------------------------------------------

    def _run_worker(self) -> None:
        next_diag = time.monotonic() + self._diag_period
        while not self._stop.is_set():
            item = self._queue.get(timeout=max(0.0, next_diag - time.monotonic()))
            if item is not None:
                seq, msg, received, arrival_ns = item
                try:
                    self._process(msg, received, arrival_ns)
                except Exception as exc:  # the worker must survive anything one frame does
                    if self._stop.is_set():  # shutting down: publishing into a closing context may fail
                        break
                    self._note_error(f"unexpected error on a frame: {exc!r}")
                    self.get_logger().error(traceback.format_exc())
                with self._progress:
                    self._seq_done = seq
                    self._progress.notify_all()
            if time.monotonic() >= next_diag:
                next_diag = time.monotonic() + self._diag_period
                self._check_image_timeout()
                try:
                    self._publish_diagnostics()
                except Exception as exc:  # e.g. the context shutting down under us
                    if not self._stop.is_set():
                        self.get_logger().error(f"diagnostics failed: {exc!r}")

    def _note_error(self, text: str) -> None:
        with self._stats_lock:
            self._stats.rejected += 1
            self._stats.last_error = text

    def _check_image_timeout(self) -> None:
        silent = time.monotonic() - self._last_image
        if self._image_timeout_s > 0 and silent > self._image_timeout_s:
            if not self._timeout_warned:
                self.get_logger().warning(f"no image for {silent:.1f} s (image_timeout_s {self._image_timeout_s})")
            self._timeout_warned = True
        else:
            self._timeout_warned = False

    def _reject(self, text: str, kind: str | None = None) -> None:
        """Count a rejected frame and log why, each kind of reason (default: the text) at most once per
        REJECT_LOG_PERIOD_S (a camera with a wrong encoding would otherwise log at its frame rate)."""
        self._note_error(text)
        key, now = kind or text, time.monotonic()
        if now - self._reject_logged.get(key, -REJECT_LOG_PERIOD_S) >= REJECT_LOG_PERIOD_S:
            if len(self._reject_logged) > 100:
                self._reject_logged.clear()
            self._reject_logged[key] = now
            self.get_logger().error(text)

    def _process(self, msg: Image | CompressedImage, received: float, arrival_ns: int) -> None:
        try:
            rgb = message_to_rgb(msg)
        except ValueError as exc:
            self._reject(f"image rejected: {exc}")
            return
        stamp = frame_stamp(self._stamp_source, time_to_ns(msg.header.stamp), arrival_ns)
        header = Header(stamp=ns_to_time(stamp), frame_id=msg.header.frame_id)
        size = (int(rgb.shape[0]), int(rgb.shape[1]))
        want_pixels = self._debug_pub is not None and self._debug_pub.get_subscription_count() > 0
        depth = self._depth.pair(time_to_ns(msg.header.stamp), size) if self._depth is not None else None  # by header
        with self._engine_lock:
            meta = _FrameMeta(header, size, rgb if want_pixels else None, depth)
            step = self._session.push(rgb, time_to_ns(header.stamp), meta)
            if step.restart is not None:
                self._after_restart(step.restart, warn=True)
            if step.rejected is not None:
                kind = step.rejected.kind if isinstance(step.rejected, StampGlitchError) else "frame"
                self._reject(f"frame rejected: {step.rejected}", kind=kind)
                return
            if step.grid is not None:
                if step.grid.error:
                    self.get_logger().error(f"could not add the grid queries: {step.grid.error}")
                else:
                    g = self._session.grid_size
                    self.get_logger().info(
                        f"added a {g}x{g} grid ({len(step.grid.ids)} points) on frame {step.grid.frame_index}"
                    )
            self._publish(step.emitted, received)
        with self._stats_lock:
            if step.emitted:
                self._stats.step_latency_s.append(step.push_s)
            self._stats.queue_wait_s.append(time.monotonic() - received)

    def _restart_locked(self, reason: str, warn: bool = True) -> int:
        """Publish what the window still holds (flush), then reset the engine; returns the frames flushed."""
        return self._after_restart(self._session.restart(reason), warn)

    def _after_restart(self, restart: Restart, warn: bool) -> int:
        """Publish a restart's flushed tracks, count and log it; returns the number of frames flushed."""
        if restart.flush_error is not None:
            self.get_logger().error(f"flush before reset failed: {restart.flush_error!r}")
        self._publish(restart.flushed)
        dropped = diag.id_ranges(restart.dropped_ids)
        with self._stats_lock:
            self._stats.resets += 1
            self._stats.last_reset = f"{restart.reason}; ids dropped: {dropped}"
        text = (f"{restart.reason}: tracker reset after flushing {len(restart.flushed)} frame(s); ids dropped: "
                f"{dropped}")
        # rclpy ties a severity to each call site: one line per severity.
        if warn:
            self.get_logger().warning(text)
        else:
            self.get_logger().info(text)
        return len(restart.flushed)

    def _publish(self, emitted: list[Emitted], received: float | None = None) -> None:
        now_ns = self.get_clock().now().nanoseconds
        lags = []
        for item in emitted:
            tracks, meta = item.tracks, item.meta
            if meta is None:  # cannot happen unless the engine emits a frame we never pushed
                meta = _FrameMeta(Header(stamp=ns_to_time(tracks.stamp)), self._tracker.frame_size or (0, 0))
            msg = frame_tracks_to_msg(tracks, meta.header, meta.size)
            if self._depth is not None:
                self._depth.attach(msg, meta.depth, tracks)
            if tracks.refined:
                if self._publish_refined:
                    self._refined_pub.publish(msg)
                continue
            self._tracks_pub.publish(msg)
            if now_ns > 0:
                lags.append((now_ns - tracks.stamp) * 1e-9)
            if meta.pixels is not None and self._debug_pub is not None:
                drawn = draw_tracks(
                    meta.pixels, tracks.ids, tracks.xy, tracks.visible, untrained=self._tracker.untrained
                )
                self._debug_pub.publish(rgb_to_image(drawn, meta.header))
        if emitted:
            published = sum(not item.tracks.refined for item in emitted)
            with self._stats_lock:
                self._stats.published += published
                self._stats.period_published += published
                self._stats.lag_s += lags

    def _publish_diagnostics(self) -> None:
        dropped, nonfinite = self._queue.dropped, self._tracker.nonfinite_frames
        with self._stats_lock:
            values, period_dropped = self._stats.period_values(dropped)
            values.update(
                {
                    diag.QUEUE_DEPTH: f"{len(self._queue)}/{self._queue.maxsize}",
                    diag.ACTIVE_QUERIES: str(len(self._tracker.query_ids)),
                    diag.DEVICE: str(self._tracker.device),
                    diag.CHECKPOINT: self._checkpoint or "(none: untrained weights)",
                    diag.UNTRAINED: str(self._tracker.untrained).lower(),
                    diag.LAST_ERROR: self._stats.last_error,
                    diag.LAST_IMAGE_AGE: f"{time.monotonic() - self._last_image:.1f}",
                    diag.NONFINITE_TOTAL: str(nonfinite),
                }
            )
        depth_values, depth_problem = self._depth.diagnostics() if self._depth is not None else ({}, "")
        values.update(depth_values)
        status = DiagnosticStatus(
            name=f"{self.get_name()}{diag.STATUS_SUFFIX}",
            hardware_id=f"{self.get_fully_qualified_name()} on {self._tracker.device}",
        )
        if nonfinite > self._nonfinite_reported:
            status.level = DiagnosticStatus.ERROR
            status.message = f"{nonfinite - self._nonfinite_reported} frame(s) with NaN/inf tracks (sent not visible)"
        elif self._tracker.untrained:
            status.level, status.message = DiagnosticStatus.WARN, "untrained weights: tracks are noise"
        elif period_dropped:
            status.level, status.message = DiagnosticStatus.WARN, f"dropped {period_dropped} frame(s): tracker too slow"
        elif self._timeout_warned:
            status.level, status.message = DiagnosticStatus.WARN, f"no image for {values[diag.LAST_IMAGE_AGE]} s"
        elif depth_problem:
            status.level, status.message = DiagnosticStatus.WARN, depth_problem
        else:
            status.level, status.message = DiagnosticStatus.OK, "tracking"
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        self._nonfinite_reported = nonfinite
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = [status]
        self._diag_pub.publish(array)

