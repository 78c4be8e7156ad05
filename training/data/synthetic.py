"""Procedural layered scenes with exact point tracks, written in the Kubric layout.

A scene is a textured background plus two or more textured foreground layers (random ellipses and
polygons), each moving independently under an affine motion (translation with constant acceleration,
rotation and scale changing at constant rates). Layers have a fixed z-order, so they occlude each other
and the background; layers and the background also move out of the frame.

Ground truth is exact by construction: a point is fixed in its layer's texture coordinates, its image
position at frame t is that layer's affine transform applied to it, and it is visible iff it is inside
the frame (0 <= x <= W - 1, 0 <= y <= H - 1, pixel-centre convention) and its layer is the top-most one at
its nearest pixel (floor(x + 0.5), floor(y + 0.5)) in the rendered layer map.

Textures (``training.data.textures``) are procedural (smooth colour noise, fractal noise, stripes,
checkerboards) or, optionally, random crops of real images/video frames read at run time from files you
point to (nothing is stored).

Command line (writes <out>/0000, <out>/0001, ... in the released Kubric layout)::

    python -m training.data.synthetic --out DIR --num 20 --frames 24 --height 64 --width 64 --seed 0
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from training.data.kubric import TrackSequence, write_kubric_sequence
from training.data.textures import FrameTextureSource, make_texture

__all__ = [
    "FrameTextureSource",
    "LayerMotion",
    "SceneConfig",
    "SyntheticScene",
    "generate_scene",
    "main",
    "write_kubric_sequence",
    "write_synthetic_dataset",
]

POINT_MARGIN_PX = 2  # points are sampled this far inside their layer's shape, away from its edge
MAX_LAYERS = 100  # layer ids are stored as int8


@dataclass(frozen=True)
class SceneConfig:
    """Size and randomness ranges of one synthetic scene.

    Motion ranges are given over the whole clip (not per frame) so the same config gives comparable
    scenes for any number of frames.

    Attributes:
        num_frames: T.
        height, width: frame size in pixels.
        num_points: N tracked points (shared between background and layers by area).
        num_layers: inclusive (min, max) number of foreground layers; min >= 2.
        layer_size: (min, max) layer extent as a fraction of min(height, width).
        layer_travel: (min, max) distance a layer travels over the clip, fraction of max(height, width).
        layer_rotation_deg: max absolute rotation of a layer over the clip, degrees.
        layer_scale_change: max absolute log-scale change of a layer over the clip.
        background_travel: max distance the background travels over the clip, fraction of size.
        background_rotation_deg: max absolute background rotation over the clip, degrees.
        background_scale_change: max absolute background log-scale change over the clip.
        real_texture_prob: chance that a texture is a crop of a real image when a source is given.
    """

    num_frames: int = 24
    height: int = 64
    width: int = 64
    num_points: int = 256
    num_layers: tuple[int, int] = (2, 4)
    layer_size: tuple[float, float] = (0.3, 0.7)
    layer_travel: tuple[float, float] = (0.2, 1.2)
    layer_rotation_deg: float = 30.0
    layer_scale_change: float = 0.3
    background_travel: float = 0.25
    background_rotation_deg: float = 5.0
    background_scale_change: float = 0.1
    real_texture_prob: float = 0.5

    def __post_init__(self) -> None:
        if self.num_frames < 2:
            raise ValueError(f"num_frames must be >= 2, got {self.num_frames}")
        if self.height < 16 or self.width < 16:
            raise ValueError(f"frames must be at least 16x16, got {self.height}x{self.width}")
        if self.num_points < 1:
            raise ValueError(f"num_points must be >= 1, got {self.num_points}")
        lo, hi = self.num_layers
        if not 2 <= lo <= hi <= MAX_LAYERS:
            raise ValueError(
                f"num_layers must be (min, max) with 2 <= min <= max <= {MAX_LAYERS}, got {self.num_layers}"
            )
        if not 0.0 < self.layer_size[0] <= self.layer_size[1]:
            raise ValueError(f"layer_size must be 0 < min <= max, got {self.layer_size}")
        if not 0.0 <= self.layer_travel[0] <= self.layer_travel[1]:
            raise ValueError(f"layer_travel must be 0 <= min <= max, got {self.layer_travel}")
        if not 0.0 <= self.real_texture_prob <= 1.0:
            raise ValueError(f"real_texture_prob must be in [0, 1], got {self.real_texture_prob}")
        for name in ("layer_rotation_deg", "layer_scale_change", "background_travel",
                     "background_rotation_deg", "background_scale_change"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class LayerMotion:
    """Affine motion of a layer: texture coordinates (u, v) -> image coordinates at frame t.

    image = c(t) + s(t) * R(theta(t)) @ ((u, v) - anchor), with
    c(t) = center + velocity * t + 0.5 * acceleration * t^2, theta(t) = angle + angular_velocity * t,
    s(t) = scale * exp(log_scale_rate * t).
    """

    anchor: np.ndarray  # (2,) texture point that sits at `center` at t = 0
    center: np.ndarray  # (2,)
    velocity: np.ndarray  # (2,) px / frame
    acceleration: np.ndarray  # (2,) px / frame^2
    angle: float
    angular_velocity: float  # rad / frame
    scale: float
    log_scale_rate: float  # 1 / frame

    def matrices(self, num_frames: int) -> np.ndarray:
        """(T, 2, 3) float64 affine matrices mapping texture to image coordinates."""
        t = np.arange(num_frames, dtype=np.float64)
        theta = self.angle + self.angular_velocity * t
        s = self.scale * np.exp(self.log_scale_rate * t)
        tt = t[:, None]
        c = self.center[None] + self.velocity[None] * tt + 0.5 * self.acceleration[None] * tt**2
        linear = np.empty((num_frames, 2, 2))
        linear[:, 0, 0] = s * np.cos(theta)
        linear[:, 0, 1] = -s * np.sin(theta)
        linear[:, 1, 0] = s * np.sin(theta)
        linear[:, 1, 1] = s * np.cos(theta)
        offset = c - linear @ self.anchor
        return np.concatenate([linear, offset[:, :, None]], axis=2)


@dataclass(frozen=True)
class SyntheticScene:
    """A generated scene and the extra ground truth used to check it.

    Attributes:
        sequence: the video, tracks (T, N, 2) and visibility (T, N).
        point_layer: (N,) int, layer of each point: 0 = background, k = k-th foreground layer (z-order).
        top_layer: (T, H, W) int8, top-most layer at each pixel.
    """

    sequence: TrackSequence
    point_layer: np.ndarray
    top_layer: np.ndarray


# ----------------------------------------------------------------------------------------------------
# Shapes and motion


def _random_shape_mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(h, w) uint8 mask (1 inside) of a random ellipse or star-shaped polygon filling most of the box."""
    mask = np.zeros((h, w), np.uint8)
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    if rng.uniform() < 0.5:
        axes = (max(2, int(rng.uniform(0.35, 0.5) * w)), max(2, int(rng.uniform(0.35, 0.5) * h)))
        cv2.ellipse(mask, (round(cx), round(cy)), axes, 0.0, 0.0, 360.0, 1, thickness=-1)
    else:
        count = int(rng.integers(3, 9))
        angles = np.sort(rng.uniform(0, 2 * math.pi, size=count))
        radii = rng.uniform(0.25, 0.5, size=count)
        xs = cx + radii * (w - 1) * np.cos(angles)
        ys = cy + radii * (h - 1) * np.sin(angles)
        polygon = np.round(np.stack([xs, ys], axis=1)).astype(np.int32)
        cv2.fillPoly(mask, [polygon], 1)
    return mask


