"""The accuracy protocol: how the project's weights are judged, here and by anyone re-measuring.

1. **Clips** (``heldout_clips``): frames of videos the model never saw in training are the photographs
   of ``make_warp_clip`` clips — 48 frames of 320x240, a camera moving over the photographed plane
   (rotation, scale, translation, perspective), two opaque occluders textured with other frames crossing,
   48 points each queried on its first visible frame (TAP-Vid "first").
2. **Tracking as the node runs it** (``track_streaming``): ``push(frame, stamp)`` frame by frame, each
   query added with ``add_queries(xy, stamp=...)`` right after its frame arrives, ``flush()`` at the end,
   ``reset()`` before each clip; each frame is scored on its first emission (never the ``refined`` one)
   and its ``visible`` flag.
3. **Scores** (``score``): ``compute_tapvid_metrics`` in "first" mode in the 256x256 raster (AJ, delta_avg,
   OA), plus the median error in input px of the points visible in both truth and prediction.

Baselines on the same clips: ``cotracker3_core.evaluation.baselines``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from cotracker3_core.evaluation.metrics import compute_tapvid_metrics, summarize
from cotracker3_core.evaluation.tapvid_datasets import TapVidClip, TapVidQueries
from cotracker3_core.evaluation.warp_clips import WarpClipConfig, make_warp_clip

#: The protocol's clips (WarpClipConfig's defaults are the protocol).
PROTOCOL_CLIPS = WarpClipConfig()
#: Timestamp spacing of the frames pushed to a tracker (30 Hz, in ns).
FRAME_PERIOD_NS = 33_333_333


@dataclass(frozen=True)
class Prediction:
    """Tracks predicted for one clip's queries.

    Attributes:
        tracks: (Q, T, 2) float64 x/y input-image px.
        visible: (Q, T) bool.
        seconds: wall time spent tracking (the tracker's own work: push, add, flush).
    """

    tracks: np.ndarray
    visible: np.ndarray
    seconds: float = 0.0


Tracker = Callable[[TapVidClip, TapVidQueries], Prediction]


def read_frames(path: str | Path, max_side: int | None = 640, max_frames: int | None = None) -> list[np.ndarray]:
    """The frames of a video file (the first ``max_frames``, or all) as (H, W, 3) uint8 RGB, shrunk so the
    longer side is at most ``max_side`` (None: as stored)."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ValueError(f"cannot open video {path}")
    frames = []
    try:
        while max_frames is None or len(frames) < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            scale = max_side / max(frame.shape[:2]) if max_side else 1.0
            if scale < 1:
                frame = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        capture.release()
    if not frames:
        raise ValueError(f"no frames in {path}")
    return frames


def heldout_clips(
    video_paths: Sequence[str | Path],
    clips_per_video: int = 4,
    config: WarpClipConfig = PROTOCOL_CLIPS,
    seed: int = 0,
) -> list[TapVidClip]:
    """The protocol's clips: for each video, ``clips_per_video`` clips whose plane is one of its frames
    (spread over the video) and whose occluders are frames of the other videos (of itself if alone)."""
    videos = [read_frames(p) for p in video_paths]
    clips = []
    for v, frames in enumerate(videos):
        others = [f for u, other in enumerate(videos) if u != v for f in other[:: max(1, len(other) // 8)]]
        occluders = others or frames[:: max(1, len(frames) // 8)]
        for k in range(clips_per_video):
            rng = np.random.default_rng((seed, v, k))
            scene = frames[(2 * k + 1) * len(frames) // (2 * clips_per_video)]
            clip = make_warp_clip(scene, occluders, config, rng)
            clips.append(TapVidClip.from_pixels(
                f"{Path(video_paths[v]).stem}_{k}", clip.video, clip.tracks.transpose(1, 0, 2), ~clip.visible.T
            ))
    return clips


def first_queries(clip: TapVidClip) -> TapVidQueries:
    """TAP-Vid "first" queries in the clip's own pixels."""
    return clip.make_queries("first", size_hw=None)


def track_streaming(tracker, clip: TapVidClip, queries: TapVidQueries) -> Prediction:  # noqa: ANN001
    """Run a ``StreamingTracker`` over one clip as the node would (see the module docstring)."""
    T = clip.num_frames
    Q = queries.num_queries
    tracks = np.zeros((Q, T, 2))
    visible = np.zeros((Q, T), bool)
    query_frame = queries.query_points[:, 0].astype(int)
    query_xy = queries.query_points[:, [2, 1]]
    tracks[:] = query_xy[:, None]  # frames without an answer: at the query, occluded
    column: dict[int, int] = {}  # tracker id -> query row
    first = set()

    def take(emitted) -> None:  # noqa: ANN001
        for ft in emitted:
            if ft.refined or ft.frame_index in first:
                continue
            first.add(ft.frame_index)
            for i, track_id in enumerate(ft.ids.tolist()):
                row = column.get(track_id)
                if row is not None:
                    tracks[row, ft.frame_index] = ft.xy[i]
                    visible[row, ft.frame_index] = ft.visible[i]

    tracker.reset()
    started = time.perf_counter()
    for t in range(T):
        stamp = (t + 1) * FRAME_PERIOD_NS
        take(tracker.push(clip.video[t], stamp))
        rows = np.flatnonzero(query_frame == t)
        if rows.size:
            ids = tracker.add_queries(query_xy[rows], stamp=stamp)
            column.update(zip(ids, rows.tolist(), strict=True))
    take(tracker.flush())
    seconds = time.perf_counter() - started
    # The query frame itself is the query (TAP-Vid "first" mode does not score it).
    visible[np.arange(Q), query_frame] = True
    return Prediction(tracks, visible, seconds)


def score(clip: TapVidClip, queries: TapVidQueries, prediction: Prediction) -> dict[str, float]:
    """AJ, delta_avg, OA (fractions) and the median px error over points visible in truth and prediction
    after their query frame."""
    height, width = clip.size_hw
    to_raster = np.array([256.0 / width, 256.0 / height])
    query_raster = queries.query_points.copy()
    query_raster[:, 1] *= 256.0 / height
    query_raster[:, 2] *= 256.0 / width
    metrics = compute_tapvid_metrics(
        query_raster[None],
        queries.occluded[None],
        (queries.target_points * to_raster)[None],
        ~prediction.visible[None],
        (prediction.tracks * to_raster)[None],
        query_mode="first",
    )
    result = summarize(metrics)
    after = np.arange(clip.num_frames)[None] > queries.query_points[:, :1]
    both = after & ~queries.occluded & prediction.visible
    errors = np.linalg.norm(prediction.tracks - queries.target_points, axis=-1)[both]
    summary = {k: result[k] for k in ("AJ", "delta_avg", "OA")}
    summary["median_px"] = float(np.median(errors)) if errors.size else float("nan")
    return summary


def evaluate(tracker: Tracker, clips: Sequence[TapVidClip]) -> dict[str, object]:
    """Per-clip scores and their means; ``ms_per_frame`` is the tracker's time over all frames."""
    per_clip = {}
    seconds, frames = 0.0, 0
    for clip in clips:
        queries = first_queries(clip)
        prediction = tracker(clip, queries)
        per_clip[clip.name] = score(clip, queries, prediction)
        seconds += prediction.seconds
        frames += clip.num_frames
    keys = ("AJ", "delta_avg", "OA", "median_px")
    mean = {k: float(np.mean([c[k] for c in per_clip.values()])) for k in keys}
    mean["ms_per_frame"] = 1000.0 * seconds / max(frames, 1)
    return {"mean": mean, "clips": per_clip}
