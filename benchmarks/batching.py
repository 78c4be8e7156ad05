"""Several cameras through one model: one batched call against one call per camera (CPU or CUDA).

    python -m benchmarks.batching --markdown            # lite (shipped weights) and official (untrained), K = 1, 2, 4
    python -m benchmarks.batching --models lite --cameras 1 2 --check

Per model and number of cameras K, each camera gets its own frames (the video shifted and mirrored per camera)
and its own number of queries (N, then 10 % fewer per further camera); the K windows are prepared as the engine
prepares them (`StreamingTracker.begin_window`), then the two paths alternate: the K windows refined in one call
(`window_batch.refine_batch`, B = K) and one call per camera (`online.refine_inputs`), and the K cameras'
newest frames encoded in one encoder call and one call per camera. A camera's step costs `step` encodings and
one window: the per-step columns add them. Times are the fastest of the rounds (the least disturbed by other
work on a shared host; ``--json`` has the medians too). The weights of ``official`` are the reference rule's (untrained;
speed does not depend on them), ``lite`` its shipped ones, at its own resolution, window, step and
iterations. ``--check``: exit 1 unless every batched output equals the per-camera one within 5e-3 px and
batched K = 4 (the largest K) takes at most 1.1 times the per-camera time per step: on CUDA for every model, on
a CPU for every model but ``official``, whose 384x512 is measured there, not gated (on 2 cores its batched
windows and encodings are slower: docs/benchmarks.md, section 6).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cotracker3_core.online import WindowInputs, refine_inputs
from cotracker3_core.stream_config import StreamConfig
from cotracker3_core.streaming import StreamingTracker
from cotracker3_core.window_batch import refine_batch

from .common import DEFAULT_VIDEO, _sync, bench_model, load_frames, loadavg, machine_info, query_points

COORD_TOL = 5e-3  # px of the model input
MAX_SLOWDOWN = 1.1


def build(name: str, device: torch.device, resolution: tuple[int, int] = (384, 512)) -> tuple[Any, StreamConfig]:
    """The model and its engine settings: ``lite`` with its shipped weights and recorded settings; another
    preset (``official``, ``tiny``) untrained (reference rule) at `resolution`, window 16, step 8, 6
    iterations."""
    if name == "lite":
        config = StreamConfig(checkpoint="lite", device=str(device)).resolved()
        model = config.build_online_model()
    else:
        model = bench_model(name, resolution)
        config = StreamConfig(device=str(device), model_resolution=resolution, window_len=16).resolved({})
    return model.to(device).eval(), config


def camera_frames(count: int, camera: int, resolution: tuple[int, int], video: Path | None) -> list[np.ndarray]:
    """Camera `camera`'s view: the frames shifted by 3 per camera, every other camera mirrored."""
    frames, _ = load_frames(count + 3 * camera, resolution, video)
    frames = frames[3 * camera :]
    return [np.ascontiguousarray(f[:, ::-1]) for f in frames] if camera % 2 else frames


def camera_points(points: int, camera: int) -> int:
    """Queries of camera `camera`: `points`, 10 % fewer per further camera (unequal counts: the batched call
    pads them to the largest and masks the padding)."""
    return max(1, round(points * (1 - 0.1 * camera)))


def prepared_windows(
    model: Any, config: StreamConfig, cameras: int, points: int, video: Path | None
) -> tuple[list[StreamingTracker], list[WindowInputs], list[np.ndarray]]:
    """K streams fed one window of frames each, their N queries on the first frame, the windows taken off as
    the engine does; also each camera's newest frame (the encoder's input)."""
    streams, inputs, newest = [], [], []
    res = tuple(config.model_resolution)
    for k in range(cameras):
        stream = StreamingTracker(model, config)
        frames = camera_frames(model.window_len, k, res, video)
        for i, frame in enumerate(frames[:-1]):
            stream.push(frame, i + 1)
            if i == 0:
                stream.add_queries(query_points(camera_points(points, k), res, seed=k), stamp=1)
        image, stamp = stream.check_push(frames[-1], len(frames))
        with stream.inference():
            stream.add_frame(image, stamp, stream.encode_frames([image])[0])
            inputs.append(stream.begin_window().inputs)
        streams.append(stream)
        newest.append(image)
    return streams, inputs, newest


def timed(device: torch.device, fn: Any) -> tuple[float, Any]:
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - t0, out


