"""Textures of the synthetic scenes: procedural (smooth colour noise, fractal noise, stripes,
checkerboards) or random crops of real images / video frames read at run time from files you point to.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

__all__ = ["FrameTextureSource", "make_texture"]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
MIN_REAL_TEXTURE_STD = 12.0  # grey-level std below which a real-image crop counts as flat

def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, size=3)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int, channels: int = 3) -> np.ndarray:
    # Random values on a coarse grid, bicubically upsampled: smooth blobs of size ~ (h / cells).
    coarse = rng.uniform(0, 1, size=(cells + 1, cells + 1, channels)).astype(np.float32)
    out = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    return out.reshape(h, w, channels)


def _texture_colour_noise(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    sigma = rng.uniform(0.8, 3.0)
    noise = rng.uniform(0, 255, size=(h, w, 3)).astype(np.float32)
    blurred = cv2.GaussianBlur(noise, (0, 0), sigma)
    # Re-stretch contrast lost to the blur.
    blurred -= blurred.mean(axis=(0, 1), keepdims=True)
    blurred *= 60.0 / (blurred.std() + 1e-6)
    return blurred + _random_colour(rng)[None, None]


def _texture_fractal(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    out = np.zeros((h, w, 3), np.float32)
    amplitude, total = 1.0, 0.0
    cells = int(rng.integers(2, 5))
    while cells <= max(h, w) // 2:
        out += amplitude * _smooth_noise(rng, h, w, cells)
        total += amplitude
        amplitude *= 0.6
        cells *= 2
    out /= max(total, 1e-6)
    low, high = _random_colour(rng), _random_colour(rng)
    return low[None, None] + (high - low)[None, None] * out


def _rotated_grid(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    angle = rng.uniform(0, math.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u = xx * math.cos(angle) + yy * math.sin(angle)
    v = -xx * math.sin(angle) + yy * math.cos(angle)
    return u, v


def _texture_stripes(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    u, _ = _rotated_grid(rng, h, w)
    period = rng.uniform(4.0, max(6.0, min(h, w) / 3))
    profile = 0.5 + 0.5 * np.sin(2 * math.pi * u / period)
    a, b = _random_colour(rng), _random_colour(rng)
    return a[None, None] + (b - a)[None, None] * profile[..., None]


def _texture_checker(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    u, v = _rotated_grid(rng, h, w)
    cell = rng.uniform(3.0, max(4.0, min(h, w) / 4))
    parity = (np.floor(u / cell) + np.floor(v / cell)) % 2
    a, b = _random_colour(rng), _random_colour(rng)
    return np.where(parity[..., None] > 0, a[None, None], b[None, None]).astype(np.float32)


PROCEDURAL_TEXTURES: tuple[Callable[[np.random.Generator, int, int], np.ndarray], ...] = (
    _texture_colour_noise,
    _texture_fractal,
    _texture_stripes,
    _texture_checker,
)


def _finish_texture(rng: np.random.Generator, texture: np.ndarray) -> np.ndarray:
    # Fine noise everywhere keeps even flat regions trackable; clip to the uint8 range.
    grain = rng.normal(0.0, rng.uniform(3.0, 10.0), size=texture.shape).astype(np.float32)
    return np.clip(texture + grain, 0, 255).astype(np.uint8)


class FrameTextureSource:
    """Crops of real images, read at run time from video or image files (never stored with the data).

    Videos are decoded sequentially (deterministic, unlike seeking) keeping at most
    ``frames_per_video`` evenly spaced frames, downscaled so their longer side is <= ``max_side``.

    Args:
        paths: files and/or folders (folders are searched, not recursively, for videos and images).
        frames_per_video: frames kept per video.
        max_side: longer side of kept frames in pixels.
    """

    def __init__(self, paths: Sequence[str | Path], frames_per_video: int = 16, max_side: int = 640) -> None:
        files: list[Path] = []
        for raw in paths:
            path = Path(raw)
            if path.is_dir():
                files.extend(
                    sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES + IMAGE_SUFFIXES)
                )
            elif path.is_file():
                files.append(path)
            else:
                raise ValueError(f"texture source does not exist: {path}")
        if not files:
            raise ValueError(f"no video or image files found in texture sources {list(map(str, paths))}")
        if frames_per_video < 1 or max_side < 16:
            raise ValueError("frames_per_video must be >= 1 and max_side >= 16")
        self.files = tuple(files)
        self.frames_per_video = frames_per_video
        self.max_side = max_side
        self._frames: list[np.ndarray] | None = None

    def _shrink(self, image: np.ndarray) -> np.ndarray:
        scale = self.max_side / max(image.shape[:2])
        if scale >= 1.0:
            return image
        size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA)

    def _read_video(self, path: Path) -> list[np.ndarray]:
        capture = cv2.VideoCapture(str(path))
        if not capture.isOpened():
            raise ValueError(f"cannot open video texture source {path}")
        try:
            count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
            stride = max(1, count // self.frames_per_video) if count > 0 else 1
            kept: list[np.ndarray] = []
            index = 0
            while len(kept) < self.frames_per_video:
                ok, frame = capture.read()
                if not ok:
                    break
                if index % stride == 0:
                    kept.append(self._shrink(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)))
                index += 1
        finally:
            capture.release()
        if not kept:
            raise ValueError(f"no frames could be decoded from {path}")
        return kept

    def frames(self) -> list[np.ndarray]:
        """All kept RGB frames (loaded on first use)."""
        if self._frames is None:
            frames: list[np.ndarray] = []
            for path in self.files:
                if path.suffix.lower() in VIDEO_SUFFIXES:
                    frames.extend(self._read_video(path))
                else:
                    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
                    if image is None:
                        raise ValueError(f"cannot decode image texture source {path}")
                    frames.append(self._shrink(cv2.cvtColor(image, cv2.COLOR_BGR2RGB)))
            self._frames = frames
        return self._frames

    def crop(self, rng: np.random.Generator, h: int, w: int, attempts: int = 4) -> np.ndarray:
        """(h, w, 3) float32 RGB crop of a random frame at a random scale.

        Nearly flat crops (masks, sky, blank walls) make poor textures, so up to ``attempts`` crops are
        drawn and the first with enough contrast (else the most contrasted) is used.
        """
        frames = self.frames()
        best, best_std = None, -1.0
        for _ in range(attempts):
            frame = frames[int(rng.integers(len(frames)))]
            fh, fw = frame.shape[:2]
            # A region with the target aspect ratio, between the target size and the whole frame.
            max_scale = min(fh / h, fw / w)
            scale = rng.uniform(min(1.0, max_scale), max_scale)
            ch, cw = max(1, min(fh, round(h * scale))), max(1, min(fw, round(w * scale)))
            y0 = int(rng.integers(0, fh - ch + 1))
            x0 = int(rng.integers(0, fw - cw + 1))
            region = frame[y0 : y0 + ch, x0 : x0 + cw]
            crop = cv2.resize(region, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
            std = float(crop.std())
            if std > best_std:
                best, best_std = crop, std
            if std >= MIN_REAL_TEXTURE_STD:
                break
        return best


def make_texture(
    rng: np.random.Generator,
    h: int,
    w: int,
    source: FrameTextureSource | None = None,
    real_prob: float = 0.5,
) -> np.ndarray:
    """(h, w, 3) uint8 RGB texture: procedural, or a real-image crop with probability ``real_prob``."""
    if source is not None and rng.uniform() < real_prob:
        texture = source.crop(rng, h, w)
    else:
        texture = PROCEDURAL_TEXTURES[int(rng.integers(len(PROCEDURAL_TEXTURES)))](rng, h, w)
        if rng.uniform() < 0.3:  # occasionally blend two patterns for richer structure
            other = PROCEDURAL_TEXTURES[int(rng.integers(len(PROCEDURAL_TEXTURES)))](rng, h, w)
            texture = 0.5 * (texture + other)
    return _finish_texture(rng, texture)
