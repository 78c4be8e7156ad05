"""rosbag2 files for evaluation: camera clips with ground-truth tracks, written and read with ``rosbags``.

One clip per bag (a rosbag2 folder, MCAP or sqlite3). What `write_clip_bag` puts in it:

- the camera, on ``image_topic`` (``/camera/image_raw``): ``Image`` (``rgb8``, ``bgr8``, ``mono8``) or
  ``CompressedImage`` (``jpeg``, ``png``) per frame; stamp = log time = ``start_ns + round(i * 1e9 / fps)``;
- ``camera_info_topic`` (``/camera/camera_info``): ``sensor_msgs/msg/CameraInfo``, same stamps; K all zeros
  ("uncalibrated": TAP-Vid has no calibration) unless a nominal focal length is given;
- the ground truth, on ``gt_topic`` (``/ground_truth/tracks``): one ``cotracker3_msgs/msg/Tracks`` per frame, with
  the image's header: ``ids`` = track index, ``x``/``y`` image px (normalised points times (W, H)), ``visible``
  = not occluded, ``visibility`` = 1/0, ``confidence`` = 1;
- ``custom_data`` in ``metadata.yaml``: ``cotracker3.{clip,fps,source,image_topic,gt_topic}``.

Messages are built by the node's conversions and serialised by rclpy (connections: a rosbags typestore of the
chosen distribution plus ``Tracks.msg``); reading converts images with the node's `message_to_rgb`, so evaluations
see the node's pixels. A damaged bag is one ValueError naming it (`open_bag`). Ground truth recorded with the
``Tracks`` of before #15 (no ``x3d/y3d/z3d``) reads as well (`bag_types.deserialize_tracks`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import yaml
from cotracker3_msgs.msg import Tracks
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from cotracker3_core.evaluation.ground_truth import GroundTruth, load_sidecar_ground_truth
from cotracker3_core.evaluation.tapvid_datasets import TapVidClip
from cotracker3_core.streaming import FrameTracks

from ..conversions import frame_tracks_to_msg, message_to_rgb, ns_to_time, rgb_to_image, time_to_ns, tracks_msg_arrays
from .bag_types import DISTROS, TRACKS_TYPE, deserialize_tracks, make_typestore

__all__ = [
    "BagClip",
    "BagWriteOptions",
    "deserialize_tracks",
    "find_bags",
    "frame_stamps",
    "make_typestore",
    "read_clip_bag",
    "safe_name",
    "write_clip_bag",
]

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)

DEFAULT_IMAGE_TOPIC = "/camera/image_raw"
DEFAULT_CAMERA_INFO_TOPIC = "/camera/camera_info"
DEFAULT_GT_TOPIC = "/ground_truth/tracks"
DEFAULT_FRAME_ID = "camera_optical_frame"
#: First stamp of a converted clip (2023-11-14T22:13:20Z): nonzero, because a zero stamp means "newest frame" to
#: the node's services, and far from the wall clock, so a replayed clip is never mistaken for live data.
DEFAULT_START_NS = 1_700_000_000 * 1_000_000_000

STORAGES: dict[str, StoragePlugin] = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
#: Raw encodings (sensor_msgs/Image) and compressed formats (sensor_msgs/CompressedImage) the writer offers.
RAW_ENCODINGS = ("rgb8", "bgr8", "mono8")
COMPRESSED_FORMATS = ("jpeg", "png")

CUSTOM_PREFIX = "cotracker3."
_NS_PER_S = 1_000_000_000


class CliHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` of the evaluation tools: shows defaults, but not the ones that only mean "not given"."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False or "default" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action) or ""


# --- writing ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BagWriteOptions:
    """How a clip becomes a bag (see the module docstring for the layout).

    Args:
        fps: frame rate of the clip; stamps are ``start_ns + round(i * 1e9 / fps)``.
        start_ns: stamp of the first frame (> 0).
        encoding: rgb8, bgr8, mono8 (sensor_msgs/Image) or jpeg, png (sensor_msgs/CompressedImage).
        image_topic, camera_info_topic, gt_topic: topic names; an empty gt_topic writes no ground truth.
        frame_id: optical frame of the camera.
        focal_px: nominal focal length for CameraInfo's K and P; 0 leaves them zero (uncalibrated).
        storage: mcap or sqlite3.
        distro: typestore (message definitions) and metadata version: kilted, jazzy or humble.
        jpeg_quality: quality of jpeg frames, 1..100.
    """

    fps: float = 10.0
    start_ns: int = DEFAULT_START_NS
    encoding: str = "rgb8"
    image_topic: str = DEFAULT_IMAGE_TOPIC
    camera_info_topic: str = DEFAULT_CAMERA_INFO_TOPIC
    gt_topic: str = DEFAULT_GT_TOPIC
    frame_id: str = DEFAULT_FRAME_ID
    focal_px: float = 0.0
    storage: str = "mcap"
    distro: str = "kilted"
    jpeg_quality: int = 95

    def __post_init__(self) -> None:
        if not (np.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"fps must be a positive number, got {self.fps}")
        if self.start_ns <= 0:
            raise ValueError(f"start_ns must be > 0 (stamp 0 means 'newest frame' to the node), got {self.start_ns}")
        if self.encoding not in RAW_ENCODINGS + COMPRESSED_FORMATS:
            raise ValueError(f"encoding must be one of {RAW_ENCODINGS + COMPRESSED_FORMATS}, got {self.encoding!r}")
        if self.storage not in STORAGES:
            raise ValueError(f"storage must be one of {tuple(STORAGES)}, got {self.storage!r}")
        if self.distro not in DISTROS:
            raise ValueError(f"distro must be one of {tuple(DISTROS)}, got {self.distro!r}")
        if not self.image_topic or not self.camera_info_topic:
            raise ValueError("image_topic and camera_info_topic must not be empty")
        if self.focal_px < 0:
            raise ValueError(f"focal_px must be >= 0, got {self.focal_px}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in [1, 100], got {self.jpeg_quality}")

    @property
    def compressed(self) -> bool:
        return self.encoding in COMPRESSED_FORMATS


def safe_name(name: str) -> str:
    """A clip name made safe as a file or folder name (other characters become ``_``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip(".") or "clip"


def frame_stamps(num_frames: int, fps: float, start_ns: int = DEFAULT_START_NS) -> np.ndarray:
    """(T,) int64 stamps of a clip played at ``fps`` from ``start_ns``."""
    return start_ns + np.round(np.arange(num_frames) * (_NS_PER_S / fps)).astype(np.int64)


def _compressed_message(rgb: np.ndarray, header: Header, fmt: str, jpeg_quality: int) -> CompressedImage:
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if fmt == "jpeg" else []
    ok, encoded = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", bgr, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a frame as {fmt}")
    msg = CompressedImage(header=header)
    # image_transport's naming of the format field: "<original encoding>; <codec> compressed <stored encoding>".
    msg.format = f"rgb8; {fmt} compressed bgr8"
    msg.data = encoded.tobytes()
    return msg


