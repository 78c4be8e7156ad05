"""Fault injection over real DDS: the tracker node process against bad requests, load and stream glitches.

Every case asserts what a user sees: a clear reply or log line, the node still publishing for good frames, the
points tracked before the fault still tracked, no traceback in the node's output, and a clean exit at the end.
The cases follow the reliability issue's list: failed requests leave no trace (1), overload drops frames and
counts every one (2), service load is queued and bounded (3), small stream glitches cost one frame (5).
Start-up and shutdown faults (4) are in test_node_lifecycle.py, launch (6) in test_launch.py, tools (7) in
test_eval_bag.py / test_eval_replay.py.

Two node processes serve the module (started together; the untrained tiny model at 64x96, so that the cases are
about the node and not the model): ``/faults`` takes frames on a reliable topic with a deep queue and small
point limits; ``/overload`` has the default best-effort image QoS and a 2-frame queue.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from cotracker3_msgs.srv import AddMaskPoints, AddPoints, RemovePoints
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from std_srvs.srv import Trigger

from cotracker3_core.query_admission import MAX_ID
from cotracker3_ros import diagnostics as diag
from cotracker3_ros.conversions import ns_to_time, rgb_to_image
from cotracker3_ros.tools.demo import DEMO_ARCH, SyntheticScene
from cotracker3_ros.tools.node_peer import NodeProcess, ReplayPeer, default_node_command, node_service

DOMAIN_ID = 232 - os.getpid() % 16  # other modules: test_msgs_dds 100..199, test_ros_node 200..231
SIZE = (96, 128)
GRID = 4  # automatic grid: ids 0..15
MAX_POINTS, PER_REQUEST = 320, 64
pytestmark = pytest.mark.timeout(180)


def node_args(namespace: str, topic: str, *extra: str) -> list[str]:
    return [
        "-r", f"__ns:={namespace}", "-r", f"image:={topic}",
        "-p", "checkpoint:=''", "-p", f"arch:='{json.dumps(DEMO_ARCH)}'", "-p", "model_resolution:=[64,96]",
        "-p", "window_len:=8", "-p", "step:=4", "-p", "iters:=1", "-p", f"grid_size:={GRID}",
        "-p", f"max_points:={MAX_POINTS}", "-p", f"max_points_per_request:={PER_REQUEST}",
        "-p", "diagnostics_period:=0.2", "-p", "num_threads:=1", "-p", "mask_grid_size:=8",
        "-p", f"qos_overrides.{namespace}/tracks.publisher.depth:=1000",
        "-p", f"qos_overrides.{namespace}/tracks.publisher.reliability:=reliable",
        *extra,
    ]  # fmt: skip


class Camera:
    """Frames of a synthetic scene with increasing stamps (ns) from a time that only moves forward."""

    def __init__(self, peer: ReplayPeer, publisher: object) -> None:
        self.peer, self.publisher = peer, publisher
        self.scene = SyntheticScene(*SIZE)
        self.index = 0
        self.sent = 0  # images published so far
        self.stamp = time.time_ns()

    def next_stamp(self) -> int:
        self.stamp = max(self.stamp + 33_000_000, time.time_ns())
        return self.stamp

    def image(self, stamp: int, size: tuple[int, int] = SIZE) -> Image:
        frame = self.scene.frame(self.index) if size == SIZE else np.zeros((*size, 3), np.uint8)
        self.index += 1
        return rgb_to_image(frame, Header(stamp=ns_to_time(stamp), frame_id="camera"))

    def send(self, count: int, pace_s: float = 0.005) -> list[int]:
        stamps = []
        for _ in range(count):
            stamps.append(self.next_stamp())
            self.send_message(self.image(stamps[-1]))
            time.sleep(pace_s)
        return stamps

    def send_message(self, msg: Image) -> None:
        self.publisher.publish(msg)
        self.sent += 1


class Node:
    """One node process and the test's peer for it."""

    def __init__(self, namespace: str, topic: str, log: Path, *extra: str, reliable: bool = True) -> None:
        env = {**os.environ, "ROS_DOMAIN_ID": str(DOMAIN_ID), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
               "OMP_NUM_THREADS": "1"}
        if reliable:
            extra = (*extra, "-p", f"qos_overrides.{topic}.subscription.reliability:=reliable",
                     "-p", f"qos_overrides.{topic}.subscription.depth:=100")
        self.process = NodeProcess.start(default_node_command(), node_args(namespace, topic, *extra), env, log)
        self.namespace = namespace
        self.topic, self.reliable = topic, reliable

    def connect(self) -> None:
        self.peer = ReplayPeer(DOMAIN_ID, self.namespace, self.topic, Image, clock=False)
        self.peer.process = self.process
        n, ns = self.peer.node, self.namespace
        self.add_mask_points = n.create_client(AddMaskPoints, node_service(ns, "add_mask_points"))
        self.remove_points = n.create_client(RemovePoints, node_service(ns, "remove_points"))
        publisher = self.peer.image_pub if self.reliable else n.create_publisher(Image, self.topic,
                                                                                 qos_profile_sensor_data)
        self.camera = Camera(self.peer, publisher)
        assert self.peer.wait_for(lambda: self.peer.reset.service_is_ready()
                                  and publisher.get_subscription_count() > 0
                                  and self.peer.tracks_sub.get_publisher_count() > 0, 90.0, 0.05), self.log()[-3000:]

    def log(self) -> str:
        return self.process.log_path.read_text(errors="replace")

    def call(self, client: object, request: object, timeout_s: float = 30.0) -> object:
        return self.peer.call(client, request, timeout_s)

    def tracked_ids(self, stamps: Sequence[int], timeout_s: float = 30.0) -> dict[int, list[int]]:
        """The ids published for each of ``stamps`` (waits for all of them)."""
        wanted = set(stamps)

        def got() -> dict[int, list[int]]:
            return {r.stamp: r.output.ids.tolist() for r in self.peer.received_since(0) if r.stamp in wanted}

        self.peer.wait_for(lambda: len(got()) == len(wanted), timeout_s, 0.01)
        return got()

    def diagnostics(self) -> dict[str, str]:
        """The node's next /diagnostics values (published every 0.2 s)."""
        return self.peer.wait_diagnostics(time.monotonic(), 10.0)

    def flush(self, wait_received: bool = True) -> None:
        """Reset the stream, which publishes the tracks of the frames still in the window; first wait until the
        node has received every image sent (images and the reset travel on different DDS channels)."""
        if wait_received:
            assert self.peer.wait_for(
                lambda: diag.counter(self.diagnostics(), diag.RECEIVED_TOTAL) >= self.camera.sent, 30.0, 0.01
            ), f"the node received {self.diagnostics().get(diag.RECEIVED_TOTAL)} of {self.camera.sent} images"
        response = self.call(self.peer.reset, Trigger.Request())
        assert response.success, response.message


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Node]]:
    logs = tmp_path_factory.mktemp("fault_logs")
    started = {
        "faults": Node("/faults", "/faults/camera", logs / "faults.log", "-p", "image_timeout_s:=1.0",
                       "-p", "queue_size:=100"),
        "overload": Node("/overload", "/overload/camera", logs / "overload.log", "-p", "queue_size:=2",
                         reliable=False),
    }
    for node in started.values():
        node.connect()
    yield started
    for name, node in started.items():
        node.peer.close()
        code = node.process.stop(timeout_s=30.0)
        log = node.log()
        assert code == 0, f"{name}: exit code {code}\n{log[-3000:]}"
        assert "Traceback" not in log, f"{name}: a traceback in the node's output\n{log[-5000:]}"


