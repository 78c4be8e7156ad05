"""Stage 2 inputs: clips of unlabelled videos with SIFT query points, and their pseudo-labelled batches.

For one item (all randomness from a generator seeded by the item key):

1. pick a run of T consecutive frames of the video (a video shorter than T is skipped);
2. scale the frames to cover the training crop, take a random crop;
3. detect SIFT keypoints (``cv2.SIFT_create``) on ``sift_frames`` frames spread evenly over the first
   ``query_span`` of the clip, and draw ``num_points`` of them, as evenly over those frames as their counts
   allow; a clip with fewer keypoints is skipped, and the next video is tried;
4. the teacher (chosen per batch, ``training.teachers``) labels the queries; ``make_pseudo_batch`` turns
   its tracks and visibility into the targets of the track loss.

Skipped videos are counted per reason in every batch, and summed over processes by the trainer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from training.batching import ItemKey
from training.config import PseudoLabelSettings
from training.data.sampling import NotEnoughPointsError, TrainingBatch
from training.teachers import PseudoLabels
from training.video_sources import VideoSource

SKIP_FEW_POINTS = "skipped_few_sift_points"
SKIP_SHORT = "skipped_too_short"


@dataclass(frozen=True)
class UnlabelledClip:
    """A clip to be labelled.

    Attributes:
        name: source video name.
        start_frame: first frame in the source video.
        video: (T, 3, H, W) float32 0..255 RGB at the training crop size.
        queries: (N, 3) float32 (frame, x, y).
        skips: videos skipped (per reason) before this one was found usable.
    """

    name: str
    start_frame: int
    video: torch.Tensor
    queries: torch.Tensor
    skips: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class UnlabelledBatch:
    names: list[str]
    start_frames: torch.Tensor  # (B,)
    video: torch.Tensor  # (B, T, 3, H, W)
    queries: torch.Tensor  # (B, N, 3)
    skips: dict[str, int]


def cover_and_crop(frames: np.ndarray, crop_hw: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, h, w, 3): scale so the frames cover the crop, then a random crop."""
    crop_h, crop_w = crop_hw
    _, height, width, _ = frames.shape
    scale = max(crop_h / height, crop_w / width)
    new_h, new_w = max(crop_h, round(height * scale)), max(crop_w, round(width * scale))
    if (new_h, new_w) != (height, width):
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        frames = np.stack([cv2.resize(f, (new_w, new_h), interpolation=interp) for f in frames])
    y0 = int(rng.integers(0, new_h - crop_h + 1))
    x0 = int(rng.integers(0, new_w - crop_w + 1))
    return np.ascontiguousarray(frames[:, y0 : y0 + crop_h, x0 : x0 + crop_w])


def sift_frame_indices(num_frames: int, sift_frames: int, query_span: float) -> np.ndarray:
    """Frames the queries come from: ``sift_frames`` spread evenly over the first ``query_span`` of the clip."""
    last = max(1, min(num_frames, math.ceil(num_frames * query_span)))
    return np.unique(np.linspace(0, last - 1, num=min(sift_frames, last)).round().astype(np.int64))


