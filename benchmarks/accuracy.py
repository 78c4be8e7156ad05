"""Accuracy of the shipped weights by the accuracy protocol, against baselines, for every engine option.

    python -m benchmarks.accuracy --markdown --check              # lite, held-out clips from ../shared/data
    python -m benchmarks.accuracy --quick                         # 2 clips, chosen setting only

Clips: ``cotracker3_core.evaluation.protocol.heldout_clips`` over videos the model never saw in training
(default: the two videos of ../shared/data, a development checkout's; CC BY-NC, used for evaluation only).
Rows: zero motion, OpenCV Lucas-Kanade, the checkpoint with its recommended settings ("chosen"), then one
option changed at a time (step, iters, motion_init, visibility threshold, model resolution, precision), then
``update="newest"`` with 1/2/4 iterations, without and with the periodic re-estimate (``--newest``: only those,
the chosen setting and window step 1). Every row scores each frame's first answer, what a live consumer acts on.
``--check`` fails unless the chosen setting beats Lucas-Kanade by ``--min-aj-margin`` AJ on average and zero
motion on every clip.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch

from cotracker3_core.evaluation.baselines import lucas_kanade, zero_motion
from cotracker3_core.evaluation.protocol import evaluate, heldout_clips, track_streaming
from cotracker3_core.streaming import StreamConfig, StreamingTracker

from .common import machine_info

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VIDEOS = [REPO.parent / "shared" / "data" / "teddy.mp4", REPO.parent / "shared" / "data" / "apple.mp4"]


def chosen_config(checkpoint: str) -> StreamConfig:
    """The checkpoint's recommended settings as a full StreamConfig on the CPU."""
    return StreamConfig(checkpoint=checkpoint, device="cpu").resolved()


def newest_rows(chosen: StreamConfig) -> list[tuple[str, StreamConfig]]:
    """(label, config): update "newest" with 1, 2 and 4 iterations per frame, without and with the periodic
    window re-estimate (every `chosen.step` frames, the chosen window mode's period)."""
    rows = []
    for iters in (1, 2, 4):
        for reestimate in (0, chosen.step):
            label = f"newest iters {iters}" + (f", re-estimate every {reestimate}" if reestimate else "")
            rows.append((label, replace(chosen, update="newest", newest_iters=iters, reestimate_every=reestimate)))
    return rows


def option_rows(chosen: StreamConfig, quick: bool, newest_only: bool = False) -> list[tuple[str, StreamConfig]]:
    """(label, config): the chosen setting, then one option changed at a time (bf16 only where the CPU has
    bf16 instructions), then the newest-frame update rows. `newest_only`: the chosen setting, window step 1
    and the newest-frame rows (the latency / accuracy comparison of docs/ros.md)."""
    rows = [("chosen", chosen)]
    if quick:
        return rows
    if newest_only:
        step_1 = [("step 1", replace(chosen, step=1))] if chosen.step != 1 else []
        return rows + newest_rows(chosen) + step_1
    for step in (8, 4, 2, 1):
        if step != chosen.step and step <= chosen.window_len // 2:
            rows.append((f"step {step}", replace(chosen, step=step)))
    for iters in (6, 4, 2, 1):
        if iters != chosen.iters:
            rows.append((f"iters {iters}", replace(chosen, iters=iters)))
    rows.append((f"motion_init {'off' if chosen.motion_init else 'on'}",
                 replace(chosen, motion_init=not chosen.motion_init)))
    for threshold in (0.3, 0.4, 0.5, 0.6):
        if abs(threshold - chosen.visibility_threshold) > 1e-6:
            rows.append((f"visibility_threshold {threshold}", replace(chosen, visibility_threshold=threshold)))
    h, w = chosen.model_resolution
    for scale in (4 / 3, 5 / 3):  # larger inputs: more precision for more compute (multiples of the stride 4)
        size = (4 * round(h * scale / 4), 4 * round(w * scale / 4))
        rows.append((f"model_resolution {size[0]}x{size[1]}", replace(chosen, model_resolution=size)))
    if chosen.precision != "fp32":
        rows.append(("fp32", replace(chosen, precision="fp32")))
    elif machine_info(torch.device("cpu"))["native_bf16"]:
        rows.append(("bf16", replace(chosen, precision="bf16")))
    else:
        print("benchmarks.accuracy: bf16 row skipped: this CPU has no bf16 instructions", file=sys.stderr)
    return rows + newest_rows(chosen)


def _markdown(results: dict[str, dict], per_clip: Sequence[str]) -> str:
    lines = ["| tracker | AJ | δavg | OA | median px | ms/frame |", "|---|---:|---:|---:|---:|---:|"]
    for label, res in results.items():
        m = res["mean"]
        lines.append(f"| {label} | {100 * m['AJ']:.1f} | {100 * m['delta_avg']:.1f} | {100 * m['OA']:.1f} | "
                     f"{m['median_px']:.2f} | {m['ms_per_frame']:.1f} |")
    lines += ["", "AJ per clip:", "", "| tracker | " + " | ".join(per_clip) + " |",
              "|---|" + "---:|" * len(per_clip)]
    for label in ("zero motion", "Lucas-Kanade", "chosen"):
        clips = results[label]["clips"]
        lines.append(f"| {label} | " + " | ".join(f"{100 * clips[c]['AJ']:.1f}" for c in per_clip) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.accuracy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="lite", help="checkpoint to judge (default: the shipped lite)")
    parser.add_argument("--videos", nargs="+", type=Path, default=DEFAULT_VIDEOS, help="held-out videos")
    parser.add_argument("--clips-per-video", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="one clip per video, the chosen setting only")
    parser.add_argument("--newest", action="store_true",
                        help="only the chosen setting, window step 1 and the update='newest' rows")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (the protocol: 2)")
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    parser.add_argument("--json", type=Path, help="write every number to this file")
    parser.add_argument("--check", action="store_true", help="exit 1 unless the targets hold")
    parser.add_argument("--min-aj-margin", type=float, default=0.05, help="AJ over Lucas-Kanade (fraction)")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.videos if not p.is_file()]
    if missing:
        print(f"benchmarks.accuracy: held-out videos not found: {missing} (pass --videos)", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    clips = heldout_clips(args.videos, 1 if args.quick else args.clips_per_video)
    results: dict[str, dict] = {"zero motion": evaluate(zero_motion, clips),
                                "Lucas-Kanade": evaluate(lucas_kanade, clips)}
    for label, config in option_rows(chosen_config(args.checkpoint), args.quick, args.newest):
        tracker = StreamingTracker.from_config(config)
        results[label] = evaluate(lambda clip, q, t=tracker: track_streaming(t, clip, q), clips)
        print(f"{label}: {json.dumps({k: round(v, 4) for k, v in results[label]['mean'].items()})}", flush=True)
    names = [c.name for c in clips]
    if args.markdown:
        print(_markdown(results, names))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    chosen, lk, zero = results["chosen"], results["Lucas-Kanade"], results["zero motion"]
    margin = chosen["mean"]["AJ"] - lk["mean"]["AJ"]
    beats_zero = all(chosen["clips"][n]["AJ"] > zero["clips"][n]["AJ"] for n in names)
    ok = margin >= args.min_aj_margin and beats_zero
    print(f"chosen vs Lucas-Kanade: {100 * margin:+.1f} AJ (target {100 * args.min_aj_margin:+.1f}); "
          f"beats zero motion on every clip: {beats_zero} -> {'PASS' if ok else 'FAIL'}")
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    raise SystemExit(main())
