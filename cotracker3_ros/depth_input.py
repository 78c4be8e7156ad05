"""The node's optional depth input and its 3D output: subscriptions to an aligned depth image and the colour
camera's CameraInfo, the pairing of each colour frame with its depth image, the 3D fields of ``Tracks`` and the
``tracks/points`` PointCloud2 (built by `point_cloud`).

Threads: the callbacks only store (a bounded `StampBuffer` of recent depth images, the latest CameraInfo); the
node's worker calls `DepthInput.pair` for each colour frame and `DepthInput.attach` when its tracks are published.
The logic (units, sampling, back-projection, pairing) is in `cotracker3_core.depth`.
"""

from __future__ import annotations

import array
import threading
import time
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from cotracker3_msgs.msg import Tracks
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from cotracker3_core.depth import (
    DEPTH_ENCODINGS,
    Intrinsics,
    StampBuffer,
    check_alignment,
    depth_to_metres,
    points_3d,
)

from .conversions import time_to_ns
from .point_cloud import tracks_cloud

if TYPE_CHECKING:
    from cotracker3_core.streaming import FrameTracks

__all__ = ["DEPTH_BUFFER_LEN", "POINTS_TOPIC", "DepthFrame", "DepthInput", "depth_image_to_array", "sibling_topic"]

#: Depth images kept for pairing: 1 s at 30 Hz, more than a colour frame waits in the node's queue.
DEPTH_BUFFER_LEN = 30
#: Seconds between two log lines for the same kind of depth problem.
LOG_PERIOD_S = 5.0
#: The cloud's topic, beside ``tracks``.
POINTS_TOPIC = "tracks/points"
#: /diagnostics keys.
DEPTH_PAIRED_TOTAL = "3D: frames with depth (total)"
DEPTH_MISSING_TOTAL = "3D: frames without depth (total)"
DEPTH_LAST_PROBLEM = "3D: last problem"


class DepthFrame(NamedTuple):
    """The depth paired with a colour frame: ``depth_m (H, W)`` float32 metres (NaN = no reading) and the
    colour camera's intrinsics."""

    depth_m: np.ndarray
    intrinsics: Intrinsics


def sibling_topic(topic: str, name: str) -> str:
    """``name`` beside ``topic`` (image_transport's convention): ``/cam/color/image_raw`` -> ``/cam/color/name``."""
    parent = topic.rsplit("/", 1)[0] if "/" in topic else ""
    return f"{parent}/{name}" if parent or topic.startswith("/") else name


def depth_image_to_array(msg: Image) -> np.ndarray:
    """sensor_msgs/Image depth (16UC1, 32FC1; padded rows and big-endian data are fine) -> ``(H, W)`` array of the
    encoding's dtype, native byte order.

    Raises:
        ValueError: unsupported encoding, zero size, or data shorter than ``step * height``.
    """
    if msg.encoding not in DEPTH_ENCODINGS:
        raise ValueError(
            f"unsupported depth encoding {msg.encoding!r}; supported: 16UC1 (millimetres), 32FC1 (metres)"
        )
    dtype = DEPTH_ENCODINGS[msg.encoding][0].newbyteorder(">" if msg.is_bigendian else "<")
    height, width = int(msg.height), int(msg.width)
    row_bytes = width * dtype.itemsize
    step = int(msg.step) or row_bytes
    if height <= 0 or width <= 0 or step < row_bytes or len(msg.data) < step * height:
        raise ValueError(
            f"malformed {msg.encoding} depth image: {width}x{height}, step {step}, {len(msg.data)} bytes of data"
        )
    rows = np.frombuffer(msg.data, np.uint8, count=step * height).reshape(height, step)[:, :row_bytes]
    return np.ascontiguousarray(rows).view(dtype).reshape(height, width).astype(dtype.newbyteorder("="))


