"""Several cameras in one tracker node process (``camera_names``, ``camera_topics``), over real DDS.

One node process tracks four synthetic cameras (different scenes, the same stamps) with one small model saved by
this module (seeded weights, so that this process can run the same model: each camera's tracks must equal those
of a `TrackingSession` run here on that camera's frames alone, within 5e-3 px, ids and visibility included, none
lost). Two cases use two and four of the cameras; the services of one camera leave the others alone; the
diagnostics have one status per camera; bad camera lists end the process with one FATAL line and exit 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from cotracker3_msgs.msg import Tracks
from cotracker3_msgs.srv import AddPoints, RemovePoints
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
from std_srvs.srv import Trigger

from cotracker3_core.cameras import check_camera_lists
from cotracker3_core.checkpoint import build_model, save_checkpoint
from cotracker3_core.session import TrackingSession
from cotracker3_core.streaming import StreamingTracker
from cotracker3_ros import diagnostics as diag
from cotracker3_ros.conversions import ns_to_time, rgb_to_image, time_to_ns, tracks_msg_arrays
from cotracker3_ros.lifecycle import EXIT_BAD_CONFIG
from cotracker3_ros.params import PARAMS, PARAMS_BY_NAME, stream_config_from_params
from cotracker3_ros.tools.demo import DEMO_ARCH, SyntheticScene
from cotracker3_ros.tools.node_peer import DdsPeer, NodeProcess, default_node_command

DOMAIN_ID = 217 + os.getpid() % 16  # test_ros_node / test_node_faults / test_node_depth: 200..232; namespace apart
NS = "/multicam"
CAMERAS = ("front", "left", "right", "rear")
H, W = 96, 128
GRID = 3
FRAMES = 10
MODEL = {"model_resolution": [64, 96], "window_len": 8, "step": 4, "iters": 1, "arch": json.dumps(DEMO_ARCH)}
pytestmark = pytest.mark.timeout(180)


def image_topic(camera: str) -> str:
    return f"{NS}/{camera}/image_raw"


def base_args(checkpoint: Path) -> list[str]:
    args = ["-r", f"__ns:={NS}", "-p", f"checkpoint:={checkpoint}", "-p", f"grid_size:={GRID}",
            "-p", "visibility_threshold:=0.0", "-p", "diagnostics_period:=0.2", "-p", "num_threads:=1",
            "-p", "queue_size:=100", "-p", "image_timeout_s:=0.0"]  # fmt: skip  # no camera is ever silent
    for name, value in MODEL.items():
        args += ["-p", f"{name}:={value if name != 'arch' else repr(value)}"]
    return args


class Rig:
    """The node process with four cameras, and a peer publishing their images and recording their tracks."""

    def __init__(self, checkpoint: Path, log: Path) -> None:
        self.env = {**os.environ, "ROS_DOMAIN_ID": str(DOMAIN_ID), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
                    "OMP_NUM_THREADS": "1"}  # fmt: skip
        topics = [image_topic(c) for c in CAMERAS]
        args = [*base_args(checkpoint), "-p", f"camera_names:=[{','.join(CAMERAS)}]",
                "-p", f"camera_topics:=[{','.join(topics)}]",
                "-p", f"depth_topics:=[{','.join(f'{NS}/{c}/depth' for c in CAMERAS)}]",
                "-p", f"camera_info_topics:=[{','.join(f'{NS}/{c}/info' for c in CAMERAS)}]"]  # fmt: skip
        for camera, topic in zip(CAMERAS, topics, strict=True):
            outputs = f"{NS}/tracker_node/{camera}/tracks"
            args += ["-p", f"qos_overrides.{topic}.subscription.reliability:=reliable",
                     "-p", f"qos_overrides.{topic}.subscription.depth:=100",
                     "-p", f"qos_overrides.{outputs}.publisher.depth:=1000",
                     "-p", f"qos_overrides.{outputs}.publisher.reliability:=reliable"]  # fmt: skip
        self.process = NodeProcess.start(default_node_command(), args, self.env, log)
        self.peer = DdsPeer("multicam_peer", DOMAIN_ID)
        node = self.peer.node
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        deep = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        self._lock = threading.Lock()
        self.tracks: dict[str, dict[int, Tracks]] = {c: {} for c in CAMERAS}
        self.status: dict[str, dict[str, str]] = {}
        self.status_levels: dict[str, int] = {}
        self.pubs, self.subs, self.clients = {}, {}, {}
        for camera in CAMERAS:
            self.pubs[camera] = node.create_publisher(Image, image_topic(camera), reliable)
            self.subs[camera] = node.create_subscription(
                Tracks, f"{NS}/tracker_node/{camera}/tracks", lambda m, c=camera: self._keep(c, m), deep
            )
            for srv_type, name in ((Trigger, "reset"), (AddPoints, "add_points"), (RemovePoints, "remove_points")):
                self.clients[camera, name] = node.create_client(srv_type, f"{NS}/tracker_node/{camera}/{name}")
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        self.clouds: dict[int, PointCloud2] = {}  # of the front camera
        self.cloud_sub = node.create_subscription(
            PointCloud2, f"{NS}/tracker_node/{CAMERAS[0]}/tracks/points", self._keep_cloud, deep
        )
        self.depth_pub = node.create_publisher(Image, f"{NS}/{CAMERAS[0]}/depth", reliable)
        self.info_pub = node.create_publisher(CameraInfo, f"{NS}/{CAMERAS[0]}/info", reliable)
        self.peer.start()
        self.sent = dict.fromkeys(CAMERAS, 0)
        self.scenes = {c: SyntheticScene(H, W, seed=10 + i) for i, c in enumerate(CAMERAS)}
        self.index = dict.fromkeys(CAMERAS, 0)
        self.stamp = time.time_ns()
        assert self.wait(
            lambda: all(self.clients[c, "reset"].service_is_ready() for c in CAMERAS)
            and all(self.pubs[c].get_subscription_count() > 0 for c in CAMERAS)
            and all(self.subs[c].get_publisher_count() > 0 for c in CAMERAS)
            and self.cloud_sub.get_publisher_count() > 0 and self.depth_pub.get_subscription_count() > 0
            and self.info_pub.get_subscription_count() > 0,
            90.0,
        ), self.log()[-3000:]

    def _keep(self, camera: str, msg: Tracks) -> None:
        with self._lock:
            self.tracks[camera][time_to_ns(msg.header.stamp)] = msg

    def _keep_cloud(self, msg: PointCloud2) -> None:
        with self._lock:
            self.clouds[time_to_ns(msg.header.stamp)] = msg

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        with self._lock:
            for status in msg.status:
                if status.hardware_id.startswith(f"{NS}/tracker_node "):
                    self.status[status.name] = {kv.key: kv.value for kv in status.values}
                    self.status_levels[status.name] = status.level

    def wait(self, predicate, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return True
            if not self.process.alive:
                raise RuntimeError(f"the node exited:\n{self.log()[-3000:]}")
            time.sleep(0.01)
        return predicate()

    def log(self) -> str:
        return self.process.log_path.read_text(errors="replace")

    def send(
        self, cameras: tuple[str, ...], count: int, depth_m: float = 0.0
    ) -> tuple[list[int], dict[str, list[np.ndarray]]]:
        """``count`` frames on each camera, interleaved and paced, each frame the same stamp on every camera (and,
        with ``depth_m``, a flat depth image and CameraInfo of that stamp for the front camera only). Returns the
        stamps and each camera's frames."""
        stamps, frames = [], {c: [] for c in cameras}
        for _ in range(count):
            self.stamp = max(self.stamp + 33_000_000, time.time_ns())
            header = Header(stamp=ns_to_time(self.stamp), frame_id="camera")
            if depth_m:
                self.info_pub.publish(CameraInfo(header=header, width=W, height=H, distortion_model="plumb_bob",
                                                 k=[100.0, 0.0, 63.5, 0.0, 100.0, 47.5, 0.0, 0.0, 1.0]))  # fmt: skip
                depth = np.full((H, W), depth_m, np.float32)
                self.depth_pub.publish(Image(header=header, height=H, width=W, encoding="32FC1", step=4 * W,
                                             data=depth.tobytes()))  # fmt: skip
            for camera in cameras:
                rgb = self.scenes[camera].frame(self.index[camera])
                self.index[camera] += 1
                frames[camera].append(rgb)
                self.pubs[camera].publish(rgb_to_image(rgb, header))
                self.sent[camera] += 1
            stamps.append(self.stamp)
            time.sleep(0.02)
        return stamps, frames

    def call(self, camera: str, name: str, request):
        client = self.clients[camera, name]
        future = client.call_async(request)
        assert self.wait(future.done, 30.0), f"no answer from {client.srv_name}"
        return future.result()

    def camera_status(self, camera: str, after: float | None = None) -> dict[str, str]:
        name = f"tracker_node/{camera}{diag.STATUS_SUFFIX}"
        with self._lock:
            self.status.pop(name, None)
        assert self.wait(lambda: name in self.status, 10.0), f"no diagnostics status {name!r}"
        with self._lock:
            return self.status[name]

    def results(self, cameras: tuple[str, ...], stamps: list[int]) -> dict[str, list[Tracks]]:
        """Every frame received (diagnostics), each camera reset (its window flushed), then its tracks."""
        for camera in cameras:
            assert self.wait(
                lambda c=camera: diag.counter(self.camera_status(c), diag.RECEIVED_TOTAL) >= self.sent[c], 30.0
            ), f"{camera}: the node did not receive every image"
            assert self.call(camera, "reset", Trigger.Request()).success

        def have() -> bool:
            with self._lock:
                return all(s in self.tracks[c] for c in cameras for s in stamps)

        assert self.wait(have, 30.0), self.log()[-3000:]
        with self._lock:
            return {c: [self.tracks[c][s] for s in stamps] for c in cameras}

    def close(self) -> int:
        self.peer.close()
        return self.process.stop(timeout_s=30.0)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = build_model("online", window_len=MODEL["window_len"], model_resolution=tuple(MODEL["model_resolution"]),
                        **DEMO_ARCH)  # fmt: skip
    return save_checkpoint(tmp_path_factory.mktemp("multicam") / "small.pth", model)


