"""TAP-Vid evaluation, ROS-free: clips (`tapvid_datasets`, `ground_truth`), query sampling (`queries`), scoring
of per-frame tracker output (`scoring`) and the benchmark metrics (`metrics`). Used by training's held-out
evaluation, the bag tools and the benchmarks alike."""

from cotracker3_core.evaluation.ground_truth import GroundTruth, load_sidecar_ground_truth, write_sidecar_ground_truth
from cotracker3_core.evaluation.metrics import (
    DISTANCE_THRESHOLDS,
    METRIC_NAMES,
    QUERY_MODES,
    compute_tapvid_metrics,
    pixels_to_raster,
    query_points_to_raster,
    summarize,
)
from cotracker3_core.evaluation.queries import DEFAULT_QUERY_STRIDE, sample_query_tracks
from cotracker3_core.evaluation.scoring import (
    FrameOutput,
    Predictions,
    Queries,
    first_queries,
    predictions_from_outputs,
    score_clip,
    strided_queries,
)
from cotracker3_core.evaluation.tapvid_datasets import (
    TapVidClip,
    TapVidDataset,
    TapVidQueries,
    clip_from_record,
    load_tapvid_pickle,
    read_robotap,
    read_tapvid_davis,
    read_tapvid_kinetics,
    read_tapvid_rgb_stacking,
    write_tapvid_pickle,
)

__all__ = [
    "DEFAULT_QUERY_STRIDE",
    "FrameOutput",
    "GroundTruth",
    "Predictions",
    "Queries",
    "first_queries",
    "load_sidecar_ground_truth",
    "predictions_from_outputs",
    "sample_query_tracks",
    "score_clip",
    "strided_queries",
    "write_sidecar_ground_truth",
    "DISTANCE_THRESHOLDS",
    "METRIC_NAMES",
    "QUERY_MODES",
    "TapVidClip",
    "TapVidDataset",
    "TapVidQueries",
    "clip_from_record",
    "compute_tapvid_metrics",
    "load_tapvid_pickle",
    "pixels_to_raster",
    "query_points_to_raster",
    "read_robotap",
    "read_tapvid_davis",
    "read_tapvid_kinetics",
    "read_tapvid_rgb_stacking",
    "summarize",
    "write_tapvid_pickle",
]
