"""The tracker node as users run it: its own process, real rclpy, real Fast DDS, no mocks.

Two node processes are started once for the module through the console entry point ``tracker_node``
that colcon installed (``python -m cotracker3_ros.node`` when that install is missing), with the shipped
``config/tracker.yaml`` plus command-line overrides that keep them fast on a CPU:

- ``model_resolution [64, 96]``, ``window_len 8``, ``step 4``, ``iters 2`` and the tiny architecture
  ``cotracker3_ros.tools.demo.DEMO_ARCH`` (passed as the ``arch`` parameter, a JSON string), untrained weights;
- ``OMP_NUM_THREADS=1``: on a shared 2-core machine a second OpenMP thread fighting the test process for a
  core made one frame 100x slower;
- a reliable QoS override on the image subscription, a deep queue and deep tracks publishers (QoS overrides
  too), so that counts are exact.

``main`` (namespace /ct3) takes raw images; ``sim`` (namespace /ct3sim) takes compressed images with
``use_sim_time`` and a /clock published here. Tests share the processes and start with a reset. The
domain id is unique to this module and process; discovery stays on this host.
"""

from __future__ import annotations

import array
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest
from builtin_interfaces.msg import Time
from cotracker3_msgs.msg import Tracks
from cotracker3_msgs.srv import AddMaskPoints, AddPoints, RemovePoints
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import DescribeParameters, GetParameters, SetParameters
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from std_srvs.srv import Trigger

from cotracker3_core.evaluation.protocol import read_frames
from cotracker3_core.intake import LossCounter
from cotracker3_ros import diagnostics as diag
from cotracker3_ros.conversions import ns_to_time, rgb_to_image, time_to_ns, tracks_msg_arrays
from cotracker3_ros.node import parse_arch, stream_config_from_params
from cotracker3_ros.params import PARAMS
from cotracker3_ros.tools.demo import DEMO_ARCH, SyntheticScene
from cotracker3_ros.tools.node_peer import DdsPeer, node_service, wait_until

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG = REPO_ROOT / "config" / "tracker.yaml"
# Fast DDS accepts domain ids 0..232; test_msgs_dds uses 100..199, this module 200..231.
DOMAIN_ID = 200 + os.getpid() % 32
FRAME_ID = "test_camera_optical_frame"
GRID = 4  # grid_size: 16 points
WINDOW, STEP = 8, 4
SIZE = (96, 128)  # synthetic camera (H, W)
TIMEOUT_S = 30.0
NODE_START_TIMEOUT_S = 60.0


# --- unit tests of the node's plain helpers ---------------------------------------------------------


def test_loss_counter_from_sequence_numbers_else_stamps() -> None:
    def seen(losses: LossCounter, seqs: Sequence[int], gid: bytes = b"a") -> int:
        for seq in seqs:
            losses.observe({"publication_sequence_number": seq, "publisher_gid": {"data": gid}}, 0)
        return losses.lost

    losses = LossCounter()
    assert seen(losses, [1, 2, 5, 6]) == 2
    assert seen(losses, [4]) == 1  # handed over late (executor threads): no longer lost
    assert seen(losses, [10, 12], gid=b"b") == 2  # per publisher: 11 is missing
    assert seen(losses, [3000, 3001, 1, 2, 4], gid=b"c") == 3  # numbers far below: a restarted publisher
    # No sequence numbers (unsupported: 0 or 2**64 - 1): gaps in the stamps against the measured period.
    by_stamp, period = LossCounter(), 33_000_000
    for t in (1, 2, 3, 4, 5, 6, 9, 10):
        by_stamp.observe({"publication_sequence_number": 2**64 - 1}, t * period)
    by_stamp.observe(None, 0)  # unstamped frames tell nothing
    assert by_stamp.lost == 2


