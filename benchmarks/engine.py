"""Benchmark of the streaming engine, against the official online predictor's re-encoding pattern.

The engine encodes each frame once, on arrival. The official online predictor is fed the whole 16-frame
window at every step and re-encodes all of it; `ReencodingTracker` below reproduces that pattern with this
package's model (same refinement, same numbers), so the ratio of the two isolates what encoding once buys.

Run (the full CPU run takes about half an hour at 384x512 on two cores):

    python -m benchmarks.engine --markdown --json bench.json --check    # throughput, bf16 deviation, latency, parity
    python -m benchmarks.engine --sections soak --soak 10000 --check    # memory over a 10,000-frame stream
    python -m benchmarks.engine --quick --check         # CI smoke: small sizes, relaxed speed targets

Sections (--sections): throughput (per-step latency, frames/s, peak memory: engine vs re-encoding, per
precision and number of points, the two paths alternating step by step), deviation (bf16/fp16 engine against
the fp32 engine on the same frames and queries), latency (push-to-emission latency per frame for the
low-latency steps 1/2/4/8), parity (the fp32 engine against ../shared/reference/stream_steps.npz), layout (the
encoder in channels-last vs contiguous memory: whether channels-last pays; not in the default set), soak (RSS
and engine state over a long stream; --soak N). The node's own per-frame work is measured by
`python -m benchmarks.node`, which needs ROS. The weights are the reference rule's
(no trained weights here): speeds and memory are those of the real architecture, but the deviation numbers
say nothing about accuracy.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from cotracker3_core.streaming import (
    PRECISIONS,
    resolve_device,
)

from .common import (
    ARCHS,
    DEFAULT_VIDEO,
    PeakMemory,
    _int_list,
    _name_list,
    bench_model,
    emit_result,
    load_frames,
    loadavg,
    machine_info,
    parse_resolution,
)
from .report import evaluate_targets, markdown
from .sections import (
    find_reference,
    run_deviation,
    run_latency,
    run_layout,
    run_parity,
    run_soak,
    run_throughput,
)

SCHEMA = "cotracker3-bench/1"

# -- command line ----------------------------------------------------------------------------------

SECTIONS = ("throughput", "deviation", "latency", "parity", "layout", "soak")
DEFAULT_SECTIONS = "throughput,deviation,latency,parity"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.engine",
        description="Benchmark the CoTracker3 streaming engine against re-encoding the whole window every step "
        "(the official online predictor's pattern).",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument(
        "--points",
        type=_int_list,
        default=[100, 1024],
        help="numbers of tracked points, comma-separated (default 100,1024)",
    )
    p.add_argument(
        "--precisions",
        type=_name_list(tuple(PRECISIONS)),
        default=None,
        help="comma-separated (default: fp32,bf16 on CPU; fp32,bf16,fp16 on CUDA)",
    )
    p.add_argument(
        "--steps", type=int, default=3, help="measured steps per configuration, after a warm-up window (default 3)"
    )
    p.add_argument("--frames", type=int, default=None, help="frames to load (default: enough for --steps)")
    p.add_argument(
        "--resolution", type=parse_resolution, default=(384, 512), help="model resolution HxW (default 384x512)"
    )
    p.add_argument(
        "--arch", choices=tuple(ARCHS), default="official", help="architecture preset (default official; see ARCHS)"
    )
    p.add_argument("--iters", type=int, default=6, help="refinement iterations per window (default 6)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument(
        "--sections",
        type=_name_list(SECTIONS),
        default=None,
        help=f"comma-separated, of {','.join(SECTIONS)} (default {DEFAULT_SECTIONS})",
    )
    p.add_argument(
        "--latency-steps",
        type=_int_list,
        default=[1, 2, 4, 8],
        help="engine steps for the latency run (default 1,2,4,8)",
    )
    p.add_argument("--latency-points", type=int, default=1024, help="points for the latency run (default 1024)")
    p.add_argument(
        "--latency-resolution", type=parse_resolution, default=None, help="HxW of the latency run (default: the main)"
    )
    p.add_argument(
        "--latency-precisions", type=_name_list(tuple(PRECISIONS)), default=None, help="default: --precisions"
    )
    p.add_argument("--latency-windows", type=int, default=2, help="windows measured per latency step mode (default 2)")
    p.add_argument(
        "--video",
        type=Path,
        default=DEFAULT_VIDEO,
        help=f"frames source, synthetic when absent (default {DEFAULT_VIDEO})",
    )
    p.add_argument("--reference", type=Path, default=None, help="stream_steps.npz (default: test/data or ../shared)")
    p.add_argument("--soak", type=int, default=0, metavar="N", help="run the soak section over N frames")
    p.add_argument(
        "--soak-resolution", type=parse_resolution, default=(64, 64), help="HxW of the soak run (default 64x64)"
    )
    p.add_argument(
        "--soak-arch", choices=tuple(ARCHS), default="small", help="architecture of the soak run (default small)"
    )
    p.add_argument("--soak-points", type=int, default=64, help="points of the soak run (default 64)")
    p.add_argument("--compile", action="store_true", help="torch.compile the engine's refinement (meant for CUDA)")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the full result as JSON")
    p.add_argument("--markdown", action="store_true", help="print Markdown tables")
    p.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    p.add_argument(
        "--quick",
        action="store_true",
        help="CI smoke: 64x96, 16 points, 2 steps, 2 iterations, fp32+bf16, latency step 4 and 8 only; "
        "speed targets relaxed to 'the engine wins'",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


def apply_quick(args: argparse.Namespace, given: set[str]) -> None:
    """--quick defaults, unless the option was given explicitly."""
    quick = {
        "arch": "quick",
        "points": [16],
        "steps": 2,
        "resolution": (64, 96),
        "iters": 2,
        "latency_steps": [4, 8],
        "latency_points": 16,
        "latency_windows": 1,
    }
    for name, value in quick.items():
        if name not in given:
            setattr(args, name, value)


def _given_options(argv: Sequence[str]) -> set[str]:
    names = set()
    for token in argv:
        if token.startswith("--"):
            names.add(token[2:].split("=", 1)[0].replace("-", "_"))
    return names


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.quick:
        apply_quick(args, _given_options(argv))
    if args.steps < 1 or args.iters < 1 or args.latency_windows < 1:
        raise SystemExit("--steps, --iters and --latency-windows must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    precisions = args.precisions or (["fp32", "bf16", "fp16"] if device.type == "cuda" else ["fp32", "bf16"])
    if device.type == "cpu" and "fp16" in precisions:
        raise SystemExit("fp16 autocast is for CUDA; on CPU use fp32 or bf16")
    sections = args.sections or DEFAULT_SECTIONS.split(",")
    if args.soak and "soak" not in sections:
        sections = [*sections, "soak"]
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))

    torch.manual_seed(0)
    model = bench_model(args.arch, args.resolution)
    model = model.to(device).eval()
    s, step = model.window_len, model.step
    need = args.frames or s + args.steps * step
    frames, source = load_frames(max(need, s + args.steps * step), args.resolution, args.video)
    memory = PeakMemory(device)
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "machine": machine_info(device),
        "load_start": loadavg(),
        "sections": sections,
        "settings": {
            "resolution": list(args.resolution),
            "points": args.points,
            "precisions": precisions,
            "steps": args.steps,
            "iters": args.iters,
            "window_len": s,
            "step": step,
            "arch": args.arch,
            "frames_source": source,
            "quick": args.quick,
            "compile": args.compile,
            "memory_measure": memory.kind,
        },
    }
    t0 = time.perf_counter()
    if "throughput" in sections:
        result["throughput"] = []
        for n in args.points:
            for precision in precisions:
                log(f"throughput: N={n} {precision}")
                result["throughput"].append(
                    run_throughput(
                        model, device, frames, n, precision, args.steps, args.iters, memory, log, args.compile
                    )
                )
    if "deviation" in sections and len(precisions) > 1:
        log("deviation")
        n = min(args.points)
        dev_frames = frames[: max(s + 2 * step, min(len(frames), 40))]
        result["deviation"] = run_deviation(model, device, dev_frames, n, precisions, args.iters, log, args.compile)
    if "latency" in sections:
        result["latency"] = []
        res = args.latency_resolution or args.resolution
        lat_model = model
        if tuple(res) != tuple(args.resolution):
            lat_model = bench_model(args.arch, res)
            lat_model = lat_model.to(device).eval()
        lat_frames = frames if tuple(res) == tuple(args.resolution) else load_frames(len(frames), res, args.video)[0]
        for precision in args.latency_precisions or precisions:
            for st in args.latency_steps:
                if st > s // 2:
                    continue
                log(f"latency: step {st} N={args.latency_points} {precision} at {res[0]}x{res[1]}")
                result["latency"].append(
                    run_latency(
                        lat_model,
                        device,
                        lat_frames,
                        args.latency_points,
                        precision,
                        st,
                        args.latency_windows,
                        args.iters,
                        log,
                        args.compile,
                    )
                )
    if "parity" in sections:
        ref = find_reference(args.reference)
        if ref is None:
            result["parity"] = {"skipped": "stream_steps.npz not found (test/data or ../shared/reference)"}
        else:
            log(f"parity: {ref}")
            result["parity"] = run_parity(ref, device)
    if "layout" in sections:
        log("layout: encoder contiguous vs channels-last")
        result["layout"] = run_layout(model, device, precisions)
    if "soak" in sections:
        frames_total = args.soak or (2000 if args.quick else 10_000)
        log(f"soak: {frames_total} frames")
        result["soak"] = run_soak(
            frames_total, args.soak_resolution, args.soak_arch, args.soak_points, args.iters, device, log
        )
    result["seconds"] = time.perf_counter() - t0
    result["load_end"] = loadavg()
    result["targets"] = evaluate_targets(result, args.quick)
    decided = [t["passed"] for t in result["targets"] if t["passed"] is not None]
    result["passed"] = all(decided)
    return emit_result(result, args, markdown, {"targets": result["targets"]}, "bench: target(s) missed")


if __name__ == "__main__":
    sys.exit(main())
