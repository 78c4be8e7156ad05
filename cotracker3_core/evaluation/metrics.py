"""TAP-Vid point-tracking metrics: occlusion accuracy, <δ^x, Jaccard and their averages.

The definitions follow the TAP-Vid benchmark (Doersch et al., 2022) as implemented in
google-deepmind/tapnet, ``tapnet/tapvid/evaluation_datasets.py`` (``compute_tapvid_metrics``):

- A frame of a track is *evaluated* when it comes after the query frame ("first" mode: the frames
  before the first visible one are known to be occluded) or when it is any frame but the query frame
  ("strided" mode).
- ``pts_within_x``: among evaluated frames where the ground truth is visible, the fraction whose
  prediction lies strictly closer than ``x`` raster pixels, whatever the predicted occlusion.
- ``jaccard_x``: true positives / (ground-truth visible + false positives), where a true positive is
  visible in both and within ``x``, and a false positive is predicted visible but either occluded in the
  ground truth or not within ``x``.
- ``occlusion_accuracy``: fraction of evaluated frames whose predicted occlusion equals the ground truth.

All coordinates are in a 256×256 raster (the benchmark resizes every video to 256×256); use
:func:`pixels_to_raster` to bring tracks predicted on the original W×H video there.

Batches: by default ``occlusion_accuracy`` divides each clip's count of correct occlusion flags by the
evaluated frames of the *whole batch*, as the TAP-Vid release and the copy in facebookresearch/co-tracker
(``cotracker/evaluation/core/eval_utils.py``) do, so that the official numbers are reproduced exactly
(the reference vectors of this project were made that way). ``oa_denominator="clip"`` divides per clip,
as current tapnet does. The two agree whenever one clip is passed per call, as the benchmarks do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

QUERY_MODES = ("first", "strided")
"""Valid ``query_mode`` values."""

DISTANCE_THRESHOLDS = (1, 2, 4, 8, 16)
"""Pixel thresholds (in the 256×256 raster) of ``pts_within_x`` and ``jaccard_x``."""

RASTER_SIZE = 256
"""Side of the square raster in which TAP-Vid metrics are defined."""

METRIC_NAMES = (
    "occlusion_accuracy",
    *(f"{kind}_{t}" for t in DISTANCE_THRESHOLDS for kind in ("pts_within", "jaccard")),
    "average_jaccard",
    "average_pts_within_thresh",
)
"""Keys of the dict returned by :func:`compute_tapvid_metrics`, in order."""

SUMMARY_ALIASES = {
    "AJ": "average_jaccard",
    "delta_avg": "average_pts_within_thresh",
    "OA": "occlusion_accuracy",
}
"""Short names used in papers, mapped to the metric they denote."""


def _check_inputs(
    query_points: np.ndarray,
    gt_occluded: np.ndarray,
    gt_tracks: np.ndarray,
    pred_occluded: np.ndarray,
    pred_tracks: np.ndarray,
    query_mode: str,
) -> None:
    if query_mode not in QUERY_MODES:
        raise ValueError(f"query_mode must be one of {QUERY_MODES}, got {query_mode!r}")
    if gt_tracks.ndim != 4 or gt_tracks.shape[-1] != 2:
        raise ValueError(f"gt_tracks must have shape (B, N, T, 2), got {gt_tracks.shape}")
    b, n, t, _ = gt_tracks.shape
    expected = {
        "query_points": ((b, n, 3), query_points),
        "gt_occluded": ((b, n, t), gt_occluded),
        "pred_occluded": ((b, n, t), pred_occluded),
        "pred_tracks": ((b, n, t, 2), pred_tracks),
    }
    for name, (shape, array) in expected.items():
        if array.shape != shape:
            raise ValueError(
                f"{name} must have shape {shape} to match gt_tracks {gt_tracks.shape} "
                f"(B, N, T, 2), got {array.shape}"
            )
    for name, array in (("gt_occluded", gt_occluded), ("pred_occluded", pred_occluded)):
        if array.dtype != np.bool_:
            raise ValueError(f"{name} must be a bool array (True = occluded), got dtype {array.dtype}")
    if not np.all(np.isfinite(query_points[..., 0])):
        raise ValueError("query_points contain non-finite query frames")
    frames = np.round(query_points[..., 0])
    if frames.size and (frames.min() < 0 or frames.max() >= t):
        raise ValueError(
            f"query frames (query_points[..., 0], rounded) must lie in [0, {t - 1}] for T={t} frames, "
            f"got range [{frames.min():g}, {frames.max():g}]"
        )


def compute_tapvid_metrics(
    query_points: np.ndarray,
    gt_occluded: np.ndarray,
    gt_tracks: np.ndarray,
    pred_occluded: np.ndarray,
    pred_tracks: np.ndarray,
    query_mode: str,
    per_track: bool = False,
    oa_denominator: str = "batch",
) -> dict[str, np.ndarray]:
    """TAP-Vid metrics for a batch of clips.

    Args:
        query_points: (B, N, 3) query per track as (t, y, x); only the frame ``t`` is used (rounded).
        gt_occluded: (B, N, T) bool, True where the ground-truth point is occluded.
        gt_tracks: (B, N, T, 2) ground-truth positions, x/y in the 256×256 raster.
        pred_occluded: (B, N, T) bool, predicted occlusion.
        pred_tracks: (B, N, T, 2) predicted positions, x/y in the 256×256 raster.
        query_mode: "first" (evaluate frames after the query frame) or "strided" (evaluate every frame
            except the query frame).
        per_track: if True, every metric is returned per track, shape (B, N), instead of per clip.
        oa_denominator: "batch" (the official definition: evaluated frames of the whole batch) or "clip".

    Returns:
        Dict keyed by :data:`METRIC_NAMES`, each value a float64 array of shape (B,) (or (B, N) with
        ``per_track``). A clip (or track) with no evaluated frame, or no visible ground truth, gets NaN
        for the ratios that have a zero denominator, as in the reference implementation.

    Raises:
        ValueError: unknown query mode, shapes that do not agree, non-bool occlusion arrays or query
            frames outside the clip.
    """
    query_points = np.asarray(query_points)
    gt_occluded = np.asarray(gt_occluded)
    gt_tracks = np.asarray(gt_tracks)
    pred_occluded = np.asarray(pred_occluded)
    pred_tracks = np.asarray(pred_tracks)
    _check_inputs(query_points, gt_occluded, gt_tracks, pred_occluded, pred_tracks, query_mode)
    if oa_denominator not in ("batch", "clip"):
        raise ValueError(f"oa_denominator must be 'batch' or 'clip', got {oa_denominator!r}")

    num_frames = gt_tracks.shape[2]
    reduce_axes = (2,) if per_track else (1, 2)

    # (B, N, 1) query frame against (T,) frame index -> (B, N, T) mask of evaluated frames.
    query_frame = np.round(query_points[..., 0]).astype(np.int64)[..., None]
    frame_index = np.arange(num_frames)
    if query_mode == "first":
        evaluated = frame_index > query_frame
    else:
        evaluated = frame_index != query_frame

    def count(mask: np.ndarray) -> np.ndarray:
        return np.sum(mask & evaluated, axis=reduce_axes)

    gt_visible = ~gt_occluded
    pred_visible = ~pred_occluded
    # Squared distance in the input dtype, compared with the squared threshold (no sqrt), as the
    # reference does, so that points on a threshold fall on the same side.
    squared_distance = np.sum(np.square(pred_tracks - gt_tracks), axis=-1)
    num_gt_visible = count(gt_visible)

    metrics: dict[str, np.ndarray] = {}
    # Zero denominators are legitimate (a clip with no visible point) and yield NaN, not a warning.
    with np.errstate(divide="ignore", invalid="ignore"):
        evaluated_frames = count(np.ones_like(evaluated))
        if oa_denominator == "batch" and not per_track:
            evaluated_frames = np.sum(evaluated_frames)
        metrics["occlusion_accuracy"] = count(pred_occluded == gt_occluded) / evaluated_frames
        fractions_within, jaccards = [], []
        for threshold in DISTANCE_THRESHOLDS:
            within = squared_distance < np.square(threshold)
            correct = within & gt_visible
            fraction_within = count(correct) / num_gt_visible
            true_positives = count(correct & pred_visible)
            false_positives = count(pred_visible & (gt_occluded | ~within))
            jaccard = true_positives / (num_gt_visible + false_positives)
            metrics[f"pts_within_{threshold}"] = fraction_within
            metrics[f"jaccard_{threshold}"] = jaccard
            fractions_within.append(fraction_within)
            jaccards.append(jaccard)
    metrics["average_jaccard"] = np.mean(np.stack(jaccards, axis=-1), axis=-1)
    metrics["average_pts_within_thresh"] = np.mean(np.stack(fractions_within, axis=-1), axis=-1)
    return {name: metrics[name] for name in METRIC_NAMES}


def pixels_to_raster(xy: np.ndarray, width: int, height: int, raster_size: int = RASTER_SIZE) -> np.ndarray:
    """Rescale x/y pixel coordinates of a ``width``×``height`` video to the square TAP-Vid raster.

    TAP-Vid evaluates in a 256×256 raster: normalised ground truth is multiplied by 256 on both axes.
    Pixel coordinates of the original video therefore scale by ``raster_size / width`` in x and
    ``raster_size / height`` in y.

    Args:
        xy: (..., 2) x/y pixel coordinates, e.g. tracks (B, N, T, 2).
        width: video width W in pixels.
        height: video height H in pixels.
        raster_size: side of the square raster.

    Returns:
        (..., 2) float64 coordinates in the raster.
    """
    xy = np.asarray(xy, dtype=np.float64)
    if xy.ndim == 0 or xy.shape[-1] != 2:
        raise ValueError(f"xy must have shape (..., 2) holding x/y, got {xy.shape}")
    for name, value in (("width", width), ("height", height), ("raster_size", raster_size)):
        if value <= 0:
            raise ValueError(f"{name} must be positive, got {value}")
    return xy * np.array([raster_size / width, raster_size / height])


def query_points_to_raster(
    query_points: np.ndarray, width: int, height: int, raster_size: int = RASTER_SIZE
) -> np.ndarray:
    """Rescale (..., 3) query points (t, y, x) in pixels of a ``width``×``height`` video to the raster.

    The frame index ``t`` is kept; y and x are scaled as in :func:`pixels_to_raster`.
    """
    query_points = np.asarray(query_points, dtype=np.float64)
    if query_points.ndim == 0 or query_points.shape[-1] != 3:
        raise ValueError(f"query_points must have shape (..., 3) holding (t, y, x), got {query_points.shape}")
    yx = pixels_to_raster(query_points[..., :0:-1], width, height, raster_size)  # x/y order in, y/x out
    return np.concatenate([query_points[..., :1], yx[..., ::-1]], axis=-1)


def summarize(
    metrics: Mapping[str, np.ndarray] | Sequence[Mapping[str, np.ndarray]],
) -> dict[str, float]:
    """Benchmark means of per-clip metrics.

    The benchmark score is the plain mean over clips (the paper shows it ×100). A clip whose metric is
    NaN (no visible ground truth) makes that mean NaN, which is left visible rather than hidden.

    Args:
        metrics: a dict from :func:`compute_tapvid_metrics` (arrays of shape (B,)), or a sequence of such
            dicts (one per evaluated batch), which are concatenated.

    Returns:
        ``{"AJ", "delta_avg", "OA"}`` (see :data:`SUMMARY_ALIASES`) followed by the mean of every metric
        under its full name, as Python floats in [0, 1].
    """
    batches = [metrics] if isinstance(metrics, Mapping) else list(metrics)
    if not batches:
        raise ValueError("summarize needs at least one metrics dict")
    names = list(batches[0])
    for index, batch in enumerate(batches):
        if list(batch) != names:
            raise ValueError(f"metrics dict {index} has keys {sorted(batch)}, expected {sorted(names)}")
    missing = [name for name in SUMMARY_ALIASES.values() if name not in names]
    if missing:
        raise ValueError(f"metrics lack {missing}; pass the output of compute_tapvid_metrics")
    means = {
        name: float(np.mean(np.concatenate([np.ravel(batch[name]) for batch in batches]))) for name in names
    }
    summary = {alias: means[name] for alias, name in SUMMARY_ALIASES.items()}
    summary.update(means)
    return summary
