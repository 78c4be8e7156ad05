"""Unlabelled videos for pseudo-label training: a folder of video files, or camera topics of rosbag2 bags.

Every source is a list of videos with random access to a run of consecutive frames::

    len(source); source.name(i); source.num_frames(i); source.read(i, start, length) -> (T, H, W, 3) uint8 RGB

``VideoFolderSource`` decodes files with OpenCV (``cv2.VideoCapture``); at start-up it opens every file and
decodes its first frame, so a corrupt or unsupported file is reported by name before training starts (or
skipped and counted with ``skip_unreadable``). ``RosbagImageSource`` reads ``sensor_msgs/msg/Image`` and
``sensor_msgs/msg/CompressedImage`` messages with ``rosbags`` (no ROS installation needed); each image topic
of each bag is one video, its messages in the bag's time order.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
IMAGE_MSGTYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")


class VideoSourceError(ValueError):
    """A video source is missing, empty or unreadable (the message names the file, bag or topic)."""


class VideoSource(Protocol):
    """Random access to runs of frames of a list of videos."""

    def __len__(self) -> int: ...

    def name(self, index: int) -> str: ...

    def num_frames(self, index: int) -> int: ...

    def read(self, index: int, start: int, length: int) -> np.ndarray:
        """(length, H, W, 3) uint8 RGB frames ``start .. start + length - 1``."""
        ...


@dataclass(frozen=True)
class _VideoFile:
    path: Path
    num_frames: int


def _probe_video(path: Path) -> int:
    """Frame count of a decodable video; raises VideoSourceError naming the problem."""
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise VideoSourceError(f"{path}: OpenCV cannot open it (corrupt or unsupported video file)")
        ok, frame = capture.read()
        if not ok or frame is None:
            raise VideoSourceError(f"{path}: no frame can be decoded (corrupt or empty video file)")
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if count <= 0:  # some containers do not store it: count by decoding
            count = 1
            while capture.grab():
                count += 1
        return count
    finally:
        capture.release()


class VideoFolderSource:
    """Video files found (recursively) in folders.

    Args:
        folders: folders to search for files with a suffix in ``VIDEO_SUFFIXES``.
        skip_unreadable: log and skip files that cannot be decoded instead of raising.
    """

    def __init__(self, folders: Sequence[str | os.PathLike[str]], skip_unreadable: bool = False) -> None:
        files: list[Path] = []
        for folder in folders:
            folder = Path(folder)
            if not folder.exists():
                raise VideoSourceError(f"video folder {folder} does not exist")
            if not folder.is_dir():
                raise VideoSourceError(f"video folder {folder} is not a folder")
            found = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
            if not found:
                raise VideoSourceError(
                    f"no video files in {folder} (looked for {', '.join(VIDEO_SUFFIXES)}, recursively)"
                )
            files.extend(found)
        self.videos: list[_VideoFile] = []
        self.unreadable: list[str] = []
        for path in files:
            try:
                self.videos.append(_VideoFile(path, _probe_video(path)))
            except VideoSourceError as err:
                self.unreadable.append(str(err))
        if self.unreadable and not skip_unreadable:
            shown = "; ".join(self.unreadable[:5])
            more = f" (and {len(self.unreadable) - 5} more)" if len(self.unreadable) > 5 else ""
            raise VideoSourceError(
                f"{len(self.unreadable)} unreadable video file(s): {shown}{more}. Remove them or set "
                "pseudo.skip_unreadable=true"
            )
        for message in self.unreadable:
            logger.warning("skipping %s", message)
        if not self.videos:
            raise VideoSourceError("none of the video files can be decoded")

    def __len__(self) -> int:
        return len(self.videos)

    def name(self, index: int) -> str:
        return str(self.videos[index].path)

    def num_frames(self, index: int) -> int:
        return self.videos[index].num_frames

    def read(self, index: int, start: int, length: int) -> np.ndarray:
        video = self.videos[index]
        capture = cv2.VideoCapture(str(video.path))
        frames = []
        try:
            if not capture.isOpened():
                raise VideoSourceError(f"{video.path}: OpenCV cannot open it any more")
            if start > 0:
                capture.set(cv2.CAP_PROP_POS_FRAMES, start)
            while len(frames) < length:
                ok, frame = capture.read()
                if not ok:
                    break
                frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        finally:
            capture.release()
        if len(frames) < length:
            raise VideoSourceError(
                f"{video.path}: decoded {len(frames)} of frames {start}..{start + length - 1} "
                f"(the file reports {video.num_frames} frames; truncated or corrupt)"
            )
        return np.stack(frames)


@dataclass(frozen=True)
class _BagTopic:
    bag: Path
    topic: str
    num_frames: int


class RosbagImageSource:
    """Image topics of rosbag2 bags, one video per (bag, topic).

    Args:
        bags: rosbag2 folders (or .db3 / .mcap files) readable by ``rosbags.highlevel.AnyReader``.
        topics: topics to use; empty: every topic of type sensor_msgs/msg/Image or CompressedImage.
    """

    def __init__(self, bags: Sequence[str | os.PathLike[str]], topics: Sequence[str] = ()) -> None:
        from rosbags.highlevel import AnyReader  # imported here: only stage 2 from bags needs it

        self.videos: list[_BagTopic] = []
        wanted = set(topics)
        for bag in bags:
            bag = Path(bag)
            if not bag.exists():
                raise VideoSourceError(f"rosbag {bag} does not exist")
            try:
                with AnyReader([bag]) as reader:
                    counts: dict[str, int] = {}
                    types: dict[str, str] = {}
                    for connection in reader.connections:
                        types[connection.topic] = connection.msgtype
                        if connection.msgtype in IMAGE_MSGTYPES:
                            counts[connection.topic] = counts.get(connection.topic, 0) + connection.msgcount
            except VideoSourceError:
                raise
            except Exception as err:  # rosbags raises its own error types for broken bags
                raise VideoSourceError(f"cannot read rosbag {bag}: {type(err).__name__}: {err}") from err
            missing = sorted(wanted - set(types))
            if missing:
                raise VideoSourceError(f"rosbag {bag} has no topic(s) {missing}; its topics: {sorted(types)}")
            not_images = sorted(t for t in wanted if types.get(t) not in IMAGE_MSGTYPES)
            if not_images:
                raise VideoSourceError(
                    f"rosbag {bag}: topic(s) {not_images} are not images ({[types[t] for t in not_images]})"
                )
            chosen = sorted(wanted) if wanted else sorted(counts)
            if not chosen:
                raise VideoSourceError(f"rosbag {bag} has no image topic ({', '.join(IMAGE_MSGTYPES)})")
            self.videos.extend(_BagTopic(bag, topic, counts[topic]) for topic in chosen if counts[topic] > 0)
        if not self.videos:
            raise VideoSourceError("the rosbags hold no image messages on the chosen topics")

    def __len__(self) -> int:
        return len(self.videos)

    def name(self, index: int) -> str:
        video = self.videos[index]
        return f"{video.bag}:{video.topic}"

    def num_frames(self, index: int) -> int:
        return self.videos[index].num_frames

    def read(self, index: int, start: int, length: int) -> np.ndarray:
        from rosbags.highlevel import AnyReader
        from rosbags.image import message_to_cvimage

        video = self.videos[index]
        frames: list[np.ndarray] = []
        with AnyReader([video.bag]) as reader:
            connections = [c for c in reader.connections if c.topic == video.topic]
            for position, (connection, _, raw) in enumerate(reader.messages(connections=connections)):
                if position < start:
                    continue
                message = reader.deserialize(raw, connection.msgtype)
                frames.append(np.ascontiguousarray(message_to_cvimage(message, "rgb8")))
                if len(frames) == length:
                    break
        if len(frames) < length:
            raise VideoSourceError(f"{self.name(index)}: only {len(frames)} images from message {start} on")
        return np.stack(frames)


class ConcatVideoSource:
    """Several sources as one list of videos."""

    def __init__(self, sources: Sequence[VideoSource]) -> None:
        self.sources = [s for s in sources if len(s)]
        if not self.sources:
            raise VideoSourceError("no videos to train on")
        self._offsets = np.cumsum([0] + [len(s) for s in self.sources])

    def _locate(self, index: int) -> tuple[VideoSource, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"video index {index} out of range for {len(self)} videos")
        which = int(np.searchsorted(self._offsets, index, side="right") - 1)
        return self.sources[which], index - int(self._offsets[which])

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def name(self, index: int) -> str:
        source, local = self._locate(index)
        return source.name(local)

    def num_frames(self, index: int) -> int:
        source, local = self._locate(index)
        return source.num_frames(local)

    def read(self, index: int, start: int, length: int) -> np.ndarray:
        source, local = self._locate(index)
        return source.read(local, start, length)
