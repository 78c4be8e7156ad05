"""Per-frame latency of ``update="newest"`` against window mode at step 1, in one run (not part of CI).

    python -m benchmarks.newest --markdown                       # official architecture, 384x512, N=100, 1024
    python -m benchmarks.newest --points 100 --window-frames 3 --newest-frames 6 --check

Both modes answer every frame on its own push (window mode at step 1 runs a whole window per frame), so a
frame's latency is the duration of its push: encoding plus tracking. Window mode is measured from its first
window on (its first `window_len - 1` pushes only encode; the first window's compute is every later one's),
the newest-frame mode after
`--warmup` pushes (its per-frame step has the same shapes from the first push on). Weights: the reference
rule's deterministic ones (latency does not depend on them). bf16 rows run only where the CPU has bf16
instructions (emulated bf16 is many times slower than fp32 and says nothing about a bf16 machine).
``--check``: exit 1 unless the newest-frame mode is at least ``--target`` times faster (p50) than window step
1 at the smallest point count in fp32.
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

from cotracker3_core.streaming import StreamingTracker

from .common import _sync, bench_model, load_frames, loadavg, machine_info, query_points, summary_ms
from .sections import engine_config

TARGET_SPEEDUP = 5.0


def measure(
    model: Any, device: torch.device, frames: list[np.ndarray], points: int, precision: str, update: str,
    iters: int, warmup: int, measured: int,
) -> dict[str, Any]:
    """Push durations (s) of `measured` frames that are answered on their own push, after `warmup` pushes."""
    kw = dict(step=1) if update == "window" else dict(update="newest", newest_iters=1, reestimate_every=0)
    engine = StreamingTracker(model, engine_config(model, device, precision, iters, **kw))
    h, w = frames[0].shape[:2]
    durations = []
    for i in range(warmup + measured):
        _sync(device)
        t0 = time.perf_counter()
        out = engine.push(frames[i % len(frames)], stamp=i + 1)
        _sync(device)
        elapsed = time.perf_counter() - t0
        if i == 0:
            engine.add_queries(query_points(points, (h, w)), stamp=1)
        if i >= warmup:
            mine = [ft for ft in out if ft.frame_index == i and not ft.refined]
            assert len(mine) == 1 and len(mine[0].ids) == points, "the push did not answer its own frame"
            durations.append(elapsed)
    return {"update": update, "points": points, "precision": precision, "latency_ms": summary_ms(durations),
            "state_mb": engine.state_nbytes() / 2**20, "loadavg": loadavg()}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.newest", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="official")
    p.add_argument("--resolution", type=int, nargs=2, default=(384, 512), metavar=("H", "W"))
    p.add_argument("--points", type=int, nargs="+", default=[100, 1024])
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    p.add_argument("--iters", type=int, default=6, help="window mode's iterations (default 6, the official)")
    p.add_argument("--window-frames", type=int, default=4, help="measured window-mode pushes (default 4)")
    p.add_argument("--newest-frames", type=int, default=8, help="measured newest-mode pushes (default 8)")
    p.add_argument("--warmup", type=int, default=2, help="newest-mode pushes before measuring (default 2)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--video", type=Path, default=None, help="frames from this video (default: synthetic)")
    p.add_argument("--target", type=float, default=TARGET_SPEEDUP)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--check", action="store_true")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else args.device)
    info = machine_info(device)
    print(f"machine: {json.dumps(info)}", file=sys.stderr)
    model = bench_model(args.arch, tuple(args.resolution)).to(device)
    s = model.window_len
    count = s + max(args.window_frames, args.warmup + args.newest_frames)
    frames, source = load_frames(count, tuple(args.resolution), args.video)
    rows: list[dict[str, Any]] = []
    for precision in args.precisions:
        if precision == "bf16" and device.type == "cpu" and not info["native_bf16"]:
            print("bf16 rows skipped: this CPU has no bf16 instructions (emulated bf16 is very slow)", file=sys.stderr)
            continue
        for n in args.points:
            # Window mode's first window (push s - 1) costs what every later step-1 window costs: measured.
            for update, warmup, measured in (("window", s - 1, args.window_frames),
                                             ("newest", args.warmup, args.newest_frames)):
                row = measure(model, device, frames, n, precision, update, args.iters, warmup, measured)
                lat = row["latency_ms"]
                print(f"{update:6s} N={n} {precision}: p50 {lat['median']:.0f} ms, p95 {lat['p95']:.0f} ms "
                      f"({lat['n']} frames)", file=sys.stderr, flush=True)
                rows.append(row)
    result = {"machine": info, "frames": source, "arch": args.arch, "resolution": list(args.resolution),
              "window_iters": args.iters, "rows": rows}
    for row in rows:
        if row["update"] == "newest":
            base = next(r for r in rows if r["update"] == "window" and r["points"] == row["points"]
                        and r["precision"] == row["precision"])
            row["speedup_p50"] = base["latency_ms"]["median"] / row["latency_ms"]["median"]
    if args.markdown:
        print("| update | N | precision | p50 ms | p95 ms | frames | speed-up (p50) |")
        print("|---|---:|---|---:|---:|---:|---:|")
        for r in rows:
            lat = r["latency_ms"]
            speed = f"{r['speedup_p50']:.1f}x" if "speedup_p50" in r else ""
            label = "window, step 1" if r["update"] == "window" else "newest, 1 iteration"
            print(f"| {label} | {r['points']} | {r['precision']} | {lat['median']:.0f} | {lat['p95']:.0f} | "
                  f"{lat['n']} | {speed} |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    gated = [r for r in rows if "speedup_p50" in r and r["precision"] == "fp32" and r["points"] == min(args.points)]
    ok = bool(gated) and all(r["speedup_p50"] >= args.target for r in gated)
    speeds = ", ".join(f"{r['speedup_p50']:.1f}x" for r in gated)
    print(f"newest vs window step 1 (fp32, N={min(args.points)}): {speeds} (target {args.target:.0f}x) -> "
          f"{'PASS' if ok else 'FAIL'}")
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    raise SystemExit(main())
