"""Conversions between ROS 2 messages and the NumPy arrays of the streaming engine.

Images go through ROS 2's ``cv_bridge`` when it is importable (a system ROS install), else through
``rosbags-image`` (``rosbags.image.message_to_cvimage``, pure Python, accepts rclpy message objects). Both
give the same pixels for every supported encoding; the backend can be forced per call for comparisons.

Tracks are written into ``cotracker3_msgs/Tracks`` through ``array.array`` assignment: rclpy takes those
without a per-element Python check, which keeps a 1,024-point message well under a millisecond.
"""

from __future__ import annotations

import array
from collections.abc import Sequence
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from builtin_interfaces.msg import Time
from cotracker3_msgs.msg import Tracks
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

if TYPE_CHECKING:
    from cotracker3_core.streaming import FrameTracks

try:  # ROS 2's cv_bridge (apt: ros-<distro>-cv-bridge); absent from PyPI.
    from cv_bridge import CvBridge

    _CV_BRIDGE: Any = CvBridge()
except ImportError:
    _CV_BRIDGE = None

try:  # pure-Python fallback (pip install rosbags-image); optional where cv_bridge is present
    from rosbags.image import ImageError, message_to_cvimage
except ImportError:
    message_to_cvimage = None

    class ImageError(Exception):  # placeholder so that the except clauses below stay valid
        pass


__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "SUPPORTED_ENCODINGS",
    "compressed_to_rgb",
    "frame_tracks_to_msg",
    "image_to_rgb",
    "mask_to_bool",
    "message_to_rgb",
    "ns_to_time",
    "rgb_to_image",
    "time_to_ns",
    "tracks_msg_arrays",
]

#: Raw image encodings the tracker accepts, with their number of channels (all 8 bits per channel).
SUPPORTED_ENCODINGS: dict[str, int] = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
#: Encodings accepted for masks: the colour ones (nonzero in any channel) plus OpenCV's single-channel name.
MASK_ENCODINGS: dict[str, int] = {**SUPPORTED_ENCODINGS, "8UC1": 1}
BACKENDS = ("cv_bridge", "rosbags")
DEFAULT_BACKEND = "cv_bridge" if _CV_BRIDGE is not None else "rosbags"

_NS_PER_S = 1_000_000_000


# --- time ------------------------------------------------------------------------------------------


def time_to_ns(stamp: Time) -> int:
    """builtin_interfaces/Time -> integer nanoseconds."""
    return int(stamp.sec) * _NS_PER_S + int(stamp.nanosec)


def ns_to_time(ns: int) -> Time:
    """Integer nanoseconds (>= 0) -> builtin_interfaces/Time."""
    if ns < 0:
        raise ValueError(f"a ROS time cannot be negative, got {ns} ns")
    sec, nanosec = divmod(int(ns), _NS_PER_S)
    return Time(sec=sec, nanosec=nanosec)


# --- images -> numpy ---------------------------------------------------------------------------------


def _backend(backend: str | None) -> str:
    name = backend or DEFAULT_BACKEND
    if name not in BACKENDS:
        raise ValueError(f"unknown image backend {name!r}; known: {BACKENDS}")
    if name == "cv_bridge" and _CV_BRIDGE is None:
        raise ValueError("the cv_bridge backend was requested but cv_bridge is not importable")
    if name == "rosbags" and message_to_cvimage is None:
        raise ValueError(
            "no image backend: install ROS 2 cv_bridge (apt: ros-<distro>-cv-bridge) or rosbags-image (pip)"
        )
    return name