def test_arch_and_stream_config_from_parameters() -> None:
    assert parse_arch("") == {} and parse_arch("  ") == {}
    assert parse_arch('{"latent_dim": 32}') == {"latent_dim": 32}
    assert parse_arch("{hidden_size: 64, num_heads: 2}") == {"hidden_size": 64, "num_heads": 2}
    with pytest.raises(ValueError, match="mapping"):
        parse_arch("[1, 2]")
    with pytest.raises(ValueError, match="YAML"):
        parse_arch("{a: [}")
    values = {p.name: p.default for p in PARAMS}
    # Defaults: the shipped lite weights, window/step/iters/resolution left to its recommendation.
    default = stream_config_from_params(values)
    assert default.checkpoint == "lite" and default.window_len is None and default.model_resolution is None
    assert default.resolved().model_resolution == (192, 256) and default.resolved().window_len == 8
    # An explicit empty checkpoint still means untrained weights of `arch`.
    config = stream_config_from_params(
        {**values, "checkpoint": "", "model_resolution": [64, 96], "arch": json.dumps(DEMO_ARCH)}
    )
    assert config.checkpoint is None and config.model_resolution == (64, 96) and config.arch == DEMO_ARCH
    with pytest.raises(ValueError, match="step"):
        stream_config_from_params({**values, "step": 3})
    with pytest.raises(ValueError, match="model_resolution"):
        stream_config_from_params({**values, "model_resolution": [64]})
    with pytest.raises(ValueError, match=r"unknown fields \['bogus'\]"):
        stream_config_from_params({**values, "arch": "{bogus: 1}"})