@pytest.fixture
def node(nodes: dict[str, Node]) -> Node:
    """The /faults node at the start of a stream: reset, then 8 frames with its automatic grid (ids 0..15)."""
    n = nodes["faults"]
    n.flush()
    stamps = n.camera.send(8)
    assert all(ids == list(range(GRID * GRID)) for ids in n.tracked_ids(stamps).values())
    return n


def still_tracking(node: Node, ids: Sequence[int]) -> None:
    """Good frames keep being published, with exactly ``ids``."""
    stamps = node.camera.send(8)
    node.flush()
    published = node.tracked_ids(stamps)
    assert sorted(published) == stamps, f"frames lost: {sorted(set(stamps) - set(published))}"
    assert all(sorted(got) == sorted(ids) for got in published.values()), published


# --- 1. a failed request changes nothing ------------------------------------------------------------------


def test_oversized_mask_grid_is_refused_whole(node: Node) -> None:
    mask = rgb_to_image(np.full((*SIZE, 3), 255, np.uint8), Header())
    response = node.call(node.add_mask_points, AddMaskPoints.Request(mask=mask, grid_size=5000))
    assert not response.success and "grid_size 5000" in response.message
    assert "max_points_per_request" in response.message
    still_tracking(node, range(GRID * GRID))


def test_huge_and_over_limit_requests_are_refused_whole(node: Node) -> None:
    started = time.monotonic()
    huge = AddPoints.Request(x=[5.0] * 100_000, y=[5.0] * 100_000)
    response = node.call(node.peer.add_points, huge)
    assert not response.success and f"at most {PER_REQUEST} (max_points_per_request)" in response.message
    assert time.monotonic() - started < 10.0
    fill = MAX_POINTS - GRID * GRID
    added = []
    while len(added) < fill:  # up to the total limit, in requests within the per-request limit
        n = min(PER_REQUEST, fill - len(added))
        response = node.call(node.peer.add_points, AddPoints.Request(x=[10.0] * n, y=[10.0] * n))
        assert response.success, response.message
        added += list(response.ids)
    response = node.call(node.peer.add_points, AddPoints.Request(x=[10.0], y=[10.0]))
    assert not response.success and f"at most {MAX_POINTS} (max_points)" in response.message
    still_tracking(node, [*range(GRID * GRID), *added])


