"""cotracker3_ros.conversions on real rclpy messages: every image encoding, compressed images, masks, and
the Tracks fill whose per-frame cost is measured for 1,024 points.

Images are checked through the rosbags-image backend for every encoding. ROS 2's cv_bridge is not
installable from PyPI (the PyPI ``cv-bridge`` is an old ROS 1 repack that breaks on numpy 2), so the
cv_bridge-vs-rosbags comparison only runs where a system ROS provides cv_bridge and skips here.
"""

from __future__ import annotations

import array
import statistics
import time

import cv2
import numpy as np
import pytest
from builtin_interfaces.msg import Time
from cotracker3_msgs.msg import Tracks
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from cotracker3_core.streaming import FrameTracks
from cotracker3_ros import conversions
from cotracker3_ros.conversions import (
    SUPPORTED_ENCODINGS,
    compressed_to_rgb,
    frame_tracks_to_msg,
    image_to_rgb,
    mask_to_bool,
    message_to_rgb,
    ns_to_time,
    rgb_to_image,
    time_to_ns,
    tracks_msg_arrays,
)
from cotracker3_ros.debug_image import draw_tracks

N_POINTS = 1024
HAVE_CV_BRIDGE = conversions._CV_BRIDGE is not None
NO_CV_BRIDGE = (
    "ROS 2 cv_bridge is not importable: it is not on PyPI (the PyPI cv-bridge 1.13 is an old ROS 1 repack "
    "that breaks on numpy 2); a system ROS 2 install provides it. The rosbags-image path is tested instead."
)


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)  # odd sizes on purpose


def expected_rgb(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """What a round trip through ``encoding`` must give: exact, except mono8 which loses colour."""
    if encoding == "mono8":
        return cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    return rgb


def raw_image(pixels: np.ndarray, encoding: str, step: int | None = None) -> Image:
    """An Image built by hand (not by rgb_to_image), rows optionally padded to ``step`` bytes."""
    height, width = pixels.shape[:2]
    row = pixels.reshape(height, -1)
    step = step or row.shape[1]
    padded = np.zeros((height, step), np.uint8)
    padded[:, : row.shape[1]] = row
    msg = Image(height=height, width=width, encoding=encoding, step=step)
    msg.data = array.array("B", padded.tobytes())
    return msg


# --- time ---------------------------------------------------------------------------------------


def test_time_round_trip() -> None:
    for ns in (0, 1, 999_999_999, 1_000_000_000, 1_732_000_000_123_456_789):
        assert time_to_ns(ns_to_time(ns)) == ns
    assert ns_to_time(1_500_000_000) == Time(sec=1, nanosec=500_000_000)
    with pytest.raises(ValueError, match="negative"):
        ns_to_time(-1)


# --- raw images ------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", list(SUPPORTED_ENCODINGS))
def test_every_encoding_to_rgb_via_rosbags(rgb: np.ndarray, encoding: str) -> None:
    msg = rgb_to_image(rgb, Header(frame_id="cam"), encoding)
    assert msg.encoding == encoding and msg.step == rgb.shape[1] * SUPPORTED_ENCODINGS[encoding]
    out = image_to_rgb(msg, backend="rosbags")
    assert out.dtype == np.uint8 and out.shape == rgb.shape and out.flags.c_contiguous
    np.testing.assert_array_equal(out, expected_rgb(rgb, encoding))
    np.testing.assert_array_equal(message_to_rgb(msg, backend="rosbags"), out)


@pytest.mark.parametrize("encoding", list(SUPPORTED_ENCODINGS))
def test_hand_built_messages_with_padded_rows(rgb: np.ndarray, encoding: str) -> None:
    """Cameras may pad rows (step > width * channels); channel order must follow the encoding name."""
    orders = {
        "rgb8": rgb,
        "bgr8": rgb[:, :, ::-1],
        "rgba8": np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]),
        "bgra8": np.dstack([rgb[:, :, ::-1], np.full(rgb.shape[:2], 7, np.uint8)]),
        "mono8": cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY),
    }
    pixels = np.ascontiguousarray(orders[encoding])
    width_bytes = rgb.shape[1] * SUPPORTED_ENCODINGS[encoding]
    for step in (width_bytes, width_bytes + 11):
        out = image_to_rgb(raw_image(pixels, encoding, step), backend="rosbags")
        np.testing.assert_array_equal(out, expected_rgb(rgb, encoding))


