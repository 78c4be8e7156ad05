"""cotracker3_core.cameras without ROS: the camera lists' checks, and the worker's intake over several cameras (one
frame per camera per step, so a camera with a backlog never holds the others back)."""

from __future__ import annotations

from collections import deque
from typing import Any

import pytest

from cotracker3_core.cameras import CameraStream, check_camera_lists, take_frames


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


class ListQueue:
    """The smallest `FrameQueue`: the frames given, oldest first (the node's is a DDS subscription's history,
    tested over DDS in test_ros_image_intake.py)."""

    def __init__(self, *items: Any) -> None:
        self.items = deque(items)

    def get(self, timeout: float = 0.0) -> Any | None:
        return self.items.popleft() if self.items else None


def stream(name: str, *items: Any) -> CameraStream:
    return CameraStream(name, session=None, queue=ListQueue(*items))  # the intake needs no engine


def test_a_camera_with_a_backlog_does_not_hold_the_others_back() -> None:
    slow, fast = stream("slow", *[("slow", i) for i in range(3)]), stream("fast", ("fast", 0))
    assert take_frames([slow, fast]) == [(slow, ("slow", 0)), (fast, ("fast", 0))]  # one frame of each
    fast.queue.items.append(("fast", 1))
    assert take_frames([slow, fast]) == [(slow, ("slow", 1)), (fast, ("fast", 1))]
    assert take_frames([slow, fast]) == [(slow, ("slow", 2))]
    assert take_frames([slow, fast]) == []
    assert (slow.prefix, slow.topic_prefix, stream("").prefix, stream("").topic_prefix) == ("slow/", "~/slow/", "", "")