def test_automatic_ids_never_overflow_uint32(node: Node) -> None:
    response = node.call(node.peer.add_points, AddPoints.Request(x=[20.0], y=[20.0], ids=[MAX_ID]))
    assert response.success and list(response.ids) == [MAX_ID], response.message
    response = node.call(node.peer.add_points, AddPoints.Request(x=[21.0], y=[21.0]))
    assert not response.success and "automatic ids exhausted" in response.message
    still_tracking(node, [*range(GRID * GRID), MAX_ID])


# --- 3. service load: queued, answered, bounded --------------------------------------------------------------


def test_200_concurrent_calls_are_all_answered_while_tracking(node: Node) -> None:
    # 20 callers with 10 calls each. Fast DDS sends each answer to every client of the service in a process,
    # which keeps the ones addressed to it: a client reader as deep as the burst loses none of them.
    deep = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
    clients = [node.peer.node.create_client(AddPoints, node_service(node.namespace, "add_points"), qos_profile=deep)
               for _ in range(20)]
    assert node.peer.wait_for(lambda: all(c.service_is_ready() for c in clients), 30.0, 0.02)
    ids = list(range(1000, 1200))
    futures = [clients[i % 20].call_async(AddPoints.Request(x=[30.0], y=[30.0], ids=[i])) for i in ids]
    node.camera.send(8, pace_s=0.02)  # frames keep coming meanwhile
    ok = node.peer.wait_for(lambda: all(f.done() for f in futures), 60.0, 0.01)
    assert ok, f"{sum(not f.done() for f in futures)} of 200 calls unanswered; {node.diagnostics()}"
    assert all(f.result().success for f in futures), [f.result().message for f in futures if not f.result().success]
    for c in clients:
        node.peer.node.destroy_client(c)
    stamps = node.camera.send(8)
    assert all(sorted(got) == [*range(GRID * GRID), *ids] for got in node.tracked_ids(stamps).values())
    started = time.monotonic()
    response = node.call(node.remove_points, RemovePoints.Request(ids=ids))
    assert response.success and time.monotonic() - started < 5.0, response.message
    still_tracking(node, range(GRID * GRID))


def test_reset_under_load_answers_quickly(node: Node) -> None:
    sent = node.camera.send(60, pace_s=0.0)  # a backlog
    started = time.monotonic()
    node.flush()
    assert time.monotonic() - started < 5.0  # the reset waits at most 2 s on the backlog
    values = node.diagnostics()
    assert values[diag.LAST_RESET].startswith("reset requested") and "ids dropped: 0-15" in values[diag.LAST_RESET]
    assert len(node.tracked_ids(sent, timeout_s=2.0)) + int(values[diag.DROPPED_TOTAL]) >= len(sent)


# --- 5. stream glitches cost one frame, not the points -----------------------------------------------------