@pytest.mark.timeout(60)
def test_bad_parameters_stop_the_node_with_a_clear_message(tmp_path: Path) -> None:
    env = {**os.environ, "ROS_DOMAIN_ID": str(DOMAIN_ID), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    result = subprocess.run(
        [*node_command(), "--ros-args", "-r", "__ns:=/bad", "-p", "step:=3"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert result.returncode == 2
    assert "cannot start: step must be one of" in result.stdout + result.stderr


# --- processes and a DDS peer ----------------------------------------------------------------------


def node_command() -> list[str]:
    """``tracker_node`` as colcon installed it, else ``python -m cotracker3_ros.node``."""
    try:
        from ament_index_python.packages import get_package_prefix

        exe = Path(get_package_prefix("cotracker3_ros")) / "lib" / "cotracker3_ros" / "tracker_node"
        if exe.is_file() and os.access(exe, os.X_OK):
            return [str(exe)]
    except Exception:  # not installed by colcon: run the working tree
        pass
    return [sys.executable, "-m", "cotracker3_ros.node"]


@dataclass
class NodeProcess:
    namespace: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_node(namespace: str, log_path: Path, image_topic: str, *extra: str) -> NodeProcess:
    topic = f"{namespace}/{image_topic}"
    args = [
        *node_command(),
        "--ros-args",
        "--params-file",
        str(CONFIG),
        "-r",
        f"__ns:={namespace}",
        "-p",
        "checkpoint:=''",
        "-p",
        "model_resolution:=[64,96]",
        "-p",
        f"window_len:={WINDOW}",
        "-p",
        f"step:={STEP}",
        "-p",
        "iters:=2",
        "-p",
        f"arch:='{json.dumps(DEMO_ARCH)}'",
        "-p",
        f"grid_size:={GRID}",
        "-p",
        "queue_size:=100",
        "-p",
        "diagnostics_period:=0.5",
        "-p",
        f"qos_overrides.{topic}.subscription.reliability:=reliable",
        "-p",
        f"qos_overrides.{topic}.subscription.depth:=100",
        # A deep writer history, so that a test process busy for a moment loses no tracks.
        "-p",
        f"qos_overrides.{namespace}/tracks.publisher.depth:=500",
        "-p",
        f"qos_overrides.{namespace}/tracks_refined.publisher.depth:=500",
        *extra,
    ]
    env = {**os.environ, "ROS_DOMAIN_ID": str(DOMAIN_ID), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    log = log_path.open("w")
    process = subprocess.Popen(args, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    return NodeProcess(namespace, process, log_path)


def stop_node(node: NodeProcess) -> int:
    if node.process.poll() is None:
        node.process.send_signal(signal.SIGINT)
        try:
            node.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            node.process.kill()
            node.process.wait()
            return -999
    return node.process.returncode


@dataclass
class Inbox:
    """Messages received on one node's topics, in arrival order, with the arrival wall time."""

    tracks: list[tuple[Tracks, float]] = field(default_factory=list)
    refined: list[Tracks] = field(default_factory=list)
    debug: list[Image] = field(default_factory=list)
    diagnostics: list[DiagnosticArray] = field(default_factory=list)

    def clear(self) -> None:
        self.tracks.clear()
        self.refined.clear()
        self.debug.clear()
        self.diagnostics.clear()

    def stamps(self) -> list[int]:
        return [time_to_ns(m.header.stamp) for m, _ in self.tracks]


class Peer(DdsPeer):
    """The test's side of DDS (`DdsPeer`, as the replay tool's): messages are taken (and their arrival time
    noted) as they come, whatever the test's main thread is doing."""

    def __init__(self) -> None:
        super().__init__("test_peer", DOMAIN_ID)
        self.inboxes: dict[str, Inbox] = {}
        self.reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        self.start()

    def watch(self, ns: str) -> Inbox:
        inbox = self.inboxes[ns] = Inbox()
        self.node.create_subscription(Tracks, f"{ns}/tracks", lambda m: inbox.tracks.append((m, time.time())), 200)
        self.node.create_subscription(Tracks, f"{ns}/tracks_refined", inbox.refined.append, 200)
        return inbox

    def watch_debug_images(self, ns: str) -> None:
        """Subscribe to debug_image (the node renders only while someone does). Only the test of that topic
        subscribes: taking 0.5 MB images in this Python process delays every other message it receives."""
        self.node.create_subscription(Image, f"{ns}/debug_image", self.inboxes[ns].debug.append, 50)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for ns, inbox in self.inboxes.items():
            if any(s.hardware_id.startswith(f"{ns}/tracker_node ") for s in msg.status):
                inbox.diagnostics.append(msg)

    @staticmethod
    def spin_until(predicate: Callable[[], bool], timeout_s: float = TIMEOUT_S) -> bool:
        return wait_until(predicate, timeout_s)

    def call(self, client, request, timeout_s: float = TIMEOUT_S):  # noqa: ANN001, ANN201 (any service)
        assert self.spin_until(client.service_is_ready, timeout_s), f"service {client.srv_name} not available"
        future = client.call_async(request)
        assert self.spin_until(future.done, timeout_s), f"no response from {client.srv_name}"
        return future.result()

@dataclass
class Tracker:
    """Handles on one node process: its services, an image publisher, what it published."""

    proc: NodeProcess
    peer: Peer
    inbox: Inbox
    image_pub: object
    add_points: object
    add_mask_points: object
    remove_points: object
    reset: object
    get_params: object
    set_params: object
    describe_params: object
    sent: int = 0

    def wait_subscribed(self) -> None:
        assert self.peer.spin_until(lambda: self.image_pub.get_subscription_count() >= 1), "image not matched"

    def do_reset(self) -> Trigger.Response:
        response = self.peer.call(self.reset, Trigger.Request())
        assert response.success, response.message
        self.peer.spin_until(lambda: False, timeout_s=0.3)  # flushed tracks land now
        self.inbox.clear()
        return response

    def publish(self, msg: Image | CompressedImage, pace_s: float = 0.0) -> None:
        self.image_pub.publish(msg)
        self.sent += 1
        if pace_s:
            time.sleep(pace_s)

    def wait_tracks(self, count: int, timeout_s: float = TIMEOUT_S) -> list[Tracks]:
        self.peer.spin_until(lambda: len(self.inbox.tracks) >= count, timeout_s)
        return [m for m, _ in self.inbox.tracks]

    def diagnostics(self) -> dict[str, str]:
        return diag_values(self.inbox.diagnostics[-1]) if self.inbox.diagnostics else {}

    def finish(self) -> list[Tracks]:
        """Wait until the node has received every image sent (its diagnostics count them), reset it so
        that the last partial window is flushed, and return every Tracks message of this test."""

        def all_received() -> bool:
            return int(self.diagnostics().get("frames received (total)", -1)) >= self.sent

        assert self.peer.spin_until(all_received), f"node received {self.diagnostics()} of {self.sent}"
        response = self.peer.call(self.reset, Trigger.Request())
        assert response.success, response.message
        self.peer.spin_until(lambda: False, timeout_s=0.3)  # the flushed tracks land now
        return [m for m, _ in self.inbox.tracks]


def make_tracker(peer: Peer, proc: NodeProcess, msg_type: type, image_topic: str) -> Tracker:
    ns, n = proc.namespace, peer.node
    tracker = Tracker(
        proc=proc,
        peer=peer,
        inbox=peer.watch(ns),
        image_pub=n.create_publisher(msg_type, f"{ns}/{image_topic}", peer.reliable),
        # The services are private (~/add_points): under the node's name.
        add_points=n.create_client(AddPoints, node_service(ns, "add_points")),
        add_mask_points=n.create_client(AddMaskPoints, node_service(ns, "add_mask_points")),
        remove_points=n.create_client(RemovePoints, node_service(ns, "remove_points")),
        reset=n.create_client(Trigger, node_service(ns, "reset")),
        get_params=n.create_client(GetParameters, f"{ns}/tracker_node/get_parameters"),
        set_params=n.create_client(SetParameters, f"{ns}/tracker_node/set_parameters"),
        describe_params=n.create_client(DescribeParameters, f"{ns}/tracker_node/describe_parameters"),
    )
    ready = peer.spin_until(
        lambda: tracker.reset.service_is_ready() or proc.process.poll() is not None, NODE_START_TIMEOUT_S
    )
    assert ready and proc.process.poll() is None, f"node {ns} did not start:\n{proc.log()[-3000:]}"
    tracker.wait_subscribed()
    return tracker


@pytest.fixture(scope="module")
def processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, NodeProcess]]:
    logs = tmp_path_factory.mktemp("tracker_node_logs")
    # Both start together: their start-up (imports, model build) overlaps.
    procs = {
        "main": start_node(
            "/ct3", logs / "main.log", "image", "-p", "publish_refined:=true", "-p", "debug_image:=true"
        ),
        "sim": start_node(
            "/ct3sim", logs / "sim.log", "image/compressed", "-p", "compressed:=true", "-p", "use_sim_time:=true"
        ),
    }
    yield procs
    codes = {name: stop_node(proc) for name, proc in procs.items()}
    for name, code in codes.items():
        assert code == 0, f"node {name} exited with {code} after SIGINT:\n{procs[name].log()[-3000:]}"


@pytest.fixture(scope="module")
def peer(processes: dict[str, NodeProcess]) -> Iterator[Peer]:
    p = Peer()
    yield p
    p.close()


@pytest.fixture(scope="module")
def main_node(peer: Peer, processes: dict[str, NodeProcess]) -> Tracker:
    return make_tracker(peer, processes["main"], Image, "image")


@pytest.fixture(scope="module")
def sim_node(peer: Peer, processes: dict[str, NodeProcess]) -> Tracker:
    return make_tracker(peer, processes["sim"], CompressedImage, "image/compressed")


@pytest.fixture
def tracker(main_node: Tracker) -> Tracker:
    main_node.do_reset()
    return main_node


_stamp_base = time.time_ns()


def next_stamps(count: int, period_ns: int = 33_000_000) -> list[int]:
    """Strictly increasing stamps, later than any handed out before in this module."""
    global _stamp_base
    _stamp_base = max(_stamp_base + period_ns, time.time_ns())
    stamps = [_stamp_base + i * period_ns for i in range(count)]
    _stamp_base = stamps[-1]
    return stamps


def synthetic_images(stamps: list[int], encoding: str = "rgb8", size: tuple[int, int] = SIZE) -> list[Image]:
    scene = SyntheticScene(*size)
    return [
        rgb_to_image(scene.frame(i), Header(stamp=ns_to_time(s), frame_id=FRAME_ID), encoding)
        for i, s in enumerate(stamps)
    ]


def diag_values(msg: DiagnosticArray) -> dict[str, str]:
    return {kv.key: kv.value for kv in msg.status[0].values}


def read_video(path: Path, max_frames: int) -> list[np.ndarray]:
    """The first frames of a video as stored (BGR, as the node's bgr8 input gets them)."""
    return [cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) for rgb in read_frames(path, max_side=None, max_frames=max_frames)]


# --- integration ----------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_parameters_declared_with_ranges_and_live_tuning(tracker: Tracker) -> None:
    names = [p.name for p in PARAMS]
    described = tracker.peer.call(tracker.describe_params, DescribeParameters.Request(names=names)).descriptors
    by_name = {d.name: d for d in described}
    assert set(by_name) == set(names)
    for spec in PARAMS:
        d = by_name[spec.name]
        assert d.description and d.read_only == spec.read_only, spec.name
        if spec.range is not None:
            bounds = d.floating_point_range or d.integer_range
            assert (bounds[0].from_value, bounds[0].to_value) == spec.range, spec.name
    values = tracker.peer.call(tracker.get_params, GetParameters.Request(names=["grid_size", "mask_grid_size"])).values
    assert [v.integer_value for v in values] == [GRID, 20]  # -p override, then the YAML file's value

    def set_param(name: str, value: ParameterValue) -> bool:
        request = SetParameters.Request(parameters=[ParameterMsg(name=name, value=value)])
        return tracker.peer.call(tracker.set_params, request).results[0].successful

    double = ParameterType.PARAMETER_DOUBLE
    assert set_param("visibility_threshold", ParameterValue(type=double, double_value=0.3))
    assert not set_param("visibility_threshold", ParameterValue(type=double, double_value=1.5))  # out of range
    assert not set_param("checkpoint", ParameterValue(type=ParameterType.PARAMETER_STRING, string_value="x.pth"))
    assert set_param("visibility_threshold", ParameterValue(type=double, double_value=0.6))


@pytest.mark.timeout(120)
def test_synthetic_stream_exact_counts_stamps_ids_and_refined(tracker: Tracker) -> None:
    stamps = next_stamps(22)
    for msg in synthetic_images(stamps, "bgr8"):
        tracker.publish(msg)
    # Windows of 8 every 4 frames: 20 of the 22 frames come out live, the last 2 with the flush.
    assert len(tracker.wait_tracks(20)) == 20
    got = tracker.finish()
    assert [time_to_ns(m.header.stamp) for m in got] == stamps  # every frame once, in order
    for msg in got:
        arrays = tracks_msg_arrays(msg)
        assert msg.header.frame_id == FRAME_ID and not msg.refined
        assert (msg.image_height, msg.image_width) == SIZE
        assert arrays["ids"].tolist() == list(range(GRID * GRID))
        assert all(len(getattr(msg, f)) == GRID * GRID for f in ("x", "y", "visibility", "confidence", "visible"))
        assert np.isfinite(arrays["xy"]).all()
        assert ((arrays["visibility"] >= 0) & (arrays["visibility"] <= 1)).all()
    refined = tracker.inbox.refined
    assert refined and all(m.refined for m in refined)
    assert {time_to_ns(m.header.stamp) for m in refined} <= set(stamps)


@pytest.mark.timeout(120)
def test_add_and_remove_points_through_services(tracker: Tracker) -> None:
    peer = tracker.peer
    request = AddPoints.Request()
    request.x, request.y = array.array("f", [10.0]), array.array("f", [10.0])
    response = peer.call(tracker.add_points, request)
    assert not response.success and "no frame" in response.message  # nothing received since the reset

    stamps = next_stamps(16)
    images = synthetic_images(stamps)
    for msg in images[:8]:
        tracker.publish(msg)
    tracker.wait_tracks(8)  # the first window: frames 0..7 pushed, 4..7 still in the window

    request = AddPoints.Request(stamp=ns_to_time(stamps[6]))
    request.x, request.y = array.array("f", [5.0, 64.0, 127.0]), array.array("f", [5.0, 48.0, 95.0])
    request.ids = array.array("I", [1000, 1001, 1002])
    response = peer.call(tracker.add_points, request)
    assert response.success, response.message
    assert list(response.ids) == [1000, 1001, 1002]
    request = AddPoints.Request()  # zero stamp: the newest frame; ids assigned by the node
    request.x, request.y = array.array("f", [30.0]), array.array("f", [20.0])
    response = peer.call(tracker.add_points, request)
    assert response.success and list(response.ids) == [1003]

    bad = {
        "outside": ([200.0], [10.0], [], None),
        "NaN": ([float("nan")], [1.0], [], None),
        "differ in length": ([1.0, 2.0], [1.0], [], None),
        "ids given": ([1.0, 2.0], [1.0, 2.0], [5], None),
        "already in use": ([1.0], [1.0], [1000], None),
        "not a frame in the window": ([1.0], [1.0], [], stamps[0] - 1),
        "no points": ([], [], [], None),
    }
    for expected, (x, y, ids, stamp) in bad.items():
        request = AddPoints.Request(stamp=ns_to_time(stamp) if stamp else Time())
        request.x, request.y, request.ids = array.array("f", x), array.array("f", y), array.array("I", ids)
        response = peer.call(tracker.add_points, request)
        assert not response.success and expected in response.message, (expected, response.message)
        assert len(response.ids) == 0

    for msg in images[8:12]:
        tracker.publish(msg)
    got = tracker.wait_tracks(12)
    assert len(got) == 12
    grid_ids = list(range(GRID * GRID))
    assert tracks_msg_arrays(got[11])["ids"].tolist() == [*grid_ids, 1000, 1001, 1002, 1003]

    response = peer.call(tracker.remove_points, RemovePoints.Request(ids=array.array("I", [1001, 3])))
    assert response.success, response.message
    for ids, expected in (([4242], "unknown"), ([], "no ids")):
        response = peer.call(tracker.remove_points, RemovePoints.Request(ids=array.array("I", ids)))
        assert not response.success and expected in response.message, response.message
    for msg in images[12:16]:
        tracker.publish(msg)
    got = tracker.wait_tracks(16)
    last_ids = tracks_msg_arrays(got[15])["ids"].tolist()
    assert 1001 not in last_ids and 3 not in last_ids and 1000 in last_ids and 1003 in last_ids


def mono8(mask: np.ndarray, stamp_ns: int = 0) -> Image:
    msg = Image(height=mask.shape[0], width=mask.shape[1], encoding="mono8", step=mask.shape[1])
    msg.header.stamp = ns_to_time(stamp_ns)
    msg.data = array.array("B", np.ascontiguousarray(mask, dtype=np.uint8).tobytes())
    return msg


@pytest.mark.timeout(120)
def test_mask_queries_on_the_apple_clip(tracker: Tracker, shared_dir: Path) -> None:
    frames = read_video(shared_dir / "data" / "apple.mp4", 12)
    mask = cv2.imread(str(shared_dir / "data" / "apple_mask.png"), cv2.IMREAD_GRAYSCALE)
    assert frames and mask is not None and mask.shape == frames[0].shape[:2]
    stamps = next_stamps(len(frames), 100_000_000)
    images = [
        rgb_to_image(f[:, :, ::-1].copy(), Header(stamp=ns_to_time(s), frame_id="apple"))
        for f, s in zip(frames, stamps, strict=True)
    ]
    tracker.publish(images[0])
    peer = tracker.peer
    # Frame 0 must have reached the engine before a mask can name it: retry while it is on its way.
    request = AddMaskPoints.Request(stamp=ns_to_time(stamps[0]), mask=mono8(mask))
    response = peer.call(tracker.add_mask_points, request)
    deadline = time.monotonic() + TIMEOUT_S
    while not response.success and "no frame" in response.message and time.monotonic() < deadline:
        peer.spin_until(lambda: False, timeout_s=0.1)
        response = peer.call(tracker.add_mask_points, request)
    assert response.success, response.message
    mask_ids = list(response.ids)
    # 20x20 grid (mask_grid_size) over the image, kept inside the apple: about 10% of the points.
    assert 10 <= len(mask_ids) <= 100

    h, w = mask.shape
    failures = {
        "but frames are": mono8(cv2.resize(mask, (w // 2, h // 2))),
        "no grid point": mono8(np.zeros_like(mask)),
    }
    for expected, mask_msg in failures.items():
        response = peer.call(tracker.add_mask_points, AddMaskPoints.Request(mask=mask_msg, grid_size=5))
        assert not response.success and expected in response.message, response.message
    float_mask = Image(height=2, width=2, encoding="32FC1", step=8, data=array.array("B", bytes(16)))
    response = peer.call(tracker.add_mask_points, AddMaskPoints.Request(mask=float_mask))
    assert not response.success and "unsupported mask encoding" in response.message

    for msg in images[1:]:
        tracker.publish(msg)
    got = tracker.finish()
    assert [time_to_ns(m.header.stamp) for m in got] == stamps
    for msg in got:
        assert tracks_msg_arrays(msg)["ids"].tolist() == list(range(GRID * GRID)) + mask_ids
        assert (msg.image_width, msg.image_height, msg.header.frame_id) == (w, h, "apple")


@pytest.mark.timeout(120)
def test_teddy_clip_paced_and_end_to_end_lag(tracker: Tracker, shared_dir: Path) -> None:
    frames = read_video(shared_dir / "data" / "teddy.mp4", 90)
    assert len(frames) == 90
    period_s = 1 / 30
    stamps = []
    for bgr in frames:  # real-time pace, stamped at publication like a camera driver
        stamp = time.time_ns()
        stamps.append(stamp)
        tracker.publish(
            rgb_to_image(bgr[:, :, ::-1].copy(), Header(stamp=ns_to_time(stamp), frame_id="teddy")), pace_s=period_s
        )
    emitted_live = tracker.wait_tracks(len(frames) - (WINDOW - STEP) - len(frames) % STEP, timeout_s=10)
    lags = [(arrival - time_to_ns(m.header.stamp) * 1e-9) * 1e3 for m, arrival in tracker.inbox.tracks]
    periods = [diag_values(d) for d in tracker.inbox.diagnostics]
    got = tracker.finish()
    assert [time_to_ns(m.header.stamp) for m in got] == stamps
    assert all(len(m.ids) == GRID * GRID and (m.image_height, m.image_width) == (480, 368) for m in got)
    assert len(emitted_live) >= len(frames) - WINDOW
    node_lags = [float(v["end-to-end lag mean (ms)"]) for v in periods if v["end-to-end lag mean (ms)"] != "n/a"]
    node_steps = [float(v["step latency mean (ms)"]) for v in periods if v["step latency mean (ms)"] != "n/a"]
    print(
        f"\n[measure] tracker_node at 64x96 (tiny arch, window {WINDOW}, step {STEP}, 1 CPU thread), teddy.mp4 "
        f"368x480 at 30 Hz, {len(lags)} frames: image stamp -> tracks received here: median "
        f"{statistics.median(lags):.0f} ms, p90 {np.percentile(lags, 90):.0f} ms, max {max(lags):.0f} ms; "
        f"node's own lag (stamp -> publish, per 0.5 s period) median {statistics.median(node_lags):.0f} ms, "
        f"max {max(node_lags):.0f} ms; step latency median {statistics.median(node_steps):.0f} ms. "
        f"Waiting for the window accounts for up to {STEP} frames = {STEP * period_s * 1e3:.0f} ms."
    )


@pytest.mark.timeout(120)
def test_debug_image_rendered_for_subscribers(tracker: Tracker) -> None:
    tracker.peer.watch_debug_images(tracker.proc.namespace)
    time.sleep(1.0)  # discovery of the new subscription
    stamps = next_stamps(12)
    scene_frames = synthetic_images(stamps)
    for msg in scene_frames:
        tracker.publish(msg)
    tracker.finish()
    assert tracker.peer.spin_until(lambda: len(tracker.inbox.debug) >= 4), "no debug image although subscribed"
    debug = tracker.inbox.debug[-1]
    assert (debug.height, debug.width, debug.encoding) == (*SIZE, "rgb8")
    assert time_to_ns(debug.header.stamp) in stamps and debug.header.frame_id == FRAME_ID
    drawn = np.frombuffer(debug.data, np.uint8).reshape(*SIZE, 3)
    original = np.frombuffer(scene_frames[stamps.index(time_to_ns(debug.header.stamp))].data, np.uint8)
    changed = (drawn != original.reshape(*SIZE, 3)).any(axis=2)
    assert changed[: SIZE[0] // 4].mean() > 0.02  # "UNTRAINED WEIGHTS" across the top, plus the points


@pytest.mark.timeout(120)
def test_stamp_glitches_cost_one_frame_while_jumps_and_size_changes_reset_and_regrid(tracker: Tracker) -> None:
    stamps = next_stamps(12)
    images = synthetic_images(stamps)
    for msg in images[:6]:
        tracker.publish(msg)
    repeated, slightly_older = synthetic_images([stamps[5], stamps[2]])  # within time_jump_tolerance_s: dropped
    tracker.publish(repeated)
    tracker.publish(slightly_older)
    much_older = stamps[0] - 5_000_000_000  # 5 s back (a bag looping): reset, then continue
    tracker.publish(synthetic_images([much_older])[0])
    bigger = synthetic_images(stamps[6:12], size=(120, 160))  # new size: reset again
    for msg in bigger:
        tracker.publish(msg)
    got = tracker.finish()
    assert [time_to_ns(m.header.stamp) for m in got] == [*stamps[:6], much_older, *stamps[6:12]]
    assert [(m.image_height, m.image_width) for m in got] == [SIZE] * 7 + [(120, 160)] * 6
    for msg in got:  # the grid is re-applied on frame 0 of every new stream
        assert tracks_msg_arrays(msg)["ids"].tolist() == list(range(GRID * GRID))
    log = tracker.proc.log()
    assert "repeats the previous one" in log and "within time_jump_tolerance_s: frame dropped, no reset" in log
    assert "time went back 5.1" in log
    assert "image size changed from (96, 128) to (120, 160)" in log
    # Each reset is reported with the ids it dropped, so that a client can re-add its points.
    assert tracker.peer.spin_until(lambda: tracker.diagnostics().get(diag.LAST_RESET, "").startswith("reset requested"))
    assert "image size changed" in log and f"ids dropped: 0-{GRID * GRID - 1}" in log


@pytest.mark.timeout(120)
def test_bad_images_are_rejected_and_the_node_keeps_serving(tracker: Tracker) -> None:
    stamps = next_stamps(10)
    good = synthetic_images(stamps)
    yuv = synthetic_images([stamps[1]])[0]
    yuv.encoding = "yuv422"
    empty = Image(header=Header(stamp=ns_to_time(stamps[2])), encoding="rgb8")
    short = synthetic_images([stamps[3]])[0]
    short.data = array.array("B", bytes(100))
    tracker.publish(good[0])
    for msg in (yuv, empty, short):
        tracker.publish(msg)
    for msg in good[4:]:
        tracker.publish(msg)
    got = tracker.finish()
    assert [time_to_ns(m.header.stamp) for m in got] == [stamps[0], *stamps[4:]]
    assert tracker.peer.spin_until(lambda: int(tracker.diagnostics().get("rejected frames (total)", 0)) >= 3)
    log = tracker.proc.log()
    assert "unsupported image encoding 'yuv422'" in log
    assert "zero size" in log
    assert tracker.proc.process.poll() is None


@pytest.mark.timeout(120)
def test_diagnostics_report_device_checkpoint_and_untrained(tracker: Tracker) -> None:
    assert tracker.peer.spin_until(lambda: len(tracker.inbox.diagnostics) >= 1)
    status = tracker.inbox.diagnostics[-1].status[0]
    values = diag_values(tracker.inbox.diagnostics[-1])
    assert status.name == "tracker_node: tracking" and status.hardware_id.startswith("/ct3/tracker_node on ")
    assert status.level == status.WARN and "untrained" in status.message
    for key in ("input rate (Hz)", "step latency mean (ms)", "end-to-end lag mean (ms)", "dropped frames (total)"):
        assert key in values
    assert values["device"] == "cpu" and values["untrained weights"] == "true"
    assert "untrained" in values["checkpoint"]
    assert "UNTRAINED WEIGHTS" in tracker.proc.log()


@pytest.mark.timeout(120)
def test_compressed_input_with_sim_time(sim_node: Tracker) -> None:
    peer = sim_node.peer
    clock_pub = peer.node.create_publisher(Clock, "/clock", 10)
    sim_start = 1_000 * 1_000_000_000  # t = 1000 s

    def tick(ns: int) -> None:
        clock_pub.publish(Clock(clock=ns_to_time(ns)))
        peer.spin_until(lambda: False, timeout_s=0.02)

    # Diagnostics are stamped with the node's clock: once they carry sim time, /clock is being followed.
    def follows_sim_time() -> bool:
        tick(sim_start)
        return any(time_to_ns(d.header.stamp) >= sim_start for d in sim_node.inbox.diagnostics[-2:])

    assert peer.spin_until(follows_sim_time), "the node did not pick up /clock"
    sim_node.do_reset()

    scene = SyntheticScene(*SIZE)
    stamps = [sim_start + (i + 1) * 50_000_000 for i in range(12)]
    for i, stamp in enumerate(stamps):
        tick(stamp)
        msg = CompressedImage(header=Header(stamp=ns_to_time(stamp), frame_id="sim_camera"), format="jpeg")
        msg.data = array.array("B", cv2.imencode(".jpg", scene.frame(i)[:, :, ::-1])[1].tobytes())
        sim_node.publish(msg)
    bad = CompressedImage(header=Header(stamp=ns_to_time(stamps[-1] + 1)), format="jpeg")
    bad.data = array.array("B", b"not a jpeg")
    sim_node.publish(bad)
    got = sim_node.finish()
    assert [time_to_ns(m.header.stamp) for m in got] == stamps
    assert all(m.header.frame_id == "sim_camera" and len(m.ids) == GRID * GRID for m in got)
    tick(stamps[-1])
    assert peer.spin_until(lambda: len(sim_node.inbox.diagnostics) >= 1)
    diag_stamp = time_to_ns(sim_node.inbox.diagnostics[-1].header.stamp)
    assert sim_start <= diag_stamp < sim_start + 60 * 1_000_000_000, diag_stamp  # sim time, not wall time
    assert "cannot decode compressed image" in sim_node.proc.log()


@pytest.mark.timeout(150)
def test_demo_tracks_with_the_shipped_weights(processes: dict[str, NodeProcess], tmp_path: Path) -> None:
    """``python -m cotracker3_ros.tools.demo --check`` (the CI variant of ``make demo``): synthetic camera, node
    with its default ``lite`` weights and checker in one process; --check holds the median error of the
    published visible points against the camera's true motion under 4 px."""
    env = {**os.environ, "ROS_DOMAIN_ID": str(DOMAIN_ID), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    sheet = tmp_path / "sheet.png"
    result = subprocess.run(
        [sys.executable, "-m", "cotracker3_ros.tools.demo", "--frames", "45", "--threads", "1", "--quiet",
         "--sheet", str(sheet), "--check"],  # fmt: skip
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=130,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "checkpoint=lite" in output and "UNTRAINED" not in output
    summary = next(line for line in result.stdout.splitlines() if line.startswith("demo: camera sent 45 frames"))
    assert "median error" in summary and "within 4 px" in summary
    image = cv2.imread(str(sheet))
    assert image is not None and image.shape[0] >= 240 and image.shape[1] >= 4 * 320