def _checked_raw(msg: Image, encodings: dict[str, int], what: str) -> Any:
    """Validate a raw Image's size fields; returns ``msg`` or, for padded rows, an unpadded stand-in.

    rosbags-image reads ``data`` as ``height x width x channels`` and ignores ``step``; a stand-in with
    the padding removed keeps it right for cameras that pad their rows.
    """
    if msg.encoding not in encodings:
        raise ValueError(f"unsupported {what} encoding {msg.encoding!r}; supported: {', '.join(encodings)}")
    height, width = int(msg.height), int(msg.width)
    if height <= 0 or width <= 0:
        raise ValueError(f"{what} has zero size ({width}x{height})")
    row_bytes = width * encodings[msg.encoding]
    step = int(msg.step) or row_bytes
    if step < row_bytes:
        raise ValueError(f"{what} step {step} is smaller than width x channels = {row_bytes}")
    if len(msg.data) < step * height:
        raise ValueError(
            f"{what} data holds {len(msg.data)} bytes, {msg.encoding} {width}x{height} (step {step}) "
            f"needs {step * height}"
        )
    if step == row_bytes and len(msg.data) == step * height:
        return msg
    rows = np.frombuffer(msg.data, np.uint8, count=step * height).reshape(height, step)[:, :row_bytes]
    return SimpleNamespace(
        encoding=msg.encoding,
        height=height,
        width=width,
        step=row_bytes,
        is_bigendian=msg.is_bigendian,
        data=np.ascontiguousarray(rows).reshape(-1),
    )


def image_to_rgb(msg: Image, backend: str | None = None) -> np.ndarray:
    """sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8) -> RGB ``(H, W, 3)`` uint8.

    Raises:
        ValueError: unsupported encoding, zero size, or data shorter than ``step * height``.
    """
    source = _checked_raw(msg, SUPPORTED_ENCODINGS, "image")
    if _backend(backend) == "cv_bridge":
        rgb = _CV_BRIDGE.imgmsg_to_cv2(msg, desired_encoding="rgb8")
    else:
        try:
            rgb = message_to_cvimage(source, "rgb8")
        except (ImageError, cv2.error) as exc:
            raise ValueError(f"cannot convert {msg.encoding} image to rgb8: {exc}") from exc
    return np.ascontiguousarray(rgb, dtype=np.uint8)


