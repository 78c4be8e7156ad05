"""Draw a frame's tracks on its image for the node's ``debug_image`` topic (OpenCV only, no ROS)."""

from __future__ import annotations

import cv2
import numpy as np

UNTRAINED_TEXT = "UNTRAINED WEIGHTS"


def id_colours(ids: np.ndarray) -> np.ndarray:
    """A stable, well-spread RGB colour per track id, ``(N,) -> (N, 3)`` uint8."""
    hue = (np.asarray(ids, dtype=np.int64) * 37) % 180  # OpenCV hue range is 0..179
    hsv = np.stack([hue, np.full_like(hue, 220), np.full_like(hue, 255)], axis=-1).astype(np.uint8)
    return cv2.cvtColor(hsv[None], cv2.COLOR_HSV2RGB)[0]


def draw_tracks(
    rgb: np.ndarray,
    ids: np.ndarray,
    xy: np.ndarray,
    visible: np.ndarray,
    untrained: bool = False,
) -> np.ndarray:
    """A copy of ``rgb (H, W, 3)`` with each point drawn: filled when visible, a ring when occluded.

    Args:
        ids: (N,) track ids (pick the colours).
        xy: (N, 2) pixels of this image.
        visible: (N,) bool.
        untrained: stamp "UNTRAINED WEIGHTS" across the image, so nobody mistakes noise for tracking.
    """
    out = np.ascontiguousarray(rgb, dtype=np.uint8).copy()
    h, w = out.shape[:2]
    radius = max(2, round(min(h, w) / 120))
    for (x, y), colour, vis in zip(np.asarray(xy), id_colours(ids), np.asarray(visible), strict=True):
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        centre = (round(float(x)), round(float(y)))
        cv2.circle(out, centre, radius, tuple(int(c) for c in colour), -1 if vis else 1, cv2.LINE_AA)
    if untrained:
        scale = max(0.4, min(h, w) / 400)
        thickness = max(1, round(scale * 2))
        (tw, th), _ = cv2.getTextSize(UNTRAINED_TEXT, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        org = (max(0, (w - tw) // 2), min(h - 1, th + 8))
        cv2.putText(out, UNTRAINED_TEXT, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
        cv2.putText(out, UNTRAINED_TEXT, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 40, 40), thickness, cv2.LINE_AA)
    return out
