"""Scoring tracker output against ground truth with the TAP-Vid metrics (shared by the bag and replay evaluations).

Conventions:
- Ground truth and predictions are in pixels of the clip's images; metrics are computed in the 256x256 TAP-Vid
  raster (`cotracker3_core.evaluation.pixels_to_raster`), one clip per call, as the benchmarks do.
- "first" queries: one per track, on its first visible frame (as ``TapVidClip.make_queries("first")``); a
  track is evaluated on the frames after it. "strided": on frames 0, 5, 10, ... one query per track visible
  there; every frame but the query frame is evaluated.
- A query's id is its track's ground-truth id, so ``Tracks`` messages map back to tracks by id.
- A frame a query should have an estimate for but has none (a frame dropped by the node, a point added late)
  counts as *predicted occluded at an unknown position*: it can only lower the scores. `Predictions.missing`
  marks those entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .ground_truth import GroundTruth
from .metrics import compute_tapvid_metrics, pixels_to_raster, query_points_to_raster, summarize
from .queries import DEFAULT_QUERY_STRIDE, sample_query_tracks

__all__ = [
    "FrameOutput",
    "Predictions",
    "Queries",
    "first_queries",
    "predictions_from_outputs",
    "score_clip",
    "strided_queries",
]


@dataclass(eq=False)
class Queries:
    """Query points sampled from ground truth.

    Attributes:
        mode: "first" or "strided".
        rows: (Q,) int64 row of each query's track in the ground-truth arrays.
        ids: (Q,) int64 the track ids (query ids given to the tracker in "first" mode).
        frames: (Q,) int64 query frame index.
        xy: (Q, 2) float64 query position in pixels.
    """

    mode: str
    rows: np.ndarray
    ids: np.ndarray
    frames: np.ndarray
    xy: np.ndarray

    @property
    def count(self) -> int:
        return int(self.rows.size)

    def raster_points(self, size_hw: tuple[int, int]) -> np.ndarray:
        """(Q, 3) (t, y, x) query points in the 256x256 TAP-Vid raster, from images of size `size_hw` (H, W)."""
        height, width = size_hw
        points = np.stack([self.frames.astype(np.float64), self.xy[:, 1], self.xy[:, 0]], axis=-1)
        return query_points_to_raster(points, width, height)

    def on_frame(self, frame: int) -> np.ndarray:
        """Indices of the queries placed on ``frame``."""
        return np.flatnonzero(self.frames == frame)


def first_queries(gt: GroundTruth) -> Queries:
    """One query per track at its first visible frame; tracks never visible are left out."""
    return _queries(gt, "first", DEFAULT_QUERY_STRIDE)


def strided_queries(gt: GroundTruth, stride: int = DEFAULT_QUERY_STRIDE) -> Queries:
    """On frames 0, stride, 2 stride, ...: one query per track visible there, ordered by frame then track."""
    return _queries(gt, "strided", stride)


def _queries(gt: GroundTruth, mode: str, stride: int) -> Queries:
    rows, frames = sample_query_tracks(gt.occluded, mode, stride)
    return Queries(mode, rows, gt.track_ids[rows], frames, gt.points_px[rows, frames])


@dataclass(eq=False)
class FrameOutput:
    """A tracker's estimate for one frame: ``ids (N,)``, ``xy (N, 2)`` pixels, ``visible (N,)`` bool."""

    ids: np.ndarray
    xy: np.ndarray
    visible: np.ndarray

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> FrameOutput:
        """From `FrameTracks`-like fields or `conversions.tracks_msg_arrays` output."""
        return cls(
            np.asarray(arrays["ids"], dtype=np.int64),
            np.asarray(arrays["xy"], dtype=np.float32).reshape(-1, 2),
            np.asarray(arrays["visible"], dtype=bool),
        )


@dataclass(eq=False)
class Predictions:
    """Per-query predictions over the clip.

    Attributes:
        xy: (Q, T, 2) float64 pixels; NaN where missing or before the query frame.
        visible: (Q, T) bool predicted visibility.
        missing: (Q, T) bool, True where an evaluated frame had no estimate for the query.
        frames_without_output: frame indices that had no output at all (dropped or never published).
    """

    xy: np.ndarray
    visible: np.ndarray
    missing: np.ndarray
    frames_without_output: list[int]


def evaluated_mask(queries: Queries, num_frames: int) -> np.ndarray:
    """(Q, T) bool: the frames the metrics evaluate for each query."""
    t = np.arange(num_frames)[None]
    q = queries.frames[:, None]
    return t > q if queries.mode == "first" else t != q


def predictions_from_outputs(
    outputs: Mapping[int, FrameOutput], stamps: np.ndarray, queries: Queries
) -> Predictions:
    """Gather the per-frame outputs (keyed by image stamp) into per-query arrays.

    The query frame itself gets the query point, visible (the predictors do the same; it is not evaluated).
    """
    num_frames = len(stamps)
    xy = np.full((queries.count, num_frames, 2), np.nan)
    visible = np.zeros((queries.count, num_frames), bool)
    position = {int(i): k for k, i in enumerate(queries.ids)}
    frames_without: list[int] = []
    for t, stamp in enumerate(np.asarray(stamps, dtype=np.int64)):
        out = outputs.get(int(stamp))
        if out is None:
            frames_without.append(t)
            continue
        for k, track_id in enumerate(out.ids):
            q = position.get(int(track_id))
            if q is not None and t >= queries.frames[q]:
                xy[q, t] = out.xy[k]
                visible[q, t] = bool(out.visible[k])
    rows = np.arange(queries.count)
    xy[rows, queries.frames] = queries.xy
    visible[rows, queries.frames] = True
    missing = evaluated_mask(queries, num_frames) & np.isnan(xy).any(axis=-1)
    return Predictions(xy, visible, missing, frames_without)


def score_clip(gt: GroundTruth, queries: Queries, pred: Predictions, size_hw: tuple[int, int]) -> dict[str, Any]:
    """TAP-Vid metrics of one clip (``AJ``, ``delta_avg``, ``OA`` and every metric by its full name, in [0, 1]),
    plus counts: ``queries``, ``evaluated_points`` and ``missing_points`` (evaluated entries with no estimate)."""
    if queries.count == 0:
        raise ValueError(f"no query to score: no ground-truth track is visible ({queries.mode} mode)")
    height, width = size_hw
    gt_xy = gt.points_px[queries.rows]
    metrics = compute_tapvid_metrics(
        queries.raster_points(size_hw)[None],
        gt.occluded[queries.rows][None],
        pixels_to_raster(gt_xy, width, height)[None],
        (~pred.visible)[None],
        pixels_to_raster(pred.xy, width, height)[None],
        queries.mode,
    )
    summary: dict[str, Any] = summarize(metrics)
    evaluated = evaluated_mask(queries, gt.num_frames)
    summary["queries"] = queries.count
    summary["evaluated_points"] = int(evaluated.sum())
    summary["missing_points"] = int(pred.missing.sum())
    return summary