def test_stamp_glitches_and_malformed_frames_are_rejected_without_reset(node: Node) -> None:
    before = node.diagnostics()
    last = node.camera.stamp
    glitches = [
        node.camera.image(last),  # repeated stamp
        node.camera.image(last - 10_000_000),  # 10 ms back: within time_jump_tolerance_s
        node.camera.image(node.camera.next_stamp(), size=(1, 1)),  # a 1x1 frame
    ]
    truncated = node.camera.image(node.camera.next_stamp())
    truncated.data = truncated.data[:100]
    for msg in [*glitches, truncated]:
        node.camera.send_message(msg)
    still_tracking(node, range(GRID * GRID))
    after = node.diagnostics()
    assert diag.counter(after, diag.REJECTED_TOTAL) - diag.counter(before, diag.REJECTED_TOTAL) == 4
    assert diag.counter(after, diag.RESETS_TOTAL) - diag.counter(before, diag.RESETS_TOTAL) == 1  # still_tracking's
    log = node.log()
    assert "repeats the previous one" in log and "within time_jump_tolerance_s" in log
    assert "frame is too small" in log and "image rejected" in log


def test_unstamped_camera_is_served_with_receive_time(node: Node) -> None:
    node.flush()  # a camera that never stamps, from the start of a stream
    before = node.diagnostics()
    start = len(node.peer.received_since(0))
    for _ in range(8):  # stamp_source auto: a zero stamp takes the arrival time
        node.camera.send_message(node.camera.image(0))
        time.sleep(0.01)
    node.flush()
    assert node.peer.wait_for(lambda: len(node.peer.received_since(start)) >= 8, 30.0, 0.01)
    got = node.peer.received_since(start)
    assert all(r.stamp > 0 for r in got) and all(r.output.ids.tolist() == list(range(16)) for r in got)
    after = node.diagnostics()
    assert diag.counter(after, diag.REJECTED_TOTAL) == diag.counter(before, diag.REJECTED_TOTAL)
    assert diag.counter(after, diag.RESETS_TOTAL) - diag.counter(before, diag.RESETS_TOTAL) == 1  # the flush
    node.camera.stamp = max(r.stamp for r in got)  # the next frames come after the arrival stamps


def test_silent_camera_warns_after_image_timeout(node: Node) -> None:
    time.sleep(1.8)  # image_timeout_s is 1.0 for this node
    values = node.diagnostics()
    assert float(values[diag.LAST_IMAGE_AGE]) > 1.0
    assert "no image for" in node.log()
    still_tracking(node, range(GRID * GRID))


# --- 2. overload: drop early, count everything ----------------------------------------------------------------


def test_overload_drops_are_counted_and_tracking_goes_on(nodes: dict[str, Node]) -> None:
    node = nodes["overload"]
    node.camera.send(1, pace_s=0.3)  # the node learns the publisher's first sequence number
    node.camera.send(300, pace_s=0.0)  # as fast as this process can publish, best effort
    node.camera.send(3, pace_s=0.2)  # a slow tail: its sequence numbers reveal losses at the end of the burst
    total = node.camera.sent

    def accounted() -> int:
        values = node.diagnostics()
        return diag.counter(values, diag.RECEIVED_TOTAL) + diag.counter(values, diag.LOST_TOTAL)

    assert node.peer.wait_for(lambda: accounted() >= total, 30.0, 0.1), (accounted(), total)
    node.flush(wait_received=False)  # best effort: some images never arrive
    time.sleep(0.5)
    values = node.diagnostics()
    tracked = len({r.stamp for r in node.peer.received_since(0)})
    dropped, lost = diag.counter(values, diag.DROPPED_TOTAL), diag.counter(values, diag.LOST_TOTAL)
    assert lost > 0, values  # a 2-frame queue cannot hold a 300-frame burst: the replaced frames are lost
    assert tracked + dropped + lost + diag.counter(values, diag.REJECTED_TOTAL) == total, (tracked, values)
    start = node.peer.received_count()
    paced = node.camera.send(8, pace_s=0.1)  # at a rate the node keeps up with, every frame is tracked again
    node.flush(wait_received=False)
    assert node.peer.wait_for(lambda: {r.stamp for r in node.peer.received_since(start)} >= set(paced), 30.0, 0.01)
