"""3D points from an aligned depth image: depth units, robust sampling at tracked points, pinhole
back-projection, and the pairing of colour frames with depth images by stamp. NumPy only, no ROS.

Conventions:

- Track positions ``xy`` are pixels of the colour image with pixel centres at integer coordinates (the
  engine's convention, docs/architecture.md): pixel ``(row i, column j)`` is centred on ``(j, i)`` and covers
  ``[j - 0.5, j + 0.5) x [i - 0.5, i + 0.5)``.
- The intrinsics ``K`` follow ROS ``sensor_msgs/CameraInfo`` (and OpenCV): pixel centres at integer
  coordinates too, so a track at ``(x, y)`` is at ``(u, v) = (x, y)`` for the pinhole model. Images are
  rectified (no distortion is applied).
- The depth image is aligned to the colour image (same size, same pixels) and holds the Z coordinate (along
  the optical axis, REP-118), not the range along the ray.
- 3D points are in metres, in the colour image's optical frame (x right, y down, z forward).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")

#: Depth encodings (REP-118) -> (numpy dtype of a pixel, metres per unit).
DEPTH_ENCODINGS: dict[str, tuple[np.dtype, float]] = {
    "16UC1": (np.dtype(np.uint16), 1e-3),  # millimetres, 0 = no reading
    "32FC1": (np.dtype(np.float32), 1.0),  # metres, NaN / inf / 0 = no reading
}
#: Side of the square window (pixels) whose valid depths are median-filtered at each point.
DEFAULT_WINDOW = 5


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics of a rectified image of ``width`` x ``height`` pixels (focal lengths and principal
    point in pixels, ROS/OpenCV convention: pixel centres at integer coordinates)."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def from_k(cls, k: Sequence[float], width: int, height: int) -> Intrinsics:
        """From a row-major 3x3 ``K`` (``CameraInfo.k``) and the image size it applies to.

        Raises:
            ValueError: ``K`` without 9 finite values, a focal length that is not positive (an uncalibrated
                camera publishes zeros), or an empty image size.
        """
        values = np.asarray(k, dtype=np.float64).reshape(-1)
        if values.size != 9 or not np.all(np.isfinite(values)):
            raise ValueError(f"K must hold 9 finite values, got {values.tolist()}")
        fx, fy, cx, cy = float(values[0]), float(values[4]), float(values[2]), float(values[5])
        if fx <= 0 or fy <= 0:
            raise ValueError(f"K has no positive focal lengths (fx {fx}, fy {fy}): the camera is not calibrated")
        if width <= 0 or height <= 0:
            raise ValueError(f"CameraInfo has no image size ({width}x{height})")
        return cls(fx, fy, cx, cy, int(width), int(height))


def check_alignment(image_hw: Sequence[int], depth_hw: Sequence[int], intrinsics: Intrinsics | None) -> None:
    """That a depth image and intrinsics can give 3D points for a colour image: same sizes, intrinsics known.

    Args:
        image_hw: ``(H, W)`` of the colour image; depth_hw: of the depth image.
        intrinsics: of the colour camera, None when no CameraInfo has been received.

    Raises:
        ValueError: saying what does not match (no rescaling is attempted: a mismatch is a set-up error).
    """
    h, w = int(image_hw[0]), int(image_hw[1])
    dh, dw = int(depth_hw[0]), int(depth_hw[1])
    if (dh, dw) != (h, w):
        raise ValueError(
            f"the depth image is {dw}x{dh}, the colour image {w}x{h}: depth must be aligned to the colour image "
            "(e.g. aligned_depth_to_color)"
        )
    if intrinsics is None:
        raise ValueError("no CameraInfo received yet (camera_info_topic)")
    if (intrinsics.height, intrinsics.width) != (h, w):
        raise ValueError(
            f"CameraInfo is for {intrinsics.width}x{intrinsics.height} images, the colour image is {w}x{h}: "
            "use the colour camera's camera_info"
        )


def depth_to_metres(raw: np.ndarray, encoding: str, valid_range_m: tuple[float, float] = (0.0, np.inf)) -> np.ndarray:
    """A depth image as stored -> ``(H, W)`` float32 metres, NaN where there is no valid reading.

    Args:
        raw: ``(H, W)`` array of the encoding's dtype (uint16 millimetres for 16UC1, float32 metres for 32FC1).
        encoding: ``16UC1`` or ``32FC1``.
        valid_range_m: readings are valid in ``(low, high]`` metres; 0, NaN, inf and readings outside are NaN.

    Raises:
        ValueError: an unsupported encoding, or an array that is not 2-D of the encoding's dtype.
    """
    if encoding not in DEPTH_ENCODINGS:
        raise ValueError(f"unsupported depth encoding {encoding!r}; supported: {', '.join(DEPTH_ENCODINGS)}")
    dtype, scale = DEPTH_ENCODINGS[encoding]
    if raw.ndim != 2 or raw.dtype != dtype:
        raise ValueError(f"a {encoding} depth image is an (H, W) {dtype} array, got {raw.shape} {raw.dtype}")
    metres = raw.astype(np.float32) * np.float32(scale)
    low, high = valid_range_m
    with np.errstate(invalid="ignore"):
        invalid = ~np.isfinite(metres) | (metres <= low) | (metres > high)
    metres[invalid] = np.nan
    return metres


def sample_depth(
    depth_m: np.ndarray, xy: np.ndarray, window: int = DEFAULT_WINDOW, min_valid: int | None = None
) -> np.ndarray:
    """Depth at each point: the median of the valid (finite) pixels in a ``window`` x ``window`` square around
    the pixel holding the point (clipped at the image border).

    Args:
        depth_m: ``(H, W)`` float32 metres, NaN = no reading (`depth_to_metres`).
        xy: ``(N, 2)`` track positions, pixels (centres at integers, see the module docstring).
        window: odd window side in pixels.
        min_valid: fewest valid pixels a window needs; default: more than half of a full window (13 of 25), so
            that a point over a hole, or at its edge, gets no depth rather than one from the hole's far side.

    Returns:
        ``(N,)`` float32 metres, NaN where the point is not finite, outside the image, or its window has fewer
        than ``min_valid`` valid pixels.
    """
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd number, got {window}")
    need = window * window // 2 + 1 if min_valid is None else int(min_valid)
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    height, width = depth_m.shape
    out = np.full(len(xy), np.nan, dtype=np.float32)
    finite = np.all(np.isfinite(xy), axis=1)
    cols = np.floor(np.where(finite, xy[:, 0], -1.0) + 0.5).astype(np.int64)  # the pixel whose centre is nearest
    rows = np.floor(np.where(finite, xy[:, 1], -1.0) + 0.5).astype(np.int64)
    inside = finite & (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    if not inside.any():
        return out
    r = window // 2
    padded = np.pad(depth_m.astype(np.float32, copy=False), r, constant_values=np.nan)
    offsets = np.arange(window)
    idx = np.flatnonzero(inside)
    # (n, window, window) patches; padded index = image index + r, so a patch starts at the point's row/column.
    patches = padded[rows[idx, None, None] + offsets[None, :, None], cols[idx, None, None] + offsets[None, None, :]]
    patches = patches.reshape(len(idx), -1)
    enough = np.sum(np.isfinite(patches), axis=1) >= need
    if enough.any():
        out[idx[enough]] = np.nanmedian(patches[enough], axis=1)
    return out


def back_project(xy: np.ndarray, z: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """Pinhole back-projection of track positions with their depths.

    Args:
        xy: ``(N, 2)`` pixels (centres at integers).
        z: ``(N,)`` metres along the optical axis (NaN propagates).
        intrinsics: of the image ``xy`` is in.

    Returns:
        ``(N, 3)`` float32 ``(X, Y, Z)`` metres in the optical frame.
    """
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    z = np.asarray(z, dtype=np.float64).reshape(-1)
    x = (xy[:, 0] - intrinsics.cx) / intrinsics.fx * z
    y = (xy[:, 1] - intrinsics.cy) / intrinsics.fy * z
    return np.stack([x, y, z], axis=1).astype(np.float32)


def points_3d(
    depth_m: np.ndarray,
    intrinsics: Intrinsics,
    xy: np.ndarray,
    visible: np.ndarray,
    window: int = DEFAULT_WINDOW,
) -> np.ndarray:
    """3D positions of tracked points: `sample_depth` then `back_project`.

    Args:
        depth_m: ``(H, W)`` float32 metres aligned to the colour image (NaN = no reading).
        intrinsics: of the colour image; its size must be the depth image's.
        xy: ``(N, 2)`` pixels (centres at integers); visible: ``(N,)`` bool.

    Returns:
        ``(N, 3)`` float32 metres; rows of NaN where the depth is missing or the point is not visible.

    Raises:
        ValueError: the intrinsics are for another image size than the depth image's.
    """
    if depth_m.shape != (intrinsics.height, intrinsics.width):
        raise ValueError(
            f"the intrinsics are for {intrinsics.width}x{intrinsics.height} images, the depth image is "
            f"{depth_m.shape[1]}x{depth_m.shape[0]}"
        )
    z = sample_depth(depth_m, xy, window)
    z[~np.asarray(visible, dtype=bool).reshape(-1)] = np.nan
    return back_project(xy, z, intrinsics)


class StampBuffer(Generic[T]):
    """The most recent items of a stream by stamp (ns), at most ``maxlen`` of them, thread-safe: a depth image
    callback `put`s, the tracking thread looks up the partner of each colour frame with `nearest`.

    Args:
        maxlen: items kept; the oldest is discarded first.
    """

    #: A newest item this much (ns) older than the looked-up stamp means the stream has stopped: no waiting.
    STALE_NS = 1_000_000_000

    def __init__(self, maxlen: int) -> None:
        if maxlen < 1:
            raise ValueError(f"maxlen must be >= 1, got {maxlen}")
        self._items: deque[tuple[int, T]] = deque(maxlen=maxlen)
        self._cond = threading.Condition()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def put(self, stamp_ns: int, item: T) -> None:
        """Keep ``item`` under ``stamp_ns`` (a repeated stamp replaces the earlier item)."""
        with self._cond:
            self._items = deque(((s, i) for s, i in self._items if s != stamp_ns), maxlen=self._items.maxlen)
            self._items.append((int(stamp_ns), item))
            self._cond.notify_all()

    def clear(self) -> None:
        with self._cond:
            self._items.clear()

    def nearest(self, stamp_ns: int, max_skew_ns: int, wait_s: float = 0.0) -> tuple[int, T] | None:
        """The item stamped ``stamp_ns``, else the one nearest to it within ``max_skew_ns``; None if none.

        With ``wait_s`` > 0, a partner that may still be on its way is waited for, up to ``wait_s``: while there
        is no exact match and the newest item is earlier than ``stamp_ns + max_skew_ns`` (a later one could be
        nearer) but not older than `STALE_NS` before ``stamp_ns`` (the stream is alive). Returns
        ``(stamp, item)``.
        """
        stamp_ns, max_skew_ns = int(stamp_ns), int(max_skew_ns)

        def settled() -> bool:
            if not self._items or any(s == stamp_ns for s, _ in self._items):
                return True
            newest = self._items[-1][0]
            return newest >= stamp_ns + max_skew_ns or newest < stamp_ns - self.STALE_NS

        with self._cond:
            if wait_s > 0:
                self._cond.wait_for(settled, timeout=wait_s)
            best = min(self._items, key=lambda item: abs(item[0] - stamp_ns), default=None)
            if best is None or abs(best[0] - stamp_ns) > max_skew_ns:
                return None
            return best
