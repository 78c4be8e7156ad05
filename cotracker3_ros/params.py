"""The tracker node's parameters: names, defaults, ranges and descriptions, in one table, and their
translation into the engine's `StreamConfig`.

Plain data (no ROS import) so that the node, the launch helper, the tools, the docs and the tests read the same
list.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import yaml

from cotracker3_core.config import ModelConfig
from cotracker3_core.streaming import StreamConfig


@dataclass(frozen=True)
class ParamSpec:
    """One ROS parameter of the tracker node.

    Args:
        name: parameter name.
        default: default value; its Python type fixes the ROS type (str, bool, int, float, list[int], list[str]:
            an empty list is a string list left unset).
        description: what it does, shown by ``ros2 param describe``.
        read_only: fixed after start-up (model and device choices); False means tunable live.
        range: inclusive (min, max) for int and float parameters, or None.
        constraints: extra constraints in words (``additional_constraints`` of the descriptor).
    """

    name: str
    default: Any
    description: str
    read_only: bool = True
    range: tuple[float, float] | None = None
    constraints: str = ""


#: The node's default name (`ros2 run cotracker3_ros tracker_node`); parameter files address it.
NODE_NAME = "tracker_node"

_DEFAULTS = StreamConfig()
#: Value of model_resolution, window_len, step and iters that leaves the setting to the checkpoint's
#: recommendation (the shipped lite model records its own), else the library default (StreamConfig).
UNSET = 0

PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec(
        "checkpoint",
        "lite",
        "Weights: lite (the project's own CPU-real-time model, shipped, Apache-2.0), a local .pth file, an "
        "official name (scaled_online, baseline_online) or an http(s) URL, downloaded once into "
        "~/.cache/cotracker3. Empty: untrained random weights of arch (plumbing tests only). The official "
        "weights are licensed CC BY-NC 4.0 (non-commercial use only).",
    ),
    ParamSpec("device", _DEFAULTS.device, "Inference device.", constraints="auto, cpu, cuda or cuda:<index>"),
    ParamSpec(
        "precision",
        _DEFAULTS.precision,
        "Inference precision (autocast for bf16/fp16).",
        constraints="fp32, bf16 or fp16",
    ),
    ParamSpec(
        "model_resolution",
        [UNSET, UNSET],
        "[height, width] every frame is resized to before the network; outputs are in input-image pixels. "
        "[0, 0]: the checkpoint's recommendation (lite: [192, 256]), else [384, 512].",
        constraints="[0, 0], or two positive integers, each a multiple of 4 (the encoder stride)",
    ),
    ParamSpec(
        "window_len",
        UNSET,
        "Frames per sliding window. 0: the checkpoint's (lite: 8; official: 16).",
        range=(0, 64),
        constraints="0, or at least 4",
    ),
    ParamSpec(
        "step",
        UNSET,
        "Frames between two windows: 8 as the official model was trained; 1, 2 or 4 for lower latency at more "
        "compute per frame. 0: the checkpoint's recommendation (lite: 4), else 8.",
        range=(0, 8),
        constraints="0, or 1, 2, 4 or 8 and at most window_len / 2",
    ),
    ParamSpec(
        "iters",
        UNSET,
        "Refinement iterations per window. 0: the checkpoint's recommendation (lite: 2), else 6.",
        range=(0, 16),
    ),
    ParamSpec(
        "update",
        "",
        "How tracks are updated: window (every step frames a whole window is refined for iters iterations; "
        "frames are published window_len - step frames after they arrive) or newest (every frame is published "
        "on arrival: only the newest frame is refined, for newest_iters iterations, the window's older frames "
        "keep their estimates; several times less compute per frame, some accuracy lost, docs/ros.md). "
        "Empty: the checkpoint's recommendation (lite: window), else window.",
        constraints="empty, window or newest",
    ),
    ParamSpec(
        "newest_iters",
        1,
        "update newest: refinement iterations of the newest frame per frame.",
        range=(1, 16),
    ),
    ParamSpec(
        "reestimate_every",
        0,
        "update newest: every this many frames also re-estimate the whole window as update window with step = "
        "this does (published on tracks_refined when publish_refined is set); the per-frame updates continue "
        "from it, which corrects drift. 0: never.",
        range=(0, 8),
        constraints="0, or 1, 2, 4 or 8 and at most window_len / 2",
    ),
    ParamSpec(
        "visibility_threshold",
        -1.0,
        "A point is published as visible when visibility * confidence exceeds this. Negative (the default): the "
        "checkpoint's recommendation (lite: 0.4), else 0.6. Tunable live within [0, 1].",
        read_only=False,
        range=(-1.0, 1.0),
    ),
    ParamSpec(
        "arch",
        "",
        "Architecture overrides for own small models, a YAML/JSON mapping of cotracker3_core.ModelConfig "
        "fields, e.g. '{latent_dim: 32, hidden_size: 64}'. Empty: the official architecture (needed by the "
        "official checkpoints).",
    ),
    ParamSpec(
        "queue_size",
        8,
        "Frames waiting for the tracker (the image subscription's keep-last depth). When full, the oldest waiting "
        "frame is replaced (counted in the diagnostics as lost before the tracker), so a slow device loses stale "
        "frames instead of building up lag.",
        range=(1, 100),
    ),
    ParamSpec(
        "publish_refined",
        False,
        "Also publish the re-estimates of already published frames (more accurate, one step later) on "
        "tracks_refined. Tunable live.",
        read_only=False,
    ),
    ParamSpec(
        "grid_size",
        0,
        "Track a grid_size x grid_size grid of points from frame grid_query_frame on; 0: no automatic grid "
        "(add points through the services). Re-applied after every reset. Tunable live (takes effect at the "
        "next grid frame, i.e. after the next reset once that frame has passed).",
        read_only=False,
        range=(0, 100),
    ),
    ParamSpec(
        "grid_query_frame",
        0,
        "Frame the automatic grid is placed on, counted from the stream start or the last reset. Tunable live.",
        read_only=False,
        range=(0, 1_000_000),
    ),
    ParamSpec(
        "mask_grid_size",
        20,
        "Grid size used by add_mask_points when its request says grid_size 0. Tunable live.",
        read_only=False,
        range=(1, 200),
    ),
    ParamSpec(
        "compressed",
        False,
        "Subscribe to image/compressed (sensor_msgs/CompressedImage) instead of image (sensor_msgs/Image).",
    ),
    ParamSpec(
        "debug_image",
        False,
        "Publish debug_image (rgb8) with the tracks drawn; rendered only while someone subscribes.",
    ),
    ParamSpec("diagnostics_period", 1.0, "Seconds between two /diagnostics messages.", range=(0.1, 60.0)),
    ParamSpec(
        "max_points",
        _DEFAULTS.max_points,
        "Most points tracked at once (automatic grid included); a request that would pass it is refused whole.",
        range=(1, 1_000_000),
    ),
    ParamSpec(
        "max_points_per_request",
        _DEFAULTS.max_points_per_request,
        "Most points one add_points request may add; add_mask_points and grid_size may place at most "
        "floor(sqrt(max_points_per_request))^2 grid points.",
        range=(1, 1_000_000),
    ),
    ParamSpec(
        "stamp_source",
        "auto",
        "Which time stamps a frame: header (the image's header stamp; a zero stamp is rejected), receive (the "
        "node's clock on arrival), auto (the header stamp, or the arrival time when it is zero). Published tracks "
        "carry the stamp used.",
        constraints="header, receive or auto",
    ),
    ParamSpec(
        "time_jump_tolerance_s",
        1.0,
        "A frame stamped earlier than the previous one by more than this resets the tracker (a bag looping, "
        "simulated time restarting); by less, or a repeated stamp, only that frame is rejected.",
        range=(0.0, 3600.0),
    ),
    ParamSpec(
        "image_timeout_s",
        5.0,
        "Warn (log and diagnostics) when no image has arrived for this long; 0: never. Tunable live.",
        read_only=False,
        range=(0.0, 3600.0),
    ),
    ParamSpec(
        "depth_topic",
        "",
        "Aligned depth image (sensor_msgs/Image, 16UC1 millimetres or 32FC1 metres, same size and pixels as the "
        "colour image, e.g. /camera/aligned_depth_to_color/image_raw): each point also gets its 3D position "
        "(Tracks x3d/y3d/z3d, PointCloud2 on tracks/points). Empty: no depth input (x3d/y3d/z3d stay empty).",
    ),
    ParamSpec(
        "camera_info_topic",
        "",
        "The colour camera's sensor_msgs/CameraInfo (K of rectified images, and the image size it applies to), used "
        "with depth_topic. Empty: camera_info beside the colour image topic (/camera/color/camera_info for "
        "/camera/color/image_raw).",
    ),
    ParamSpec(
        "depth_max_skew_s",
        0.02,
        "A colour frame is paired with the depth image of the same stamp, else the nearest one within this many "
        "seconds; a frame without one keeps its 2D tracks (3D NaN).",
        range=(0.0, 1.0),
    ),
    ParamSpec(
        "camera_names",
        [],
        "Several cameras in one node (one model, each camera its own queries, ids and outputs): their names, "
        "each the prefix of its topics and services (<camera>/tracks, ~/<camera>/add_points ...). Empty: one "
        "camera on the remappable image topic, with today's names.",
        constraints="unique names of letters, digits and _, starting with a letter",
    ),
    ParamSpec(
        "camera_topics",
        [],
        "With camera_names: the image topic of each camera, in the same order (with compressed: true, "
        "<topic>/compressed).",
        constraints="one per camera name",
    ),
    ParamSpec(
        "depth_topics",
        [],
        "With camera_names: the aligned depth image topic of each camera, as depth_topic for one. Empty: no 3D.",
        constraints="empty, or one per camera name",
    ),
    ParamSpec(
        "camera_info_topics",
        [],
        "With depth_topics: the CameraInfo topic of each camera. Empty: camera_info beside each image topic.",
        constraints="empty, or one per camera name",
    ),
    ParamSpec(
        "camera_sync_s",
        0.01,
        "With several cameras: when some have a frame waiting and others not yet, wait up to this long (s) for "
        "the others (those not silent for image_timeout_s), so that synchronised cameras are tracked in the same "
        "step and their windows run in one batched model call; 0: never wait.",
        range=(0.0, 1.0),
    ),
    ParamSpec(
        "num_threads",
        0,
        "CPU threads of the tracker's torch operations; 0: one per CPU core (torch's default). On 2 cores, 1 "
        "thread halves the tracker's speed and loses frames from a 15 Hz camera with lite (docs/models.md).",
        range=(0, 256),
    ),
)

#: Values of ``stamp_source``.
STAMP_SOURCES = ("header", "receive", "auto")

PARAMS_BY_NAME: dict[str, ParamSpec] = {p.name: p for p in PARAMS}


def parse_arch(text: str) -> dict[str, Any]:
    """The ``arch`` parameter (YAML/JSON mapping, or empty) -> dict of ModelConfig overrides."""
    if not text.strip():
        return {}
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"parameter arch is not valid YAML/JSON: {exc}") from exc
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"parameter arch must be a mapping like '{{latent_dim: 32}}', got {text!r}")
    return value


#: ModelConfig fields the ``arch`` parameter may set (the others have their own parameters).
ARCH_FIELDS = frozenset(f.name for f in dataclasses.fields(ModelConfig)) - {
    "mode",
    "window_len",
    "model_resolution",
    "extra",
}


def stream_config_from_params(values: dict[str, Any]) -> StreamConfig:
    """Node parameter values (name -> value) -> StreamConfig; raises ValueError on bad values."""
    resolution = [int(v) for v in values["model_resolution"]]
    if len(resolution) != 2:
        raise ValueError(f"model_resolution must be [height, width], got {resolution}")

    def setting(name: str) -> int | None:
        return None if int(values[name]) == UNSET else int(values[name])

    threshold = float(values["visibility_threshold"])  # negative: the checkpoint's recommendation
    arch = parse_arch(values["arch"])
    unknown = sorted(set(arch) - ARCH_FIELDS)
    if unknown:
        raise ValueError(f"parameter arch: unknown fields {unknown}; known: {sorted(ARCH_FIELDS)}")
    for name, value in arch.items():  # a string where a number belongs would fail deep in torch, as a TypeError
        want = type(getattr(ModelConfig, name))
        if isinstance(value, bool) or not isinstance(value, (int, float) if want is float else want):
            raise ValueError(f"parameter arch: {name} must be {want.__name__}, got {value!r}")
    return StreamConfig(
        checkpoint=values["checkpoint"] or None,
        device=values["device"],
        precision=values["precision"],
        model_resolution=None if resolution == [UNSET, UNSET] else (resolution[0], resolution[1]),
        window_len=setting("window_len"),
        step=setting("step"),
        iters=setting("iters"),
        visibility_threshold=threshold if threshold >= 0 else None,
        arch=arch,
        max_points=int(values["max_points"]),
        max_points_per_request=int(values["max_points_per_request"]),
        update=values["update"] or None,
        newest_iters=int(values["newest_iters"]),
        reestimate_every=int(values["reestimate_every"]),
    )


def check_node_params(values: dict[str, Any]) -> None:
    """The node's own parameters (those not in StreamConfig) in relation to each other; raises ValueError."""
    if values["stamp_source"] not in STAMP_SOURCES:
        raise ValueError(f"stamp_source must be one of {', '.join(STAMP_SOURCES)}, got {values['stamp_source']!r}")
    for name in ("grid_size", "mask_grid_size"):
        check_grid_param(name, int(values[name]), int(values["max_points_per_request"]))


def check_grid_param(name: str, size: int, max_points_per_request: int) -> None:
    """A grid parameter within the per-request limit (its size^2 grid points are added in one request)."""
    if size * size > max_points_per_request:
        raise ValueError(
            f"{name} {size} makes {size * size} grid points, more than max_points_per_request "
            f"({max_points_per_request})"
        )
