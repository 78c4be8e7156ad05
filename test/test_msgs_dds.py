"""cotracker3_msgs over real rclpy and real Fast DDS, in this process.

The interfaces must be built (``make install``); a missing rclpy or cotracker3_msgs fails the
module at import, it is never skipped. Each peer below has its own rclpy context, hence its own DDS
participant, so messages really go through discovery, serialisation and a transport. The domain id
is derived from the pid so that parallel runs on one machine do not see each other, and discovery
is kept on this host.
"""

from __future__ import annotations

import array
import os
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pytest
import rclpy
from builtin_interfaces.msg import Time
from cotracker3_msgs.msg import Tracks
from cotracker3_msgs.srv import AddMaskPoints, AddPoints, RemovePoints
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message, serialize_message
from rclpy.signals import SignalHandlerOptions

N_POINTS = 1024
N_MESSAGES = 10
# Fast DDS accepts domain ids 0..232; stay off the default 0 that a user's robot may be using.
DOMAIN_ID = 100 + os.getpid() % 100
FRAME_ID = "camera_color_optical_frame"
DDS_TIMEOUT_S = 15.0


# --- helpers ---------------------------------------------------------------------------------------


def make_tracks(seed: int, n: int = N_POINTS) -> Tracks:
    """A Tracks message with ``n`` random points, arrays filled through the fast array.array path."""
    rng = np.random.default_rng(seed)
    msg = Tracks()
    msg.header.stamp = Time(sec=1_700_000_000 + seed, nanosec=123_456_789)
    msg.header.frame_id = FRAME_ID
    msg.refined = bool(seed % 2)
    msg.image_width, msg.image_height = 640, 480
    msg.ids = array.array("I", np.arange(seed, seed + n, dtype=np.uint32).tobytes())
    msg.x = array.array("f", rng.uniform(0, 640, n).astype(np.float32).tobytes())
    msg.y = array.array("f", rng.uniform(0, 480, n).astype(np.float32).tobytes())
    msg.visibility = array.array("f", rng.uniform(0, 1, n).astype(np.float32).tobytes())
    msg.confidence = array.array("f", rng.uniform(0, 1, n).astype(np.float32).tobytes())
    msg.visible = array.array("B", (rng.uniform(0, 1, n) > 0.5).astype(np.uint8).tobytes())
    xyz = rng.uniform(-2, 2, (3, n)).astype(np.float32)
    xyz[:, np.frombuffer(msg.visible, np.uint8) == 0] = np.nan  # no 3D for hidden points: NaN travels too
    msg.x3d, msg.y3d, msg.z3d = (array.array("f", v.tobytes()) for v in xyz)
    return msg


ARRAY_FIELDS = {
    "ids": np.uint32,
    "x": np.float32,
    "y": np.float32,
    "visibility": np.float32,
    "confidence": np.float32,
    "visible": np.uint8,
    "x3d": np.float32,
    "y3d": np.float32,
    "z3d": np.float32,
}


def assert_tracks_equal(got: Tracks, want: Tracks) -> None:
    assert got.header.stamp.sec == want.header.stamp.sec
    assert got.header.stamp.nanosec == want.header.stamp.nanosec
    assert got.header.frame_id == want.header.frame_id
    assert got.refined == want.refined
    assert (got.image_width, got.image_height) == (want.image_width, want.image_height)
    for name, dtype in ARRAY_FIELDS.items():
        got_values, want_values = getattr(got, name), getattr(want, name)
        # Numeric arrays must come back as array.array: that is what makes them cheap to read.
        assert isinstance(got_values, array.array), (name, type(got_values))
        np.testing.assert_array_equal(
            np.frombuffer(got_values, dtype=dtype), np.frombuffer(want_values, dtype=dtype), err_msg=name
        )


@dataclass
class Peer:
    """One rclpy context (one DDS participant) with one node and its executor."""

    context: Context
    node: Node
    executor: SingleThreadedExecutor


