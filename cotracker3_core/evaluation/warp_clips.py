"""Clips with exact ground truth from real photographs: a camera moving over a planar scene.

A clip is a photograph seen through a smoothly moving homography (rotation, scale, translation and
perspective), with opaque occluders — shapes textured with crops of other photographs — crossing the
frame, and an optional global lighting change. Ground truth is exact by construction: a point is fixed in
the photograph's coordinates, its position in frame t is the inverse of that frame's homography applied
to it, and it is visible iff it is inside the frame and no occluder covers its nearest pixel.

This is the accuracy protocol's clip generator (``cotracker3_core.evaluation.protocol``: held-out clips
from photographs a model never saw) and one of the training scene kinds (``training.data``: clips from
training photographs). Coordinates are pixels of the output frame, pixel-centre convention (the centre of
the top-left pixel is (0, 0)), x right, y down.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["CameraPath", "WarpClip", "WarpClipConfig", "camera_path", "make_warp_clip"]

_MAX_QUAD_TRIES = 50


@dataclass(frozen=True)
class WarpClipConfig:
    """Size and randomness ranges of one clip (defaults: the accuracy protocol's clips).

    Attributes:
        num_frames: T.
        height, width: output frame size in pixels.
        num_points: N tracked points (fewer when the scene has fewer candidates, which is rare).
        num_keyframes: camera poses drawn over the clip; the motion interpolates them smoothly.
        rotation_deg: max absolute in-plane rotation of a keyframe pose.
        scale_range: (min, max) zoom of a keyframe pose (> 1 shows more of the photograph).
        translation: max shift of a keyframe pose's centre, fraction of the output size.
        perspective: max shift of each corner of a keyframe's view, fraction of min(height, width).
        num_occluders: inclusive (min, max) number of occluders crossing the frame.
        occluder_size: (min, max) occluder extent, fraction of min(height, width).
        lighting: max relative change of the global brightness over the clip.
        motion_blur_prob: chance that the clip's frames are blurred along the camera motion.
        early_query_share: share of points first seen on frame 0; the others enter at a random frame of
            the clip's first half (points that come into view, or out from behind an occluder).
    """

    num_frames: int = 48
    height: int = 240
    width: int = 320
    num_points: int = 48
    num_keyframes: int = 3
    rotation_deg: float = 20.0
    scale_range: tuple[float, float] = (0.75, 1.3)
    translation: float = 0.25
    perspective: float = 0.08
    num_occluders: tuple[int, int] = (2, 2)
    occluder_size: tuple[float, float] = (0.3, 0.5)
    lighting: float = 0.15
    motion_blur_prob: float = 0.0
    early_query_share: float = 0.5

    def __post_init__(self) -> None:
        if self.num_frames < 2 or self.num_keyframes < 2:
            raise ValueError(f"num_frames and num_keyframes must be >= 2, got {self.num_frames}, {self.num_keyframes}")
        if min(self.height, self.width) < 16:
            raise ValueError(f"frames must be at least 16x16, got {self.height}x{self.width}")
        if self.num_points < 1:
            raise ValueError(f"num_points must be >= 1, got {self.num_points}")
        if not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise ValueError(f"scale_range must be 0 < min <= max, got {self.scale_range}")
        if not 0 <= self.num_occluders[0] <= self.num_occluders[1]:
            raise ValueError(f"num_occluders must be 0 <= min <= max, got {self.num_occluders}")
        if not 0 < self.occluder_size[0] <= self.occluder_size[1]:
            raise ValueError(f"occluder_size must be 0 < min <= max, got {self.occluder_size}")
        for name in ("rotation_deg", "translation", "perspective", "lighting"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("motion_blur_prob", "early_query_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


@dataclass(frozen=True)
class WarpClip:
    """A generated clip.

    Attributes:
        video: (T, H, W, 3) uint8 RGB.
        tracks: (T, N, 2) float32 x/y output-frame px.
        visible: (T, N) bool.
        query_frames: (N,) int64 first frame on which each point is visible (TAP-Vid "first" queries).
    """

    video: np.ndarray
    tracks: np.ndarray
    visible: np.ndarray
    query_frames: np.ndarray


@dataclass(frozen=True)
class CameraPath:
    """A camera moving over a photographed plane.

    Attributes:
        source: (Hs, Ws, 3) float32 RGB photograph (the plane), larger than the frame.
        to_source: (T, 3, 3) homographies mapping output px of frame t to source px.
        frame_hw: (H, W) of the output frames.
    """

    source: np.ndarray
    to_source: np.ndarray
    frame_hw: tuple[int, int]

    def render(self, t: int) -> np.ndarray:
        """(H, W, 3) float32 frame t."""
        return _warp(self.source, self.to_source[t], self.frame_hw[1], self.frame_hw[0])

    def move(self, xy: np.ndarray, from_frame: np.ndarray | int) -> np.ndarray:
        """(N, 2) output px seen on ``from_frame`` (scalar or (N,)) -> (T, N, 2) their px on every frame."""
        xy = np.asarray(xy, np.float64)
        frames = np.broadcast_to(np.asarray(from_frame), (xy.shape[0],))
        homog = np.concatenate([xy, np.ones((xy.shape[0], 1))], axis=1)
        src = np.einsum("nij,nj->ni", self.to_source[frames], homog)
        src = src / src[:, 2:]
        proj = np.einsum("tij,nj->tni", np.linalg.inv(self.to_source), src)
        return proj[..., :2] / proj[..., 2:]


def camera_path(
    image: np.ndarray, config: WarpClipConfig, rng: np.random.Generator
) -> CameraPath:
    """Draw a camera path over ``image`` (resized to cover 1.8x the frame) from the config's ranges."""
    H, W, T = config.height, config.width, config.num_frames
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    source = _cover(image, int(1.8 * H), int(1.8 * W)).astype(np.float32)
    keys = np.stack([_keyframe_quad(rng, config, source.shape[:2]) for _ in range(config.num_keyframes)])
    quads = _smooth_path(keys, T)
    frame_corners = np.array([[0, 0], [W - 1, 0], [W - 1, H - 1], [0, H - 1]], np.float32)
    to_source = np.stack([cv2.getPerspectiveTransform(frame_corners, q.astype(np.float32)) for q in quads])
    return CameraPath(source, to_source, (H, W))


def _cover(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize (keeping the aspect ratio) and centre-crop ``image`` to exactly (height, width)."""
    h, w = image.shape[:2]
    scale = max(height / h, width / w)
    size = (max(width, int(math.ceil(w * scale))), max(height, int(math.ceil(h * scale))))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, size, interpolation=interp)
    y0 = (resized.shape[0] - height) // 2
    x0 = (resized.shape[1] - width) // 2
    return np.ascontiguousarray(resized[y0 : y0 + height, x0 : x0 + width])


def _keyframe_quad(rng: np.random.Generator, config: WarpClipConfig, source_hw: tuple[int, int]) -> np.ndarray:
    """(4, 2) corners, in source px, of the view of one keyframe (clockwise from top-left)."""
    H, W = config.height, config.width
    sh, sw = source_hw
    half = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64) * [(W - 1) / 2, (H - 1) / 2]
    centre = np.array([(sw - 1) / 2, (sh - 1) / 2])
    for attempt in range(_MAX_QUAD_TRIES):
        damp = 1.0 - attempt / _MAX_QUAD_TRIES  # shrink the ranges if the view keeps leaving the source
        log_lo, log_hi = np.log(config.scale_range)
        scale = math.exp(rng.uniform(log_lo, log_hi) * damp)
        theta = math.radians(rng.uniform(-1, 1) * config.rotation_deg * damp)
        rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
        shift = rng.uniform(-1, 1, size=2) * config.translation * damp * [W, H]
        jitter = rng.uniform(-1, 1, size=(4, 2)) * config.perspective * damp * min(H, W)
        quad = centre + shift + (scale * half) @ rot.T + jitter
        if (quad >= 0).all() and (quad[:, 0] <= sw - 1).all() and (quad[:, 1] <= sh - 1).all():
            return quad
    return centre + half  # the plain centred view always fits (the source is larger than the frame)


def _smooth_path(keys: np.ndarray, num_frames: int) -> np.ndarray:
    """(K, ...) keyframe values -> (T, ...) values, cosine-eased between evenly spaced keyframes."""
    k = keys.shape[0]
    pos = np.linspace(0, k - 1, num_frames)
    lo = np.minimum(np.floor(pos).astype(int), k - 2)
    frac = pos - lo
    ease = (0.5 - 0.5 * np.cos(np.pi * frac)).reshape(-1, *([1] * (keys.ndim - 1)))
    return keys[lo] * (1 - ease) + keys[lo + 1] * ease


def _shape_mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(h, w) uint8 mask of a random ellipse or convex polygon filling most of the box."""
    mask = np.zeros((h, w), np.uint8)
    if rng.random() < 0.5:
        axes = (max(2, int(w * rng.uniform(0.35, 0.5))), max(2, int(h * rng.uniform(0.35, 0.5))))
        cv2.ellipse(mask, ((w - 1) // 2, (h - 1) // 2), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    else:
        angles = np.sort(rng.uniform(0, 2 * np.pi, size=int(rng.integers(4, 8))))
        radius = rng.uniform(0.35, 0.5, size=angles.size)
        pts = np.stack([(w - 1) / 2 + radius * w * np.cos(angles), (h - 1) / 2 + radius * h * np.sin(angles)], -1)
        cv2.fillConvexPoly(mask, np.round(pts).astype(np.int32), 1)
    return mask


def _occluder_paths(rng: np.random.Generator, config: WarpClipConfig, count: int) -> list[tuple[np.ndarray, int]]:
    """Per occluder: (T, 2) centre path in output px crossing the frame from one side to the other, and its
    box size. Each crosses during a random part of the clip and is out of view before and after."""
    H, W, T = config.height, config.width, config.num_frames
    out = []
    for _ in range(count):
        size = int(rng.uniform(*config.occluder_size) * min(H, W))
        margin = size / 2 + 2
        if rng.random() < 0.5:  # horizontal crossing
            y0, y1 = rng.uniform(0, H - 1, size=2)
            start, end = np.array([-margin, y0]), np.array([W - 1 + margin, y1])
        else:
            x0, x1 = rng.uniform(0, W - 1, size=2)
            start, end = np.array([x0, -margin]), np.array([x1, H - 1 + margin])
        if rng.random() < 0.5:
            start, end = end, start
        duration = rng.uniform(0.4, 0.8) * T
        t0 = rng.uniform(0, T - duration)
        s = np.clip((np.arange(T) - t0) / duration, 0.0, 1.0)[:, None]
        out.append((start + (end - start) * s, size))
    return out


def make_warp_clip(
    image: np.ndarray,
    occluder_images: Sequence[np.ndarray],
    config: WarpClipConfig = WarpClipConfig(),
    seed: int | Sequence[int] | np.random.Generator = 0,
) -> WarpClip:
    """Generate one clip; the same inputs and seed always give the same clip.

    Args:
        image: (H0, W0, 3) uint8 RGB photograph the camera looks at (any size; it is resized to cover
            1.8x the output frame).
        occluder_images: (h, w, 3) uint8 RGB photographs the occluders' textures are cropped from
            (at least one when the config asks for occluders).
        config: sizes and ranges.
        seed: an int / int sequence for ``np.random.default_rng``, or a generator to draw from.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    H, W, T = config.height, config.width, config.num_frames
    camera = camera_path(image, config, rng)

    # Points: drawn where they are in view on their entry frame, then followed exactly.
    candidates = 3 * config.num_points
    entry = np.where(rng.random(candidates) < config.early_query_share, 0,
                     rng.integers(0, max(1, T // 2), size=candidates))
    xy = rng.uniform([0, 0], [W - 1, H - 1], size=(candidates, 2))
    tracks = camera.move(xy, entry).astype(np.float32)  # (T, C, 2)

    # Occluders and lighting, then the frames.
    num_occ = int(rng.integers(config.num_occluders[0], config.num_occluders[1] + 1))
    if num_occ and not occluder_images:
        raise ValueError("occluders requested but no occluder_images given")
    occluders = []
    for path, size in _occluder_paths(rng, config, num_occ):
        texture_src = occluder_images[int(rng.integers(len(occluder_images)))]
        texture = _cover(texture_src, size, size)
        occluders.append((path, _shape_mask(rng, size, size), texture))
    gain = 1.0 + _smooth_path(rng.uniform(-1, 1, size=config.num_keyframes) * config.lighting, T)
    blur = rng.random() < config.motion_blur_prob

    video = np.empty((T, H, W, 3), np.uint8)
    covered = np.zeros((T, H, W), bool)
    for t in range(T):
        if blur:  # average sub-frame views along the motion to the neighbouring frames
            views = [camera.to_source[t]]
            for u in (max(t - 1, 0), min(t + 1, T - 1)):
                views.append(0.5 * (camera.to_source[t] + camera.to_source[u]))
            frame = np.mean([_warp(camera.source, m, W, H) for m in views], axis=0)
        else:
            frame = camera.render(t)
        for path, mask, texture in occluders:
            _paste(frame, covered[t], texture, mask, path[t])
        video[t] = np.clip(frame * gain[t], 0, 255).round().astype(np.uint8)

    # Visibility from the stored float32 tracks (nearest pixel), as the training scenes define it.
    x, y = tracks[..., 0], tracks[..., 1]
    inside = (x >= 0) & (x <= W - 1) & (y >= 0) & (y <= H - 1)
    px = np.clip(np.floor(x + 0.5), 0, W - 1).astype(np.int64)
    py = np.clip(np.floor(y + 0.5), 0, H - 1).astype(np.int64)
    visible = inside & ~covered[np.arange(T)[:, None], py, px]

    seen = visible[entry, np.arange(candidates)]  # in view and uncovered on the entry frame
    keep = np.flatnonzero(seen)[: config.num_points]
    tracks, visible = tracks[:, keep], visible[:, keep]
    query_frames = np.argmax(visible, axis=0).astype(np.int64)
    return WarpClip(video=video, tracks=np.ascontiguousarray(tracks), visible=visible, query_frames=query_frames)


def _warp(source: np.ndarray, to_source: np.ndarray, width: int, height: int) -> np.ndarray:
    return cv2.warpPerspective(source, to_source, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REFLECT_101)


def _paste(frame: np.ndarray, covered: np.ndarray, texture: np.ndarray, mask: np.ndarray, centre: np.ndarray) -> None:
    """Draw an occluder (its box centred at ``centre``, clipped to the frame) and mark what it covers."""
    size = mask.shape[0]
    x0 = int(round(centre[0] - (size - 1) / 2))
    y0 = int(round(centre[1] - (size - 1) / 2))
    fx0, fy0 = max(x0, 0), max(y0, 0)
    fx1, fy1 = min(x0 + size, frame.shape[1]), min(y0 + size, frame.shape[0])
    if fx0 >= fx1 or fy0 >= fy1:
        return
    m = mask[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0].astype(bool)
    region = frame[fy0:fy1, fx0:fx1]
    region[m] = texture[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0][m]
    covered[fy0:fy1, fx0:fx1] |= m