def compressed_to_rgb(msg: CompressedImage, backend: str | None = None) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG, PNG: whatever OpenCV decodes) -> RGB ``(H, W, 3)`` uint8.

    Raises:
        ValueError: empty or undecodable data.
    """
    if len(msg.data) == 0:
        raise ValueError(f"compressed image (format {msg.format!r}) has no data")
    if _backend(backend) == "cv_bridge":
        try:
            return np.ascontiguousarray(_CV_BRIDGE.compressed_imgmsg_to_cv2(msg, "rgb8"), dtype=np.uint8)
        except Exception as exc:  # cv_bridge raises its own CvBridgeError or cv2.error
            raise ValueError(f"cannot decode compressed image (format {msg.format!r}): {exc}") from exc
    try:
        # No colour space here: rosbags assumes a BGR result, which grey PNGs/JPEGs are not.
        decoded = message_to_cvimage(msg)
    except (AssertionError, ImageError, cv2.error) as exc:
        raise ValueError(f"cannot decode compressed image (format {msg.format!r})") from exc
    if decoded is None or decoded.size == 0:
        raise ValueError(f"cannot decode compressed image (format {msg.format!r})")
    if decoded.dtype != np.uint8:  # 16-bit PNG
        decoded = (decoded >> 8).astype(np.uint8)
    if decoded.ndim == 2:
        return cv2.cvtColor(decoded, cv2.COLOR_GRAY2RGB)
    channels = decoded.shape[2]
    if channels == 3:
        return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    if channels == 4:
        return cv2.cvtColor(decoded, cv2.COLOR_BGRA2RGB)
    raise ValueError(f"compressed image decodes to {channels} channels; expected 1, 3 or 4")


def message_to_rgb(msg: Image | CompressedImage, backend: str | None = None) -> np.ndarray:
    """Either image message -> RGB ``(H, W, 3)`` uint8 (see `image_to_rgb`, `compressed_to_rgb`)."""
    if isinstance(msg, CompressedImage):
        return compressed_to_rgb(msg, backend)
    return image_to_rgb(msg, backend)


def mask_to_bool(msg: Image, backend: str | None = None) -> np.ndarray:
    """Mask image (mono8 / 8UC1; colour encodings count a pixel as set when any channel is) -> ``(H, W)`` bool.

    Raises:
        ValueError: unsupported encoding, zero size, or too little data.
    """
    source = _checked_raw(msg, MASK_ENCODINGS, "mask")
    if _backend(backend) == "cv_bridge":
        raw = _CV_BRIDGE.imgmsg_to_cv2(msg, desired_encoding="passthrough")
    else:
        try:
            raw = message_to_cvimage(source)
        except (ImageError, cv2.error) as exc:
            raise ValueError(f"cannot read {msg.encoding} mask: {exc}") from exc
    raw = np.asarray(raw)
    return raw.any(axis=2) if raw.ndim == 3 else raw != 0


# --- numpy -> messages -------------------------------------------------------------------------------


def _u8_array(values: np.ndarray) -> array.array:
    out = array.array("B")
    out.frombytes(np.ascontiguousarray(values, dtype=np.uint8).data)
    return out


def rgb_to_image(rgb: np.ndarray, header: Header | None = None, encoding: str = "rgb8") -> Image:
    """``(H, W, 3)`` uint8 RGB -> sensor_msgs/Image in ``encoding`` (rgb8, bgr8, rgba8, bgra8 or mono8)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB array, got {rgb.shape} {rgb.dtype}")
    codes = {
        "rgb8": None,
        "bgr8": cv2.COLOR_RGB2BGR,
        "rgba8": cv2.COLOR_RGB2RGBA,
        "bgra8": cv2.COLOR_RGB2BGRA,
        "mono8": cv2.COLOR_RGB2GRAY,
    }
    if encoding not in codes:
        raise ValueError(f"unsupported encoding {encoding!r}; supported: {', '.join(codes)}")
    pixels = rgb if codes[encoding] is None else cv2.cvtColor(rgb, codes[encoding])
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(pixels.shape[0]), int(pixels.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(pixels.shape[1] * SUPPORTED_ENCODINGS[encoding])
    msg.data = _u8_array(pixels)
    return msg


def frame_tracks_to_msg(
    tracks: FrameTracks,
    header: Header,
    image_size: Sequence[int],
    msg: Tracks | None = None,
) -> Tracks:
    """One frame of the engine's output -> cotracker3_msgs/Tracks.

    Args:
        tracks: ``FrameTracks`` with ``ids (N,)``, ``xy (N, 2)`` input-image pixels, ``visibility``,
            ``confidence`` ``(N,)`` float32 and ``visible (N,)`` bool.
        header: copied into the message (the source image's stamp and frame_id).
        image_size: ``(H, W)`` of the source image.
        msg: a message to fill in place (else a new one).
    """
    if msg is None:
        msg = Tracks()
    msg.header = header
    msg.refined = bool(tracks.refined)
    msg.image_height, msg.image_width = int(image_size[0]), int(image_size[1])
    xy = np.asarray(tracks.xy, dtype=np.float32).reshape(-1, 2)
    ids = np.asarray(tracks.ids)
    if ids.size and (ids.min() < 0 or ids.max() > np.iinfo(np.uint32).max):
        raise ValueError(f"track ids must fit in uint32, got range [{ids.min()}, {ids.max()}]")
    # array.array(typecode, bytes) calls frombytes: one memcpy, no per-element conversion.
    msg.ids = array.array("I", ids.astype(np.uint32).tobytes())
    msg.x = array.array("f", np.ascontiguousarray(xy[:, 0]).tobytes())
    msg.y = array.array("f", np.ascontiguousarray(xy[:, 1]).tobytes())
    msg.visibility = array.array("f", np.asarray(tracks.visibility, dtype=np.float32).tobytes())
    msg.confidence = array.array("f", np.asarray(tracks.confidence, dtype=np.float32).tobytes())
    msg.visible = array.array("B", np.asarray(tracks.visible, dtype=np.uint8).tobytes())
    return msg


def tracks_msg_arrays(msg: Tracks) -> dict[str, np.ndarray]:
    """cotracker3_msgs/Tracks -> NumPy views: ``ids (N,)`` uint32, ``xy (N, 2)`` float32, ``visibility``,
    ``confidence`` ``(N,)`` float32, ``visible (N,)`` bool."""
    x = np.frombuffer(msg.x, np.float32) if len(msg.x) else np.zeros(0, np.float32)
    y = np.frombuffer(msg.y, np.float32) if len(msg.y) else np.zeros(0, np.float32)
    return {
        "ids": np.array(msg.ids, dtype=np.uint32),
        "xy": np.stack([x, y], axis=1),
        "visibility": np.array(msg.visibility, dtype=np.float32),
        "confidence": np.array(msg.confidence, dtype=np.float32),
        "visible": np.array(msg.visible, dtype=np.uint8).astype(bool),
    }