@pytest.fixture(scope="module")
def rig(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    started = Rig(checkpoint, tmp_path_factory.mktemp("multicam_logs") / "node.log")
    yield started
    code = started.close()
    log = started.log()
    assert code == 0, log[-3000:]
    assert "Traceback" not in log, log[-5000:]


@pytest.fixture(scope="module")
def reference(checkpoint: Path):
    """Tracks one camera's frames alone, in this process, as the node's session does (grid on frame 0)."""
    values = {p.name: p.default for p in PARAMS}
    values.update({**MODEL, "checkpoint": str(checkpoint), "visibility_threshold": 0.0, "num_threads": 1})
    torch.set_num_threads(1)
    tracker = StreamingTracker.from_config(stream_config_from_params(values))

    def run(frames: list[np.ndarray], stamps: list[int]) -> dict[int, dict[str, np.ndarray]]:
        tracker.reset()
        session = TrackingSession(tracker, GRID, 0)
        out = {}
        for frame, stamp in zip(frames, stamps, strict=True):
            step = session.push(frame, stamp)
            assert step.rejected is None
            out.update({e.tracks.stamp: e.tracks for e in step.emitted if not e.tracks.refined})
        out.update({e.tracks.stamp: e.tracks for e in session.finish() if not e.tracks.refined})
        return out

    return run


def check_equal(camera: str, got: list[Tracks], expected: dict, stamps: list[int]) -> None:
    for msg, stamp in zip(got, stamps, strict=True):
        arrays, ref = tracks_msg_arrays(msg), expected[stamp]
        np.testing.assert_array_equal(arrays["ids"], ref.ids, err_msg=camera)
        np.testing.assert_allclose(arrays["xy"], ref.xy, atol=5e-3, rtol=0, err_msg=camera)
        np.testing.assert_array_equal(arrays["visible"], ref.visible, err_msg=camera)


@pytest.mark.parametrize("count", [2, 4])
def test_each_camera_tracks_as_if_alone(rig: Rig, reference, count: int) -> None:
    cameras = CAMERAS[:count]
    batched = {c: diag.counter(rig.camera_status(c), diag.BATCHED_TOTAL) for c in cameras}
    stamps, frames = rig.send(cameras, FRAMES)
    got = rig.results(cameras, stamps)
    tracks = {c: np.stack([tracks_msg_arrays(m)["xy"] for m in got[c]]) for c in cameras}
    for camera in cameras:
        check_equal(camera, got[camera], reference(frames[camera], stamps), stamps)
        assert len(tracks_msg_arrays(got[camera][0])["ids"]) == GRID * GRID
    assert not np.allclose(tracks[cameras[0]], tracks[cameras[1]])  # different scenes, different tracks
    for camera in CAMERAS:  # one status per camera, nothing dropped; the idle cameras saw no frame
        values = rig.camera_status(camera)
        assert diag.counter(values, diag.RECEIVED_TOTAL) == rig.sent[camera], (camera, values)
        assert diag.counter(values, diag.DROPPED_TOTAL) == 0 and diag.counter(values, diag.LOST_TOTAL) == 0, values
    assert rig.sent[CAMERAS[-1]] == (FRAMES if count == 4 else 0)
    for camera in cameras:  # the cameras' first windows (frame 8) ran in one batched call (camera_sync_s aligns them)
        assert diag.counter(rig.camera_status(camera), diag.BATCHED_TOTAL) == batched[camera] + 1, camera


def test_services_of_one_camera_leave_the_others_alone(rig: Rig) -> None:
    front, left = CAMERAS[:2]
    stamps, _ = rig.send((front, left), 8)
    assert rig.wait(lambda: all(s in rig.tracks[front] for s in stamps[:4]), 30.0)  # frames 0..7 pushed
    added = rig.call(front, "add_points", AddPoints.Request(x=[10.0, 20.0], y=[30.0, 40.0], ids=[100, 101],
                                                             stamp=ns_to_time(stamps[-1])))  # fmt: skip
    assert added.success and list(added.ids) == [100, 101], added.message
    removed = rig.call(left, "remove_points", RemovePoints.Request(ids=[100]))
    assert not removed.success and "unknown query ids: [100]" in removed.message  # not the left camera's
    more, _ = rig.send((front, left), 4)
    got = rig.results((front, left), more)
    assert set(tracks_msg_arrays(got[front][-1])["ids"]) == set(range(GRID * GRID)) | {100, 101}
    assert set(tracks_msg_arrays(got[left][-1])["ids"]) == set(range(GRID * GRID))


def test_depth_of_one_camera_gives_3d_to_that_camera_only(rig: Rig) -> None:
    front, left = CAMERAS[:2]
    rig.send((front,), 1, depth_m=1.5)  # the CameraInfo reaches the node before the frames that need it
    time.sleep(0.3)
    stamps, _ = rig.send((front, left), 8, depth_m=1.5)
    got = rig.results((front, left), stamps)
    assert rig.wait(lambda: all(s in rig.clouds for s in stamps), 30.0), "front: no tracks/points"
    for msg in got[front]:
        z = np.asarray(msg.z3d, np.float32)
        assert len(z) == GRID * GRID and np.isfinite(z).any()
        np.testing.assert_allclose(z[np.isfinite(z)], 1.5, atol=1e-5)
    for msg in got[left]:  # the left camera has no depth: its 3D stays NaN
        assert len(msg.z3d) == GRID * GRID and np.isnan(np.asarray(msg.z3d, np.float32)).all()
    values = rig.camera_status(front)
    assert diag.counter(values, "3D: frames with depth (total)") >= 8, values


#: Bad camera lists (extra -p arguments) and the FATAL line's message.
BAD_LISTS = {
    "unequal": (["camera_names:=[a,b]", "camera_topics:=[/a]"], "camera_topics has 1 entries for 2 camera_names"),
    "duplicate": (["camera_names:=[a,a]", "camera_topics:=[/a,/b]"], "camera_names: duplicate name(s) ['a']"),
    "invalid": (["camera_names:=[a,'b c']", "camera_topics:=[/a,/b]"], "camera_names: invalid name(s) ['b c']"),
    "depth": (["camera_names:=[a]", "camera_topics:=[/a]", "depth_topics:=[/d,/e]"],
              "depth_topics has 2 entries for 1 camera_names"),
    "no names": (["camera_topics:=[/a]"], "camera_topics, depth_topics and camera_info_topics need camera_names"),
}  # fmt: skip


def test_bad_camera_lists_exit_2_with_a_fatal_line(checkpoint: Path, tmp_path: Path) -> None:
    env = {**os.environ, "ROS_DOMAIN_ID": str(DOMAIN_ID), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
           "OMP_NUM_THREADS": "1"}  # fmt: skip
    started = {}
    for case, (args, _) in BAD_LISTS.items():  # in parallel: each pays the imports
        ros_args = [arg for a in args for arg in ("-p", a)]
        command = [*default_node_command(), "--ros-args", *base_args(checkpoint), *ros_args]
        started[case] = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for case, process in started.items():
        out, _ = process.communicate(timeout=120)
        fatal = [line for line in out.splitlines() if "[FATAL]" in line]
        assert process.returncode == EXIT_BAD_CONFIG, (case, out[-3000:])
        assert len(fatal) == 1 and BAD_LISTS[case][1] in fatal[0], (case, out[-3000:])
        assert "Traceback" not in out and "loading CoTracker3" not in out  # refused before the model loads


def test_two_cameras_example_file_is_valid() -> None:
    """config/two_cameras.yaml (docs/ros.md, Several cameras): known parameters, consistent lists."""
    path = Path(__file__).resolve().parents[1] / "config" / "two_cameras.yaml"
    params = yaml.safe_load(path.read_text())["/**/tracker_node"]["ros__parameters"]
    assert set(params) <= set(PARAMS_BY_NAME) and len(params["camera_names"]) == 2
    check_camera_lists(params["camera_names"], params["camera_topics"], params["depth_topics"],
                       params["camera_info_topics"])  # fmt: skip
    with pytest.raises(ValueError, match="duplicate"):
        check_camera_lists(["a", "a"], ["/x", "/y"])