def spin_until(predicate: Callable[[], bool], peers: list[Peer], timeout_s: float = DDS_TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        for peer in peers:
            peer.executor.spin_once(timeout_sec=0.01)
    return predicate()


@pytest.fixture(scope="module")
def ros_domain() -> Iterator[int]:
    names = ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")
    saved = {name: os.environ.get(name) for name in names}
    os.environ["ROS_DOMAIN_ID"] = str(DOMAIN_ID)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    yield DOMAIN_ID
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def make_peer(ros_domain: int) -> Iterator[Callable[[str], Peer]]:
    peers: list[Peer] = []

    def _make(name: str) -> Peer:
        context = Context()
        rclpy.init(context=context, domain_id=ros_domain, signal_handler_options=SignalHandlerOptions.NO)
        node = Node(name, context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        peers.append(Peer(context, node, executor))
        return peers[-1]

    yield _make
    for peer in peers:
        peer.executor.shutdown()
        peer.node.destroy_node()
        if peer.context.ok():
            rclpy.shutdown(context=peer.context)


# --- tests -----------------------------------------------------------------------------------------


def test_interfaces_import_with_documented_fields() -> None:
    assert Tracks.get_fields_and_field_types() == {
        "header": "std_msgs/Header",
        "refined": "boolean",
        "image_width": "uint32",
        "image_height": "uint32",
        "ids": "sequence<uint32>",
        "x": "sequence<float>",
        "y": "sequence<float>",
        "visibility": "sequence<float>",
        "confidence": "sequence<float>",
        "visible": "sequence<uint8>",
        "x3d": "sequence<float>",  # #15: appended last, so bags recorded before still read (test_eval_bag)
        "y3d": "sequence<float>",
        "z3d": "sequence<float>",
    }
    assert AddPoints.Request.get_fields_and_field_types() == {
        "stamp": "builtin_interfaces/Time",
        "x": "sequence<float>",
        "y": "sequence<float>",
        "ids": "sequence<uint32>",
    }
    assert AddPoints.Response.get_fields_and_field_types() == {
        "success": "boolean",
        "message": "string",
        "ids": "sequence<uint32>",
    }
    assert AddMaskPoints.Request.get_fields_and_field_types() == {
        "stamp": "builtin_interfaces/Time",
        "mask": "sensor_msgs/Image",
        "grid_size": "uint32",
    }
    add_response_fields = AddPoints.Response.get_fields_and_field_types()
    assert AddMaskPoints.Response.get_fields_and_field_types() == add_response_fields
    assert RemovePoints.Request.get_fields_and_field_types() == {"ids": "sequence<uint32>"}
    assert RemovePoints.Response.get_fields_and_field_types() == {"success": "boolean", "message": "string"}


@pytest.mark.timeout(60)
def test_tracks_pub_sub_reliable_exact_count(make_peer: Callable[[str], Peer]) -> None:
    talker, listener = make_peer("tracks_talker"), make_peer("tracks_listener")
    qos = QoSProfile(
        depth=N_MESSAGES,
        history=HistoryPolicy.KEEP_LAST,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )
    received: list[Tracks] = []
    publisher = talker.node.create_publisher(Tracks, "tracks", qos)
    subscription = listener.node.create_subscription(Tracks, "tracks", received.append, qos)
    peers = [talker, listener]

    matched = spin_until(
        lambda: publisher.get_subscription_count() >= 1 and subscription.get_publisher_count() >= 1, peers
    )
    assert matched, "publisher and subscription did not discover each other"

    sent = [make_tracks(seed) for seed in range(N_MESSAGES)]
    for msg in sent:
        publisher.publish(msg)
    assert spin_until(lambda: len(received) >= N_MESSAGES, peers), f"received {len(received)}/{N_MESSAGES}"
    spin_until(lambda: False, peers, timeout_s=0.3)  # anything extra (duplicates) would arrive now

    assert len(received) == N_MESSAGES
    for got, want in zip(received, sent, strict=True):
        assert len(got.ids) == N_POINTS
        assert_tracks_equal(got, want)


@pytest.mark.timeout(60)
def test_add_points_service_round_trip(make_peer: Callable[[str], Peer]) -> None:
    server_peer, client_peer = make_peer("add_points_server"), make_peer("add_points_client")
    requests: list[AddPoints.Request] = []
    next_id = 100

    def handle(request: AddPoints.Request, response: AddPoints.Response) -> AddPoints.Response:
        nonlocal next_id
        requests.append(request)
        if len(request.x) != len(request.y) or (len(request.ids) not in (0, len(request.x))):
            response.success = False
            lengths = (len(request.x), len(request.y), len(request.ids))
            response.message = f"x, y and ids differ in length: {lengths}"
            return response
        if len(request.ids):
            response.ids = request.ids
        else:
            response.ids = array.array("I", range(next_id, next_id + len(request.x)))
            next_id += len(request.x)
        response.success = True
        return response

    server_peer.node.create_service(AddPoints, "add_points", handle)
    client = client_peer.node.create_client(AddPoints, "add_points")
    peers = [server_peer, client_peer]
    assert spin_until(client.service_is_ready, peers), "service not discovered"

    def call(request: AddPoints.Request) -> AddPoints.Response:
        future = client.call_async(request)
        assert spin_until(future.done, peers), "no response"
        return future.result()

    request = AddPoints.Request(stamp=Time(sec=42, nanosec=7))
    request.x = array.array("f", [10.5, 20.25, 30.0])
    request.y = array.array("f", [1.0, 2.0, 3.0])
    response = call(request)
    assert response.success, response.message
    assert list(response.ids) == [100, 101, 102]
    assert (requests[-1].stamp.sec, requests[-1].stamp.nanosec) == (42, 7)
    assert list(requests[-1].x) == [10.5, 20.25, 30.0]
    assert list(requests[-1].y) == [1.0, 2.0, 3.0]

    request = AddPoints.Request()  # zero stamp: the newest frame
    request.x, request.y = array.array("f", [5.0]), array.array("f", [6.0])
    request.ids = array.array("I", [7])
    response = call(request)
    assert response.success and list(response.ids) == [7]

    request = AddPoints.Request()
    request.x, request.y = array.array("f", [1.0, 2.0]), array.array("f", [1.0])
    response = call(request)
    assert not response.success
    assert "differ in length" in response.message
    assert len(response.ids) == 0


def test_tracks_serialisation_round_trip_and_time(capsys: pytest.CaptureFixture[str]) -> None:
    """Correctness is asserted; the time is only measured and printed (machines differ)."""
    msg = make_tracks(seed=3)
    data = serialize_message(msg)
    assert_tracks_equal(deserialize_message(data, Tracks), msg)

    for _ in range(10):  # warm-up
        deserialize_message(serialize_message(msg), Tracks)
    durations = []
    for _ in range(200):
        start = time.perf_counter()
        deserialize_message(serialize_message(msg), Tracks)
        durations.append(time.perf_counter() - start)
    with capsys.disabled():
        print(
            f"\n[measure] Tracks with {N_POINTS} points: {len(data)} bytes serialised; serialise+deserialise "
            f"median {statistics.median(durations) * 1e6:.0f} us, min {min(durations) * 1e6:.0f} us "
            f"over {len(durations)} runs"
        )