def _layer_motion(
    rng: np.random.Generator, num_frames: int, anchor: np.ndarray, center: np.ndarray, travel: float,
    rotation_deg: float, scale_change: float, scale: float, upright: bool,
) -> LayerMotion:
    """Random motion whose net displacement over the clip is about ``travel`` pixels."""
    steps = num_frames - 1
    direction = rng.uniform(0, 2 * math.pi)
    unit = np.array([math.cos(direction), math.sin(direction)])
    # Part of the displacement comes from acceleration (speeding up / slowing down), plus a sideways
    # bend, so paths are neither all straight nor all uniform in speed.
    accel_share = rng.uniform(-0.5, 0.5)
    bend = rng.normal(size=2) * 0.3
    velocity = unit * travel * (1 - accel_share) / steps
    acceleration = 2.0 * travel * (unit * accel_share + bend) / steps**2
    return LayerMotion(
        anchor=anchor,
        center=center,
        velocity=velocity,
        acceleration=acceleration,
        angle=0.0 if upright else rng.uniform(-math.pi, math.pi),
        angular_velocity=math.radians(rng.uniform(-rotation_deg, rotation_deg)) / steps,
        scale=scale,
        log_scale_rate=rng.uniform(-scale_change, scale_change) / steps,
    )


def _split_points(rng: np.random.Generator, total: int, areas: np.ndarray) -> np.ndarray:
    """Integer point counts per layer proportional to area (largest remainder), at least one each."""
    weights = areas / areas.sum()
    counts = np.floor(weights * total).astype(np.int64)
    order = np.argsort(-(weights * total - counts) + rng.uniform(0, 1e-9, size=len(areas)))
    counts[order[: total - counts.sum()]] += 1
    if total >= len(areas):
        for i in np.flatnonzero(counts == 0):
            donor = int(np.argmax(counts))
            counts[donor] -= 1
            counts[i] += 1
    return counts


