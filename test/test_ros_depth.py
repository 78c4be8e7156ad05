"""The ROS side of 3D tracks without DDS: depth Image -> NumPy (cotracker3_ros.depth_input), the tracks' PointCloud2
(cotracker3_ros.point_cloud) decoded independently of how it was built, and Tracks with depth off."""

from __future__ import annotations

import struct
import sys

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from cotracker3_msgs.msg import Tracks
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image, PointCloud2, PointField
from std_msgs.msg import Header

from cotracker3_core.streaming import FrameTracks
from cotracker3_ros.conversions import frame_tracks_to_msg
from cotracker3_ros.depth_input import depth_image_to_array, sibling_topic
from cotracker3_ros.point_cloud import HAVE_SENSOR_MSGS_PY, tracks_cloud

HEADER = Header(stamp=Time(sec=12, nanosec=345), frame_id="camera_color_optical_frame")


def depth_image(pixels: np.ndarray, encoding: str, pad: int = 0, big_endian: bool = False) -> Image:
    h, w = pixels.shape
    stored = pixels.astype(pixels.dtype.newbyteorder(">" if big_endian else "<"))
    rows = np.zeros((h, w * pixels.itemsize + pad), np.uint8)
    rows[:, : w * pixels.itemsize] = stored.view(np.uint8).reshape(h, -1)
    return Image(header=HEADER, height=h, width=w, encoding=encoding, is_bigendian=int(big_endian),
                 step=rows.shape[1], data=rows.tobytes())  # fmt: skip


def test_depth_image_to_array_16uc1_32fc1_padding_and_byte_order() -> None:
    mm = np.array([[0, 1, 2], [1000, 65535, 7]], np.uint16)
    m = np.array([[0.5, np.nan, 1.25], [np.inf, 0.0, 3.0]], np.float32)
    for pixels, encoding in ((mm, "16UC1"), (m, "32FC1")):
        for pad in (0, 6):
            for big in (False, True):
                got = depth_image_to_array(depth_image(pixels, encoding, pad, big))
                assert got.dtype == pixels.dtype and got.dtype.isnative
                np.testing.assert_array_equal(got, pixels)


def test_depth_image_to_array_refuses_what_it_cannot_read() -> None:
    good = depth_image(np.ones((2, 3), np.uint16), "16UC1")
    good.encoding = "mono16"
    with pytest.raises(ValueError, match=r"unsupported depth encoding 'mono16'; supported: 16UC1 .*32FC1"):
        depth_image_to_array(good)
    short = depth_image(np.ones((2, 3), np.uint16), "16UC1")
    short.data = short.data[:-1]
    with pytest.raises(ValueError, match="malformed 16UC1 depth image: 3x2, step 6, 11 bytes"):
        depth_image_to_array(short)
    narrow = depth_image(np.ones((2, 3), np.float32), "32FC1")
    narrow.step = 8  # less than 3 x 4 bytes
    with pytest.raises(ValueError, match="malformed 32FC1"):
        depth_image_to_array(narrow)


def test_sibling_topic() -> None:
    assert sibling_topic("/camera/color/image_raw", "camera_info") == "/camera/color/camera_info"
    assert sibling_topic("/image", "camera_info") == "/camera_info"
    assert sibling_topic("image", "camera_info") == "camera_info"


def decode(cloud: PointCloud2) -> np.ndarray:
    """The points, with a dtype built from the message's own ``fields``."""
    types = {PointField.FLOAT32: np.float32, PointField.UINT32: np.uint32, PointField.UINT8: np.uint8}
    assert all(f.count == 1 for f in cloud.fields)
    byte_order = ">" if cloud.is_bigendian else "<"
    dtype = np.dtype({"names": [f.name for f in cloud.fields],
                      "formats": [np.dtype(types[f.datatype]).newbyteorder(byte_order) for f in cloud.fields],
                      "offsets": [f.offset for f in cloud.fields], "itemsize": cloud.point_step})  # fmt: skip
    return np.frombuffer(bytes(cloud.data), dtype, count=cloud.height * cloud.width)


def cloud_inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ids = np.array([3, 7, 8, 4_000_000_000], np.int64)
    xyz = np.array([[0.1, -0.2, 1.5], [np.nan, np.nan, np.nan], [-1.0, 0.25, 0.75], [2.0, 3.0, 4.0]], np.float32)
    visible = np.array([True, False, False, True])
    return ids, xyz, visible


def test_cloud_has_one_point_per_track_with_3d() -> None:
    ids, xyz, visible = cloud_inputs()
    cloud = tracks_cloud(HEADER, ids, xyz, visible, use_sensor_msgs_py=False)
    assert cloud.header == HEADER and (cloud.height, cloud.width) == (1, 3)
    assert [(f.name, f.datatype, f.offset, f.count) for f in cloud.fields] == [
        ("x", PointField.FLOAT32, 0, 1), ("y", PointField.FLOAT32, 4, 1), ("z", PointField.FLOAT32, 8, 1),
        ("id", PointField.UINT32, 12, 1), ("visible", PointField.UINT8, 16, 1),
    ]  # fmt: skip
    assert cloud.point_step == 17 and cloud.row_step == 51 and len(cloud.data) == 51  # packed
    assert bool(cloud.is_bigendian) == (sys.byteorder == "big")
    points = decode(cloud)
    keep = [0, 2, 3]  # the NaN row has no point
    np.testing.assert_array_equal(np.stack([points["x"], points["y"], points["z"]], 1), xyz[keep])
    assert points["id"].tolist() == ids[keep].tolist() and points["visible"].tolist() == [1, 0, 1]
    # The same bytes written field by field.
    order = ">" if cloud.is_bigendian else "<"
    expected = b"".join(struct.pack(f"{order}fffIB", *xyz[i], int(ids[i]), int(visible[i])) for i in keep)
    assert bytes(cloud.data) == expected
    empty = tracks_cloud(HEADER, ids, np.full((4, 3), np.nan, np.float32), visible, use_sensor_msgs_py=False)
    assert empty.width == 0 and len(empty.data) == 0 and len(empty.fields) == 5


@pytest.mark.skipif(not HAVE_SENSOR_MSGS_PY, reason="sensor_msgs_py is not importable (not on PyPI; a system ROS 2)")
def test_cloud_with_and_without_sensor_msgs_py_is_the_same_message() -> None:
    ids, xyz, visible = cloud_inputs()
    with_py = tracks_cloud(HEADER, ids, xyz, visible, use_sensor_msgs_py=True)
    without = tracks_cloud(HEADER, ids, xyz, visible, use_sensor_msgs_py=False)
    assert serialize_message(with_py) == serialize_message(without)


def test_sensor_msgs_py_requested_where_it_is_missing() -> None:
    if HAVE_SENSOR_MSGS_PY:
        pytest.skip("sensor_msgs_py is importable here")
    with pytest.raises(ValueError, match="sensor_msgs_py was requested"):
        tracks_cloud(HEADER, *cloud_inputs(), use_sensor_msgs_py=True)


def test_tracks_without_depth_have_empty_3d_arrays() -> None:
    tracks = FrameTracks(stamp=5, frame_index=0, refined=False, ids=np.array([1, 2]), xy=np.ones((2, 2), np.float32),
                         visibility=np.ones(2, np.float32), confidence=np.ones(2, np.float32),
                         visible=np.ones(2, bool))  # fmt: skip
    msg = frame_tracks_to_msg(tracks, HEADER, (4, 4))
    back = deserialize_message(serialize_message(msg), Tracks)
    assert len(back.x) == 2 and (len(back.x3d), len(back.y3d), len(back.z3d)) == (0, 0, 0)
