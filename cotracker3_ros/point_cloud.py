"""The tracked points' 3D positions as a ``sensor_msgs/PointCloud2`` (for RViz and point-cloud tools).

One point per track with a valid 3D position, ``height`` 1 (unorganised), in the optical frame of the source
image (``header`` copied from it). Fields, in the machine's byte order (``is_bigendian``), packed (``point_step``
17, no padding): ``x``, ``y``, ``z`` FLOAT32 metres at offsets 0, 4, 8; ``id`` UINT32 (the track id) at 12;
``visible`` UINT8 at 16.

Built with ``sensor_msgs_py.point_cloud2.create_cloud`` when it is importable (a system ROS 2), else from the same
NumPy structured array directly: both give the same message, byte for byte. Packed, because Humble's
``create_cloud`` has no ``point_step`` argument and accepts only the packed dtype of the fields.
"""

from __future__ import annotations

import array
import sys

import numpy as np
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

try:  # ROS 2's sensor_msgs_py (apt: ros-<distro>-sensor-msgs-py); not on PyPI
    from sensor_msgs_py.point_cloud2 import create_cloud as _create_cloud
except ImportError:
    _create_cloud = None

__all__ = ["CLOUD_FIELDS", "HAVE_SENSOR_MSGS_PY", "POINT_DTYPE", "tracks_cloud"]

HAVE_SENSOR_MSGS_PY = _create_cloud is not None
#: One point of the cloud: (name, PointField datatype, NumPy type, offset).
_LAYOUT = (
    ("x", PointField.FLOAT32, np.float32, 0),
    ("y", PointField.FLOAT32, np.float32, 4),
    ("z", PointField.FLOAT32, np.float32, 8),
    ("id", PointField.UINT32, np.uint32, 12),
    ("visible", PointField.UINT8, np.uint8, 16),
)
POINT_DTYPE = np.dtype(
    {"names": [n for n, *_ in _LAYOUT], "formats": [f for _, _, f, _ in _LAYOUT], "offsets": [o for *_, o in _LAYOUT]}
)
POINT_STEP = POINT_DTYPE.itemsize  # 17
CLOUD_FIELDS = [PointField(name=n, offset=o, datatype=t, count=1) for n, t, _, o in _LAYOUT]


def tracks_cloud(
    header: Header, ids: np.ndarray, xyz: np.ndarray, visible: np.ndarray, use_sensor_msgs_py: bool | None = None
) -> PointCloud2:
    """The points with finite 3D positions as a PointCloud2.

    Args:
        header: the source image's header (stamp, optical frame_id).
        ids: ``(N,)`` track ids; xyz: ``(N, 3)`` metres, NaN rows are left out; visible: ``(N,)`` bool.
        use_sensor_msgs_py: build with sensor_msgs_py (True), without (False), or with it when importable (None).
    """
    xyz = np.asarray(xyz, dtype=np.float32).reshape(-1, 3)
    keep = np.all(np.isfinite(xyz), axis=1)
    points = np.zeros(int(keep.sum()), POINT_DTYPE)
    points["x"], points["y"], points["z"] = xyz[keep, 0], xyz[keep, 1], xyz[keep, 2]
    points["id"] = np.asarray(ids, dtype=np.uint32)[keep]
    points["visible"] = np.asarray(visible, dtype=np.uint8)[keep]
    if use_sensor_msgs_py or (use_sensor_msgs_py is None and HAVE_SENSOR_MSGS_PY):
        if _create_cloud is None:
            raise ValueError("sensor_msgs_py was requested but is not importable")
        return _create_cloud(header, CLOUD_FIELDS, points)
    data = array.array("B")
    data.frombytes(points.tobytes())
    return PointCloud2(  # what create_cloud makes of a structured array
        header=header,
        height=1,
        width=len(points),
        is_dense=False,
        is_bigendian=sys.byteorder != "little",
        fields=CLOUD_FIELDS,
        point_step=POINT_STEP,
        row_step=POINT_STEP * len(points),
        data=data,
    )
