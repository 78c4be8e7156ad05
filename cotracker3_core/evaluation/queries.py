"""Query sampling as the TAP-Vid evaluation does it, written once for the dataset clips, the bag evaluation
and training's held-out evaluation."""

from __future__ import annotations

import numpy as np

#: Frame stride of the "strided" query mode (TAP-Vid: every 5th frame).
DEFAULT_QUERY_STRIDE = 5


def sample_query_tracks(
    occluded: np.ndarray, mode: str, stride: int = DEFAULT_QUERY_STRIDE
) -> tuple[np.ndarray, np.ndarray]:
    """Which tracks are queried on which frames.

    "first": one query per track at its first visible frame; tracks never visible are dropped.
    "strided": on frames 0, stride, 2 stride, ..., one query for every track visible there, ordered by frame,
    then by track.

    Args:
        occluded: (N, T) bool, True where a track is occluded.
    Returns:
        (rows, frames): (Q,) int64 track index and (Q,) int64 query frame of each query.
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    visible = ~np.asarray(occluded, dtype=bool)
    if mode == "first":
        rows = np.flatnonzero(visible.any(axis=1))
        frames = np.argmax(visible[rows], axis=1)
    elif mode == "strided":
        sampled = np.arange(0, visible.shape[1], stride)
        # (F, N) visibility on the sampled frames; nonzero walks it frame-major, track-minor.
        frame_pos, rows = np.nonzero(visible[:, sampled].T)
        frames = sampled[frame_pos]
    else:
        raise ValueError(f"query mode must be 'first' or 'strided', got {mode!r}")
    return rows.astype(np.int64), frames.astype(np.int64)
