"""``cotracker3-bag-eval``: score the tracker on rosbag2 clips with ground truth, without DDS.

For each bag (one clip each, e.g. written by ``python -m cotracker3_ros.tools.tapvid_to_bag``):

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
from tqdm import tqdm

from cotracker3_core.evaluation.scoring import (
    FrameOutput,
    Predictions,
    Queries,
    first_queries,
    predictions_from_outputs,
    score_clip,
    strided_queries,
)
from cotracker3_core.predictor import CoTrackerPredictor
from cotracker3_core.session import TrackingSession
from cotracker3_core.streaming import FrameTracks, StreamingTracker, resolve_device

from ..conversions import message_to_rgb, time_to_ns
from ..params import stream_config_from_params
from .bag_tools import BagClip, CliHelpFormatter, find_bags, read_clip_bag, safe_name
from .eval_report import (
    comparison_image,
    pick_frames,
    run_report_command,
    summarize_latency,
    write_png,
    write_reports,
)
from .settings import MODEL_PARAMS, add_model_arguments, materialize_weights, model_values, read_params_file

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
    """Play ``clip`` through ``tracker`` as the node does (see the module docstring), through the same session
    layer the node drives the engine with."""
    tracker.reset()
    session = TrackingSession(tracker)
    run = StreamRun()
    for index in tqdm(range(clip.num_frames), desc=f"{clip.name} (stream)", unit="frame", disable=not progress):
        msg = clip.image_message(index)
        stamp = time_to_ns(msg.header.stamp)
        step = session.push(message_to_rgb(msg), stamp)
        if step.restart is not None:
            raise ValueError(f"{clip.name}: frame {index} broke the stream: {step.restart.reason}")
        if step.rejected is not None:
            raise step.rejected
        if step.emitted:
            run.step_latency_s.append(step.push_s)
        run.record([item.tracks for item in step.emitted])
        chosen = queries.on_frame(index)
        if chosen.size:
            # float32, as the AddPoints service carries them.
            xy = queries.xy[chosen].astype(np.float32)
            tracker.add_queries(xy, stamp=stamp, ids=[int(i) for i in queries.ids[chosen]])
    run.record([item.tracks for item in session.finish()])
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
    return run_report_command(PROG, evaluate, build_parser().parse_args(argv))

if __name__ == "__main__":
    sys.exit(main())

