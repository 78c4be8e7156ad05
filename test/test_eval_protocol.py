"""The accuracy protocol: warped-photograph clips with exact ground truth, the baselines, and tracking a
clip as the node does. Photographs: scikit-image's CC0 samples (the training set; the held-out clips of
``benchmarks.accuracy`` use ../shared videos instead)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cotracker3_core.config import preset
from cotracker3_core.evaluation.baselines import lucas_kanade, zero_motion
from cotracker3_core.evaluation.protocol import (
    Prediction,
    evaluate,
    first_queries,
    heldout_clips,
    score,
    track_streaming,
)
from cotracker3_core.evaluation.tapvid_datasets import TapVidClip
from cotracker3_core.evaluation.warp_clips import WarpClipConfig, make_warp_clip
from cotracker3_core.streaming import StreamConfig, StreamingTracker
from training.data.photos import TRAINING_PHOTOS, load_photos


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    return load_photos()


def _as_clip(clip, name="c") -> TapVidClip:  # noqa: ANN001
    return TapVidClip.from_pixels(name, clip.video, clip.tracks.transpose(1, 0, 2), ~clip.visible.T)


def test_training_photos_are_listed_with_licences(photos: list[np.ndarray]) -> None:
    assert len(photos) == len(TRAINING_PHOTOS) >= 10
    assert all(p.ndim == 3 and p.shape[2] == 3 and p.dtype == np.uint8 for p in photos)
    assert all(("CC0" in lic) or ("public domain" in lic) or ("no known copyright" in lic)
               for lic in TRAINING_PHOTOS.values())


def test_warp_clip_ground_truth_is_exact(photos: list[np.ndarray]) -> None:
    config = WarpClipConfig(num_frames=24, lighting=0.0)
    clip = make_warp_clip(photos[0], photos[1:3], config, seed=5)
    again = make_warp_clip(photos[0], photos[1:3], config, seed=5)
    assert np.array_equal(clip.video, again.video) and np.array_equal(clip.tracks, again.tracks)
    T, N = clip.visible.shape
    assert clip.video.shape == (24, 240, 320, 3) and clip.tracks.shape == (24, N, 2) and N == 48
    assert (clip.visible[clip.query_frames, np.arange(N)]).all()
    assert not any(clip.visible[: q, n].any() for n, q in enumerate(clip.query_frames))
    # A tracked point keeps its colour wherever it is visible (bilinear sample at the true position).
    diffs = []
    for n in range(N):
        q = clip.query_frames[n]
        ref = cv2.getRectSubPix(clip.video[q].astype(np.float32), (1, 1), tuple(map(float, clip.tracks[q, n])))
        for t in np.flatnonzero(clip.visible[:, n]):
            got = cv2.getRectSubPix(clip.video[t].astype(np.float32), (1, 1), tuple(map(float, clip.tracks[t, n])))
            diffs.append(float(np.abs(got - ref).mean()))
    assert np.median(diffs) < 2.0, np.median(diffs)
    # Occluders hide some points on some frames and the camera moves them by many pixels.
    assert 0.3 < clip.visible.mean() < 0.99
    assert np.linalg.norm(clip.tracks[-1] - clip.tracks[0], axis=-1).max() > 20


def test_lucas_kanade_tracks_an_unoccluded_slow_clip(photos: list[np.ndarray]) -> None:
    config = WarpClipConfig(num_frames=16, num_occluders=(0, 0), rotation_deg=5, translation=0.05,
                            scale_range=(0.95, 1.05), perspective=0.01, lighting=0.0)
    clip = _as_clip(make_warp_clip(photos[0], [], config, seed=1))
    queries = first_queries(clip)
    lk = score(clip, queries, lucas_kanade(clip, queries))
    zero = score(clip, queries, zero_motion(clip, queries))
    assert lk["median_px"] < 0.5 and lk["delta_avg"] > 0.8
    assert zero["AJ"] < lk["AJ"]


def test_perfect_prediction_scores_one(photos: list[np.ndarray]) -> None:
    clip = _as_clip(make_warp_clip(photos[3], photos[4:6], WarpClipConfig(num_frames=12), seed=2))
    queries = first_queries(clip)
    perfect = Prediction(queries.target_points.copy(), ~queries.occluded)
    assert score(clip, queries, perfect) == pytest.approx({"AJ": 1.0, "delta_avg": 1.0, "OA": 1.0, "median_px": 0.0})


def test_streaming_tracker_is_run_as_the_node_runs_it(photos: list[np.ndarray]) -> None:
    clip = _as_clip(make_warp_clip(photos[2], photos[:2], WarpClipConfig(num_frames=12, num_points=8), seed=3))
    config = StreamConfig(device="cpu", model_resolution=(64, 96), window_len=8, step=4, iters=1,
                          arch=preset("tiny"))
    tracker = StreamingTracker.from_config(config)
    queries = first_queries(clip)
    prediction = track_streaming(tracker, clip, queries)
    assert prediction.tracks.shape == (queries.num_queries, 12, 2) and np.isfinite(prediction.tracks).all()
    # Every frame after a query got an answer from the tracker (not the placeholder at the query).
    q = queries.query_points[:, 0].astype(int)
    moved = [(prediction.tracks[i, q[i] + 1 :] != queries.query_points[i, [2, 1]]).any(axis=-1).all()
             for i in range(queries.num_queries) if q[i] + 1 < 12]
    assert all(moved)
    # Running the same clip twice (reset in between) gives the same answer.
    again = track_streaming(tracker, clip, queries)
    np.testing.assert_allclose(again.tracks, prediction.tracks, atol=1e-5)
    result = evaluate(lambda c, qq: track_streaming(tracker, c, qq), [clip])
    assert set(result["mean"]) == {"AJ", "delta_avg", "OA", "median_px", "ms_per_frame"}


def test_heldout_clips_from_videos(shared_dir) -> None:  # noqa: ANN001
    clips = heldout_clips([shared_dir / "data" / "teddy.mp4", shared_dir / "data" / "apple.mp4"], 1)
    assert [c.name for c in clips] == ["teddy_0", "apple_0"]
    assert all(c.video.shape == (48, 240, 320, 3) and c.num_tracks == 48 for c in clips)
