"""What the benchmarks share: paths of the development checkout, architectures, targets, measurement helpers,
inputs and the end of a benchmark command.

The benchmarks are a development tool, not part of the installed package: they run from a checkout
(``make bench`` or ``python -m benchmarks.engine``), where ``test/data`` and ``../shared`` (reference vectors,
real videos) may exist; where they do not, the inputs fall back to synthetic frames and the parity section is
skipped.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cotracker3_core.checkpoint import build_model
from cotracker3_core.config import PRESETS, preset
from cotracker3_core.model import CoTracker3
from cotracker3_core.reference_weights import apply_reference_weights
from cotracker3_core.streaming import (
    PRECISIONS,
)

REPO_ROOT = Path(__file__).resolve().parents[1]  # the checkout: benchmarks/ is not installed
SHARED_DIR = REPO_ROOT.parent / "shared"
DEFAULT_VIDEO = SHARED_DIR / "data" / "teddy.mp4"
REFERENCE_CANDIDATES = (REPO_ROOT / "test" / "data" / "stream_steps.npz", SHARED_DIR / "reference" / "stream_steps.npz")

#: Architectures of the benchmark: the named presets of `cotracker3_core.config`, plus two measurement shapes.
#: "small": every part shrunk, for the soak run (the engine's memory behaviour does not depend on the network's
#: width; 10,000 frames take minutes on two CPU cores). "quick": the official encoder with a shrunk correlation
#: and transformer, for CI smoke runs that must finish in seconds yet keep the encoder's share of a step (what
#: encoding once saves) realistic; no preset keeps the official encoder, so it stays spelled out here.
ARCHS: dict[str, dict[str, Any]] = {
    **{name: preset(name) for name in PRESETS},
    "quick": dict(hidden_size=32, num_heads=2, num_virtual_tracks=4, corr_hidden=32, corr_embed_dim=16, corr_radius=1),
    "small": dict(
        latent_dim=16,
        hidden_size=32,
        num_heads=2,
        num_virtual_tracks=4,
        corr_levels=2,
        corr_radius=1,
        corr_hidden=32,
        corr_embed_dim=16,
    ),
}

def bench_model(arch: str, resolution: tuple[int, int]) -> CoTracker3:
    """An online model of architecture `arch` (see `ARCHS`) at `resolution` (H, W) (which wins over a preset's
    own), with the reference rule's deterministic weights."""
    return apply_reference_weights(build_model("online", **{**ARCHS[arch], "model_resolution": tuple(resolution)}))


#: Targets of --check. Speed-ups are per step against the fp32 re-encoding path at 100 points on CPU.
TARGET_FP32_SPEEDUP = 1.5
TARGET_BF16_SPEEDUP = 2.5
TARGET_SOAK_GROWTH_MB = 20.0
COORD_TOL, PROB_TOL = 1e-3, 1e-4  # ../shared/reference/README.md


# -- measurement helpers ------------------------------------------------------------------------------


def _proc_status_kb(field_name: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_mb() -> float | None:
    """Resident set size of this process (MiB), from /proc; None where /proc is absent."""
    kb = _proc_status_kb("VmRSS")
    return None if kb is None else kb / 1024


class PeakMemory:
    """Peak memory of one call: CUDA's allocator peak, or the process's peak RSS (VmHWM, reset through
    /proc/self/clear_refs where the kernel allows it; else the peak since the process started)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.resettable = device.type == "cuda" or self._reset_rss_peak()

    @staticmethod
    def _reset_rss_peak() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    @contextmanager
    def measure(self, into: list[float]) -> Iterator[None]:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self.resettable:
            self._reset_rss_peak()
        yield
        if self.device.type == "cuda":
            into.append(torch.cuda.max_memory_allocated(self.device) / 2**20)
        else:
            kb = _proc_status_kb("VmHWM")
            if kb is not None:
                into.append(kb / 1024)

    @property
    def kind(self) -> str:
        if self.device.type == "cuda":
            return "cuda_max_memory_allocated"
        return "rss_peak_per_call" if self.resettable else "rss_peak_since_start"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    """Median, p90, p95, p99, min and max of durations, in ms."""
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    if not len(ms):
        return {k: math.nan for k in ("median", "p90", "p95", "p99", "min", "max")} | {"n": 0}
    return {
        "median": float(np.median(ms)),
        "p90": float(np.percentile(ms, 90)),
        "p95": float(np.percentile(ms, 95)),
        "p99": float(np.percentile(ms, 99)),
        "min": float(ms.min()),
        "max": float(ms.max()),
        "n": int(len(ms)),
    }


def parse_resolution(text: str) -> tuple[int, int]:
    """'384x512' (H x W) -> (384, 512)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"resolution must be HxW, e.g. 384x512, got {text!r}") from e
    if h <= 0 or w <= 0 or h % 8 or w % 8:
        raise argparse.ArgumentTypeError(f"resolution must be positive multiples of 8, got {text!r}")
    return h, w


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from e
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _name_list(choices: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        values = [v.strip() for v in text.split(",") if v.strip()]
        bad = sorted(set(values) - set(choices))
        if not values or bad:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)}; got {text!r}")
        return values

    return parse