def measure(model: Any, config: StreamConfig, device: torch.device, cameras: int, points: int, reps: int,
            video: Path | None) -> dict[str, Any]:
    """Milliseconds of the batched and per-camera paths (alternating, after one warm-up round of each; `ms` the
    fastest round, `median_ms` the median) and the largest difference between their outputs."""
    streams, inputs, newest = prepared_windows(model, config, cameras, points, video)
    engine = streams[0]
    worst = 0.0
    with engine.inference():
        paths = {
            "refine_batched": lambda: refine_batch(model, inputs, config.iters),
            "refine_each": lambda: [refine_inputs(model, x, config.iters) for x in inputs],
            "encode_batched": lambda: engine.encode_frames(newest),
            "encode_each": lambda: [engine.encode_frames([image]) for image in newest],
        }
        pairs = [("refine_batched", "refine_each"), ("encode_batched", "encode_each")]
        times: dict[str, list[float]] = {key: [] for key in paths}
        for rep in range(reps + 1):
            outputs = {}
            for pair in pairs:
                # Each path runs first in every other round: the first call after other work pays for fresh
                # memory (and caches) the second one reuses.
                for key in pair if rep % 2 else pair[::-1]:
                    seconds, outputs[key] = timed(device, paths[key])
                    if rep:  # the first round warms up
                        times[key].append(seconds)
            for got, want in zip(outputs["refine_batched"], outputs["refine_each"], strict=True):
                worst = max(worst, float((got.coords - want.coords).abs().max()))
    # The fastest round: the one least disturbed by other work on a shared host (the median is kept too).
    ms = {key: 1e3 * min(values) for key, values in times.items()}
    median_ms = {key: 1e3 * float(np.median(values)) for key, values in times.items()}
    step = config.step
    for table in (ms, median_ms):
        table["step_batched"] = table["refine_batched"] + step * table["encode_batched"]
        table["step_each"] = table["refine_each"] + step * table["encode_each"]
    counts = ", ".join(str(camera_points(points, k)) for k in range(cameras))
    return {"cameras": cameras, "points": points, "counts": counts, "step": step, "ms": ms, "median_ms": median_ms,
            "max_coord_diff_px": worst, "loadavg": loadavg()}


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model | K | N of the cameras | window: batched ms | window: per camera ms | encode K frames: batched ms | "
        "per camera ms | per step: batched / per camera | max \\|Δxy\\| px |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ms = r["ms"]
        lines.append(
            f"| {r['model']} | {r['cameras']} | {r['counts']} | {ms['refine_batched']:.0f} | {ms['refine_each']:.0f} | "
            f"{ms['encode_batched']:.0f} | {ms['encode_each']:.0f} | {ms['step_batched'] / ms['step_each']:.2f} | "
            f"{r['max_coord_diff_px']:.1e} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.batching", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["lite", "official"], choices=["lite", "official", "tiny"])
    p.add_argument("--cameras", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--points", type=int, default=100,
                   help="queries of the first camera, 10 %% fewer per further camera (default 100)")
    p.add_argument("--resolution", type=int, nargs=2, default=(384, 512), metavar=("H", "W"),
                   help="of the untrained models (default 384 512; lite runs at its own)")
    p.add_argument("--reps", type=int, default=5,
                   help="measured rounds per row (each path first in every other one), after one warm-up (default 5)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--video", type=Path, default=DEFAULT_VIDEO, help="frames from this video (else synthetic)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--check", action="store_true")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    info = machine_info(device)
    print(f"machine: {json.dumps(info)}", file=sys.stderr)
    rows = []
    for name in args.models:
        model, config = build(name, device, tuple(args.resolution))
        for k in args.cameras:
            row = {"model": name, **measure(model, config, device, k, args.points, args.reps, args.video)}
            ms = row["ms"]
            print(f"{name} K={k}: window {ms['refine_batched']:.0f} ms batched vs {ms['refine_each']:.0f} ms per "
                  f"camera; step {ms['step_batched']:.0f} vs {ms['step_each']:.0f} ms; "
                  f"max diff {row['max_coord_diff_px']:.1e} px", file=sys.stderr, flush=True)
            rows.append(row)
    if args.markdown:
        print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "rows": rows}, indent=1))
    largest = max(args.cameras)
    equal = all(r["max_coord_diff_px"] <= COORD_TOL for r in rows)
    gated = [r for r in rows if r["cameras"] == largest and (device.type == "cuda" or r["model"] != "official")]
    slow = [r for r in gated if r["ms"]["step_batched"] > MAX_SLOWDOWN * r["ms"]["step_each"]]
    ok = equal and not slow
    print(f"batched = per camera within {COORD_TOL} px: {equal}; batched K={largest} per step within "
          f"{MAX_SLOWDOWN}x of per camera ({', '.join(r['model'] for r in gated) or 'none gated'}): {not slow} -> "
          f"{'PASS' if ok else 'FAIL'}")
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    raise SystemExit(main())
