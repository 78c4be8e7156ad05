"""ROS 2 node that tracks points on a camera stream with CoTracker3: a thin shell over
`cotracker3_core.streaming.StreamingTracker`.

Threads: one worker thread takes the images (`image_intake`: no executor callback touches them; each camera's
image subscription keeps the newest `queue_size` in the middleware), converts them, runs the engine, publishes the
tracks and the diagnostics. Services run in the executor, in their own callback group, and take the engine lock,
so they wait at most one tracking step.

Several cameras (``camera_names``, ``camera_topics``): each has its own queue, queries, ids and outputs, named
``~/<camera>/tracks``, ``~/<camera>/add_points`` ... (docs/ros.md); the names below are those of one camera.

Subscribed: ``image`` (sensor_msgs/Image) or, with ``compressed: true``, ``image/compressed``
(sensor_msgs/CompressedImage); SensorDataQoS keeping `queue_size`, overridable through ROS QoS overrides
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

import copy
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
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from cotracker3_core import hub
from cotracker3_core.cameras import check_camera_lists, take_frames
from cotracker3_core.intake import frame_stamp
from cotracker3_core.multi_stream import MultiStreamTracker
from cotracker3_core.self_check import self_check
from cotracker3_core.session import Emitted, Restart, StampGlitchError, TrackingSession, push_sessions
from cotracker3_core.streaming import StreamingTracker

from . import diagnostics as diag
from .camera import Camera, FrameMeta, camera_status
from .conversions import frame_tracks_to_msg, message_to_rgb, ns_to_time, rgb_to_image, time_to_ns
from .debug_image import draw_tracks
from .depth_input import DepthInput
from .image_intake import SubscriptionQueue, WorkerTakenGroup, subscribe_worker_taken, wait_for_images
from .lifecycle import main
from .parameter_declaration import declare_all, live_updates
from .params import (
    NODE_NAME,
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
        values = declare_all(self)
        self._publish_refined = bool(values["publish_refined"])
        self._mask_grid_size = int(values["mask_grid_size"])
        self._diag_period = float(values["diagnostics_period"])
        self._checkpoint = values["checkpoint"]
        self._stamp_source = values["stamp_source"]
        self._image_timeout_s = float(values["image_timeout_s"])
        self._camera_sync_s = float(values["camera_sync_s"])
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
        # Signalled when the worker found a camera with no frame waiting: a reset waits for that.
        self._progress = threading.Condition()
        self._image_group = WorkerTakenGroup()
        self._image_subs: list[Any] = []
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        # Several cameras in window mode: their frames of one step are encoded in one call and their due windows
        # refined in one call (batch B = cameras); update "newest" answers each frame on its own push.
        self._batch = None
        if len(names) > 1 and tracker.config.update == "window":
            self._batch = MultiStreamTracker(tracker.model, tracker.config, untrained=tracker.untrained)
        for index, name in enumerate(names or [""]):
            # All cameras share the one model: each has its own engine state (queries, ids, window).
            engine = tracker if index == 0 else StreamingTracker(tracker.model, tracker.config, tracker.untrained)
            if self._batch is not None:
                self._batch.add_camera(name, engine)
            self._cameras.append(self._make_camera(name, index, engine, values))

        # Registered after the declarations: rclpy calls it for declare_parameter too.
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._worker = threading.Thread(target=self._run_worker, name="cotracker3_worker", daemon=True)
        self._worker.start()
        for cam in self._cameras:
            kind = "CompressedImage" if values["compressed"] else "Image"
            self.get_logger().info(f"subscribed to {cam.topic} ({kind}); publishing {cam.tracks_pub.topic_name}")

    def _make_camera(self, name: str, index: int, tracker: StreamingTracker, values: dict[str, Any]) -> Camera:
        """A camera's session, queue, publishers, subscriptions and services; ``name`` "" is the single camera
        (today's names: ``image``, ``tracks``, ``~/add_points`` ...)."""
        session = TrackingSession(
            tracker, int(values["grid_size"]), int(values["grid_query_frame"]),
            time_jump_tolerance_ns=round(float(values["time_jump_tolerance_s"]) * 1e9),
        )
        cam = Camera(name, session, None)
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
        # The subscription's keep-last history is the camera's queue (image_intake): queue_size deep.
        qos = copy.copy(qos_profile_sensor_data)
        qos.depth = int(values["queue_size"])
        sub = subscribe_worker_taken(self, msg_type, topic, qos, self._image_group, qos_overriding_options=overriding)
        cam.queue = SubscriptionQueue(sub, int(values["queue_size"]))
        self._image_subs.append(sub)
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
        """Frames that never reached the tracker: replaced in a camera's queue while it was busy, lost in the
        middleware, or dropped by a reset."""
        return sum(cam.queue.dropped + cam.losses.lost for cam in self._cameras)

    def flush_and_reset(self, reason: str = "reset requested", wait_s: float = RESET_WAIT_S, camera: str = "") -> int:
        """Finish the frames a camera (default: the first) received so far (up to ``wait_s``), publish the tracks
        of the frames still in its window, then start a new stream; returns the number of frames flushed."""
        cam = next((c for c in self._cameras if c.name == camera), self._cameras[0])
        requested = time.time_ns()  # the clock of MessageInfo's received_timestamp
        with self._progress:
            self._progress.wait_for(lambda: cam.caught_up_ns >= requested or self._stop.is_set(), timeout=wait_s)
        with self._engine_lock:
            # A backlog left after wait_s is dropped (and counted), not waited for; later frames stay.
            cam.queue.drop_where(lambda taken: taken[1].get("received_timestamp", 0) <= requested)
            return self._restart_locked(cam, reason, warn=False)

    def stop_worker(self, timeout_s: float = 10.0) -> bool:
        """Stop the worker (it finishes its current step, up to ``timeout_s``) and release waiting resets;
        returns whether it has stopped."""
        self._stop.set()
        if self._worker is None:  # start-up failed before the worker existed
            return True
        for cam in self._cameras:
            cam.queue.close()
        with self._progress:
            self._progress.notify_all()
        if self._worker.is_alive() and threading.current_thread() is not self._worker:
            self._worker.join(timeout=timeout_s)
        return not self._worker.is_alive()

    def destroy_node(self) -> None:
        self.stop_worker()
        super().destroy_node()

    # -- images and parameters ---------------------------------------------------------------------------

    def _accept(self, cam: Camera, msg: Image | CompressedImage, info: dict[str, Any]) -> tuple[Any, float, int]:
        """Account an image the worker took: (message, monotonic arrival, arrival stamp in ns on the node's
        clock). Arrival is when the middleware received it (MessageInfo), not when the worker took it."""
        # The publishers' sequence numbers in MessageInfo count the frames before this one that were never taken:
        # replaced in the subscription's history while the tracker was busy, or lost in the middleware.
        cam.losses.observe(info, time_to_ns(msg.header.stamp))
        age_s = max(0, time.time_ns() - (info.get("received_timestamp") or time.time_ns())) * 1e-9
        arrival_ns = self.get_clock().now().nanoseconds - round(age_s * 1e9)
        cam.last_image = time.monotonic() - age_s
        with self._stats_lock:
            cam.stats.received += 1
            cam.stats.period_received += 1
            cam.stats.lost = cam.losses.lost
        return msg, cam.last_image, arrival_ns

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        try:
            updates = live_updates(params, self.tracker.config.max_points_per_request)
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
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
            attempted = time.time_ns()
            frames = self._take_step_frames()
            idle = [cam for cam in self._cameras if all(cam is not taken for taken, _ in frames)]
            if idle:
                with self._progress:  # everything these cameras received before ``attempted`` is tracked
                    for cam in idle:
                        cam.caught_up_ns = attempted
                    self._progress.notify_all()
            if frames:
                self._track_step([(cam, self._accept(cam, *taken)) for cam, taken in frames])
            else:
                wait_for_images(self._image_subs, self.context, min(0.1, max(0.0, next_diag - time.monotonic())))
            if time.monotonic() >= next_diag:
                next_diag = time.monotonic() + self._diag_period
                for cam in self._cameras:
                    if cam.image_timed_out(limit := self._image_timeout_s):
                        self.get_logger().warning(f"{cam.label}no image for {limit:g} s (image_timeout_s)")
                try:
                    self._publish_diagnostics()
                except Exception as exc:  # e.g. the context shutting down under us
                    if not self._stop.is_set():
                        self.get_logger().error(f"diagnostics failed: {exc!r}")

    def _take_step_frames(self) -> list[tuple[Camera, Any]]:
        """The oldest waiting frame of each camera that has one; when cameras are batched, up to camera_sync_s
        longer for the cameras that have none yet and are not silent (image_timeout_s)."""
        frames = take_frames(self._cameras)
        deadline = time.monotonic() + self._camera_sync_s
        while frames and self._batch is not None and time.monotonic() < deadline:
            missing = [c for c in self._cameras if not c.timeout_warned and all(c is not t for t, _ in frames)]
            if not missing:
                break
            wait_for_images([c.queue.subscription for c in missing], self.context, deadline - time.monotonic())
            frames += take_frames(missing)
        return frames

    def _track_step(self, frames: list[tuple[Camera, Any]]) -> None:
        """One tracking step: the oldest waiting frame of each camera that has one is converted, pushed into its
        camera's engine (several cameras: in one call, `_push_together`) and its tracks published."""
        pushed = []
        for cam, (msg, received, arrival_ns) in frames:
            frame = self._guarded(cam, self._prepare, cam, msg, arrival_ns)
            if frame is not None:
                pushed.append((cam, frame, received))
        with self._engine_lock:
            if self._batch is not None and len(pushed) > 1:
                steps = self._push_together(pushed)
            else:
                steps = [(cam, self._guarded(cam, cam.session.push, *f), received) for cam, f, received in pushed]
            for cam, step, received in steps:
                if step is not None:
                    self._guarded(cam, self._after_push, cam, step, received)

    def _push_together(self, pushed: list[tuple[Camera, tuple, float]]) -> list[tuple[Camera, Any, float]]:
        """Several cameras' frames through the engine in one call (`push_sessions`); an unexpected error is
        counted on every camera of the call."""
        try:
            steps = push_sessions(self._batch, {cam.name: (cam.session, *frame) for cam, frame, _ in pushed})
        except Exception as exc:
            for cam, _, _ in pushed:
                self._unexpected(cam, exc)
            return [(cam, None, received) for cam, _, received in pushed]
        return [(cam, steps[cam.name], received) for cam, _, received in pushed]

    def _guarded(self, cam: Camera, fn: Any, *args: Any) -> Any:
        """``fn(*args)``, or None after an unexpected error (counted, logged): the worker survives any frame."""
        try:
            return fn(*args)
        except Exception as exc:
            self._unexpected(cam, exc)
            return None

    def _unexpected(self, cam: Camera, exc: Exception) -> None:
        """Count and log an unexpected error on a camera's frame (from within its ``except``)."""
        if not self._stop.is_set():  # shutting down: publishing into a closing context may fail
            self._note_error(cam, f"{cam.label}unexpected error on a frame: {exc!r}")
            self.get_logger().error(traceback.format_exc())

    def _note_error(self, cam: Camera, text: str) -> None:
        with self._stats_lock:
            cam.stats.rejected += 1
            cam.stats.last_error = text

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
        text = (
            f"{cam.label}{restart.reason}: tracker reset after flushing {len(restart.flushed)} frame(s); ids "
            f"dropped: {dropped}"
        )
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
                drawn = draw_tracks(meta.pixels, tracks.ids, tracks.xy, tracks.visible, untrained=cam.tracker.untrained)
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
            camera_status(
                cam, self.get_name(), self.get_fully_qualified_name(), self._checkpoint, self._stats_lock,
                None if self._batch is None else self._batch.batched_windows[cam.name],
            )
            for cam in self._cameras
        ]
        self._diag_pub.publish(array)
