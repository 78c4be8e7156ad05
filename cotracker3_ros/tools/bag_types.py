"""``cotracker3_msgs/Tracks`` in bags: the rosbags typestores that know it, and reading it whichever version of
the message a bag recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cotracker3_msgs.msg import Tracks
from rclpy.serialization import deserialize_message
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

__all__ = ["DISTROS", "TRACKS_TYPE", "deserialize_tracks", "make_typestore", "tracks_msg_path"]

TRACKS_TYPE = "cotracker3_msgs/msg/Tracks"
#: Distribution -> (rosbags typestore, rosbag2 metadata version rosbags writes for it).
DISTROS: dict[str, tuple[Stores, int]] = {
    "kilted": (Stores.ROS2_KILTED, 9),
    "jazzy": (Stores.ROS2_JAZZY, 8),
    "humble": (Stores.ROS2_HUMBLE, 8),
}


def tracks_msg_path() -> Path:
    """``Tracks.msg`` of the installed ``cotracker3_msgs`` (ament index), else of this working tree."""
    try:
        from ament_index_python.packages import get_package_share_directory

        installed = Path(get_package_share_directory("cotracker3_msgs")) / "msg" / "Tracks.msg"
        if installed.is_file():
            return installed
    except Exception:  # not installed through colcon: the source tree has it
        pass
    source = Path(__file__).resolve().parents[2] / "msg" / "msg" / "Tracks.msg"
    if not source.is_file():
        raise FileNotFoundError("cannot find cotracker3_msgs' Tracks.msg (neither installed nor in the source tree)")
    return source


def make_typestore(distro: str = "kilted") -> Any:
    """The rosbags typestore of ``distro`` (kilted, jazzy, humble) with ``cotracker3_msgs/msg/Tracks`` added."""
    if distro not in DISTROS:
        raise ValueError(f"unknown distribution {distro!r}; known: {', '.join(DISTROS)}")
    store = get_typestore(DISTROS[distro][0])
    store.register(get_types_from_msg(tracks_msg_path().read_text(), TRACKS_TYPE))
    return store


def deserialize_tracks(raw: bytes) -> Tracks:
    """A CDR-serialised ``cotracker3_msgs/Tracks``, of this definition or of the one before #15.

    The 3D arrays ``x3d, y3d, z3d`` were appended after ``visible``; CDR lays fields out in order, so a message
    recorded before (ending after ``visible``) is this message with three empty arrays: its bytes plus, at the
    next 4-byte boundary, three zero sequence lengths.

    Raises:
        ValueError: the bytes are neither.
    """
    try:
        return deserialize_message(raw, Tracks)
    except Exception:  # rclpy raises its RMWError (not exported on every distro) for bytes that end too early
        pass
    try:
        return deserialize_message(raw + bytes(-len(raw) % 4) + bytes(12), Tracks)
    except Exception as exc:
        raise ValueError(f"cannot deserialise a {TRACKS_TYPE} message of {len(raw)} bytes: {exc}") from exc