@pytest.mark.skipif(not HAVE_CV_BRIDGE, reason=NO_CV_BRIDGE)
@pytest.mark.parametrize("encoding", list(SUPPORTED_ENCODINGS))
def test_cv_bridge_and_rosbags_agree(rgb: np.ndarray, encoding: str) -> None:
    msg = rgb_to_image(rgb, encoding=encoding)
    np.testing.assert_array_equal(image_to_rgb(msg, "cv_bridge"), image_to_rgb(msg, "rosbags"))
    mask = raw_image((rgb[:, :, 0] > 128).astype(np.uint8) * 255, "mono8")
    np.testing.assert_array_equal(mask_to_bool(mask, "cv_bridge"), mask_to_bool(mask, "rosbags"))
    for ext in (".png", ".jpg"):
        compressed = CompressedImage(format=ext[1:])
        compressed.data = array.array("B", cv2.imencode(ext, rgb[:, :, ::-1])[1].tobytes())
        np.testing.assert_array_equal(
            compressed_to_rgb(compressed, "cv_bridge"), compressed_to_rgb(compressed, "rosbags")
        )


def test_default_backend_is_reported() -> None:
    assert conversions.DEFAULT_BACKEND == ("cv_bridge" if HAVE_CV_BRIDGE else "rosbags")
    with pytest.raises(ValueError, match="unknown image backend"):
        image_to_rgb(rgb_to_image(np.zeros((2, 2, 3), np.uint8)), backend="pillow")
    if not HAVE_CV_BRIDGE:
        with pytest.raises(ValueError, match="cv_bridge is not importable"):
            image_to_rgb(rgb_to_image(np.zeros((2, 2, 3), np.uint8)), backend="cv_bridge")


def test_bad_raw_images_raise_clear_errors(rgb: np.ndarray) -> None:
    cases = {
        "unsupported image encoding 'yuv422'": dict(encoding="yuv422"),
        "unsupported image encoding '16UC1'": dict(encoding="16UC1"),
        "zero size": dict(width=0),
        "step 10 is smaller": dict(step=10),
        "needs": dict(data=array.array("B", bytes(50))),
    }
    for expected, changes in cases.items():
        msg = rgb_to_image(rgb)
        for name, value in changes.items():
            setattr(msg, name, value)
        with pytest.raises(ValueError, match=expected):
            image_to_rgb(msg, backend="rosbags")
    with pytest.raises(ValueError, match="zero size"):
        image_to_rgb(Image(encoding="rgb8"), backend="rosbags")
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        rgb_to_image(rgb[:, :, 0])
    with pytest.raises(ValueError, match="unsupported encoding"):
        rgb_to_image(rgb, encoding="yuv422")


