"""TAP-Vid evaluation: benchmark metrics and readers for the TAP-Vid / RoboTAP pickles."""

from cotracker3_core.evaluation.metrics import (
    DISTANCE_THRESHOLDS,
    METRIC_NAMES,
    QUERY_MODES,
    compute_tapvid_metrics,
    pixels_to_raster,
    query_points_to_raster,
    summarize,
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