def sift_queries(
    frames: np.ndarray, num_points: int, sift_frames: int, query_span: float, rng: np.random.Generator,
    detector: cv2.SIFT | None = None,
) -> np.ndarray:
    """SIFT keypoints as queries.

    Args:
        frames: (T, H, W, 3) uint8 RGB.
        num_points: N.
        sift_frames, query_span: see ``sift_frame_indices``.

    Returns:
        (N, 3) float32 (frame, x, y), x/y in pixels (OpenCV keypoint centres).

    Raises:
        NotEnoughPointsError: fewer than N distinct keypoints on those frames.
    """
    detector = detector or cv2.SIFT_create()
    indices = sift_frame_indices(len(frames), sift_frames, query_span)
    per_frame: list[np.ndarray] = []
    for t in indices:
        gray = cv2.cvtColor(frames[t], cv2.COLOR_RGB2GRAY)
        points = np.array([kp.pt for kp in detector.detect(gray, None)], dtype=np.float32).reshape(-1, 2)
        points = np.unique(points, axis=0)  # SIFT repeats a location for each of its orientations
        per_frame.append(rng.permutation(points))
    available = sum(len(p) for p in per_frame)
    if available < num_points:
        raise NotEnoughPointsError(f"{available} SIFT keypoints on {len(indices)} frames, {num_points} needed")
    # Even share per frame; frames with fewer keypoints hand their share to the others.
    take = np.zeros(len(per_frame), np.int64)
    counts = np.array([len(p) for p in per_frame])
    remaining = num_points
    while remaining:
        open_frames = np.flatnonzero(take < counts)
        share = max(1, remaining // len(open_frames))
        for i in rng.permutation(open_frames):
            extra = min(share, counts[i] - take[i], remaining)
            take[i] += extra
            remaining -= extra
            if not remaining:
                break
    chosen = [
        np.concatenate([np.full((k, 1), t, np.float32), points[:k]], axis=1)
        for t, points, k in zip(indices, per_frame, take, strict=True)
        if k
    ]
    return np.concatenate(chosen)[rng.permutation(num_points)]


class PseudoClipDataset(torch.utils.data.Dataset):
    """Unlabelled clips keyed by ``(epoch, index, num_frames)`` (see ``training.batching``).

    Args:
        source: the videos.
        settings: stage 2 settings (clip length, query sampling, skipping).
        crop_hw: (H, W) of the clips.
        seed: base seed.
    """

    def __init__(self, source: VideoSource, settings: PseudoLabelSettings, crop_hw: tuple[int, int],
                 seed: int = 0) -> None:
        self.source = source
        self.settings = settings
        self.crop_hw = tuple(crop_hw)
        self.seed = seed
        self._detector: cv2.SIFT | None = None

    def __len__(self) -> int:
        return len(self.source)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_detector"] = None  # OpenCV objects cannot be pickled (DataLoader workers with spawn)
        return state

    def _make(self, index: int, length: int, rng: np.random.Generator) -> UnlabelledClip:
        total = self.source.num_frames(index)
        start = int(rng.integers(0, total - length + 1))
        frames = cover_and_crop(self.source.read(index, start, length), self.crop_hw, rng)
        if self._detector is None:  # created lazily: cv2 objects do not survive pickling into workers
            self._detector = cv2.SIFT_create()
        s = self.settings
        queries = sift_queries(frames, s.num_points, s.sift_frames, s.query_span, rng, self._detector)
        video = torch.from_numpy(frames.transpose(0, 3, 1, 2).copy()).float()
        return UnlabelledClip(self.source.name(index), start, video, torch.from_numpy(queries))

    def __getitem__(self, key: ItemKey) -> UnlabelledClip:
        epoch, index, frames = key
        length = frames if frames is not None else self.settings.num_frames
        rng = np.random.default_rng([self.seed, epoch, index])
        skips = {SKIP_FEW_POINTS: 0, SKIP_SHORT: 0}
        for attempt in range(self.settings.max_skips):
            video_index = (index + attempt) % len(self.source)
            if self.source.num_frames(video_index) < length:
                skips[SKIP_SHORT] += 1
                continue
            try:
                clip = self._make(video_index, length, rng)
            except NotEnoughPointsError:
                skips[SKIP_FEW_POINTS] += 1
                continue
            return UnlabelledClip(clip.name, clip.start_frame, clip.video, clip.queries, skips)
        raise ValueError(
            f"no usable clip of {length} frames in {self.settings.max_skips} videos from "
            f"{self.source.name(index)} on ({skips[SKIP_SHORT]} too short, {skips[SKIP_FEW_POINTS]} with fewer "
            f"than {self.settings.num_points} SIFT points)"
        )


def collate_unlabelled(clips: Sequence[UnlabelledClip]) -> UnlabelledBatch:
    if not clips:
        raise ValueError("cannot collate an empty list of clips")
    skips: dict[str, int] = {}
    for clip in clips:
        for reason, count in clip.skips.items():
            skips[reason] = skips.get(reason, 0) + count
    return UnlabelledBatch(
        names=[c.name for c in clips],
        start_frames=torch.tensor([c.start_frame for c in clips], dtype=torch.int64),
        video=torch.stack([c.video for c in clips]),
        queries=torch.stack([c.queries for c in clips]),
        skips=skips,
    )


def make_pseudo_batch(batch: UnlabelledBatch, labels: PseudoLabels, supervise_before_query: bool) -> TrainingBatch:
    """Targets from a teacher: its tracks, its visibility (weights occluded points 1/5 in the track loss),
    and ``valid`` from the query frame on (or everywhere for an offline student), where the labels are finite.
    """
    b, t = batch.video.shape[:2]
    n = batch.queries.shape[1]
    finite = torch.isfinite(labels.tracks).all(dim=-1)
    if supervise_before_query:
        valid = finite
    else:
        frame = torch.arange(t, device=batch.queries.device)[None, :, None]
        valid = finite & (frame >= batch.queries[:, None, :, 0].long())
    return TrainingBatch(
        names=batch.names,
        start_frames=batch.start_frames,
        video=batch.video,
        queries=batch.queries,
        tracks=torch.nan_to_num(labels.tracks, nan=0.0, posinf=0.0, neginf=0.0),
        visibility=labels.visibility & finite,
        valid=valid,
        point_index=torch.arange(n).expand(b, n),
    )