# --- compressed ------------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_compressed_colour_and_grey(rgb: np.ndarray, ext: str) -> None:
    if ext == ".jpg":  # JPEG needs a smooth picture to stay close; noise would be destroyed
        rgb = cv2.resize(rgb[:4, :4], (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)
    colour = CompressedImage(format=ext[1:])
    colour.data = array.array("B", cv2.imencode(ext, rgb[:, :, ::-1])[1].tobytes())
    out = compressed_to_rgb(colour, backend="rosbags")
    assert out.shape == rgb.shape and out.dtype == np.uint8
    if ext == ".png":
        np.testing.assert_array_equal(out, rgb)
    else:  # lossy; a swapped channel order would show as a large error on this noise image
        assert np.abs(out.astype(int) - rgb).mean() < 5
        assert np.abs(out.astype(int) - rgb).mean() < np.abs(out[:, :, ::-1].astype(int) - rgb).mean()

    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    mono = CompressedImage(format=ext[1:])
    mono.data = array.array("B", cv2.imencode(ext, grey)[1].tobytes())
    out = message_to_rgb(mono, backend="rosbags")
    assert out.shape == rgb.shape
    np.testing.assert_array_equal(out[:, :, 0], out[:, :, 2])  # grey stays grey


def test_compressed_with_alpha_and_errors(rgb: np.ndarray) -> None:
    rgba = np.dstack([rgb[:, :, ::-1], np.full(rgb.shape[:2], 9, np.uint8)])
    msg = CompressedImage(format="png")
    msg.data = array.array("B", cv2.imencode(".png", rgba)[1].tobytes())
    np.testing.assert_array_equal(compressed_to_rgb(msg, backend="rosbags"), rgb)
    with pytest.raises(ValueError, match="has no data"):
        compressed_to_rgb(CompressedImage(format="jpeg"), backend="rosbags")
    garbage = CompressedImage(format="jpeg")
    garbage.data = array.array("B", b"definitely not a jpeg")
    with pytest.raises(ValueError, match="cannot decode compressed image"):
        compressed_to_rgb(garbage, backend="rosbags")


# --- masks -----------------------------------------------------------------------------------------


def test_masks(rgb: np.ndarray) -> None:
    inside = rgb[:, :, 0] > 128
    for encoding in ("mono8", "8UC1"):
        np.testing.assert_array_equal(mask_to_bool(raw_image(inside.astype(np.uint8) * 255, encoding)), inside)
    np.testing.assert_array_equal(mask_to_bool(raw_image(inside.astype(np.uint8), "mono8", step=60)), inside)
    colour = np.zeros_like(rgb)
    colour[inside, 2] = 1  # only the blue channel set
    np.testing.assert_array_equal(mask_to_bool(rgb_to_image(colour)), inside)
    with pytest.raises(ValueError, match="unsupported mask encoding '32FC1'"):
        mask_to_bool(Image(height=1, width=1, encoding="32FC1", step=4, data=array.array("B", bytes(4))))
    with pytest.raises(ValueError, match="zero size"):
        mask_to_bool(Image(encoding="mono8"))


# --- tracks ----------------------------------------------------------------------------------------


def make_frame_tracks(n: int = N_POINTS, seed: int = 0) -> FrameTracks:
    rng = np.random.default_rng(seed)
    visibility = rng.uniform(0, 1, n).astype(np.float32)
    confidence = rng.uniform(0, 1, n).astype(np.float32)
    return FrameTracks(
        stamp=1_732_000_000_123_456_789,
        frame_index=42,
        refined=bool(seed % 2),
        ids=np.arange(10, 10 + n, dtype=np.int64),
        xy=rng.uniform(0, 480, (n, 2)).astype(np.float32),
        visibility=visibility,
        confidence=confidence,
        visible=visibility * confidence > 0.6,
    )


def test_frame_tracks_to_msg_round_trip() -> None:
    tracks = make_frame_tracks(seed=1)
    header = Header(stamp=ns_to_time(tracks.stamp), frame_id="camera_optical_frame")
    msg = frame_tracks_to_msg(tracks, header, (480, 640))
    back = deserialize_message(serialize_message(msg), Tracks)
    assert back.header.frame_id == "camera_optical_frame" and time_to_ns(back.header.stamp) == tracks.stamp
    assert back.refined and (back.image_height, back.image_width) == (480, 640)
    for name in ("ids", "x", "y", "visibility", "confidence", "visible"):
        assert isinstance(getattr(back, name), array.array), name  # the cheap representation
    arrays = tracks_msg_arrays(back)
    np.testing.assert_array_equal(arrays["ids"], tracks.ids)
    np.testing.assert_array_equal(arrays["xy"], tracks.xy)
    np.testing.assert_array_equal(arrays["visibility"], tracks.visibility)
    np.testing.assert_array_equal(arrays["confidence"], tracks.confidence)
    np.testing.assert_array_equal(arrays["visible"], tracks.visible)

    empty = frame_tracks_to_msg(make_frame_tracks(n=0), header, (480, 640))
    assert len(empty.ids) == 0 and tracks_msg_arrays(empty)["xy"].shape == (0, 2)
    negative = make_frame_tracks(n=2)
    negative.ids = np.array([-1, 3])
    with pytest.raises(ValueError, match="uint32"):
        frame_tracks_to_msg(negative, header, (480, 640))


def test_tracks_message_cost_for_1024_points(capsys: pytest.CaptureFixture[str]) -> None:
    """Per-frame cost of FrameTracks -> Tracks (fill) and of serialising it, 1,024 points. Measured and printed;
    the bound only catches a fall back to per-element Python conversion (tens of milliseconds)."""
    tracks = make_frame_tracks()
    header = Header(stamp=ns_to_time(tracks.stamp), frame_id="camera_optical_frame")
    for _ in range(20):  # warm-up
        serialize_message(frame_tracks_to_msg(tracks, header, (480, 640)))
    fill, total = [], []
    for _ in range(300):
        t0 = time.perf_counter()
        msg = frame_tracks_to_msg(tracks, header, (480, 640))
        t1 = time.perf_counter()
        data = serialize_message(msg)
        t2 = time.perf_counter()
        fill.append(t1 - t0)
        total.append(t2 - t0)
    with capsys.disabled():
        print(
            f"\n[measure] FrameTracks -> Tracks, {N_POINTS} points: "
            f"fill median {statistics.median(fill) * 1e6:.0f} us; "
            f"fill + serialise median {statistics.median(total) * 1e6:.0f} us, p90 "
            f"{np.percentile(total, 90) * 1e6:.0f} us ({len(data)} bytes)"
        )
    assert statistics.median(total) < 5e-3


def test_debug_drawing_marks_untrained(rgb: np.ndarray) -> None:
    ids, xy, visible = np.array([0, 1]), np.array([[10.0, 10.0], [40.0, 30.0]]), np.array([True, False])
    plain = draw_tracks(rgb, ids, xy, visible)
    marked = draw_tracks(rgb, ids, xy, visible, untrained=True)
    assert plain.shape == rgb.shape and not np.array_equal(plain, rgb)
    assert not np.array_equal(marked, plain)
    np.testing.assert_array_equal(rgb, np.random.default_rng(0).integers(0, 256, rgb.shape, dtype=np.uint8))
