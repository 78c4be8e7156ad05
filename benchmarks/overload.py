"""Does the node degrade gracefully when the camera outpaces it? Drop frames early, keep the step time, count
every loss.

    python -m benchmarks.overload --markdown --check        # tiny model, 320x240 rgb8, 30 Hz then 100 Hz, 20 s each

A camera in this process (best-effort sensor QoS, as camera drivers publish) sends frames to the node process
(``python -m cotracker3_ros.node``: untrained ``tiny`` architecture, 8x8 grid) first at the unloaded rate, then
at the overload rate, for the same duration each, then a few frames at 5 Hz (their sequence numbers reveal
frames lost at the end of the fast part). ``--check`` fails unless, at the overload rate:

- the node tracks at least 0.9 x the frames it tracked at the unloaded rate (throughput holds, it does not
  collapse);
- the median step latency stays within 2 x the unloaded one;
- every frame is accounted for: published = tracked + dropped from the queue + lost before the queue +
  rejected (the node's /diagnostics counters).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from rclpy.qos import qos_profile_sensor_data

from benchmarks.realtime import run_node
from cotracker3_core.config import preset
from cotracker3_ros.tools.demo import camera_frame, demo_camera

#: The node's model: untrained tiny architecture (a model in milliseconds; the test is about the node).
TINY_PARAMS = {
    "checkpoint": "''",
    "arch": "'" + json.dumps({k: v for k, v in preset("tiny").items() if k not in ("window_len", "model_resolution")})
    + "'",
    "model_resolution": "[192,256]",
    "window_len": "8",
    "step": "4",
    "iters": "2",
    "grid_size": "8",
}
TAIL = 5


def accounted(run: dict) -> bool:
    return run["published"] == run["tracked"] + run["node_dropped"] + run["node_lost"] + run["node_rejected"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.overload", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", type=float, nargs=2, default=(30.0, 100.0), metavar=("UNLOADED", "OVERLOAD"))
    parser.add_argument("--seconds", type=float, default=20.0, help="duration at each rate")
    parser.add_argument("--size", type=int, nargs=2, default=(240, 320), metavar=("H", "W"))
    parser.add_argument("--log-dir", type=Path, default=Path("runs/overload"), help="the node's output")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--check", action="store_true", help="exit 1 unless the targets in the docstring hold")
    args = parser.parse_args(argv)
    args.log_dir.mkdir(parents=True, exist_ok=True)
    runs = {}
    for rate in args.rates:
        count = round(rate * args.seconds)
        camera = demo_camera(count, *args.size)
        frames = [camera_frame(camera, t) for t in range(count)]
        runs[rate] = run_node(frames, rate, TINY_PARAMS, args.log_dir / f"node_{rate:g}hz.log",
                              camera_qos=qos_profile_sensor_data, tail=TAIL)
        print(f"{rate:g} Hz: {json.dumps(runs[rate])}", file=sys.stderr, flush=True)
    base, over = runs[args.rates[0]], runs[args.rates[1]]
    checks = {
        "throughput": over["tracked"] >= 0.9 * base["tracked"],
        "step latency": over["step_ms_p50"] <= 2.0 * base["step_ms_p50"],
        "accounted": accounted(base) and accounted(over),
    }
    if args.markdown:
        print("| camera | published | tracked | dropped (queue) | lost before queue | rejected | step p50 ms | "
              "lag p50 / p90 ms | accounted |\n|---|---:|---:|---:|---:|---:|---:|---:|---|")
        for rate, run in runs.items():
            print(f"| {args.size[1]}x{args.size[0]} @ {rate:g} Hz ({run['publish_rate_hz']:.0f} sent) | "
                  f"{run['published']} | {run['tracked']} | {run['node_dropped']} | {run['node_lost']} | "
                  f"{run['node_rejected']} | {run['step_ms_p50']:.1f} | {run['lag_ms_p50']:.0f} / "
                  f"{run['lag_ms_p90']:.0f} | {'yes' if accounted(run) else 'no'} |")
    else:
        print(json.dumps({f"{r:g}": v for r, v in runs.items()}, indent=1))
    if args.json:
        args.json.write_text(json.dumps({f"{r:g}": v for r, v in runs.items()}, indent=1))
    ok = all(checks.values())
    print(f"overload: tracked {over['tracked']} at {args.rates[1]:g} Hz vs {base['tracked']} at {args.rates[0]:g} Hz "
          f"(target >= 0.9x), step p50 {over['step_ms_p50']:.1f} vs {base['step_ms_p50']:.1f} ms (target <= 2x), "
          f"every frame accounted: {checks['accounted']} -> {'PASS' if ok else 'FAIL'}")
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
