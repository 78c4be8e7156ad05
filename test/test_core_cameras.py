"""cotracker3_core.cameras without ROS: the camera lists' checks, and the worker's intake over several cameras (one
frame per camera per step, so a camera with a backlog never holds the others back; its drops are its own)."""

from __future__ import annotations

import threading
import time

import pytest

from cotracker3_core.cameras import CameraStream, FrameSignal, check_camera_lists, take_frames
from cotracker3_core.intake import DropOldestQueue


@pytest.mark.parametrize(
    ("names", "topics", "depth", "info", "message"),
    [
        (["a", "b"], ["/a"], [], [], "camera_topics has 1 entries for 2 camera_names"),
        (["a", "a"], ["/a", "/b"], [], [], r"duplicate name\(s\) \['a'\]"),
        (["a", "1b"], ["/a", "/b"], [], [], r"invalid name\(s\) \['1b'\]"),
        (["a", ""], ["/a", "/b"], [], [], r"invalid name\(s\) \[''\]"),
        (["a/b"], ["/a"], [], [], "invalid name"),
        (["a"], [""], [], [], "non-empty topic"),
        (["a"], ["/a"], ["/d", "/e"], [], "depth_topics has 2 entries for 1 camera_names"),
        (["a"], ["/a"], [], ["/i"], "camera_info_topics needs depth_topics"),
        ([], ["/a"], [], [], "need camera_names"),
    ],
)
def test_bad_camera_lists_are_refused(names, topics, depth, info, message) -> None:
    with pytest.raises(ValueError, match=message):
        check_camera_lists(names, topics, depth, info)


def test_good_camera_lists_pass() -> None:
    check_camera_lists([], [])  # one camera, today's names
    check_camera_lists(["front", "wrist_2"], ["/f", "/w"])
    check_camera_lists(["front", "wrist"], ["/f", "/w"], ["/fd", "/wd"])
    check_camera_lists(["front", "wrist"], ["/f", "/w"], ["/fd", "/wd"], ["/fi", "/wi"])


def stream(name: str, maxsize: int = 4) -> CameraStream:
    return CameraStream(name, session=None, queue=DropOldestQueue(maxsize))  # the intake needs no engine


def test_a_camera_with_a_backlog_does_not_hold_the_others_back() -> None:
    slow, fast = stream("slow", maxsize=3), stream("fast")
    for i in range(5):  # the slow camera's queue overflows: its two oldest frames are dropped, and counted
        slow.queue.put(("slow", i))
    fast.queue.put(("fast", 0))
    assert take_frames([slow, fast]) == [(slow, ("slow", 2)), (fast, ("fast", 0))]  # one frame of each
    fast.queue.put(("fast", 1))
    assert take_frames([slow, fast]) == [(slow, ("slow", 3)), (fast, ("fast", 1))]
    assert take_frames([slow, fast]) == [(slow, ("slow", 4))]
    assert take_frames([slow, fast]) == []
    assert (slow.queue.dropped, fast.queue.dropped) == (2, 0)
    assert (slow.prefix, slow.topic_prefix, stream("").prefix, stream("").topic_prefix) == ("slow/", "~/slow/", "", "")


def test_frame_signal_wakes_the_worker_and_times_out() -> None:
    signal = FrameSignal()
    start = time.monotonic()
    signal.wait(0.05)
    assert time.monotonic() - start >= 0.04  # nothing arrived: waited the timeout
    threading.Timer(0.02, signal.notify).start()
    start = time.monotonic()
    signal.wait(5.0)
    assert time.monotonic() - start < 2.0  # woken by the notification, not the timeout
