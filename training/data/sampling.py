"""Training clips from track sequences: temporal window, crop/resize, flips and query sampling.

Pipeline for one training example (all randomness from one ``np.random.Generator``):

1. ``choose_clip_frames``: a window of T consecutive frames (online: T = 64; offline: T drawn from a
   range, 30..60 in the paper).
2. ``make_training_clip`` on the window's frames:
   a. scale so the frame covers ``crop_size`` (times an optional extra zoom), then a random crop, then
      optional flips; tracks follow exactly (pixel-centre convention, the same one OpenCV/PyTorch resizes
      use) and points outside the crop become invisible;
   b. pick N query points among points visible somewhere in the clip, each with a query frame where it
      is visible: "early" mode (online) takes points visible in the first half of the clip and mostly
      queries them at their first visible frame; "uniform" mode (offline) queries each at a uniformly
      random visible frame;
   c. ``valid`` (T, N): where the point is supervised: from its query frame on (online), or every frame
      (offline, which tracks backwards too); never where its ground truth is missing (NaN).

``KubricClipDataset`` wraps a ``KubricReader`` as a ``torch.utils.data.Dataset`` that reads only the
frames of the chosen window; ``collate_clips`` stacks clips into a batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from training.data.kubric import KubricReader, TrackSequence

QueryMode = Literal["early", "uniform"]


class NotEnoughPointsError(ValueError):
    """The clip has fewer query candidates than the requested number of points."""


@dataclass(frozen=True)
class ClipSamplingConfig:
    """How training clips are cut from sequences.

    Attributes:
        crop_size: (H, W) of the output clip (the model's input resolution).
        num_frames: clip length T when ``num_frames_range`` is None.
        num_frames_range: inclusive (min, max) to draw T from per clip (offline training), or None.
        num_points: N query points per clip.
        query_mode: "early" (online: queries in the first half of the clip) or "uniform" (offline).
        first_visible_share: in "early" mode, share of points queried at their first visible frame; the
            others at a random visible frame in the first half (so the model also sees points that are
            visible but not yet queried).
        supervise_before_query: True: ``valid`` covers all frames (offline tracks both directions);
            False: only from the query frame on (online).
        zoom_range: (min, max) extra scale on top of the smallest scale that covers the crop; min >= 1.
        hflip_prob, vflip_prob: probabilities of horizontal / vertical flips.
    """

    crop_size: tuple[int, int] = (384, 512)
    num_frames: int = 64
    num_frames_range: tuple[int, int] | None = None
    num_points: int = 384
    query_mode: QueryMode = "early"
    first_visible_share: float = 0.75
    supervise_before_query: bool = False
    zoom_range: tuple[float, float] = (1.0, 1.0)
    hflip_prob: float = 0.0
    vflip_prob: float = 0.0

    def __post_init__(self) -> None:
        if len(self.crop_size) != 2 or min(self.crop_size) < 1:
            raise ValueError(f"crop_size must be (H, W) with positive sizes, got {self.crop_size}")
        if self.num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {self.num_frames}")
        frames_range = self.num_frames_range
        if frames_range is not None and not 1 <= frames_range[0] <= frames_range[1]:
            raise ValueError(f"num_frames_range must be (min, max) with 1 <= min <= max, got {frames_range}")
        if self.num_points < 1:
            raise ValueError(f"num_points must be >= 1, got {self.num_points}")
        if self.query_mode not in ("early", "uniform"):
            raise ValueError(f"query_mode must be 'early' or 'uniform', got {self.query_mode!r}")
        if not 0.0 <= self.first_visible_share <= 1.0:
            raise ValueError(f"first_visible_share must be in [0, 1], got {self.first_visible_share}")
        if not 1.0 <= self.zoom_range[0] <= self.zoom_range[1]:
            raise ValueError(f"zoom_range must be (min, max) with 1 <= min <= max, got {self.zoom_range}")
        for name in ("hflip_prob", "vflip_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")

    @classmethod
    def online(cls, **overrides: object) -> ClipSamplingConfig:
        """Online-model defaults from the paper: T = 64, 384 queries biased to the clip's first half."""
        base = {"num_frames": 64, "num_points": 384, "query_mode": "early", "supervise_before_query": False}
        return cls(**{**base, **overrides})

    @classmethod
    def offline(cls, **overrides: object) -> ClipSamplingConfig:
        """Offline-model defaults from the paper: T in 30..60, 512 queries uniform in time."""
        base = {"num_frames_range": (30, 60), "num_points": 512, "query_mode": "uniform",
                "supervise_before_query": True}
        return cls(**{**base, **overrides})

    @property
    def max_frames(self) -> int:
        return self.num_frames_range[1] if self.num_frames_range is not None else self.num_frames


@dataclass(frozen=True)
class TrainingClip:
    """One training example.

    Attributes:
        name: source sequence name.
        start_frame: index of the clip's first frame in the source sequence.
        video: (T, 3, H, W) float32, 0..255 RGB.
        queries: (N, 3) float32 (frame, x, y), frame relative to the clip.
        tracks: (T, N, 2) float32 pixel x, y (0 where the ground truth is missing).
        visibility: (T, N) bool.
        valid: (T, N) bool, where the track is supervised.
        point_index: (N,) int64, index of each point in the source sequence's tracks.
    """

    name: str
    start_frame: int
    video: torch.Tensor
    queries: torch.Tensor
    tracks: torch.Tensor
    visibility: torch.Tensor
    valid: torch.Tensor
    point_index: torch.Tensor


@dataclass(frozen=True)
class TrainingBatch:
    """Clips stacked along a leading batch axis B (same fields as TrainingClip)."""

    names: list[str]
    start_frames: torch.Tensor  # (B,) int64
    video: torch.Tensor  # (B, T, 3, H, W)
    queries: torch.Tensor  # (B, N, 3)
    tracks: torch.Tensor  # (B, T, N, 2)
    visibility: torch.Tensor  # (B, T, N)
    valid: torch.Tensor  # (B, T, N)
    point_index: torch.Tensor  # (B, N)


def choose_clip_frames(sequence_length: int, config: ClipSamplingConfig, rng: np.random.Generator) -> slice:
    """A random window of consecutive frames: slice(start, start + T)."""
    if config.num_frames_range is not None:
        length = int(rng.integers(config.num_frames_range[0], config.num_frames_range[1] + 1))
    else:
        length = config.num_frames
    if sequence_length < length:
        raise ValueError(f"clip of {length} frames requested from a sequence of {sequence_length} frames")
    start = int(rng.integers(0, sequence_length - length + 1))
    return slice(start, start + length)


def _resize_crop_flip(
    video: torch.Tensor, tracks: torch.Tensor, config: ClipSamplingConfig, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spatial augmentation. video (T, 3, H, W) -> float (T, 3, Hc, Wc); tracks (T, N, 2) follow."""
    _, _, height, width = video.shape
    crop_h, crop_w = config.crop_size
    scale = max(crop_h / height, crop_w / width) * rng.uniform(*config.zoom_range)
    new_h, new_w = max(crop_h, round(height * scale)), max(crop_w, round(width * scale))
    frames = video
    tracks = tracks.clone()
    if (new_h, new_w) != (height, width):
        frames = F.interpolate(frames.float(), size=(new_h, new_w), mode="bilinear", align_corners=False,
                               antialias=new_h < height or new_w < width)
        # Pixel centres map as x' = (x + 0.5) * s - 0.5 under align_corners=False resizing.
        sx, sy = new_w / width, new_h / height
        tracks[..., 0] = (tracks[..., 0] + 0.5) * sx - 0.5
        tracks[..., 1] = (tracks[..., 1] + 0.5) * sy - 0.5
    y0 = int(rng.integers(0, new_h - crop_h + 1))
    x0 = int(rng.integers(0, new_w - crop_w + 1))
    # Without a resize the crop is taken from the uint8 frames before converting: 4x less memory.
    frames = frames[:, :, y0 : y0 + crop_h, x0 : x0 + crop_w].float()
    tracks[..., 0] -= x0
    tracks[..., 1] -= y0
    if rng.uniform() < config.hflip_prob:
        frames = frames.flip(-1)
        tracks[..., 0] = (crop_w - 1) - tracks[..., 0]
    if rng.uniform() < config.vflip_prob:
        frames = frames.flip(-2)
        tracks[..., 1] = (crop_h - 1) - tracks[..., 1]
    return frames.clamp(0.0, 255.0).contiguous(), tracks


def _random_true_index(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For a (T, K) bool mask with a True in every column, a uniformly random True row per column."""
    scores = rng.random(mask.shape)
    scores[~mask] = -1.0
    return scores.argmax(axis=0)


def _sample_queries(
    visibility: np.ndarray, config: ClipSamplingConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Choose N points and their query frames. visibility (T, P) -> (point indices (N,), frames (N,))."""
    num_frames = visibility.shape[0]
    seen = visibility.any(axis=0)
    if config.query_mode == "early":
        half = (num_frames + 1) // 2
        early = visibility[:half].any(axis=0)
        preferred, fallback = np.flatnonzero(early), np.flatnonzero(seen & ~early)
    else:
        preferred, fallback = np.flatnonzero(seen), np.empty(0, np.int64)
    total = len(preferred) + len(fallback)
    if total < config.num_points:
        raise NotEnoughPointsError(
            f"only {total} points are visible in the clip, {config.num_points} requested"
        )
    chosen = rng.permutation(preferred)[: config.num_points]
    if len(chosen) < config.num_points:
        extra = rng.permutation(fallback)[: config.num_points - len(chosen)]
        chosen = np.concatenate([chosen, extra])
    vis = visibility[:, chosen]
    if config.query_mode == "uniform":
        frames = _random_true_index(vis, rng)
    else:
        first = vis.argmax(axis=0)
        in_half = vis.copy()
        in_half[(num_frames + 1) // 2 :] = False
        # Points visible only later (fallback) draw from all their visible frames instead.
        pool = np.where(in_half.any(axis=0)[None, :], in_half, vis)
        random_frame = _random_true_index(pool, rng)
        use_first = rng.random(len(chosen)) < config.first_visible_share
        frames = np.where(use_first, first, random_frame)
    return chosen, frames


def make_training_clip(
    sequence: TrackSequence, config: ClipSamplingConfig, rng: np.random.Generator, start_frame: int = 0
) -> TrainingClip:
    """Turn a sequence (already cut to the clip's frames) into a training example.

    Raises:
        NotEnoughPointsError: fewer than ``config.num_points`` points are visible in the clip.
    """
    video, tracks = _resize_crop_flip(sequence.video, sequence.tracks.float(), config, rng)
    crop_h, crop_w = config.crop_size
    x, y = tracks[..., 0], tracks[..., 1]
    known = torch.isfinite(tracks).all(dim=-1)
    inside = (x >= 0) & (x <= crop_w - 1) & (y >= 0) & (y <= crop_h - 1)
    visibility = sequence.visibility & inside & known

    chosen, frames = _sample_queries(visibility.numpy(), config, rng)
    index = torch.from_numpy(chosen)
    query_frame = torch.from_numpy(frames)
    tracks = torch.nan_to_num(tracks[:, index], nan=0.0, posinf=0.0, neginf=0.0)
    visibility = visibility[:, index]
    known = known[:, index]
    num_frames = tracks.shape[0]
    if config.supervise_before_query:
        valid = known.clone()
    else:
        valid = known & (torch.arange(num_frames)[:, None] >= query_frame[None, :])
    query_xy = tracks[query_frame, torch.arange(len(chosen))]
    queries = torch.cat([query_frame.float()[:, None], query_xy], dim=1)
    return TrainingClip(
        name=sequence.name,
        start_frame=start_frame,
        video=video,
        queries=queries.contiguous(),
        tracks=tracks.contiguous(),
        visibility=visibility.contiguous(),
        valid=valid.contiguous(),
        point_index=index,
    )


def slice_sequence(sequence: TrackSequence, frames: slice) -> TrackSequence:
    """The frames ``frames`` of a loaded sequence."""
    return dataclasses.replace(
        sequence,
        video=sequence.video[frames],
        tracks=sequence.tracks[frames],
        visibility=sequence.visibility[frames],
    )


def sample_training_clip(
    sequence: TrackSequence, config: ClipSamplingConfig, rng: np.random.Generator
) -> TrainingClip:
    """Random window of a fully loaded sequence, then ``make_training_clip``."""
    frames = choose_clip_frames(sequence.num_frames, config, rng)
    return make_training_clip(slice_sequence(sequence, frames), config, rng, start_frame=frames.start)


class KubricClipDataset(torch.utils.data.Dataset):
    """Training clips from a Kubric-layout folder; reads only the frames of each chosen window.

    Item ``i`` uses a generator seeded with (seed, epoch, i), so results are reproducible for any
    number of DataLoader workers; call ``set_epoch`` each epoch for fresh clips. A clip with too few
    visible points is redrawn (new window and crop) up to ``max_attempts`` times.

    Args:
        reader: the sequences.
        config: clip sampling settings.
        seed: base seed.
        max_attempts: draws per item before giving up with a ValueError naming the sequence.
    """

    def __init__(self, reader: KubricReader, config: ClipSamplingConfig, seed: int = 0,
                 max_attempts: int = 8) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self.reader = reader
        self.config = config
        self.seed = seed
        self.max_attempts = max_attempts
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, index: int) -> TrainingClip:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        length = self.reader.num_frames(index)
        last_error: NotEnoughPointsError | None = None
        for _ in range(self.max_attempts):
            frames = choose_clip_frames(length, self.config, rng)
            clip_sequence = self.reader.read(index, frames)
            try:
                return make_training_clip(clip_sequence, self.config, rng, start_frame=frames.start)
            except NotEnoughPointsError as err:
                last_error = err
        raise ValueError(
            f"sequence '{self.reader.names[index]}': no usable clip in {self.max_attempts} attempts "
            f"({last_error})"
        )


def collate_clips(clips: Sequence[TrainingClip]) -> TrainingBatch:
    """Stack clips (same T, N and size) into a batch; use as a DataLoader ``collate_fn``."""
    if not clips:
        raise ValueError("cannot collate an empty list of clips")
    shapes = {(tuple(c.video.shape), tuple(c.tracks.shape)) for c in clips}
    if len(shapes) != 1:
        raise ValueError(
            f"clips differ in shape (video, tracks): {sorted(shapes)}; with a random clip length use "
            "batch size 1 per process or draw one length per batch"
        )
    return TrainingBatch(
        names=[c.name for c in clips],
        start_frames=torch.tensor([c.start_frame for c in clips], dtype=torch.int64),
        video=torch.stack([c.video for c in clips]),
        queries=torch.stack([c.queries for c in clips]),
        tracks=torch.stack([c.tracks for c in clips]),
        visibility=torch.stack([c.visibility for c in clips]),
        valid=torch.stack([c.valid for c in clips]),
        point_index=torch.stack([c.point_index for c in clips]),
    )