def _camera_info(header: Header, height: int, width: int, focal_px: float) -> CameraInfo:
    info = CameraInfo(header=header, height=height, width=width)
    if focal_px > 0:
        cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
        info.distortion_model = "plumb_bob"
        info.d = [0.0] * 5
        info.k = [focal_px, 0.0, cx, 0.0, focal_px, cy, 0.0, 0.0, 1.0]
        info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        info.p = [focal_px, 0.0, cx, 0.0, 0.0, focal_px, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


def ground_truth_message(clip: TapVidClip, frame: int, header: Header) -> Tracks:
    """The ground truth of one frame as ``cotracker3_msgs/Tracks`` (every track, occluded ones with visible 0)."""
    xy = clip.points_px(None)[:, frame].astype(np.float32)
    visible = ~clip.occluded[:, frame]
    tracks = FrameTracks(
        stamp=time_to_ns(header.stamp),
        frame_index=frame,
        refined=False,
        ids=np.arange(clip.num_tracks, dtype=np.int64),
        xy=xy,
        visibility=visible.astype(np.float32),
        confidence=np.ones(clip.num_tracks, np.float32),
        visible=visible,
    )
    return frame_tracks_to_msg(tracks, header, clip.size_hw)


def write_clip_bag(
    path: str | os.PathLike[str],
    clip: TapVidClip,
    options: BagWriteOptions | None = None,
    source: str = "",
) -> Path:
    """Write one clip as a rosbag2 folder at ``path`` (which must not exist). Returns ``path``.

    Raises:
        ValueError: bad options, or ``path`` already exists.
    """
    options = options or BagWriteOptions()
    path = Path(path)
    if path.exists():
        raise ValueError(f"{path} exists already; the bag writer only creates new bags")
    store = make_typestore(options.distro)
    stamps = frame_stamps(clip.num_frames, options.fps, options.start_ns)
    height, width = clip.size_hw
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = Writer(path, version=DISTROS[options.distro][1], storage_plugin=STORAGES[options.storage])
    custom = {
        "clip": clip.name,
        "fps": repr(float(options.fps)),
        "source": source,
        "image_topic": options.image_topic,
        "gt_topic": options.gt_topic,
        "num_frames": str(clip.num_frames),
        "num_tracks": str(clip.num_tracks),
    }
    for key, value in custom.items():
        writer.set_custom_data(CUSTOM_PREFIX + key, value)
    with writer:
        image_conn = writer.add_connection(
            options.image_topic, COMPRESSED_TYPE if options.compressed else IMAGE_TYPE, typestore=store
        )
        info_conn = writer.add_connection(options.camera_info_topic, CAMERA_INFO_TYPE, typestore=store)
        gt_conn = writer.add_connection(options.gt_topic, TRACKS_TYPE, typestore=store) if options.gt_topic else None
        for index in range(clip.num_frames):
            stamp = int(stamps[index])
            header = Header(stamp=ns_to_time(stamp), frame_id=options.frame_id)
            rgb = clip.video[index]
            image: Image | CompressedImage
            if options.compressed:
                image = _compressed_message(rgb, header, options.encoding, options.jpeg_quality)
            else:
                image = rgb_to_image(rgb, header, options.encoding)
            writer.write(image_conn, stamp, serialize_message(image))
            writer.write(info_conn, stamp, serialize_message(_camera_info(header, height, width, options.focal_px)))
            if gt_conn is not None:
                writer.write(gt_conn, stamp, serialize_message(ground_truth_message(clip, index, header)))
    return path


# --- reading ------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class BagClip:
    """One clip read from a bag: the serialised images (kept as recorded, to replay or convert) and, when the bag
    or a sidecar has it, the ground truth.

    Attributes:
        path: the bag folder.
        name: clip name (``cotracker3.clip`` custom data, else the folder name).
        image_topic, image_type: topic and type of the camera.
        stamps: (T,) int64 header stamps of the images, strictly increasing.
        raw_images: T CDR-serialised image messages, as stored.
        size_hw: (H, W) of the images.
        ground_truth: (N, T) tracks, or None.
        custom: the bag's custom_data.
    """

    path: Path
    name: str
    image_topic: str
    image_type: str
    stamps: np.ndarray
    raw_images: list[bytes]
    size_hw: tuple[int, int]
    ground_truth: GroundTruth | None = None
    custom: dict[str, str] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return len(self.raw_images)

    @property
    def compressed(self) -> bool:
        return self.image_type == COMPRESSED_TYPE

    @property
    def message_class(self) -> type:
        return CompressedImage if self.compressed else Image

    @property
    def fps(self) -> float:
        """Frame rate from the stamps (median interval)."""
        if self.num_frames < 2:
            return float("nan")
        return float(_NS_PER_S / np.median(np.diff(self.stamps)))

    def image_message(self, index: int) -> Image | CompressedImage:
        """The ``index``-th image as the rclpy message a subscriber of the topic receives."""
        return deserialize_message(self.raw_images[index], self.message_class)

    def rgb(self, index: int) -> np.ndarray:
        """(H, W, 3) uint8 RGB of the ``index``-th image, converted exactly as the node converts it."""
        return message_to_rgb(self.image_message(index))


def bag_custom_data(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``custom_data`` mapping of a bag's ``metadata.yaml`` (empty when absent, as in bags before Iron)."""
    try:
        with (Path(path) / "metadata.yaml").open() as stream:
            info = (yaml.safe_load(stream) or {}).get("rosbag2_bagfile_information") or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read metadata.yaml: {exc}") from exc
    return {str(k): str(v) for k, v in (info.get("custom_data") or {}).items()}


@contextlib.contextmanager
def open_bag(path: Path) -> Iterator[Reader]:
    """``rosbags`` Reader; a damaged bag (found on opening or while reading) is one ValueError naming it."""
    try:
        with Reader(path) as reader:
            yield reader
    except (ReaderError, EOFError, struct.error) as exc:
        raise ValueError(f"{path}: the bag cannot be read (damaged or incomplete: {exc})") from exc


def list_topics(path: str | os.PathLike[str]) -> dict[str, str]:
    """topic -> message type of a bag."""
    with open_bag(Path(path)) as reader:
        return {c.topic: c.msgtype for c in reader.connections}


def _pick_image_topic(topics: Mapping[str, str], wanted: str | None, custom: Mapping[str, str], path: Path) -> str:
    images = sorted(t for t, kind in topics.items() if kind in IMAGE_TYPES)
    listing = ", ".join(f"{t} ({k})" for t, k in sorted(topics.items())) or "none"
    if wanted:
        if wanted not in topics:
            raise ValueError(f"{path}: no topic {wanted!r} in the bag; its topics: {listing}")
        if topics[wanted] not in IMAGE_TYPES:
            raise ValueError(f"{path}: topic {wanted!r} is {topics[wanted]}, not an image ({' or '.join(IMAGE_TYPES)})")
        return wanted
    recorded = custom.get(CUSTOM_PREFIX + "image_topic")
    if recorded in images:
        return recorded
    if len(images) == 1:
        return images[0]
    if not images:
        raise ValueError(f"{path}: no image topic (sensor_msgs Image or CompressedImage) in the bag; topics: {listing}")
    raise ValueError(f"{path}: several image topics ({', '.join(images)}); choose one with --image-topic")


def _ground_truth_from_topic(
    messages: list[Tracks], stamps: np.ndarray, size_hw: tuple[int, int], topic: str, path: Path
) -> GroundTruth:
    where = f"{path}: ground-truth topic {topic}"
    index_of = {int(s): i for i, s in enumerate(stamps)}
    per_frame: dict[int, dict[str, np.ndarray]] = {}
    for msg in messages:
        stamp = time_to_ns(msg.header.stamp)
        if stamp not in index_of:
            raise ValueError(f"{where} has a message stamped {stamp} ns, which is no image's stamp")
        if (int(msg.image_height), int(msg.image_width)) != size_hw:
            raise ValueError(
                f"{where} is for {int(msg.image_width)}x{int(msg.image_height)} images, the images are "
                f"{size_hw[1]}x{size_hw[0]}"
            )
        arrays = tracks_msg_arrays(msg)
        lengths = {k: len(v) for k, v in arrays.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"{where}: message at {stamp} ns has arrays of different lengths {lengths}")
        per_frame[index_of[stamp]] = arrays
    if not per_frame:
        raise ValueError(f"{where} has no messages")
    ids = np.unique(np.concatenate([a["ids"] for a in per_frame.values()])).astype(np.int64)
    column = {int(i): k for k, i in enumerate(ids)}
    points = np.full((len(ids), len(stamps), 2), np.nan)
    occluded = np.ones((len(ids), len(stamps)), bool)
    for frame, arrays in per_frame.items():
        rows = [column[int(i)] for i in arrays["ids"]]
        points[rows, frame] = arrays["xy"]
        occluded[rows, frame] = ~arrays["visible"]
    return GroundTruth(points, occluded, ids, source=f"{path}:{topic}")


def read_clip_bag(
    path: str | os.PathLike[str],
    image_topic: str | None = None,
    gt_topic: str | None = None,
    gt_file: str | os.PathLike[str] | None = None,
    clip_name: str | None = None,
) -> BagClip:
    """Read one clip: its images and, if present, its ground truth.

    Args:
        path: rosbag2 folder (MCAP or sqlite3).
        image_topic: camera topic; by default the one recorded by the converter, else the only image topic.
        gt_topic: ground-truth Tracks topic; by default the converter's (``/ground_truth/tracks``) when present.
        gt_file: sidecar ground truth (``.npz`` or TAP-Vid pickle, see `load_sidecar_ground_truth`); takes
            precedence over the topic.
        clip_name: overrides the clip name recorded in the bag (used to look the clip up in ``gt_file``).

    Raises:
        ValueError: not a bag, no (or an ambiguous) image topic, no images, stamps that do not increase,
            images of different sizes, ground truth that does not match the images.
    """
    path = Path(path)
    if not (path / "metadata.yaml").is_file():
        raise ValueError(f"{path} is not a rosbag2 folder (no metadata.yaml)")
    custom = bag_custom_data(path)
    with open_bag(path) as reader:
        topics = {c.topic: c.msgtype for c in reader.connections}
        topic = _pick_image_topic(topics, image_topic, custom, path)
        if gt_topic is None:
            recorded = custom.get(CUSTOM_PREFIX + "gt_topic") or DEFAULT_GT_TOPIC
            gt_topic = recorded if recorded in topics else ""
        elif gt_topic and gt_topic not in topics:
            raise ValueError(f"{path}: no ground-truth topic {gt_topic!r}; its topics: {', '.join(sorted(topics))}")
        if gt_topic and topics[gt_topic] != TRACKS_TYPE:
            raise ValueError(f"{path}: ground-truth topic {gt_topic!r} is {topics[gt_topic]}, expected {TRACKS_TYPE}")
        wanted = [c for c in reader.connections if c.topic == topic or (gt_topic and c.topic == gt_topic)]
        raw_images: list[bytes] = []
        gt_messages: list[Tracks] = []
        for connection, _, raw in reader.messages(connections=wanted):
            if connection.topic == topic:
                raw_images.append(bytes(raw))
            else:
                gt_messages.append(deserialize_tracks(bytes(raw)))
    if not raw_images:
        raise ValueError(f"{path}: image topic {topic!r} has no messages")
    message_class = CompressedImage if topics[topic] == COMPRESSED_TYPE else Image
    # Header stamps, as the node sees them (it ignores the bag's log times).
    headers = [deserialize_message(raw, message_class).header for raw in raw_images]
    stamps = np.array([time_to_ns(h.stamp) for h in headers], dtype=np.int64)
    bad = np.flatnonzero(np.diff(stamps) <= 0)
    if bad.size:
        k = int(bad[0]) + 1
        raise ValueError(
            f"{path}: image stamps must increase strictly (the node restarts its stream otherwise); image {k} is "
            f"stamped {int(stamps[k])} ns after {int(stamps[k - 1])} ns"
        )
    first = message_to_rgb(deserialize_message(raw_images[0], message_class))
    size_hw = (int(first.shape[0]), int(first.shape[1]))
    name = clip_name or custom.get(CUSTOM_PREFIX + "clip") or path.name
    clip = BagClip(path, name, topic, topics[topic], stamps, raw_images, size_hw, None, custom)
    if gt_file is not None:
        clip.ground_truth = load_sidecar_ground_truth(gt_file, name, stamps, size_hw)
    elif gt_topic:
        clip.ground_truth = _ground_truth_from_topic(gt_messages, stamps, size_hw, gt_topic, path)
    return clip


def find_bags(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Bags named by ``paths``: a bag folder itself, or a folder whose sub-folders are bags (sorted).

    Raises:
        ValueError: a path that is neither.
    """
    out: list[Path] = []
    for p in map(Path, paths):
        if (p / "metadata.yaml").is_file():
            out.append(p)
        elif p.is_dir() and (found := sorted(d for d in p.iterdir() if (d / "metadata.yaml").is_file())):
            out.extend(found)
        else:
            raise ValueError(f"{p} is neither a rosbag2 folder (with metadata.yaml) nor a folder of them")
    return out
