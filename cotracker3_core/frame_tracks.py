"""What a stream emits per frame: `FrameTracks`, made from a window's estimate (model pixels, logits)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .windows import IterationEstimate


@dataclass
class FrameTracks:
    """The tracks of one frame.

    stamp: the frame's timestamp; frame_index: frames since the start or the last reset;
    refined: True when these values re-estimate a frame already emitted;
    ids: (N,) int64 query ids; xy: (N, 2) float32 input-image pixels (x right, y down);
    visibility, confidence: (N,) float32 in [0, 1]; visible: (N,) bool. A point whose estimate is not finite
    (NaN/inf: a broken model) has visibility = confidence = 0, visible False and a NaN xy.
    """

    stamp: int
    frame_index: int
    refined: bool
    ids: np.ndarray
    xy: np.ndarray
    visibility: np.ndarray
    confidence: np.ndarray
    visible: np.ndarray


def tracks_from_estimate(
    estimate: IterationEstimate,
    start: int,
    frames: range,
    ids: np.ndarray,
    query_frames: np.ndarray,
    stamps: dict[int, int],
    emitted_until: int,
    scale: np.ndarray,
    threshold: float,
) -> tuple[list[FrameTracks], int]:
    """FrameTracks of `frames` (absolute indices) from the window at `start`.

    Args:
        estimate: batch of one, coords (1, F, N, 2) in model pixels, logits (1, F, N); frame k is `start + k`.
        ids, query_frames: (N,) each query's id and frame index (a query shows from its frame on).
        stamps: frame index -> stamp; emitted_until: frames before it are emitted `refined`.
        scale: (2,) model pixels -> input-image pixels (x, y); threshold: visible = vis * conf > threshold.
    Returns:
        (tracks, nonfinite): the tracks, and how many frames held a NaN/infinite estimate.
    """
    coords = estimate.coords[0].float().cpu().numpy() * scale.astype(np.float32)  # (F, N, 2) input-image px
    vis = estimate.vis_logits[0].float().sigmoid().cpu().numpy()
    conf = estimate.conf_logits[0].float().sigmoid().cpu().numpy()
    finite = np.isfinite(coords).all(-1) & np.isfinite(vis) & np.isfinite(conf)  # (F, N)
    out, nonfinite = [], 0
    for index in frames:
        k = index - start
        active = query_frames <= index
        ok = finite[k][active]
        nonfinite += int(not ok.all())
        v, c = np.where(ok, vis[k][active], 0.0), np.where(ok, conf[k][active], 0.0)  # NaN -> not visible
        out.append(
            FrameTracks(
                stamp=stamps[index],
                frame_index=index,
                refined=index < emitted_until,
                ids=ids[active],
                xy=coords[k][active].astype(np.float32),
                visibility=v.astype(np.float32),
                confidence=c.astype(np.float32),
                visible=(v * c) > threshold,
            )
        )
    return out, nonfinite


def empty_tracks(stamp: int, index: int) -> FrameTracks:
    """The tracks of a frame emitted while nothing is tracked."""
    empty = np.zeros(0, dtype=np.float32)
    return FrameTracks(
        stamp=stamp,
        frame_index=index,
        refined=False,
        ids=np.zeros(0, dtype=np.int64),
        xy=np.zeros((0, 2), dtype=np.float32),
        visibility=empty,
        confidence=empty.copy(),
        visible=np.zeros(0, dtype=bool),
    )


__all__ = ["FrameTracks", "empty_tracks", "tracks_from_estimate"]