def machine_info(device: torch.device) -> dict[str, Any]:
    try:
        with open("/proc/cpuinfo") as f:
            cpuinfo = f.read().splitlines()
    except OSError:
        cpuinfo = []
    names = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    cpu = names[0] if names else platform.processor() or "unknown"
    flags = next((line for line in cpuinfo if line.startswith("flags")), "")
    info: dict[str, Any] = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "avx512_bf16": "avx512_bf16" in flags.split(),
        "native_bf16": bool({"avx512_bf16", "amx_bf16"} & set(flags.split())),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


# -- inputs -------------------------------------------------------------------------------------------


def load_frames(count: int, resolution: tuple[int, int], video: Path | None) -> tuple[list[np.ndarray], str]:
    """`count` RGB uint8 frames at `resolution` (H, W): the video's first frames, cycled back and forth if
    it is shorter, or a synthetic panning texture when no video is readable. Returns (frames, source)."""
    h, w = resolution
    if video is not None and video.is_file():
        try:
            import cv2

            from cotracker3_core.evaluation.protocol import read_frames

            decoded = [cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
                       for rgb in read_frames(video, max_side=None, max_frames=count)]
            if decoded:
                cycle = decoded + decoded[-2:0:-1]  # forth and back: the motion stays continuous
                return [cycle[i % len(cycle)] for i in range(count)], video.name
        except (ImportError, ValueError):  # no OpenCV, or an unreadable file: the synthetic frames below
            pass
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, (h // 8 + 2, (w + 2 * count) // 8 + 2, 3)).astype(np.float32)
    texture = (
        torch.nn.functional.interpolate(
            torch.from_numpy(coarse).permute(2, 0, 1)[None], scale_factor=8, mode="bicubic", align_corners=False
        )[0]
        .permute(1, 2, 0)
        .clamp(0, 255)
        .to(torch.uint8)
        .numpy()
    )
    return [np.ascontiguousarray(texture[:h, 2 * i : 2 * i + w]) for i in range(count)], "synthetic"


def query_points(count: int, resolution: tuple[int, int], seed: int = 0) -> np.ndarray:
    """(count, 2) x/y points spread uniformly (fixed seed) inside the image, 4 px from the border."""
    h, w = resolution
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(4, w - 5, count), rng.uniform(4, h - 5, count)], axis=1)


def autocast(device: torch.device, precision: str):
    """Autocast for `precision` ("fp32": none) on `device`."""
    dtype = PRECISIONS[precision]
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def emit_result(
    result: dict[str, Any],
    args: argparse.Namespace,
    render: Callable[[dict[str, Any]], str],
    summary: dict[str, Any],
    missed: str,
) -> int:
    """The end of a benchmark command: the full result to --json, Markdown (--markdown) or the summary with
    the verdict on stdout, and the exit code (1 under --check when `result["passed"]` is false)."""
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=float))
    if args.markdown:
        print(render(result))
    else:
        print(json.dumps({**summary, "passed": result["passed"]}, indent=2))
    if args.check and not result["passed"]:
        print(missed, file=sys.stderr)
        return 1
    return 0
