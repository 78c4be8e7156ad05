"""``cotracker3-bag-eval``: score the tracker on rosbag2 clips with ground truth, without DDS.

For each bag (one clip each, e.g. written by ``python -m cotracker3_ros.tapvid_to_bag``):

- "first" mode runs the streaming engine exactly as ``tracker_node`` does: every image goes through the node's
  conversion (`conversions.message_to_rgb` on the rclpy message deserialised from the bag), is pushed with its
  header stamp, the ground-truth queries of that frame are added right after it (stamp = that image's stamp,
  float32 positions, ids = track ids, as the ``add_points`` service receives them), and the window is flushed
  at the end of the bag, as the node's reset does. The first estimate of each frame (what the node publishes
  on ``tracks``) is scored.
- "strided" mode runs the offline predictor (`cotracker3_core.predictor.CoTrackerPredictor`) on the whole clip
  with backward tracking, the TAP-Vid "strided" protocol.

Model settings are the node's parameters: its defaults, then ``--params-file`` (the node's YAML), then the
flags. With no checkpoint, seeded untrained weights are written to a checkpoint first (``--seed``), so that the
node (``cotracker3-replay-eval``) and this tool can load the very same weights.

Writes ``results.json``, ``results.md`` and one ``<clip>_<mode>.png`` per clip into ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm import tqdm

from cotracker3_core.checkpoint import build_model, save_checkpoint
from cotracker3_core.predictor import CoTrackerPredictor
from cotracker3_core.streaming import FrameTracks, StreamingTracker, resolve_device

from .bag_tools import BagClip, CliHelpFormatter, find_bags, read_clip_bag, safe_name
from .conversions import message_to_rgb, time_to_ns
from .eval_report import comparison_image, pick_frames, summarize_latency, write_png, write_reports
from .eval_scoring import (
    FrameOutput,
    Predictions,
    Queries,
    first_queries,
    predictions_from_outputs,
    score_clip,
    strided_queries,
)
from .node import NODE_NAME, parse_arch, stream_config_from_params
from .params import PARAMS, PARAMS_BY_NAME

__all__ = [
    "add_model_arguments",
    "evaluate",
    "main",
    "materialize_weights",
    "model_values",
    "read_params_file",
    "run_stream",
    "run_strided",
]

PROG = "cotracker3-bag-eval"
MODES = ("first", "strided")
#: Node parameters the evaluations set themselves (what is tracked, how it is delivered); every other node
#: parameter shapes the tracker and is passed on unchanged, so a parameter added to the node later reaches both
#: evaluations the same way.
DELIVERY_PARAMS = frozenset(
    {"grid_size", "grid_query_frame", "mask_grid_size", "queue_size", "publish_refined", "compressed",
     "debug_image", "diagnostics_period"}
)  # fmt: skip
#: Node parameters that shape the tracks (the model and the engine), in the node's order.
MODEL_PARAMS = tuple(p.name for p in PARAMS if p.name not in DELIVERY_PARAMS)


# --- model settings (shared with replay_eval) -----------------------------------------------------------------


def read_params_file(path: str | Path) -> dict[str, Any]:
    """The tracker node's parameters from a ROS parameters YAML (sections ``/**/tracker_node``, ``tracker_node``,
    ``/**`` ... with ``ros__parameters``); keys that are not node parameters (``qos_overrides``) are ignored.

    Raises:
        ValueError: unreadable file, no section for the node, or a value of the wrong type.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read parameters file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a ROS parameters file (top level must be a mapping of node names)")
    values: dict[str, Any] = {}
    matched = False
    for key, section in data.items():
        last = str(key).rstrip("/").split("/")[-1]
        if last not in (NODE_NAME, "**") or not isinstance(section, dict):
            continue
        params = section.get("ros__parameters")
        if isinstance(params, dict):
            matched = True
            values.update({k: v for k, v in params.items() if k in PARAMS_BY_NAME})
    if not matched:
        raise ValueError(f"{path}: no 'ros__parameters' for {NODE_NAME} (sections: {', '.join(map(str, data))})")
    for name, value in values.items():
        default = PARAMS_BY_NAME[name].default
        ok = isinstance(value, type(default)) or (isinstance(default, float) and isinstance(value, int))
        if isinstance(default, bool) != isinstance(value, bool):
            ok = False
        if not ok:
            raise ValueError(f"{path}: parameter {name} must be {type(default).__name__}, got {value!r}")
    return values


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model (the tracker node's parameters; flags override --params-file)")
    group.add_argument("--params-file", type=Path, help="the node's parameters YAML, e.g. config/tracker.yaml")
    group.add_argument(
        "--checkpoint", help="weights: .pth file, official name or URL; '' = seeded untrained weights (--seed)"
    )
    group.add_argument("--arch", help="architecture overrides, YAML/JSON mapping, e.g. '{latent_dim: 32}'")
    group.add_argument("--seed", type=int, default=0, help="seed of untrained weights (no checkpoint); default 0")
    group.add_argument("--model-resolution", type=int, nargs=2, metavar=("H", "W"))
    group.add_argument("--window-len", type=int)
    group.add_argument("--step", type=int, help="frames between two windows: 1, 2, 4 or 8 (node default 8)")
    group.add_argument("--iters", type=int)
    group.add_argument("--visibility-threshold", type=float)
    group.add_argument("--device", help="auto, cpu, cuda, cuda:<i>")
    group.add_argument("--precision", choices=("fp32", "bf16", "fp16"))


def model_values(args: argparse.Namespace) -> dict[str, Any]:
    """Node parameter values: defaults <- ``--params-file`` <- flags. Raises ValueError on bad values."""
    values = {p.name: p.default for p in PARAMS}
    if args.params_file is not None:
        values.update(read_params_file(args.params_file))
    flags = {
        "checkpoint": args.checkpoint,
        "arch": args.arch,
        "model_resolution": list(args.model_resolution) if args.model_resolution else None,
        "window_len": args.window_len,
        "step": args.step,
        "iters": args.iters,
        "visibility_threshold": args.visibility_threshold,
        "device": args.device,
        "precision": args.precision,
    }
    values.update({k: v for k, v in flags.items() if v is not None})
    stream_config_from_params(values)  # validates
    return values


def materialize_weights(values: Mapping[str, Any], seed: int, folder: Path) -> tuple[dict[str, Any], str]:
    """With no checkpoint, build seeded untrained weights of the configured architecture and save them, so that
    every side (this process, the node process, the offline predictor) loads identical weights.

    Returns the values with ``checkpoint`` set (and ``arch`` emptied: the checkpoint carries it) and a
    description of the weights for reports.
    """
    values = dict(values)
    if values["checkpoint"]:
        return values, str(values["checkpoint"])
    torch.manual_seed(seed)
    model = build_model(
        "online",
        window_len=int(values["window_len"]),
        model_resolution=tuple(int(v) for v in values["model_resolution"]),
        **parse_arch(values["arch"]),
    )
    path = save_checkpoint(folder / f"untrained_seed{seed}.pth", model, untrained_seed=seed)
    values["checkpoint"], values["arch"] = str(path), ""
    return values, f"UNTRAINED (seed {seed}): scores are meaningless, for plumbing checks only"


# --- the streaming run, as the node does it ---------------------------------------------------------------------


@dataclass
class StreamRun:
    """Outputs of one clip through the streaming engine, keyed by image stamp."""

    first: dict[int, FrameOutput] = field(default_factory=dict)  # what the node publishes on `tracks`
    final: dict[int, FrameOutput] = field(default_factory=dict)  # latest estimate (refined where refined)
    step_latency_s: list[float] = field(default_factory=list)

    def record(self, emitted: Sequence[FrameTracks]) -> None:
        for tracks in emitted:
            out = FrameOutput(np.asarray(tracks.ids, np.int64), np.asarray(tracks.xy, np.float32), tracks.visible)
            self.final[tracks.stamp] = out
            if not tracks.refined:
                self.first.setdefault(tracks.stamp, out)


def run_stream(clip: BagClip, tracker: StreamingTracker, queries: Queries, progress: bool = True) -> StreamRun:
    """Play ``clip`` through ``tracker`` as the node does (see the module docstring)."""
    tracker.reset()
    run = StreamRun()
    for index in tqdm(range(clip.num_frames), desc=f"{clip.name} (stream)", unit="frame", disable=not progress):
        msg = clip.image_message(index)
        rgb = message_to_rgb(msg)
        stamp = time_to_ns(msg.header.stamp)
        start = time.perf_counter()
        emitted = tracker.push(rgb, stamp)
        elapsed = time.perf_counter() - start
        if emitted:
            run.step_latency_s.append(elapsed)
        run.record(emitted)
        chosen = queries.on_frame(index)
        if chosen.size:
            # float32, as the AddPoints service carries them.
            xy = queries.xy[chosen].astype(np.float32)
            tracker.add_queries(xy, stamp=stamp, ids=[int(i) for i in queries.ids[chosen]])
    run.record(tracker.flush())
    return run


def run_strided(clip: BagClip, predictor: CoTrackerPredictor, queries: Queries, progress: bool = True) -> Predictions:
    """The offline predictor with backward tracking on the whole clip, strided queries."""
    frames = [clip.rgb(i) for i in tqdm(range(clip.num_frames), desc=f"{clip.name} (decode)", disable=not progress)]
    video = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)[None].float()
    query = np.stack([queries.frames, queries.xy[:, 0], queries.xy[:, 1]], axis=-1)
    tracks, visible = predictor(video, torch.from_numpy(query).float()[None], backward_tracking=True)
    xy = tracks[0].permute(1, 0, 2).double().cpu().numpy()  # (Q, T, 2)
    vis = visible[0].T.cpu().numpy().astype(bool)
    return Predictions(xy, vis, np.zeros(vis.shape, bool), [])


def save_tracks(path: Path, clip: BagClip, queries: Queries, pred: Predictions) -> None:
    """NPZ of one clip's predictions: stamps (T,), ids / frames (Q,), xy (Q, T, 2), visible / missing (Q, T)."""
    np.savez_compressed(
        path,
        stamps=clip.stamps,
        ids=queries.ids,
        frames=queries.frames,
        xy=pred.xy,
        visible=pred.visible,
        missing=pred.missing,
    )


def clip_result(
    clip: BagClip, mode: str, queries: Queries, pred: Predictions, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    assert clip.ground_truth is not None
    result: dict[str, Any] = {
        "clip": clip.name,
        "bag": str(clip.path),
        "mode": mode,
        "frames": clip.num_frames,
        "size_hw": list(clip.size_hw),
        "fps": clip.fps,
        "metrics": score_clip(clip.ground_truth, queries, pred, clip.size_hw),
    }
    result.update(extra or {})
    return result


def write_clip_outputs(
    out: Path, clip: BagClip, mode: str, queries: Queries, pred: Predictions, png_frames: int, tracks: bool
) -> None:
    stem = f"{safe_name(clip.name)}_{mode}"
    if png_frames > 0:
        chosen = pick_frames(queries, clip.num_frames, png_frames)
        image = comparison_image({t: clip.rgb(t) for t in chosen}, clip.ground_truth, queries, pred)
        write_png(out / f"{stem}.png", image)
    if tracks:
        save_tracks(out / f"{stem}_tracks.npz", clip, queries, pred)


def load_clips(args: argparse.Namespace) -> list[Path]:
    bags = find_bags(args.bags)
    if args.gt is not None and len(bags) > 1 and args.gt.suffix == ".npz":
        raise ValueError(f"a .npz sidecar holds one clip; {len(bags)} bags were given")
    return bags


def read_bag(path: Path, args: argparse.Namespace) -> BagClip:
    clip = read_clip_bag(
        path, image_topic=args.image_topic, gt_topic=args.gt_topic, gt_file=args.gt, clip_name=args.clip
    )
    if clip.ground_truth is None:
        raise ValueError(
            f"{path}: no ground truth: the bag has no ground-truth topic (give --gt-topic) and no --gt file was given"
        )
    return clip


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bags", nargs="+", type=Path, help="rosbag2 folders, or folders of them (one clip per bag)")
    parser.add_argument("--image-topic", help="camera topic (default: the converter's, else the only image topic)")
    parser.add_argument("--gt-topic", help="ground-truth Tracks topic (default /ground_truth/tracks when present)")
    parser.add_argument("--gt", type=Path, help="sidecar ground truth instead: .npz (tapvid_to_bag --sidecar) or a "
                        "TAP-Vid/RoboTAP pickle holding the clip (looked up by the bag's clip name)")
    parser.add_argument("--clip", help="clip name to look up in --gt (default: the bag's recorded name)")


def add_output_arguments(parser: argparse.ArgumentParser, default_out: str) -> None:
    parser.add_argument("--out", type=Path, default=Path(default_out), help=f"output folder (default {default_out})")
    parser.add_argument("--png-frames", type=int, default=4, help="frames drawn per clip in the PNG; 0: no PNG")
    parser.add_argument("--save-tracks", action="store_true", help="also write <clip>_<mode>_tracks.npz")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Score CoTracker3 on rosbag2 clips with ground truth, running the streaming engine as "
        "tracker_node does (no DDS). 'first' mode: streaming engine; 'strided': offline predictor with "
        "backward tracking.",
        formatter_class=CliHelpFormatter,
    )
    add_input_arguments(parser)
    parser.add_argument("--mode", choices=(*MODES, "both"), default="first", help="TAP-Vid query mode")
    parser.add_argument("--stride", type=int, default=5, help="frame stride of strided queries")
    parser.add_argument(
        "--strided-model",
        choices=("online", "offline"),
        default="online",
        help="model the strided predictor builds from the checkpoint: online (sliding windows, as the node's "
        "weights) or offline (whole clip, for offline checkpoints)",
    )
    add_model_arguments(parser)
    add_output_arguments(parser, "bag_eval_results")
    return parser


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Run the evaluation the parsed ``args`` describe; returns {"results", "settings", "files"}."""
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    modes = MODES if args.mode == "both" else (args.mode,)
    bags = load_clips(args)
    requested = model_values(args)
    progress = not args.no_progress
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ct3_bag_eval_") as tmp:
        values, weights = materialize_weights(requested, args.seed, Path(tmp))
        config = stream_config_from_params(values)
        tracker = StreamingTracker.from_config(config) if "first" in modes else None
        predictor = None
        if "strided" in modes:
            predictor = CoTrackerPredictor(
                checkpoint=values["checkpoint"],
                offline=args.strided_model == "offline",
                model_resolution=config.model_resolution,
                device=resolve_device(config.device),
            )
        for path in bags:
            clip = read_bag(path, args)
            gt = clip.ground_truth
            for mode in modes:
                if mode == "first":
                    queries = first_queries(gt)
                    run = run_stream(clip, tracker, queries, progress)
                    pred = predictions_from_outputs(run.first, clip.stamps, queries)
                    extra = {"step_latency": summarize_latency(run.step_latency_s)}
                else:
                    queries = strided_queries(gt, args.stride)
                    start = time.perf_counter()
                    pred = run_strided(clip, predictor, queries, progress)
                    extra = {"offline_time_s": time.perf_counter() - start}
                results.append(clip_result(clip, mode, queries, pred, extra))
                write_clip_outputs(args.out, clip, mode, queries, pred, args.png_frames, args.save_tracks)
    settings = {
        "tool": PROG,
        "weights": weights,
        **{k: requested[k] for k in MODEL_PARAMS if k != "checkpoint"},
        "stride": args.stride if "strided" in modes else None,
        "strided_model": args.strided_model if "strided" in modes else None,
        "torch_threads": torch.get_num_threads(),
    }
    settings = {k: v for k, v in settings.items() if v is not None}
    files = write_reports(args.out, "CoTracker3 bag evaluation", results, settings)
    return {"results": results, "settings": settings, "files": files}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        report = evaluate(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    print(report["files"]["markdown"].read_text())
    print(f"wrote {report['files']['json']} and {report['files']['markdown']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

