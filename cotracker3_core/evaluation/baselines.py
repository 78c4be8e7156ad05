"""Baselines scored by the accuracy protocol beside a tracker: what a ROS user would otherwise run.

- ``zero_motion``: every frame at the query position, always visible.
- ``lucas_kanade``: OpenCV pyramidal Lucas-Kanade (``calcOpticalFlowPyrLK``, 21x21 window, 3 pyramid
  levels) frame to frame from each query frame; a point is kept while its forward-backward error is
  below 1 px, and once lost it stays occluded at its last position.
"""

from __future__ import annotations

import time

import cv2
import numpy as np

from cotracker3_core.evaluation.protocol import Prediction
from cotracker3_core.evaluation.tapvid_datasets import TapVidClip, TapVidQueries

LK_PARAMS = {
    "winSize": (21, 21),
    "maxLevel": 2,  # levels 0, 1, 2: three pyramid levels
    "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01),
}
LK_MAX_FB_ERROR_PX = 1.0


def zero_motion(clip: TapVidClip, queries: TapVidQueries) -> Prediction:
    """(Q, T) tracks at the query position, visible everywhere."""
    started = time.perf_counter()
    xy = queries.query_points[:, [2, 1]]
    tracks = np.repeat(xy[:, None], clip.num_frames, axis=1)
    return Prediction(tracks, np.ones(tracks.shape[:2], bool), time.perf_counter() - started)


def lucas_kanade(clip: TapVidClip, queries: TapVidQueries) -> Prediction:
    """Frame-to-frame pyramidal LK with a forward-backward check (see the module docstring)."""
    started = time.perf_counter()
    T, Q = clip.num_frames, queries.num_queries
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in clip.video]
    query_frame = queries.query_points[:, 0].astype(int)
    tracks = np.repeat(queries.query_points[:, None, [2, 1]], T, axis=1)
    visible = np.zeros((Q, T), bool)
    alive = np.zeros(Q, bool)
    for t in range(T):
        starting = query_frame == t
        alive |= starting
        visible[starting, t] = True
        if t + 1 == T:
            break
        rows = np.flatnonzero(alive)
        if rows.size:
            p0 = tracks[rows, t].astype(np.float32).reshape(-1, 1, 2)
            p1, st1, _ = cv2.calcOpticalFlowPyrLK(grey[t], grey[t + 1], p0, None, **LK_PARAMS)
            back, st2, _ = cv2.calcOpticalFlowPyrLK(grey[t + 1], grey[t], p1, None, **LK_PARAMS)
            fb = np.linalg.norm((back - p0).reshape(-1, 2), axis=1)
            ok = (st1.ravel() == 1) & (st2.ravel() == 1) & (fb < LK_MAX_FB_ERROR_PX)
            tracks[rows[ok], t + 1] = p1.reshape(-1, 2)[ok]
            visible[rows[ok], t + 1] = True
            lost = rows[~ok]
            alive[lost] = False
        # lost (or not yet started) points keep their last position, occluded
        idle = ~alive | ~visible[:, t + 1]
        tracks[idle & (query_frame <= t), t + 1] = tracks[idle & (query_frame <= t), t]
    return Prediction(tracks, visible, time.perf_counter() - started)
