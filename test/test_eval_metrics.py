"""TAP-Vid metrics: parity with the reference values, hand-checked cases and input validation.

The definition is that of google-deepmind/tapnet,
https://github.com/google-deepmind/tapnet/blob/main/tapnet/tapvid/evaluation_datasets.py
(``compute_tapvid_metrics``). ``test/data/tapvid_metrics.npz`` is a copy of
``shared/reference/tapvid_metrics.npz`` (random predictions against random ground truth, 3 clips, 40
points, 30 frames), made with the copy of that function in facebookresearch/co-tracker
(``cotracker/evaluation/core/eval_utils.py``). That copy divides each clip's count of correct occlusion
flags by the evaluated frames of the whole batch; that is this project's default, so that every array of
the reference is reproduced; ``oa_denominator="clip"`` divides per clip as current tapnet does, and the
check below converts between the two exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cotracker3_core.evaluation import METRIC_NAMES, compute_tapvid_metrics, summarize
from cotracker3_core.evaluation.metrics import pixels_to_raster, query_points_to_raster

REFERENCE = Path(__file__).resolve().parent / "data" / "tapvid_metrics.npz"
INPUT_KEYS = ("query_points", "gt_occluded", "gt_tracks", "pred_occluded", "pred_tracks")
MODES = ("first", "strided")


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as data:
        return {key: data[key] for key in data.files}


def _inputs(reference: dict[str, np.ndarray]) -> list[np.ndarray]:
    return [reference[key] for key in INPUT_KEYS]


def _evaluated_frames(query_points: np.ndarray, num_frames: int, mode: str) -> np.ndarray:
    """(B,) number of evaluated frames per clip, written independently of the module."""
    query_frame = np.round(query_points[..., 0]).astype(int)
    counts = []
    for clip_frames in query_frame:
        if mode == "first":
            counts.append(sum(num_frames - 1 - int(q) for q in clip_frames))
        else:
            counts.append(len(clip_frames) * (num_frames - 1))
    return np.array(counts)


@pytest.mark.parametrize("mode", MODES)
def test_metrics_match_reference(reference: dict[str, np.ndarray], mode: str) -> None:
    metrics = compute_tapvid_metrics(*_inputs(reference), query_mode=mode)
    assert list(metrics) == list(METRIC_NAMES)
    assert {f"{mode}__{name}" for name in metrics} == {k for k in reference if k.startswith(f"{mode}__")}
    for name, value in metrics.items():
        assert value.shape == (3,)
        np.testing.assert_allclose(value, reference[f"{mode}__{name}"], rtol=0, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("mode", MODES)
def test_occlusion_accuracy_matches_reference_batch_pooled_denominator(
    reference: dict[str, np.ndarray], mode: str
) -> None:
    metrics = compute_tapvid_metrics(*_inputs(reference), query_mode=mode, oa_denominator="clip")
    evaluated = _evaluated_frames(reference["query_points"], reference["gt_tracks"].shape[2], mode)
    pooled = metrics["occlusion_accuracy"] * evaluated / evaluated.sum()
    np.testing.assert_allclose(pooled, reference[f"{mode}__occlusion_accuracy"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_batched_equals_one_clip_at_a_time(reference: dict[str, np.ndarray], mode: str) -> None:
    batched = compute_tapvid_metrics(*_inputs(reference), query_mode=mode, oa_denominator="clip")
    for clip in range(3):
        single = compute_tapvid_metrics(*[a[clip : clip + 1] for a in _inputs(reference)], query_mode=mode)
        for name in METRIC_NAMES:
            np.testing.assert_allclose(single[name], batched[name][clip : clip + 1], rtol=0, atol=1e-12)


def test_per_track_metrics_have_track_axis(reference: dict[str, np.ndarray]) -> None:
    per_track = compute_tapvid_metrics(*_inputs(reference), query_mode="strided", per_track=True)
    assert all(value.shape == (3, 40) for value in per_track.values())


def test_hand_computed_single_track() -> None:
    # One track over 5 frames, queried at frame 1; ground truth at x = 10·t, occluded at frame 3.
    gt_tracks = np.array([[[[0.0, 0.0], [10.0, 0.0], [20.0, 0.0], [30.0, 0.0], [40.0, 0.0]]]])
    gt_occluded = np.array([[[True, False, False, True, False]]])
    # Errors per frame: 0, 0, 1.5 px, (occluded), 20 px; predicted visible everywhere except frame 4.
    pred_tracks = gt_tracks + np.array([0.0, 0.0, 1.5, 0.0, 20.0])[None, None, :, None] * [1.0, 0.0]
    pred_occluded = np.array([[[False, False, False, False, True]]])
    query_points = np.array([[[1.0, 0.0, 10.0]]])

    first = compute_tapvid_metrics(query_points, gt_occluded, gt_tracks, pred_occluded, pred_tracks, "first")
    # Evaluated frames 2, 3, 4. GT visible: 2, 4. Occlusion right on 2 only.
    assert first["occlusion_accuracy"][0] == pytest.approx(1 / 3)
    assert first["pts_within_1"][0] == pytest.approx(0 / 2)
    assert first["pts_within_2"][0] == pytest.approx(1 / 2)
    assert first["pts_within_16"][0] == pytest.approx(1 / 2)
    # Threshold 1: no TP; FP = frame 2 (too far) + frame 3 (visible but occluded) -> 0 / (2 + 2).
    assert first["jaccard_1"][0] == pytest.approx(0.0)
    # Threshold 2: TP = frame 2; FP = frame 3 -> 1 / (2 + 1).
    assert first["jaccard_2"][0] == pytest.approx(1 / 3)
    assert first["average_jaccard"][0] == pytest.approx((0 + 4 * (1 / 3)) / 5)

    strided = compute_tapvid_metrics(
        query_points, gt_occluded, gt_tracks, pred_occluded, pred_tracks, "strided"
    )
    # Evaluated frames 0, 2, 3, 4. Frame 0: GT occluded, predicted visible -> wrong, and a false positive.
    assert strided["occlusion_accuracy"][0] == pytest.approx(1 / 4)
    assert strided["jaccard_2"][0] == pytest.approx(1 / (2 + 2))


def test_threshold_is_strict() -> None:
    gt_tracks = np.zeros((1, 1, 2, 2))
    pred_tracks = gt_tracks + np.array([4.0, 0.0])  # exactly 4 px away
    occluded = np.zeros((1, 1, 2), dtype=bool)
    metrics = compute_tapvid_metrics(
        np.zeros((1, 1, 3)), occluded, gt_tracks, occluded, pred_tracks, "strided"
    )
    assert metrics["pts_within_4"][0] == 0.0
    assert metrics["pts_within_8"][0] == 1.0


def test_clip_without_visible_points_gives_nan_without_warning() -> None:
    occluded = np.ones((1, 2, 3), dtype=bool)
    tracks = np.zeros((1, 2, 3, 2))
    with np.errstate(all="raise"):
        metrics = compute_tapvid_metrics(np.zeros((1, 2, 3)), occluded, tracks, occluded, tracks, "first")
    assert metrics["occlusion_accuracy"][0] == 1.0
    assert np.isnan(metrics["pts_within_1"][0])
    assert np.isnan(metrics["average_jaccard"][0])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: {**a, "query_mode": "all"}, "query_mode"),
        (lambda a: {**a, "gt_tracks": a["gt_tracks"][..., :1]}, "gt_tracks"),
        (lambda a: {**a, "pred_tracks": a["pred_tracks"][:, :, :-1]}, "pred_tracks"),
        (lambda a: {**a, "query_points": a["query_points"][..., :2]}, "query_points"),
        (lambda a: {**a, "gt_occluded": a["gt_occluded"][:2]}, "gt_occluded"),
        (lambda a: {**a, "pred_occluded": a["pred_occluded"].astype(np.float32)}, "pred_occluded"),
        (lambda a: {**a, "query_points": a["query_points"] + [30.0, 0, 0]}, "query frames"),
        (lambda a: {**a, "query_points": a["query_points"] - [1.0, 0, 0]}, "query frames"),
    ],
)
def test_bad_inputs_raise_clear_errors(reference: dict[str, np.ndarray], change, message: str) -> None:
    arguments = {key: reference[key] for key in INPUT_KEYS} | {"query_mode": "first"}
    with pytest.raises(ValueError, match=message):
        compute_tapvid_metrics(**change(arguments))


def test_summarize_means_and_aliases(reference: dict[str, np.ndarray]) -> None:
    metrics = compute_tapvid_metrics(*_inputs(reference), query_mode="first", oa_denominator="clip")
    summary = summarize(metrics)
    assert list(summary)[:3] == ["AJ", "delta_avg", "OA"]
    assert summary["AJ"] == pytest.approx(float(np.mean(metrics["average_jaccard"])))
    assert summary["delta_avg"] == pytest.approx(float(np.mean(metrics["average_pts_within_thresh"])))
    assert summary["OA"] == pytest.approx(float(np.mean(metrics["occlusion_accuracy"])))
    assert set(METRIC_NAMES) <= set(summary)
    assert all(isinstance(value, float) for value in summary.values())

    per_clip = [
        compute_tapvid_metrics(*[a[i : i + 1] for a in _inputs(reference)], query_mode="first")
        for i in range(3)
    ]
    assert summarize(per_clip) == pytest.approx(summary)


def test_summarize_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="at least one"):
        summarize([])
    with pytest.raises(ValueError, match="average_jaccard"):
        summarize({"occlusion_accuracy": np.ones(2)})


def test_pixels_to_raster_scales_each_axis() -> None:
    tracks = np.array([[[[512.0, 128.0], [256.0, 32.0]]]])  # (1, 1, 2, 2) in a 512×128 video
    np.testing.assert_allclose(pixels_to_raster(tracks, width=512, height=128), [[[[256, 256], [128, 64]]]])
    queries = np.array([[7.0, 32.0, 256.0]])  # (t, y, x)
    np.testing.assert_allclose(query_points_to_raster(queries, width=512, height=128), [[7.0, 64.0, 128.0]])
    with pytest.raises(ValueError, match="x/y"):
        pixels_to_raster(np.zeros((3, 3)), 10, 10)
    with pytest.raises(ValueError, match="width"):
        pixels_to_raster(np.zeros((3, 2)), 0, 10)
    with pytest.raises(ValueError, match=r"\(t, y, x\)"):
        query_points_to_raster(np.zeros((3, 2)), 10, 10)
