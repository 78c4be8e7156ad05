"""Ground-truth tracks of one clip in pixels, and the sidecar files that carry them beside a bag (ROS-free)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .tapvid_datasets import load_tapvid_pickle

__all__ = ["GroundTruth", "load_sidecar_ground_truth", "write_sidecar_ground_truth"]


@dataclass(eq=False)
class GroundTruth:
    """Ground-truth tracks of one clip.

    Attributes:
        points_px: (N, T, 2) float64 x/y in pixels of the clip's images (NaN where unknown).
        occluded: (N, T) bool, True where the point is occluded (or not annotated).
        track_ids: (N,) int64 ids of the tracks (the query ids the evaluations use).
        source: where it was read from, for messages.
    """

    points_px: np.ndarray
    occluded: np.ndarray
    track_ids: np.ndarray
    source: str = ""

    def __post_init__(self) -> None:
        self.points_px = np.asarray(self.points_px, dtype=np.float64)
        self.occluded = np.asarray(self.occluded)
        self.track_ids = np.asarray(self.track_ids, dtype=np.int64)
        where = f"ground truth ({self.source})" if self.source else "ground truth"
        if self.points_px.ndim != 3 or self.points_px.shape[-1] != 2:
            raise ValueError(f"{where}: points must have shape (N, T, 2), got {self.points_px.shape}")
        if self.occluded.shape != self.points_px.shape[:2]:
            raise ValueError(
                f"{where}: occluded has shape {self.occluded.shape}, points {self.points_px.shape} need "
                f"(N, T) = {self.points_px.shape[:2]}"
            )
        if self.occluded.dtype != np.bool_:
            if not (np.issubdtype(self.occluded.dtype, np.integer) and np.isin(self.occluded, (0, 1)).all()):
                raise ValueError(f"{where}: occluded must be bool (or 0/1), got dtype {self.occluded.dtype}")
            self.occluded = self.occluded.astype(bool)
        if self.track_ids.shape != (self.points_px.shape[0],):
            raise ValueError(f"{where}: {self.track_ids.shape} track ids for {self.points_px.shape[0]} tracks")
        if len(np.unique(self.track_ids)) != len(self.track_ids):
            raise ValueError(f"{where}: track ids are not unique")
        if self.track_ids.size and (self.track_ids.min() < 0 or self.track_ids.max() > np.iinfo(np.uint32).max):
            raise ValueError(f"{where}: track ids must fit in uint32")
        if np.isnan(self.points_px[~self.occluded]).any():
            raise ValueError(f"{where}: a point marked visible has no position (NaN)")

    @property
    def num_tracks(self) -> int:
        return int(self.points_px.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.points_px.shape[1])


def write_sidecar_ground_truth(
    path: str | os.PathLike[str], clip_name: str, gt: GroundTruth, stamps: np.ndarray, size_hw: Sequence[int]
) -> Path:
    """Write ground truth as a sidecar ``.npz``: clip, points_px (N, T, 2), occluded (N, T), track_ids (N,),
    stamps (T,) int64 (the images' header stamps), size_hw (2,)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        clip=np.array(clip_name),
        points_px=gt.points_px,
        occluded=gt.occluded,
        track_ids=gt.track_ids,
        stamps=np.asarray(stamps, dtype=np.int64),
        size_hw=np.asarray(size_hw, dtype=np.int64),
    )
    return path


def _check_against_bag(gt: GroundTruth, clip_name: str, num_frames: int, source: str) -> GroundTruth:
    if gt.num_frames != num_frames:
        raise ValueError(
            f"{source}: ground truth of clip {clip_name!r} covers {gt.num_frames} frames but the bag has "
            f"{num_frames} images on its image topic"
        )
    return gt


def load_sidecar_ground_truth(
    path: str | os.PathLike[str], clip_name: str, stamps: np.ndarray, size_hw: Sequence[int]
) -> GroundTruth:
    """Ground truth for clip ``clip_name`` from a sidecar file, checked against the bag's images.

    ``path`` is either a ``.npz`` written by `write_sidecar_ground_truth` (one clip; its stamps must be the
    bag's image stamps) or a TAP-Vid / RoboTAP pickle holding a clip of that name (frame i of the clip is the
    bag's i-th image; frames and image size must agree).

    Raises:
        ValueError: the file lacks the clip, or frames / stamps / size do not match the bag.
        FileNotFoundError: no such file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ground-truth file not found: {path}")
    stamps = np.asarray(stamps, dtype=np.int64)
    height, width = (int(v) for v in size_hw)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("clip", "points_px", "occluded") if k not in data]
            if missing:
                raise ValueError(f"{path}: not a ground-truth sidecar, it lacks {missing} (has {sorted(data)})")
            name = str(data["clip"])
            if name != clip_name:
                raise ValueError(f"{path}: holds ground truth for clip {name!r}, not for the bag's clip {clip_name!r}")
            points = data["points_px"]
            ids = data["track_ids"] if "track_ids" in data else np.arange(points.shape[0])
            gt = GroundTruth(points, data["occluded"], ids, source=str(path))
            _check_against_bag(gt, clip_name, len(stamps), str(path))
            if "stamps" in data and not np.array_equal(data["stamps"], stamps):
                differ = int(np.flatnonzero(np.asarray(data["stamps"]) != stamps)[0])
                raise ValueError(
                    f"{path}: ground-truth stamps differ from the bag's image stamps (first at frame {differ}: "
                    f"{int(data['stamps'][differ])} vs {int(stamps[differ])})"
                )
            if "size_hw" in data and tuple(int(v) for v in data["size_hw"]) != (height, width):
                raise ValueError(
                    f"{path}: ground truth is for {tuple(data['size_hw'])} (H, W) images, the bag has {(height, width)}"
                )
            return gt
    dataset = load_tapvid_pickle(path)
    if clip_name not in dataset.names:
        shown = ", ".join(repr(n) for n in dataset.names[:10]) + (" ..." if len(dataset.names) > 10 else "")
        raise ValueError(f"{path}: no clip named {clip_name!r} (the bag's clip); the file holds {shown}")
    clip = dataset[dataset.names.index(clip_name)]
    if clip.size_hw != (height, width):
        raise ValueError(
            f"{path}: clip {clip_name!r} is {clip.size_hw} (H, W) but the bag's images are {(height, width)}"
        )
    gt = GroundTruth(clip.points_px(None), clip.occluded, np.arange(clip.num_tracks), source=f"{path}:{clip_name}")
    return _check_against_bag(gt, clip_name, len(stamps), str(path))
