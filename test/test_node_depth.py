"""3D tracks from an aligned depth image, over real DDS through the tracker node process.

The scene is a textured plane at a known tilted pose in front of a pinhole camera; its depth is rendered exactly
(Z at each pixel centre), the texture slides a little from frame to frame. Colour, depth and CameraInfo go out
with the same stamps (depth first, as a camera driver's may or may not arrive; the node pairs by stamp). Whatever
(x, y) the node publishes — untrained weights track noise — the true 3D point there is where the pixel's ray
meets the plane, so every published point with a depth must be within 1 cm of it; which points have a depth is
fixed by the depth image sent (5x5 window around the point's pixel, at least 13 valid readings, point visible).

One node process (the untrained tiny model at 64x96, visibility_threshold 0 so that every point is visible)
serves the module; before any CameraInfo is sent the fixture records a stream without it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from cotracker3_msgs.msg import Tracks
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
from std_srvs.srv import Trigger

from cotracker3_ros import diagnostics as diag
from cotracker3_ros.conversions import ns_to_time, rgb_to_image, time_to_ns
from cotracker3_ros.depth_input import DEPTH_LAST_PROBLEM
from cotracker3_ros.tools.demo import DEMO_ARCH
from cotracker3_ros.tools.node_peer import NodeProcess, ReplayPeer, default_node_command

# 201..216, in the band of test_ros_node and test_node_faults (Fast DDS ports allow 0..232): its namespace keeps
# it apart from them.
DOMAIN_ID = 201 + os.getpid() % 16
NS = "/depth3d"
H, W = 96, 128
FX, FY, CX, CY = 100.0, 100.0, 63.5, 47.5
NORMAL, OFFSET = np.array([0.15, -0.1, 1.0]), 1.0  # plane n.P = d: Z = 1 m on the optical axis, 0.88..1.17 m
GRID = 6
FRAME_ID = "camera_color_optical_frame"
pytestmark = pytest.mark.timeout(180)


# --- the scene ------------------------------------------------------------------------------------------------


def rays(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rays (..., 3) with z = 1 through image points (u, v) (ROS/OpenCV convention: pixel centres at integers)."""
    return np.stack([(u - CX) / FX, (v - CY) / FY, np.ones_like(u)], axis=-1)


