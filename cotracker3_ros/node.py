"""ROS 2 node that tracks points on a camera stream with CoTracker3: a thin shell over
`cotracker3_core.streaming.StreamingTracker`.

Threads: the executor's callbacks only enqueue images into a bounded drop-oldest queue (`queue_size`, one per
camera); one worker thread converts them, runs the engine, publishes the tracks and the diagnostics. Services run
in their own callback group and take the engine lock, so they wait at most one tracking step.

Several cameras (``camera_names``, ``camera_topics``): each has its own queue, queries, ids and outputs, named
``~/<camera>/tracks``, ``~/<camera>/add_points`` ... (docs/ros.md); the names below are those of one camera.

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
from functools import partial
from typing import Any

import torch
from cotracker3_msgs.msg import Tracks
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from cotracker3_core import hub
from cotracker3_core.cameras import FrameSignal, check_camera_lists, take_frames
from cotracker3_core.intake import DropOldestQueue, frame_stamp
from cotracker3_core.self_check import self_check
from cotracker3_core.session import Emitted, Restart, StampGlitchError, TrackingSession
from cotracker3_core.streaming import StreamingTracker

from . import diagnostics as diag
from .camera import Camera, FrameMeta, camera_status
from .conversions import frame_tracks_to_msg, message_to_rgb, ns_to_time, rgb_to_image, time_to_ns
from .debug_image import draw_tracks
from .depth_input import DepthInput
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


class TrackerNode(Node):
    """CoTracker3 on one or several camera streams (see the module docstring for topics, services and threads).

    Args:
        node_name: ROS node name.
        tracker: an already built engine (tests, demos); by default it is built from the parameters. Further
            cameras get their own `StreamingTracker` on its model.
        **kwargs: passed to rclpy's Node (``context``, ``parameter_overrides``, ``namespace``...).
    """

    def __init__(self, node_name: str = NODE_NAME, *, tracker: StreamingTracker | None = None, **kwargs: Any) -> None:
        # First: destroy_node (called by the context's shutdown) must work on a node whose start-up failed.
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._cameras: list[Camera] = []
        super().__init__(node_name, **kwargs)
        values = {spec.name: self._declare(spec) for spec in PARAMS}
        self._publish_refined = bool(values["publish_refined"])
        self._mask_grid_size = int(values["mask_grid_size"])
        self._diag_period = float(values["diagnostics_period"])
        self._checkpoint = values["checkpoint"]
        self._stamp_source = values["stamp_source"]
        self._image_timeout_s = float(values["image_timeout_s"])
        check_node_params(values)
        names = list(values["camera_names"])
        check_camera_lists(names, values["camera_topics"], values["depth_topics"], values["camera_info_topics"])
        if names and values["depth_topic"]:
            raise ValueError("with camera_names, give depth per camera in depth_topics (depth_topic must be empty)")
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
        self._reject_logged: dict[str, float] = {}  # worker thread only
        self._stats_lock = threading.Lock()
        # The sequence numbers let a reset wait for the frames received before it: a dropped frame always has
        # a later one behind it in the queue.
        self._progress = threading.Condition()
        self._frames_ready = FrameSignal()
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        for index, name in enumerate(names or [""]):
            # All cameras share the one model: each has its own engine state (queries, ids, window).
            engine = tracker if index == 0 else StreamingTracker(tracker.model, tracker.config, tracker.untrained)
            self._cameras.append(self._make_camera(name, index, engine, values))

        # Registered after the declarations: rclpy calls it for declare_parameter too.
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._worker = threading.Thread(target=self._run_worker, name="cotracker3_worker", daemon=True)
        self._worker.start()
        for cam in self._cameras:
            kind = "CompressedImage" if values["compressed"] else "Image"
            self.get_logger().info(f"subscribed to {cam.topic} ({kind}); publishing {cam.tracks_pub.topic_name}")

    def _declare(self, spec: ParamSpec) -> Any:
        """Declare a parameter, its value; a string list (empty by default, which has no ROS type) stays unset
        until given."""
        if spec.default == []:
            self.declare_parameter(spec.name, Parameter.Type.STRING_ARRAY, _descriptor(spec))
            try:
                return list(self.get_parameter(spec.name).value)
            except ParameterUninitializedException:
                return []
        self.declare_parameter(spec.name, spec.default, _descriptor(spec))
        return self.get_parameter(spec.name).value

    def _make_camera(self, name: str, index: int, tracker: StreamingTracker, values: dict[str, Any]) -> Camera:
        """A camera's session, queue, publishers, subscriptions and services; ``name`` "" is the single camera
        (today's names: ``image``, ``tracks``, ``~/add_points`` ...)."""
        session = TrackingSession(
            tracker, int(values["grid_size"]), int(values["grid_query_frame"]),
            time_jump_tolerance_ns=round(float(values["time_jump_tolerance_s"]) * 1e9),
        )
        cam = Camera(name, session, DropOldestQueue(values["queue_size"]))
        prefix, overriding = cam.topic_prefix, QoSOverridingOptions.with_default_policies()
        cam.tracks_pub = self.create_publisher(Tracks, f"{prefix}tracks", 10, qos_overriding_options=overriding)
        cam.refined_pub = self.create_publisher(
            Tracks, f"{prefix}tracks_refined", 10, qos_overriding_options=overriding
        )
        if values["debug_image"]:
            cam.debug_pub = self.create_publisher(
                Image, f"{prefix}debug_image", QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
            )
        topic = values["camera_topics"][index] if name else "image"
        msg_type, topic = (CompressedImage, f"{topic}/compressed") if values["compressed"] else (Image, topic)
        sub = self.create_subscription(
            msg_type, topic, partial(self._on_image, cam), qos_profile_sensor_data, qos_overriding_options=overriding
        )
        cam.topic = getattr(sub, "topic_name", topic)  # Subscription.topic_name is missing from older rclpy
        if not name:
            cam.depth = DepthInput.create(self, values, cam.topic)  # None: off
        elif values["depth_topics"]:
            info = values["camera_info_topics"][index] if values["camera_info_topics"] else ""
            cam.depth = DepthInput(
                self, values["depth_topics"][index], info, cam.topic,
                values["depth_max_skew_s"], prefix=prefix,
            )
        QueryServices(
            self, tracker, self._engine_lock, partial(self.flush_and_reset, camera=name),
            lambda: self._mask_grid_size, prefix=cam.prefix,
        )
        return cam

    # -- public helpers (tests, demo) -------------------------------------------------------------------

    @property
    def tracker(self) -> StreamingTracker:
        """The (first) camera's engine."""
        return self._cameras[0].tracker

    @property
    def dropped_frames(self) -> int:
        return sum(cam.queue.dropped for cam in self._cameras)

    @property
    def pending_frames(self) -> int:
        """Frames received but not yet pushed into the engine."""
        return sum(len(cam.queue) for cam in self._cameras)

    def flush_and_reset(self, reason: str = "reset requested", wait_s: float = RESET_WAIT_S, camera: str = "") -> int:
        """Finish the frames a camera (default: the first) received so far (up to ``wait_s``), publish the tracks
        of the frames still in its window, then start a new stream; returns the number of frames flushed."""
        cam = next((c for c in self._cameras if c.name == camera), self._cameras[0])
        with self._progress:
            target = cam.seq_received
            self._progress.wait_for(lambda: cam.seq_done >= target or self._stop.is_set(), timeout=wait_s)
        with self._engine_lock:
            # A backlog left after wait_s is dropped (and counted), not waited for; later frames stay.
            cam.queue.drop_where(lambda item: item[0] <= target)
            return self._restart_locked(cam, reason, warn=False)

    def stop_worker(self, timeout_s: float = 10.0) -> bool:
        """Stop the worker (it finishes its current step, up to ``timeout_s``) and release waiting resets;
        returns whether it has stopped."""
        self._stop.set()
        if self._worker is None:  # start-up failed before the worker existed
            return True
        for cam in self._cameras:
            cam.queue.close()
        self._frames_ready.notify()
        with self._progress:
            self._progress.notify_all()
        if self._worker.is_alive() and threading.current_thread() is not self._worker:
            self._worker.join(timeout=timeout_s)
        return not self._worker.is_alive()

    def destroy_node(self) -> None:
        self.stop_worker()
        super().destroy_node()

    # -- callbacks: enqueue only ----------------------------------------------------------------------

    def _on_image(self, cam: Camera, msg: Image | CompressedImage, info: dict[str, Any]) -> None:
        # rclpy passes the middleware's MessageInfo to a callback that cannot be called with the message alone
        # (so no default for ``info``): its sequence numbers count the frames lost before this callback.
        arrival_ns = self.get_clock().now().nanoseconds
        cam.losses.observe(info, time_to_ns(msg.header.stamp))
        with self._progress:
            cam.seq_received += 1
            seq = cam.seq_received
        cam.last_image = time.monotonic()
        cam.queue.put((seq, msg, cam.last_image, arrival_ns))
        self._frames_ready.notify()
        with self._stats_lock:
            cam.stats.received += 1
            cam.stats.period_received += 1
            cam.stats.lost = cam.losses.lost

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
                    check_grid_param(param.name, int(param.value), self.tracker.config.max_points_per_request)
                except ValueError as exc:
                    return SetParametersResult(successful=False, reason=str(exc))
            updates[param.name] = param.value
        for cam in self._cameras:
            if "visibility_threshold" in updates:
                cam.tracker.visibility_threshold = float(updates["visibility_threshold"])
            if "grid_size" in updates:
                cam.session.grid_size = int(updates["grid_size"])
            if "grid_query_frame" in updates:
                cam.session.grid_query_frame = int(updates["grid_query_frame"])
        if "publish_refined" in updates:
            self._publish_refined = bool(updates["publish_refined"])
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
            frames = take_frames(self._cameras)
            if frames:
                self._track_step(frames)
            else:
                self._frames_ready.wait(timeout=max(0.0, next_diag - time.monotonic()))
            if time.monotonic() >= next_diag:
                next_diag = time.monotonic() + self._diag_period
                for cam in self._cameras:
                    self._check_image_timeout(cam)
                try:
                    self._publish_diagnostics()
                except Exception as exc:  # e.g. the context shutting down under us
                    if not self._stop.is_set():
                        self.get_logger().error(f"diagnostics failed: {exc!r}")

    def _track_step(self, frames: list[tuple[Camera, Any]]) -> None:
        """One tracking step: the oldest waiting frame of each camera that has one is converted, pushed into its
        camera's engine and its tracks published. The engine runs here only (one camera after the other)."""
        pushed = []
        for cam, (_seq, msg, received, arrival_ns) in frames:
            frame = self._guarded(cam, self._prepare, cam, msg, arrival_ns)
            if frame is not None:
                pushed.append((cam, frame, received))
        with self._engine_lock:
            steps = [(cam, self._guarded(cam, cam.session.push, *frame), received) for cam, frame, received in pushed]
            for cam, step, received in steps:
                if step is not None:
                    self._guarded(cam, self._after_push, cam, step, received)
        with self._progress:
            for cam, item in frames:
                cam.seq_done = item[0]
            self._progress.notify_all()

    def _guarded(self, cam: Camera, fn: Any, *args: Any) -> Any:
        """``fn(*args)``, or None after an unexpected error (counted, logged): the worker survives any frame."""
        try:
            return fn(*args)
        except Exception as exc:
            if not self._stop.is_set():  # shutting down: publishing into a closing context may fail
                self._note_error(cam, f"{cam.label}unexpected error on a frame: {exc!r}")
                self.get_logger().error(traceback.format_exc())
            return None

    def _note_error(self, cam: Camera, text: str) -> None:
        with self._stats_lock:
            cam.stats.rejected += 1
            cam.stats.last_error = text

    def _check_image_timeout(self, cam: Camera) -> None:
        silent = time.monotonic() - cam.last_image
        if self._image_timeout_s > 0 and silent > self._image_timeout_s:
            if not cam.timeout_warned:
                self.get_logger().warning(
                    f"{cam.label}no image for {silent:.1f} s (image_timeout_s {self._image_timeout_s})"
                )
            cam.timeout_warned = True
        else:
            cam.timeout_warned = False

    def _reject(self, cam: Camera, text: str, kind: str | None = None) -> None:
        """Count a rejected frame and log why, each kind of reason (default: the text) at most once per
        REJECT_LOG_PERIOD_S (a camera with a wrong encoding would otherwise log at its frame rate)."""
        text = cam.label + text
        self._note_error(cam, text)
        key, now = cam.name + (kind or text), time.monotonic()
        if now - self._reject_logged.get(key, -REJECT_LOG_PERIOD_S) >= REJECT_LOG_PERIOD_S:
            if len(self._reject_logged) > 100:
                self._reject_logged.clear()
            self._reject_logged[key] = now
            self.get_logger().error(text)

    def _prepare(self, cam: Camera, msg: Image | CompressedImage, arrival_ns: int) -> tuple | None:
        """An image -> (rgb, stamp ns, FrameMeta) for the engine, or None when rejected."""
        try:
            rgb = message_to_rgb(msg)
        except ValueError as exc:
            self._reject(cam, f"image rejected: {exc}")
            return None
        stamp = frame_stamp(self._stamp_source, time_to_ns(msg.header.stamp), arrival_ns)
        header = Header(stamp=ns_to_time(stamp), frame_id=msg.header.frame_id)
        size = (int(rgb.shape[0]), int(rgb.shape[1]))
        want_pixels = cam.debug_pub is not None and cam.debug_pub.get_subscription_count() > 0
        depth = cam.depth.pair(time_to_ns(msg.header.stamp), size) if cam.depth is not None else None  # by header
        return rgb, time_to_ns(header.stamp), FrameMeta(header, size, rgb if want_pixels else None, depth)

    def _after_push(self, cam: Camera, step: Any, received: float) -> None:
        """Report and publish what one camera's push caused (under the engine lock)."""
        if step.restart is not None:
            self._after_restart(cam, step.restart, warn=True)
        if step.rejected is not None:
            kind = step.rejected.kind if isinstance(step.rejected, StampGlitchError) else "frame"
            self._reject(cam, f"frame rejected: {step.rejected}", kind=kind)
            return
        if step.grid is not None:
            if step.grid.error:
                self.get_logger().error(f"{cam.label}could not add the grid queries: {step.grid.error}")
            else:
                g = cam.session.grid_size
                self.get_logger().info(
                    f"{cam.label}added a {g}x{g} grid ({len(step.grid.ids)} points) on frame {step.grid.frame_index}"
                )
        self._publish(cam, step.emitted, received)
        with self._stats_lock:
            if step.emitted:
                cam.stats.step_latency_s.append(step.push_s)
            cam.stats.queue_wait_s.append(time.monotonic() - received)

    def _restart_locked(self, cam: Camera, reason: str, warn: bool = True) -> int:
        """Publish what the window still holds (flush), then reset the engine; returns the frames flushed."""
        return self._after_restart(cam, cam.session.restart(reason), warn)

    def _after_restart(self, cam: Camera, restart: Restart, warn: bool) -> int:
        """Publish a restart's flushed tracks, count and log it; returns the number of frames flushed."""
        if restart.flush_error is not None:
            self.get_logger().error(f"{cam.label}flush before reset failed: {restart.flush_error!r}")
        self._publish(cam, restart.flushed)
        dropped = diag.id_ranges(restart.dropped_ids)
        with self._stats_lock:
            cam.stats.resets += 1
            cam.stats.last_reset = f"{restart.reason}; ids dropped: {dropped}"
        text = (f"{cam.label}{restart.reason}: tracker reset after flushing {len(restart.flushed)} frame(s); ids "
                f"dropped: {dropped}")
        # rclpy ties a severity to each call site: one line per severity.
        if warn:
            self.get_logger().warning(text)
        else:
            self.get_logger().info(text)
        return len(restart.flushed)

    def _publish(self, cam: Camera, emitted: list[Emitted], received: float | None = None) -> None:
        now_ns = self.get_clock().now().nanoseconds
        lags = []
        for item in emitted:
            tracks, meta = item.tracks, item.meta
            if meta is None:  # cannot happen unless the engine emits a frame we never pushed
                meta = FrameMeta(Header(stamp=ns_to_time(tracks.stamp)), cam.tracker.frame_size or (0, 0))
            msg = frame_tracks_to_msg(tracks, meta.header, meta.size)
            if cam.depth is not None:
                cam.depth.attach(msg, meta.depth, tracks)
            if tracks.refined:
                if self._publish_refined:
                    cam.refined_pub.publish(msg)
                continue
            cam.tracks_pub.publish(msg)
            if now_ns > 0:
                lags.append((now_ns - tracks.stamp) * 1e-9)
            if meta.pixels is not None and cam.debug_pub is not None:
                drawn = draw_tracks(
                    meta.pixels, tracks.ids, tracks.xy, tracks.visible, untrained=cam.tracker.untrained
                )
                cam.debug_pub.publish(rgb_to_image(drawn, meta.header))
        if emitted:
            published = sum(not item.tracks.refined for item in emitted)
            with self._stats_lock:
                cam.stats.published += published
                cam.stats.period_published += published
                cam.stats.lag_s += lags

    def _publish_diagnostics(self) -> None:
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = [
            camera_status(cam, self.get_name(), self.get_fully_qualified_name(), self._checkpoint, self._stats_lock)
            for cam in self._cameras
        ]
        self._diag_pub.publish(array)