def _sample_in_mask(rng: np.random.Generator, mask: np.ndarray, count: int) -> np.ndarray:
    """(count, 2) texture coordinates (u, v) uniformly inside the mask eroded by POINT_MARGIN_PX."""
    kernel = np.ones((2 * POINT_MARGIN_PX + 1, 2 * POINT_MARGIN_PX + 1), np.uint8)
    inner = cv2.erode(mask, kernel)
    ys, xs = np.nonzero(inner)
    if len(xs) == 0:  # tiny shape: fall back to the shape itself
        ys, xs = np.nonzero(mask)
    pick = rng.integers(0, len(xs), size=count)
    jitter = rng.uniform(-0.5, 0.5, size=(count, 2))
    return np.stack([xs[pick], ys[pick]], axis=1).astype(np.float64) + jitter


def _apply(matrices: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(T, 2, 3) matrices applied to (N, 2) points -> (T, N, 2)."""
    return np.einsum("tij,nj->tni", matrices[:, :, :2], points) + matrices[:, None, :, 2]


# ----------------------------------------------------------------------------------------------------
# Scene generation


def generate_scene(
    config: SceneConfig,
    seed: int | Sequence[int] | np.random.Generator = 0,
    name: str = "synthetic",
    texture_source: FrameTextureSource | None = None,
) -> SyntheticScene:
    """Generate one scene; the same config, seed and texture source always give the same scene.

    Args:
        config: scene size and randomness ranges.
        seed: an int / int sequence for ``np.random.default_rng``, or a generator to draw from.
        name: sequence name stored in the result.
        texture_source: optional real-image crops used for some textures.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    T, H, W = config.num_frames, config.height, config.width
    small, large = min(H, W), max(H, W)

    # Background: a texture larger than the frame so camera-like motion keeps the frame covered.
    margin = int(math.ceil(0.5 * large * (config.background_travel + 0.2))) + 4
    bg_h, bg_w = H + 2 * margin, W + 2 * margin
    textures = [make_texture(rng, bg_h, bg_w, texture_source, config.real_texture_prob)]
    masks = [np.ones((bg_h, bg_w), np.uint8)]
    motions = [
        _layer_motion(
            rng, T,
            anchor=np.array([(bg_w - 1) / 2.0, (bg_h - 1) / 2.0]),
            center=np.array([(W - 1) / 2.0, (H - 1) / 2.0]),
            travel=rng.uniform(0, config.background_travel) * large,
            rotation_deg=config.background_rotation_deg,
            scale_change=config.background_scale_change,
            scale=1.0,
            upright=True,
        )
    ]

    num_layers = int(rng.integers(config.num_layers[0], config.num_layers[1] + 1))
    for _ in range(num_layers):
        lh = max(8, int(rng.uniform(*config.layer_size) * small))
        lw = max(8, int(rng.uniform(*config.layer_size) * small))
        textures.append(make_texture(rng, lh, lw, texture_source, config.real_texture_prob))
        masks.append(_random_shape_mask(rng, lh, lw))
        motions.append(
            _layer_motion(
                rng, T,
                anchor=np.array([(lw - 1) / 2.0, (lh - 1) / 2.0]),
                center=np.array([rng.uniform(0, W - 1), rng.uniform(0, H - 1)]),
                travel=rng.uniform(*config.layer_travel) * large,
                rotation_deg=config.layer_rotation_deg,
                scale_change=config.layer_scale_change,
                scale=rng.uniform(0.8, 1.2),
                upright=False,
            )
        )
    matrices = [m.matrices(T) for m in motions]  # per layer (T, 2, 3)

    # Points: background points start inside the frame; layer points anywhere on their shape.
    layer_areas = [float(m.sum()) * mo.scale**2 for m, mo in zip(masks[1:], motions[1:], strict=True)]
    areas = np.array([float(H * W), *layer_areas])
    counts = _split_points(rng, config.num_points, areas)
    per_layer_tracks: list[np.ndarray] = []
    point_layer: list[np.ndarray] = []
    for layer, count in enumerate(counts):
        if count == 0:
            continue
        if layer == 0:
            image_xy = rng.uniform([0, 0], [W - 1, H - 1], size=(count, 2))
            inverse = cv2.invertAffineTransform(matrices[0][0])
            texture_xy = image_xy @ inverse[:, :2].T + inverse[:, 2]
        else:
            texture_xy = _sample_in_mask(rng, masks[layer], int(count))
        per_layer_tracks.append(_apply(matrices[layer], texture_xy))
        point_layer.append(np.full(int(count), layer, np.int64))
    order = rng.permutation(config.num_points)  # interleave layers so a point's index says nothing
    layer_of_point = np.concatenate(point_layer)[order]
    tracks = np.concatenate(per_layer_tracks, axis=1)[:, order].astype(np.float32)

    # Render: composite layers bottom to top and record the top-most layer id per pixel.
    video = np.empty((T, H, W, 3), np.uint8)
    top_layer = np.zeros((T, H, W), np.int8)
    for t in range(T):
        frame = cv2.warpAffine(
            textures[0], matrices[0][t], (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
        )
        labels = top_layer[t]
        for layer in range(1, len(textures)):
            cover = cv2.warpAffine(masks[layer], matrices[layer][t], (W, H), flags=cv2.INTER_NEAREST,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
            if not cover.any():
                continue
            colour = cv2.warpAffine(textures[layer], matrices[layer][t], (W, H), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REPLICATE)
            frame[cover] = colour[cover]
            labels[cover] = layer
        video[t] = frame

    # Visibility from the float32 tracks actually stored, so the rule holds exactly for saved data.
    x, y = tracks[..., 0], tracks[..., 1]
    inside = (x >= 0) & (x <= W - 1) & (y >= 0) & (y <= H - 1)
    px = np.clip(np.floor(x + 0.5), 0, W - 1).astype(np.int64)
    py = np.clip(np.floor(y + 0.5), 0, H - 1).astype(np.int64)
    frame_index = np.arange(T)[:, None]
    visibility = inside & (top_layer[frame_index, py, px] == layer_of_point[None, :])

    sequence = TrackSequence(
        name=name,
        video=torch.from_numpy(np.ascontiguousarray(video.transpose(0, 3, 1, 2))),
        tracks=torch.from_numpy(tracks),
        visibility=torch.from_numpy(visibility),
    )
    return SyntheticScene(sequence=sequence, point_layer=layer_of_point, top_layer=top_layer)


def write_synthetic_dataset(
    out_dir: str | Path,
    num_sequences: int,
    config: SceneConfig,
    seed: int = 0,
    texture_source: FrameTextureSource | None = None,
) -> list[Path]:
    """Generate and write ``num_sequences`` scenes as ``<out_dir>/0000``, ``0001``, ...

    Scene i is generated from seed (seed, i), so it does not depend on how many scenes are written.
    """
    if num_sequences < 1:
        raise ValueError(f"num_sequences must be >= 1, got {num_sequences}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    digits = max(4, len(str(num_sequences - 1)))
    written = []
    for index in range(num_sequences):
        name = f"{index:0{digits}d}"
        scene = generate_scene(config, seed=(seed, index), name=name, texture_source=texture_source)
        seq = scene.sequence
        written.append(write_kubric_sequence(out / name, seq.video, seq.tracks, seq.visibility))
    return written


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m training.data.synthetic",
        description="Write synthetic layered scenes with exact tracks in the CoTracker3 Kubric layout.",
    )
    parser.add_argument("--out", required=True, type=Path, help="output root folder")
    parser.add_argument("--num", type=int, default=20, help="number of sequences")
    parser.add_argument("--frames", type=int, default=24, help="frames per sequence")
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--points", type=int, default=256, help="tracked points per sequence")
    parser.add_argument("--min-layers", type=int, default=2, help="min foreground layers (>= 2)")
    parser.add_argument("--max-layers", type=int, default=4, help="max foreground layers")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--texture-source", action="append", default=[], type=Path,
        help="video/image file or folder for real-image textures (repeatable; read at run time only)",
    )
    parser.add_argument("--real-texture-prob", type=float, default=0.5,
                        help="chance a texture is a real-image crop when --texture-source is given")
    args = parser.parse_args(argv)
    try:
        config = SceneConfig(
            num_frames=args.frames, height=args.height, width=args.width, num_points=args.points,
            num_layers=(args.min_layers, args.max_layers), real_texture_prob=args.real_texture_prob,
        )
        source = FrameTextureSource(args.texture_source) if args.texture_source else None
        written = write_synthetic_dataset(args.out, args.num, config, seed=args.seed, texture_source=source)
    except ValueError as err:
        parser.error(str(err))
    print(f"wrote {len(written)} sequences to {args.out}")


if __name__ == "__main__":
    main()
