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

Several clips can run at once, one camera each of a ``MultiStreamTracker`` (``track_streaming_batch``,
``evaluate_batch``): the same protocol, the due windows batched into one model call.

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
#: Tracks several clips at once (`track_streaming_batch`): one prediction per clip, in order.
BatchTracker = Callable[[Sequence[TapVidClip], Sequence[TapVidQueries]], list[Prediction]]


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


class _ClipTracks:
    """One clip's prediction being filled from emitted `FrameTracks` (each frame's first emission)."""

    def __init__(self, clip: TapVidClip, queries: TapVidQueries) -> None:
        self.query_frame = queries.query_points[:, 0].astype(int)
        self.query_xy = queries.query_points[:, [2, 1]]
        self.tracks = np.zeros((queries.num_queries, clip.num_frames, 2))
        self.tracks[:] = self.query_xy[:, None]  # frames without an answer: at the query, occluded
        self.visible = np.zeros((queries.num_queries, clip.num_frames), bool)
        self.column: dict[int, int] = {}  # tracker id -> query row
        self.first: set[int] = set()

    def take(self, emitted) -> None:  # noqa: ANN001
        for ft in emitted:
            if ft.refined or ft.frame_index in self.first:
                continue
            self.first.add(ft.frame_index)
            for i, track_id in enumerate(ft.ids.tolist()):
                row = self.column.get(track_id)
                if row is not None:
                    self.tracks[row, ft.frame_index] = ft.xy[i]
                    self.visible[row, ft.frame_index] = ft.visible[i]

    def add_queries(self, stream, t: int, stamp: int) -> None:  # noqa: ANN001
        """Add the queries of frame `t` to `stream` (a `StreamingTracker`), right after its push."""
        rows = np.flatnonzero(self.query_frame == t)
        if rows.size:
            ids = stream.add_queries(self.query_xy[rows], stamp=stamp)
            self.column.update(zip(ids, rows.tolist(), strict=True))

    def prediction(self, seconds: float) -> Prediction:
        # The query frame itself is the query (TAP-Vid "first" mode does not score it).
        self.visible[np.arange(len(self.query_frame)), self.query_frame] = True
        return Prediction(self.tracks, self.visible, seconds)


def track_streaming(tracker, clip: TapVidClip, queries: TapVidQueries) -> Prediction:  # noqa: ANN001
    """Run a ``StreamingTracker`` over one clip as the node would (see the module docstring)."""
    out = _ClipTracks(clip, queries)
    tracker.reset()
    started = time.perf_counter()
    for t in range(clip.num_frames):
        stamp = (t + 1) * FRAME_PERIOD_NS
        out.take(tracker.push(clip.video[t], stamp))
        out.add_queries(tracker, t, stamp)
    out.take(tracker.flush())
    return out.prediction(time.perf_counter() - started)


def track_streaming_batch(
    tracker, clips: Sequence[TapVidClip], queries: Sequence[TapVidQueries]  # noqa: ANN001
) -> list[Prediction]:
    """Run several clips at once through a ``MultiStreamTracker``, one camera per clip, as
    `track_streaming` runs each (frame t of every clip still running is pushed in one ``push_many``, so the
    windows due together run as one batched model call). The cameras ``("clip", k)`` exist only during the
    call. Each prediction's ``seconds`` is an equal share of the wall time."""
    cameras = [("clip", k) for k in range(len(clips))]
    outs = [_ClipTracks(clip, q) for clip, q in zip(clips, queries, strict=True)]
    for camera in cameras:
        tracker.add_camera(camera)
    try:
        started = time.perf_counter()
        for t in range(max((clip.num_frames for clip in clips), default=0)):
            stamp = (t + 1) * FRAME_PERIOD_NS
            running = [k for k, clip in enumerate(clips) if t < clip.num_frames]
            emitted = tracker.push_many({cameras[k]: (clips[k].video[t], stamp) for k in running})
            for k in running:
                outs[k].take(emitted[cameras[k]])
                outs[k].add_queries(tracker[cameras[k]], t, stamp)
        emitted = tracker.flush(cameras)
        for camera, out in zip(cameras, outs, strict=True):
            out.take(emitted[camera])
        seconds = (time.perf_counter() - started) / max(len(clips), 1)
    finally:
        for camera in cameras:
            tracker.remove_camera(camera)
    return [out.prediction(seconds) for out in outs]


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
    queries = [first_queries(clip) for clip in clips]
    return _report(clips, queries, [tracker(clip, q) for clip, q in zip(clips, queries, strict=True)])


def evaluate_batch(tracker: BatchTracker, clips: Sequence[TapVidClip], batch: int) -> dict[str, object]:
    """As `evaluate`, `batch` clips at a time through a tracker of several clips (e.g. `track_streaming_batch`
    on a ``MultiStreamTracker``)."""
    queries = [first_queries(clip) for clip in clips]
    predictions: list[Prediction] = []
    for first in range(0, len(clips), batch):
        predictions += tracker(clips[first : first + batch], queries[first : first + batch])
    return _report(clips, queries, predictions)


def _report(
    clips: Sequence[TapVidClip], queries: Sequence[TapVidQueries], predictions: Sequence[Prediction]
) -> dict[str, object]:
    per_clip = {}
    seconds, frames = 0.0, 0
    for clip, q, prediction in zip(clips, queries, predictions, strict=True):
        per_clip[clip.name] = score(clip, q, prediction)
        seconds += prediction.seconds
        frames += clip.num_frames
    keys = ("AJ", "delta_avg", "OA", "median_px")
    mean = {k: float(np.mean([c[k] for c in per_clip.values()])) for k in keys}
    mean["ms_per_frame"] = 1000.0 * seconds / max(frames, 1)
    return {"mean": mean, "clips": per_clip}
