"""Several cameras in one live consumer (the ROS node): the check of the camera lists and each camera's own state.

Each camera keeps its own engine state (a `StreamingTracker` sharing the one model, wrapped in a
`TrackingSession`: queries, ids, stamps, window), its own bounded queue of waiting frames (a `FrameQueue`: in the
node, the image subscription's keep-last history) and its own loss counter, so that a camera that falls behind
loses only its own stale frames. One worker takes the oldest waiting frame of every camera (`take_frames`) and
tracks them in one step.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .intake import LossCounter
from .session import TrackingSession

#: A camera name: one ROS name token (it prefixes topics and services: ``~/<camera>/tracks``).
CAMERA_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def check_camera_lists(
    names: Sequence[str], topics: Sequence[str], depth_topics: Sequence[str] = (), info_topics: Sequence[str] = ()
) -> None:
    """The node's ``camera_names``, ``camera_topics``, ``depth_topics`` and ``camera_info_topics``: all empty (one
    camera, today's ``image`` input), or K unique valid names with K topics (and K depth topics, K camera info
    topics or none). Raises ValueError saying what is wrong."""
    if not names:
        if topics or depth_topics or info_topics:
            raise ValueError("camera_topics, depth_topics and camera_info_topics need camera_names")
        return
    bad = [n for n in names if not isinstance(n, str) or not CAMERA_NAME.match(n)]
    if bad:
        raise ValueError(f"camera_names: invalid name(s) {bad}: letters, digits and _, starting with a letter")
    duplicates = sorted({n for n in names if list(names).count(n) > 1})
    if duplicates:
        raise ValueError(f"camera_names: duplicate name(s) {duplicates}")
    for what, values, optional in (
        ("camera_topics", topics, False),
        ("depth_topics", depth_topics, True),
        ("camera_info_topics", info_topics, True),
    ):
        if (values or not optional) and len(values) != len(names):
            raise ValueError(
                f"{what} has {len(values)} entries for {len(names)} camera_names"
                + (" (give one per camera, or none)" if optional else " (give one topic per camera)")
            )
        if any(not isinstance(t, str) or (not t and what == "camera_topics") for t in values):
            raise ValueError(f"{what}: every entry must be a non-empty topic name, got {list(values)}")
    if info_topics and not depth_topics:
        raise ValueError("camera_info_topics needs depth_topics")


class FrameQueue(Protocol):
    """A camera's bounded queue of waiting frames, oldest first; it drops (and counts) what it cannot hold."""

    def get(self, timeout: float = 0.0) -> Any | None:
        """The oldest waiting frame, or None."""
        ...


@dataclass
class CameraStream:
    """One camera's state in a multi-camera consumer (a consumer adds its own fields in a subclass: publishers).

    name: the camera's name ("" for the single unnamed camera).
    session: its tracking session (its own `StreamingTracker`, queries and stamps).
    queue: frames waiting for the worker.
    losses: frames lost before the worker took them.
    """

    name: str
    session: TrackingSession
    queue: FrameQueue
    losses: LossCounter = field(default_factory=LossCounter)

    @property
    def prefix(self) -> str:
        """Prefix of its service names (private already): ``"<name>/"``, or "" for the unnamed camera."""
        return f"{self.name}/" if self.name else ""

    @property
    def topic_prefix(self) -> str:
        """Prefix of its output topics: private, ``"~/<name>/"``, or "" (relative names) for the unnamed camera."""
        return f"~/{self.name}/" if self.name else ""


def take_frames(streams: Sequence[CameraStream]) -> list[tuple[CameraStream, Any]]:
    """The oldest waiting frame of each camera that has one (at most one per camera: a step tracks every camera
    that is due together, and no camera waits behind another's backlog)."""
    taken = []
    for stream in streams:
        item = stream.queue.get(timeout=0)
        if item is not None:
            taken.append((stream, item))
    return taken
