"""cotracker3_ros.image_intake over real rclpy and Fast DDS: images wait in the subscription's keep-last history
until the worker takes them; no executor takes them; the frames replaced there are counted from the gaps in the
publisher's sequence numbers; a reset's drop keeps what arrived after it."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from std_msgs.msg import Header

from cotracker3_core.intake import LossCounter
from cotracker3_ros.conversions import time_to_ns
from cotracker3_ros.image_intake import SubscriptionQueue, WorkerTakenGroup, subscribe_worker_taken, wait_for_images

DOMAIN_ID = 10 + os.getpid() % 90  # the range of test_launch (modules run one after the other); one in-process node
DEPTH = 3


@pytest.fixture
def ros() -> Iterator[tuple[Node, SingleThreadedExecutor]]:
    saved = os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE")
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    context = Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID, signal_handler_options=SignalHandlerOptions.NO)
    node = Node("intake_test", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    yield node, executor
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown(context=context)
    if saved is None:
        os.environ.pop("ROS_AUTOMATIC_DISCOVERY_RANGE", None)
    else:
        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = saved


def stamped(i: int) -> Header:
    return Header(frame_id=str(i))


def test_the_worker_takes_the_newest_frames_and_counts_the_replaced(ros: tuple[Node, SingleThreadedExecutor]) -> None:
    node, executor = ros
    qos = QoSProfile(depth=DEPTH, reliability=ReliabilityPolicy.RELIABLE)
    sub = subscribe_worker_taken(node, Header, "frames", qos, WorkerTakenGroup())
    queue = SubscriptionQueue(sub, DEPTH)
    pub = node.create_publisher(Header, "frames", qos)
    deadline = time.monotonic() + 10.0
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.02)

    start = time.monotonic()
    wait_for_images([sub], node.context, 0.2)  # nothing published yet: waits the timeout
    assert time.monotonic() - start >= 0.15 and queue.get() is None
    start = time.monotonic()
    wait_for_images([sub], node.context, -0.001)  # a deadline already past: no wait (rcl would wait for ever)
    assert time.monotonic() - start < 0.1

    losses = LossCounter()
    pub.publish(stamped(0))
    waker = threading.Timer(0.05, pub.publish, [stamped(1)])
    waker.start()
    start = time.monotonic()
    wait_for_images([sub], node.context, 5.0)  # wakes on the message, not the timeout
    assert time.monotonic() - start < 2.0
    waker.join()
    time.sleep(0.1)
    for _ in range(20):  # an executor spinning the node never takes these images
        executor.spin_once(timeout_sec=0.01)
    taken = [queue.get(), queue.get()]
    assert [msg.frame_id for msg, _ in taken] == ["0", "1"]
    for msg, info in taken:
        losses.observe(info, time_to_ns(msg.stamp))

    for i in range(2, 12):  # ten frames while the worker is busy: the history keeps the newest DEPTH
        pub.publish(stamped(i))
    time.sleep(0.3)
    kept = []
    while (item := queue.get()) is not None:
        kept.append(item[0].frame_id)
        losses.observe(item[1], 0)
    assert kept == ["9", "10", "11"]
    assert losses.lost == 7  # replaced in the history: counted from the sequence numbers
    assert queue.dropped == 0 and len(queue) == 0


def test_a_reset_drops_what_arrived_before_it_and_keeps_the_rest(ros: tuple[Node, SingleThreadedExecutor]) -> None:
    node, _ = ros
    qos = QoSProfile(depth=8, reliability=ReliabilityPolicy.RELIABLE)
    sub = subscribe_worker_taken(node, Header, "frames", qos, WorkerTakenGroup())
    queue = SubscriptionQueue(sub, 8)
    pub = node.create_publisher(Header, "frames", qos)
    deadline = time.monotonic() + 10.0
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    for i in range(3):
        pub.publish(stamped(i))
    time.sleep(0.2)
    reset_at = time.time_ns()  # MessageInfo's received_timestamp is on the system clock
    time.sleep(0.05)
    for i in range(3, 5):
        pub.publish(stamped(i))
    time.sleep(0.2)
    assert queue.drop_where(lambda taken: taken[1]["received_timestamp"] <= reset_at) == 3
    assert queue.dropped == 3 and len(queue) == 2  # taken from the middleware, held for the worker
    assert [queue.get()[0].frame_id, queue.get()[0].frame_id, queue.get()] == ["3", "4", None]
    pub.publish(stamped(5))
    time.sleep(0.2)
    queue.close()
    assert queue.get() is None  # closed: the worker stops taking