def true_points(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The plane's 3D points (N, 3) at track positions (x, y) (pixel centres at integers, as in K: u = x)."""
    r = rays(np.asarray(x, np.float64), np.asarray(y, np.float64))
    return r * (OFFSET / (r @ NORMAL))[..., None]


V, U = np.mgrid[0:H, 0:W].astype(np.float64)
PLANE = true_points(U, V)  # (H, W, 3) at the pixel centres
DEPTH_M = PLANE[..., 2].astype(np.float32)
TEXTURE = cv2.GaussianBlur(np.random.default_rng(3).integers(0, 256, (256, 256, 3), dtype=np.uint8), (0, 0), 2.0)


def colour(index: int) -> np.ndarray:
    """(H, W, 3) uint8: the texture on the plane, slid by one texture pixel per frame."""
    tx = ((PLANE[..., 0] + 1.0) * 120.0 + index).astype(np.float32)
    ty = ((PLANE[..., 1] + 1.0) * 120.0).astype(np.float32)
    return cv2.remap(TEXTURE, tx, ty, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def depth_message(depth_m: np.ndarray, encoding: str, header: Header) -> Image:
    """Depth in metres (NaN = hole) as 16UC1 millimetres (hole 0) or 32FC1 metres (hole NaN)."""
    if encoding == "16UC1":
        pixels = np.where(np.isfinite(depth_m), np.round(depth_m * 1000.0), 0).astype(np.uint16)
    else:
        pixels = depth_m.astype(np.float32)
    msg = Image(header=header, height=pixels.shape[0], width=pixels.shape[1], encoding=encoding, is_bigendian=0)
    msg.step = pixels.shape[1] * pixels.itemsize
    msg.data = pixels.tobytes()
    return msg


def camera_info(header: Header, width: int = W, height: int = H) -> CameraInfo:
    return CameraInfo(header=header, width=width, height=height, distortion_model="plumb_bob",
                      k=[FX, 0.0, CX, 0.0, FY, CY, 0.0, 0.0, 1.0], d=[0.0] * 5,
                      p=[FX, 0.0, CX, 0.0, 0.0, FY, CY, 0.0, 0.0, 0.0, 1.0, 0.0])  # fmt: skip


def expected_valid(depth_m: np.ndarray, x: np.ndarray, y: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """Which points get a 3D position: visible, inside the image, and at least 13 of the 5x5 readings around their
    pixel valid (the node's rule, docs/ros.md)."""
    out = np.zeros(len(x), bool)
    for i, (xi, yi) in enumerate(zip(x, y, strict=True)):
        if not (visible[i] and np.isfinite(xi) and np.isfinite(yi) and -0.5 <= xi < W - 0.5 and -0.5 <= yi < H - 0.5):
            continue
        c, r = int(np.floor(xi + 0.5)), int(np.floor(yi + 0.5))  # the pixel whose centre is nearest
        window = depth_m[max(r - 2, 0) : r + 3, max(c - 2, 0) : c + 3]
        out[i] = np.isfinite(window).sum() >= 13
    return out


# --- the node and the test's side ---------------------------------------------------------------------------------


class Rig:
    """The node process, a peer publishing colour, depth and CameraInfo, and what the node published."""

    def __init__(self, log: Path) -> None:
        env = {**os.environ, "ROS_DOMAIN_ID": str(DOMAIN_ID), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
               "OMP_NUM_THREADS": "1"}
        topics = {"image": f"{NS}/color/image_raw", "depth": f"{NS}/depth/image_raw", "info": f"{NS}/color/info"}
        args = [
            "-r", f"__ns:={NS}", "-r", f"image:={topics['image']}",
            "-p", "checkpoint:=''", "-p", f"arch:='{json.dumps(DEMO_ARCH)}'", "-p", "model_resolution:=[64,96]",
            "-p", "window_len:=8", "-p", "step:=4", "-p", "iters:=1", "-p", f"grid_size:={GRID}",
            "-p", "visibility_threshold:=0.0", "-p", "diagnostics_period:=0.2", "-p", "num_threads:=1",
            "-p", "queue_size:=100",
            "-p", f"depth_topic:={topics['depth']}", "-p", f"camera_info_topic:={topics['info']}",
            "-p", f"qos_overrides.{NS}/tracks.publisher.depth:=1000",
            "-p", f"qos_overrides.{NS}/tracks.publisher.reliability:=reliable",
        ]  # fmt: skip
        for topic in (topics["image"], topics["depth"]):
            args += ["-p", f"qos_overrides.{topic}.subscription.reliability:=reliable",
                     "-p", f"qos_overrides.{topic}.subscription.depth:=100"]  # fmt: skip
        self.process = NodeProcess.start(default_node_command(), args, env, log)
        self.peer = ReplayPeer(DOMAIN_ID, NS, topics["image"], Image, clock=False)
        self.peer.process = self.process
        node, reliable = self.peer.node, QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.depth_pub = node.create_publisher(Image, topics["depth"], reliable)
        self.info_pub = node.create_publisher(CameraInfo, topics["info"], reliable)
        self._lock = threading.Lock()
        self.tracks: dict[int, Tracks] = {}
        self.clouds: dict[int, PointCloud2] = {}
        deep = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        node.create_subscription(Tracks, f"{NS}/tracks", lambda m: self._keep(self.tracks, m), deep)
        self.cloud_sub = node.create_subscription(PointCloud2, f"{NS}/tracks/points",
                                                  lambda m: self._keep(self.clouds, m), deep)
        self.sent = 0
        self.stamp = time.time_ns()
        self.index = 0
        self.info_size: tuple[int, int] | None = None  # of the CameraInfo the node holds
        self.no_info_frames: list[tuple[Tracks, PointCloud2]] = []
        self.no_info_values: dict[str, str] = {}
        assert self.peer.wait_for(
            lambda: self.peer.reset.service_is_ready()
            and min(p.get_subscription_count() for p in (self.peer.image_pub, self.depth_pub, self.info_pub)) > 0
            and self.cloud_sub.get_publisher_count() > 0,
            90.0, 0.05,
        ), self.log()[-3000:]

    def _keep(self, into: dict, msg: object) -> None:
        with self._lock:
            into[time_to_ns(msg.header.stamp)] = msg

    def log(self) -> str:
        return self.process.log_path.read_text(errors="replace")

    def send(self, count: int, encoding: str | None = "16UC1", depth_m: np.ndarray = DEPTH_M, info: bool = True,
             info_size: tuple[int, int] = (W, H), depth_every: int = 1, skew_ns: int = 0) -> list[int]:
        """``count`` frames: depth (of ``encoding``; None: none) for every ``depth_every``-th frame, stamped
        ``skew_ns`` after the colour, then CameraInfo, then the colour image. Returns the colour stamps."""
        stamps = []
        if info and info_size != self.info_size:  # a new CameraInfo reaches the node before the frames do
            self.info_pub.publish(camera_info(Header(stamp=ns_to_time(self.stamp), frame_id=FRAME_ID), *info_size))
            time.sleep(0.3)
            self.info_size = info_size
        for k in range(count):
            self.stamp = max(self.stamp + 33_000_000, time.time_ns())
            header = Header(stamp=ns_to_time(self.stamp), frame_id=FRAME_ID)
            if encoding is not None and k % depth_every == 0:
                depth_header = Header(stamp=ns_to_time(self.stamp + skew_ns), frame_id=FRAME_ID)
                self.depth_pub.publish(depth_message(depth_m, encoding, depth_header))
            if info:
                self.info_pub.publish(camera_info(header, *info_size))
            self.peer.image_pub.publish(rgb_to_image(colour(self.index), header))
            self.index += 1
            self.sent += 1
            stamps.append(self.stamp)
            time.sleep(0.02)
        return stamps

    def results(self, stamps: list[int]) -> list[tuple[Tracks, PointCloud2]]:
        """Finish the stream (a reset publishes what the window holds), then the Tracks and cloud of ``stamps``."""
        assert self.peer.wait_for(
            lambda: diag.counter(self.diagnostics(), diag.RECEIVED_TOTAL) >= self.sent, 30.0, 0.01
        ), "the node did not receive every image"
        assert self.peer.call(self.peer.reset, Trigger.Request(), 30.0).success

        def have() -> bool:
            with self._lock:
                return all(s in self.tracks and s in self.clouds for s in stamps)

        assert self.peer.wait_for(have, 30.0, 0.01), self.log()[-3000:]
        with self._lock:
            return [(self.tracks[s], self.clouds[s]) for s in stamps]

    def diagnostics(self) -> dict[str, str]:
        return self.peer.wait_diagnostics(time.monotonic(), 10.0)

    def close(self) -> int:
        self.peer.close()
        return self.process.stop(timeout_s=30.0)


def arrays(msg: Tracks) -> dict[str, np.ndarray]:
    return {k: np.asarray(getattr(msg, k), dtype=np.uint8 if k == "visible" else None)
            for k in ("ids", "x", "y", "visible", "x3d", "y3d", "z3d")}  # fmt: skip


def decode_cloud(cloud: PointCloud2) -> np.ndarray:
    """A structured array from the cloud's own ``fields`` (independently of the node's dtype)."""
    types = {7: np.float32, 6: np.uint32, 2: np.uint8}  # PointField FLOAT32, UINT32, UINT8
    dtype = np.dtype({"names": [f.name for f in cloud.fields], "formats": [types[f.datatype] for f in cloud.fields],
                      "offsets": [f.offset for f in cloud.fields], "itemsize": cloud.point_step})  # fmt: skip
    assert cloud.height == 1 and cloud.row_step == cloud.point_step * cloud.width and not cloud.is_bigendian
    return np.frombuffer(bytes(cloud.data), dtype, count=cloud.width)


def check_frames(frames: list[tuple[Tracks, PointCloud2]], depth_m: np.ndarray | None) -> tuple[int, int]:
    """Every frame's 3D fields against the plane (``depth_m`` sent; None: no usable depth, all NaN), and its cloud
    against its Tracks. Returns (points with 3D, points without)."""
    with_3d = without = 0
    for msg, cloud in frames:
        a = arrays(msg)
        n = len(a["ids"])
        lengths = {k: len(v) for k, v in a.items()}
        assert n == GRID * GRID and all(length == n for length in lengths.values()), lengths
        xyz = np.stack([a["x3d"], a["y3d"], a["z3d"]], axis=1)
        valid = np.zeros(n, bool) if depth_m is None else expected_valid(depth_m, a["x"], a["y"], a["visible"])
        assert np.array_equal(np.isfinite(xyz).all(axis=1), valid), (xyz, a["x"], a["y"])
        assert np.isnan(xyz[~valid]).all()
        error = np.linalg.norm(xyz[valid] - true_points(a["x"][valid], a["y"][valid]), axis=1)
        assert (error < 0.01).all(), error.max()
        with_3d, without = with_3d + int(valid.sum()), without + int((~valid).sum())
        points = decode_cloud(cloud)
        assert cloud.header.frame_id == FRAME_ID and cloud.header.stamp == msg.header.stamp
        assert [f.name for f in cloud.fields] == ["x", "y", "z", "id", "visible"]
        np.testing.assert_array_equal(points["id"], a["ids"][valid])
        np.testing.assert_array_equal(np.stack([points["x"], points["y"], points["z"]], 1), xyz[valid])
        np.testing.assert_array_equal(points["visible"], a["visible"][valid])
    return with_3d, without


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    started = Rig(tmp_path_factory.mktemp("depth_logs") / "node.log")
    # Before any CameraInfo: 2D tracks, no 3D, and a message saying why.
    started.no_info_frames = started.results(started.send(8, info=False))
    started.no_info_values = started.diagnostics()
    yield started
    code = started.close()
    log = started.log()
    assert code == 0, log[-3000:]
    assert "Traceback" not in log, log[-5000:]


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
def test_3d_points_lie_on_the_true_plane(rig: Rig, encoding: str) -> None:
    frames = rig.results(rig.send(8, encoding))
    with_3d, _ = check_frames(frames, DEPTH_M)
    assert with_3d >= len(frames) * GRID * GRID // 2  # most points are inside the image with a depth


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
def test_holes_in_the_depth_give_nan(rig: Rig, encoding: str) -> None:
    holed = DEPTH_M.copy()
    holed[:45, :55] = np.nan  # the top-left of the image has no depth (16UC1: 0)
    holed[70:, 100:] = np.nan
    sent = holed.copy()
    sent[70:, 100:] = 0.0  # 0 m is no reading either, in 32FC1 as in 16UC1
    with_3d, without = check_frames(rig.results(rig.send(8, encoding, sent)), holed)
    assert with_3d > 0 and without >= 8 * 6  # about 9 of the 36 grid points start in the holes


def test_frames_without_a_depth_partner_keep_2d_tracks(rig: Rig) -> None:
    """Depth for every other frame, 5 ms after the colour (within depth_max_skew_s 0.02): paired; the frames in
    between have none within 20 ms (their neighbours' are 28 and 38 ms away)."""
    frames = rig.results(rig.send(8, "32FC1", depth_every=2, skew_ns=5_000_000))
    check_frames(frames[0::2], DEPTH_M)
    check_frames(frames[1::2], None)
    assert "no depth image on /depth3d/depth/image_raw within depth_max_skew_s (0.02 s)" in rig.log()


def test_missing_camera_info_is_reported_and_2d_goes_on(rig: Rig) -> None:
    check_frames(rig.no_info_frames, None)
    assert "no 3D for this frame: no CameraInfo received on /depth3d/color/info" in rig.log()
    assert "no CameraInfo" in rig.no_info_values[DEPTH_LAST_PROBLEM]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("depth size", "the depth image is 64x48, the colour image 128x96"),
        ("camera_info size", "CameraInfo is for 256x192 images, the colour image is 128x96"),
        ("encoding", "unsupported depth encoding 'mono16'; supported: 16UC1 (millimetres), 32FC1 (metres)"),
    ],
)
def test_unusable_depth_is_reported_and_2d_goes_on(rig: Rig, case: str, message: str) -> None:
    before = diag.counter(rig.diagnostics(), "3D: frames without depth (total)")
    if case == "depth size":
        stamps = rig.send(8, "16UC1", DEPTH_M[::2, ::2].copy())
    elif case == "camera_info size":
        stamps = rig.send(8, "16UC1", info_size=(2 * W, 2 * H))
    else:
        stamps = rig.send(8, "mono16")
    check_frames(rig.results(stamps), None)  # every frame published with its 2D tracks, 3D NaN
    values = rig.diagnostics()
    assert message in rig.log() and message in values[DEPTH_LAST_PROBLEM], values
    assert diag.counter(values, "3D: frames without depth (total)") - before == 8