class DepthInput:
    """Depth and CameraInfo subscriptions of ``node``, pairing, 3D fields and cloud (see the module docstring).

    Args:
        node: the tracker node.
        depth_topic: aligned depth image topic (sensor_msgs/Image, 16UC1 or 32FC1).
        camera_info_topic: the colour camera's CameraInfo; empty: ``camera_info`` beside ``image_topic``.
        image_topic: the resolved colour image topic.
        max_skew_s: largest stamp difference between a colour frame and its depth image.
        prefix: before the cloud's topic: ``"<camera>/"`` for one of several cameras.
    """

    def __init__(
        self, node: Node, depth_topic: str, camera_info_topic: str, image_topic: str, max_skew_s: float,
        prefix: str = "",
    ) -> None:
        self._node = node
        self._max_skew_ns = round(max_skew_s * 1e9)
        self._buffer: StampBuffer[Image] = StampBuffer(DEPTH_BUFFER_LEN)
        self._info: CameraInfo | None = None
        self._lock = threading.Lock()  # counters and the last problem: worker and diagnostics
        self._paired = self._missing = self._period_missing = 0
        self._problem = ""
        self._logged: dict[str, float] = {}
        overriding = QoSOverridingOptions.with_default_policies()
        self._depth_sub = node.create_subscription(
            Image, depth_topic, self._on_depth, qos_profile_sensor_data, qos_overriding_options=overriding
        )
        info_topic = camera_info_topic or sibling_topic(image_topic, "camera_info")
        self._info_sub = node.create_subscription(CameraInfo, info_topic, self._on_info, qos_profile_sensor_data)
        self._cloud_pub = node.create_publisher(PointCloud2, f"{prefix}{POINTS_TOPIC}", 10)
        self.topics = (
            getattr(self._depth_sub, "topic_name", depth_topic),  # missing from older rclpy releases
            getattr(self._info_sub, "topic_name", info_topic),
        )
        node.get_logger().info(f"3D from depth {self.topics[0]} and camera info {self.topics[1]}")

    @classmethod
    def create(cls, node: Node, values: dict[str, Any], image_topic: str) -> DepthInput | None:
        """From the node's parameter values (depth_topic, camera_info_topic, depth_max_skew_s); None when
        depth_topic is empty (depth input off)."""
        if not values["depth_topic"]:
            return None
        return cls(node, values["depth_topic"], values["camera_info_topic"], image_topic, values["depth_max_skew_s"])

    # -- callbacks (executor) --

    def _on_depth(self, msg: Image) -> None:
        self._buffer.put(time_to_ns(msg.header.stamp), msg)

    def _on_info(self, msg: CameraInfo) -> None:
        self._info = msg

    # -- worker --

    def _intrinsics(self) -> Intrinsics | None:
        info = self._info
        if info is None:
            return None
        if max(int(info.binning_x), int(info.binning_y)) > 1 or int(info.roi.width) or int(info.roi.height):
            raise ValueError("CameraInfo with binning or a region of interest is not supported")
        return Intrinsics.from_k(info.k, int(info.width), int(info.height))

    def pair(self, stamp_ns: int, image_hw: tuple[int, int]) -> DepthFrame | None:
        """The depth of the colour frame stamped ``stamp_ns`` with size ``image_hw`` (H, W), or None when there is
        none or it cannot be used (then the problem is counted, logged at most every 5 s per kind, and reported
        in the diagnostics)."""
        found = self._buffer.nearest(stamp_ns, self._max_skew_ns, wait_s=self._max_skew_ns * 1e-9)
        if found is None:
            self._note_problem(
                f"no 3D for this frame: no depth image on {self.topics[0]} within depth_max_skew_s "
                f"({self._max_skew_ns * 1e-9:g} s) of the colour frame stamped {stamp_ns} ns",
                kind="pairing",
            )
            return None
        try:
            depth_m = depth_to_metres(depth_image_to_array(found[1]), found[1].encoding)
            intrinsics = self._intrinsics()
            if intrinsics is None:
                raise ValueError(f"no CameraInfo received on {self.topics[1]}")
            check_alignment(image_hw, depth_m.shape, intrinsics)
        except ValueError as exc:
            self._note_problem(f"no 3D for this frame: {exc}")
            return None
        with self._lock:
            self._paired += 1
        return DepthFrame(depth_m, intrinsics)

    def _note_problem(self, text: str, kind: str | None = None) -> None:
        """Count a frame without depth; log why, each kind of reason (default: the text) at most once per
        LOG_PERIOD_S."""
        with self._lock:
            self._missing += 1
            self._period_missing += 1
            self._problem = text
        key, now = kind or text, time.monotonic()
        if now - self._logged.get(key, -LOG_PERIOD_S) >= LOG_PERIOD_S:
            if len(self._logged) > 100:
                self._logged.clear()
            self._logged[key] = now
            self._node.get_logger().warning(text)

    def attach(self, msg: Tracks, depth: DepthFrame | None, tracks: FrameTracks) -> None:
        """Set ``msg.x3d/y3d/z3d`` from the frame's depth (NaN without it) and, for a first estimate, publish the
        cloud of the points with a 3D position."""
        xy = np.asarray(tracks.xy, dtype=np.float32).reshape(-1, 2)
        if depth is None:
            xyz = np.full((len(xy), 3), np.nan, np.float32)
        else:
            xyz = points_3d(depth.depth_m, depth.intrinsics, xy, tracks.visible)
        msg.x3d = array.array("f", np.ascontiguousarray(xyz[:, 0]).tobytes())
        msg.y3d = array.array("f", np.ascontiguousarray(xyz[:, 1]).tobytes())
        msg.z3d = array.array("f", np.ascontiguousarray(xyz[:, 2]).tobytes())
        if not tracks.refined:
            self._cloud_pub.publish(tracks_cloud(msg.header, tracks.ids, xyz, tracks.visible))

    def diagnostics(self) -> tuple[dict[str, str], str]:
        """The /diagnostics values, and the last problem when frames went without depth in this period ("" else)."""
        with self._lock:
            values: dict[str, Any] = {
                DEPTH_PAIRED_TOTAL: str(self._paired),
                DEPTH_MISSING_TOTAL: str(self._missing),
                DEPTH_LAST_PROBLEM: self._problem,
            }
            problem = self._problem if self._period_missing else ""
            self._period_missing = 0
        return values, problem
