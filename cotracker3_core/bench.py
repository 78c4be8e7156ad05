"""Benchmark of the streaming engine, against the official online predictor's re-encoding pattern.

The engine encodes each frame once, on arrival. The official online predictor is fed the whole 16-frame
window at every step and re-encodes all of it; `ReencodingTracker` below reproduces that pattern with this
package's model (same refinement, same numbers), so the ratio of the two isolates what encoding once buys.

Run (the full CPU run takes about half an hour at 384x512 on two cores):

    cotracker3-bench --markdown --json bench.json --check    # throughput, bf16 deviation, latency, parity
    cotracker3-bench --sections soak --soak 10000 --check    # memory over a 10,000-frame stream
    python -m cotracker3_core.bench --quick --check          # CI smoke: small sizes, relaxed speed targets

Sections (--sections): throughput (per-step latency, frames/s, peak memory: engine vs re-encoding, per
precision and number of points, the two paths alternating step by step), deviation (bf16/fp16 engine against
the fp32 engine on the same frames and queries), latency (push-to-emission latency per frame for the
low-latency steps 1/2/4/8), parity (the fp32 engine against ../shared/reference/stream_steps.npz), layout (the
encoder in channels-last vs contiguous memory: whether channels-last pays; not in the default set), soak (RSS
and engine state over a long stream; --soak N). The node's own per-frame work is measured by
`cotracker3-bench-node` (cotracker3_ros.bench_node), which needs ROS. The weights are the reference rule's
(no trained weights here): speeds and memory are those of the real architecture, but the deviation numbers
say nothing about accuracy.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint import build_model
from .model import CoTracker3
from .online import WindowState, add_frame_features, append_queries, empty_queries, run_window
from .reference_weights import apply_reference_weights
from .streaming import PRECISIONS, FrameTracks, StreamConfig, StreamingTracker, pixel_scale, resolve_device

SCHEMA = "cotracker3-bench/1"
REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"
DEFAULT_VIDEO = SHARED_DIR / "data" / "teddy.mp4"
REFERENCE_CANDIDATES = (REPO_ROOT / "test" / "data" / "stream_steps.npz", SHARED_DIR / "reference" / "stream_steps.npz")

#: Architecture presets (overrides of the official one). "small": every part shrunk, for the soak run (the
#: engine's memory behaviour does not depend on the network's width; 10,000 frames take minutes on two CPU
#: cores). "quick": the official encoder with a shrunk correlation and transformer, for CI smoke runs that
#: must finish in seconds yet keep the encoder's share of a step (what encoding once saves) realistic.
ARCHS: dict[str, dict[str, int]] = {
    "official": {},
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

            cap = cv2.VideoCapture(str(video))
            decoded = []
            while len(decoded) < count:
                ok, bgr = cap.read()
                if not ok:
                    break
                decoded.append(cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (w, h), interpolation=cv2.INTER_AREA))
            cap.release()
            if decoded:
                cycle = decoded + decoded[-2:0:-1]  # forth and back: the motion stays continuous
                return [cycle[i % len(cycle)] for i in range(count)], video.name
        except ImportError:
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


# -- the two paths ------------------------------------------------------------------------------------


class ReencodingTracker:
    """The official online predictor's pattern, with this package's model: every step is given the newest
    `window_len` frames and encodes all of them (in one batch, as the official model does), then refines
    the window. Queries, their supports and the carried estimates persist across steps, as they do there.

    Args:
        model: online CoTracker3 on `device`.
        precision: "fp32", "bf16" or "fp16" (autocast).
        step: frames between windows.
        iters: refinement iterations.
    """

    def __init__(self, model: CoTracker3, device: torch.device, precision: str, step: int, iters: int) -> None:
        self.model = model
        self.device = device
        self.precision = precision
        self.step = step
        self.iters = iters
        self.state = WindowState(queries=empty_queries(model, 1, device, torch.float32))

    def add_queries(self, xy: np.ndarray, image_hw: tuple[int, int]) -> None:
        """(N, 2) x/y in input pixels, on frame 0."""
        scale = pixel_scale(image_hw, self.model.config.model_resolution) / self.model.config.stride
        feat = torch.as_tensor(xy * scale, dtype=torch.float32, device=self.device)[None]
        append_queries(self.state, torch.zeros(1, len(xy), dtype=torch.long, device=self.device), feat)

    def track(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        """The window starting at the next window's first frame: `window_len` (H, W, 3) frames.
        Returns the window's (F, N, 2) coordinates in model pixels."""
        with torch.inference_mode(), _autocast(self.device, self.precision):
            video = torch.from_numpy(np.stack(frames)).to(self.device).permute(0, 3, 1, 2).float()
            if tuple(video.shape[-2:]) != tuple(self.model.config.model_resolution):
                video = F.interpolate(video, self.model.config.model_resolution, mode="bilinear", align_corners=True)
            pyramid = self.model.pyramid(self.model.encode(video))  # per level (S, C, h, w)
            state = self.state
            state.features.clear()
            state.frames_seen = state.next_start
            for k in range(len(frames)):
                add_frame_features(state, [level[k : k + 1] for level in pyramid])
            _, _, estimate = run_window(self.model, state, self.step, self.iters)
            return estimate.coords[0]


def engine_config(model: CoTracker3, device: torch.device, precision: str, iters: int, **kw: Any) -> StreamConfig:
    """The engine's settings for `model` (its resolution); `kw` overrides the rest (step, compile)."""
    return StreamConfig(
        device=str(device),
        precision=precision,
        model_resolution=tuple(model.config.model_resolution),
        iters=iters,
        **kw,
    )


def _autocast(device: torch.device, precision: str):
    dtype = PRECISIONS[precision]
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


@dataclass
class PathRecord:
    """Timings (s) and peak memory (MiB) of one path over the measured steps."""

    steps: list[float] = field(default_factory=list)
    windows: list[float] = field(default_factory=list)
    pushes: list[float] = field(default_factory=list)
    peak_mb: list[float] = field(default_factory=list)

    def report(self, step: int) -> dict[str, Any]:
        med = statistics.median(self.steps) if self.steps else math.nan
        out: dict[str, Any] = {
            "step_ms": summary_ms(self.steps),
            "fps": step / med if med == med and med > 0 else math.nan,
            "peak_mb": max(self.peak_mb) if self.peak_mb else None,
        }
        if self.windows:
            out["window_ms"] = summary_ms(self.windows)
        if self.pushes:
            out["encode_push_ms"] = summary_ms(self.pushes)
        return out


def run_throughput(
    model: CoTracker3,
    device: torch.device,
    frames: list[np.ndarray],
    n_points: int,
    precision: str,
    steps: int,
    iters: int,
    memory: PeakMemory,
    log: Callable[[str], None],
    compile_engine: bool = False,
) -> dict[str, Any]:
    """Engine and re-encoding path, step by step in alternation (so both see the same machine load).

    The first window (16 frames) warms both up and is not timed; each measured step then pushes `step`
    frames into the engine (the last push runs the window) and gives the re-encoding path its 16 newest
    frames. Returns the report.
    """
    s, step = model.window_len, model.step
    h, w = frames[0].shape[:2]
    engine = StreamingTracker(model, engine_config(model, device, precision, iters, compile=compile_engine))
    baseline = ReencodingTracker(model, device, precision, step, iters)
    points = query_points(n_points, (h, w))

    def push(i: int) -> list[FrameTracks]:
        return engine.push(frames[i], stamp=i + 1)

    # Warm-up: the first window of both paths.
    for i in range(s):
        push(i)
        if i == 0:
            engine.add_queries(points, stamp=1)
    baseline.add_queries(points, (h, w))
    baseline.track(frames[:s])
    eng, ref = PathRecord(), PathRecord()
    for k in range(steps):
        first = s + k * step
        t_step = 0.0
        with memory.measure(eng.peak_mb):
            for i in range(first, first + step):
                _sync(device)
                t0 = time.perf_counter()
                emitted = push(i)
                _sync(device)
                dt = time.perf_counter() - t0
                t_step += dt
                (eng.windows if emitted else eng.pushes).append(dt)
        eng.steps.append(t_step)
        with memory.measure(ref.peak_mb):
            _sync(device)
            t0 = time.perf_counter()
            baseline.track(frames[first + step - s : first + step])
            _sync(device)
            ref.steps.append(time.perf_counter() - t0)
        log(
            f"  N={n_points} {precision} step {k + 1}/{steps}: engine {eng.steps[-1] * 1e3:.0f} ms, "
            f"re-encoding {ref.steps[-1] * 1e3:.0f} ms (load {loadavg()})"
        )
    e, r = eng.report(step), ref.report(step)
    e["state_mb"] = engine.state_nbytes() / 2**20
    report = {
        "points": n_points,
        "precision": precision,
        "engine": e,
        "reencode": r,
        "speedup": r["step_ms"]["median"] / e["step_ms"]["median"],
    }
    return report


def run_deviation(
    model: CoTracker3,
    device: torch.device,
    frames: list[np.ndarray],
    n_points: int,
    precisions: Sequence[str],
    iters: int,
    log: Callable[[str], None],
    compile_engine: bool = False,
) -> list[dict[str, Any]]:
    """Each precision against fp32 on the same frames and queries: every frame's final (refined) tracks,
    in input pixels, and how many (frame, point) visible flags differ."""
    h, w = frames[0].shape[:2]
    points = query_points(n_points, (h, w))
    results: dict[str, dict[int, FrameTracks]] = {}
    for precision in ["fp32", *[p for p in precisions if p != "fp32"]]:
        engine = StreamingTracker(model, engine_config(model, device, precision, iters, compile=compile_engine))
        latest: dict[int, FrameTracks] = {}
        for i, frame in enumerate(frames):
            for ft in engine.push(frame, stamp=i + 1):
                latest[ft.frame_index] = ft
            if i == 0:
                engine.add_queries(points, stamp=1)
        for ft in engine.flush():
            latest[ft.frame_index] = ft
        results[precision] = latest
        log(f"  deviation run {precision}: {len(latest)} frames")
    out = []
    ref = results["fp32"]
    for precision, latest in results.items():
        if precision == "fp32":
            continue
        common = sorted(set(ref) & set(latest))
        err = np.concatenate([np.linalg.norm(latest[i].xy - ref[i].xy, axis=-1) for i in common])
        flips = sum(int((latest[i].visible != ref[i].visible).sum()) for i in common)
        vis_err = max(float(np.abs(latest[i].visibility - ref[i].visibility).max()) for i in common)
        total = sum(len(ref[i].visible) for i in common)
        out.append(
            {
                "precision": precision,
                "points": n_points,
                "frames": len(common),
                "median_px": float(np.median(err)),
                "p99_px": float(np.percentile(err, 99)),
                "max_px": float(err.max()),
                "visibility_flips": flips,
                "visibility_flip_fraction": flips / max(total, 1),
                "max_visibility_diff": vis_err,
            }
        )
    return out


def run_latency(
    model: CoTracker3,
    device: torch.device,
    frames: list[np.ndarray],
    n_points: int,
    precision: str,
    step: int,
    windows: int,
    iters: int,
    log: Callable[[str], None],
    compile_engine: bool = False,
) -> dict[str, Any]:
    """Push-to-emission latency of each frame (its first, unrefined emission), frames pushed back to back
    after the first window. A live camera adds the wait for the rest of the frame's step group."""
    resolution = tuple(model.config.model_resolution)
    s = model.window_len
    engine = StreamingTracker(model, engine_config(model, device, precision, iters, step=step, compile=compile_engine))
    h, w = frames[0].shape[:2]
    for i in range(s):
        engine.push(frames[i % len(frames)], stamp=i + 1)
        if i == 0:
            engine.add_queries(query_points(n_points, (h, w)), stamp=1)
    arrival: dict[int, float] = {}
    latency: list[float] = []
    window_times: list[float] = []
    encode_times: list[float] = []
    for i in range(s, s + windows * step):
        _sync(device)
        t0 = time.perf_counter()
        arrival[i] = t0
        out = engine.push(frames[i % len(frames)], stamp=i + 1)
        _sync(device)
        t1 = time.perf_counter()
        (window_times if out else encode_times).append(t1 - t0)
        latency += [t1 - arrival[ft.frame_index] for ft in out if not ft.refined and ft.frame_index in arrival]
    log(f"  latency step {step} N={n_points} {precision}: p50 {np.median(latency) * 1e3:.0f} ms")
    return {
        "step": step,
        "points": n_points,
        "precision": precision,
        "resolution": list(resolution),
        "frames": len(latency),
        "latency_ms": summary_ms(latency),
        "window_ms": summary_ms(window_times),
        "encode_push_ms": summary_ms(encode_times),
    }


def find_reference(explicit: Path | None) -> Path | None:
    if explicit is not None:
        return explicit if explicit.is_file() else None
    return next((p for p in REFERENCE_CANDIDATES if p.is_file()), None)


def run_parity(path: Path, device: torch.device) -> dict[str, Any]:
    """The engine (fp32) against the official step-by-step values of stream_steps.npz."""
    with np.load(path) as z:
        ref = {k: z[k] for k in z.files}
    resolution = tuple(int(v) for v in ref["model_resolution"])
    model = apply_reference_weights(build_model("online", model_resolution=resolution))
    engine = StreamingTracker(model, StreamConfig(model_resolution=resolution, device=str(device)))
    steps = []
    for i, frame in enumerate(ref["video_small"]):
        out = engine.push(frame, stamp=1000 + i)
        if i == 0:
            engine.add_queries(ref["queries_small"][:, 1:], stamp=1000)
        if out:
            steps.append(out)
    steps.append(engine.flush())
    err_xy = err_vis = err_conf = 0.0
    starts = ref["window_starts"]
    complete = len(steps) == len(starts)
    for k, emitted in enumerate(steps[: len(starts)]):
        for ft in emitted:
            j = ft.frame_index - starts[k]
            err_xy = max(err_xy, float(np.abs(ft.xy - ref[f"step{k}_coords"][0, j]).max()))
            err_vis = max(err_vis, float(np.abs(ft.visibility - ref[f"step{k}_vis"][0, j]).max()))
            err_conf = max(err_conf, float(np.abs(ft.confidence - ref[f"step{k}_conf"][0, j]).max()))
    passed = complete and err_xy <= COORD_TOL and err_vis <= PROB_TOL and err_conf <= PROB_TOL
    return {
        "reference": str(path),
        "max_xy_err_px": err_xy,
        "max_vis_err": err_vis,
        "max_conf_err": err_conf,
        "tolerances": {"xy_px": COORD_TOL, "vis_conf": PROB_TOL},
        "passed": bool(passed),
    }


def run_layout(
    model: CoTracker3, device: torch.device, precisions: Sequence[str], repeats: int = 7
) -> list[dict[str, Any]]:
    """The encoder on one frame in the contiguous (NCHW) and channels-last (NHWC) memory formats, per
    precision: whether channels-last pays for the per-frame encode (median of `repeats`, after one warm-up)."""
    h, w = model.config.model_resolution
    frame = torch.rand(1, 3, h, w, device=device) * 255
    rows = []
    for precision in precisions:
        times, outputs = {}, {}
        for layout, fmt in (("contiguous", torch.contiguous_format), ("channels_last", torch.channels_last)):
            model.to(memory_format=fmt)
            x = frame.contiguous(memory_format=fmt)
            seconds = []
            with torch.inference_mode(), _autocast(device, precision):
                for _ in range(repeats + 1):
                    _sync(device)
                    t0 = time.perf_counter()
                    outputs[layout] = model.encode(x).float()
                    _sync(device)
                    seconds.append(time.perf_counter() - t0)
            times[layout] = summary_ms(seconds[1:])
        model.to(memory_format=torch.contiguous_format)
        rows.append(
            {
                "precision": precision,
                "contiguous_ms": times["contiguous"],
                "channels_last_ms": times["channels_last"],
                "ratio": times["contiguous"]["median"] / times["channels_last"]["median"],
                "max_abs_diff": float((outputs["contiguous"] - outputs["channels_last"]).abs().max()),
            }
        )
    return rows


def run_soak(
    frames_total: int,
    resolution: tuple[int, int],
    arch: str,
    n_points: int,
    iters: int,
    device: torch.device,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """RSS and engine state over a long stream, with query churn (8 removed and 8 added every 500 frames)."""
    model = apply_reference_weights(build_model("online", model_resolution=resolution, **ARCHS[arch]))
    engine = StreamingTracker(model, StreamConfig(model_resolution=resolution, device=str(device), iters=iters))
    h, w = resolution
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (h, w + 64, 3), dtype=np.uint8)
    # Measure where a window has just run (multiples of the step), so that the cached frames are comparable.
    step = engine.step
    start_at = min(1000, max(64, frames_total // 10)) // step * step
    end_at = frames_total // step * step
    marks = sorted({start_at, *range(1000, end_at + 1, 1000), end_at} - {0})
    series = []
    t_start = time.perf_counter()
    for i in range(frames_total):
        shift = (i * 3) % 64
        engine.push(np.ascontiguousarray(texture[:, shift : shift + w]), stamp=i + 1)
        if i == 0:
            engine.add_queries(query_points(n_points, resolution, seed=1))
        elif i % 500 == 0 and i > 0:
            engine.remove_queries(engine.query_ids[:8])
            engine.add_queries(query_points(8, resolution, seed=i))
        if i + 1 in marks:
            series.append({"frame": i + 1, "rss_mb": rss_mb(), "state_bytes": engine.state_nbytes()})
            if (i + 1) % 1000 == 0:
                log(f"  soak frame {i + 1}: RSS {series[-1]['rss_mb']:.1f} MiB, state {series[-1]['state_bytes']} B")
    first = next(m for m in series if m["frame"] == start_at)
    last = next(m for m in series if m["frame"] == end_at)
    growth = None if first["rss_mb"] is None else last["rss_mb"] - first["rss_mb"]
    return {
        "frames": frames_total,
        "resolution": list(resolution),
        "arch": arch,
        "points": n_points,
        "iters": iters,
        "from_frame": start_at,
        "to_frame": end_at,
        "rss_growth_mb": growth,
        "state_bytes_constant": first["state_bytes"] == last["state_bytes"],
        "seconds": time.perf_counter() - t_start,
        "series": series,
    }


# -- targets and output ----------------------------------------------------------------------------


def evaluate_targets(result: dict[str, Any], quick: bool) -> list[dict[str, Any]]:
    """The --check targets that the sections run can decide; `passed` None where they could not run."""
    targets = []
    device = result["machine"]["device"]
    on_cpu = device.startswith("cpu")
    fp32_threshold = 1.0 if quick else TARGET_FP32_SPEEDUP
    bf16_threshold = 1.0 if quick else TARGET_BF16_SPEEDUP
    scope = "quick mode: the engine must only beat re-encoding" if quick else "CPU, 100 points"
    rows = {(r["points"], r["precision"]): r for r in result.get("throughput", [])}
    base_points = 100 if (100, "fp32") in rows else min((n for n, p in rows if p == "fp32"), default=None)
    if "throughput" in result["sections"] and on_cpu and base_points is not None:
        fp32 = rows[(base_points, "fp32")]
        targets.append(
            {
                "name": f"fp32 engine vs fp32 re-encoding, per step (N={base_points})",
                "value": fp32["speedup"],
                "threshold": fp32_threshold,
                "passed": fp32["speedup"] >= fp32_threshold,
                "note": scope,
            }
        )
        if (base_points, "bf16") in rows:
            ratio = fp32["reencode"]["step_ms"]["median"] / rows[(base_points, "bf16")]["engine"]["step_ms"]["median"]
            targets.append(
                {
                    "name": f"bf16 engine vs fp32 re-encoding, per step (N={base_points})",
                    "value": ratio,
                    "threshold": bf16_threshold,
                    "passed": ratio >= bf16_threshold,
                    "note": scope,
                }
            )
    if "parity" in result["sections"]:
        parity = result.get("parity") or {}
        targets.append(
            {
                "name": "fp32 engine within the reference tolerances (stream_steps)",
                "value": parity.get("max_xy_err_px"),
                "threshold": COORD_TOL,
                "passed": parity.get("passed") if "passed" in parity else None,
                "note": parity.get("skipped", "xy 1e-3 px, visibility/confidence 1e-4"),
            }
        )
    if "soak" in result["sections"] and result.get("soak"):
        soak = result["soak"]
        growth = soak["rss_growth_mb"]
        targets.append(
            {
                "name": f"RSS growth, frame {soak['from_frame']} to {soak.get('to_frame', soak['frames'])}",
                "value": growth,
                "threshold": TARGET_SOAK_GROWTH_MB,
                "passed": None
                if growth is None
                else bool(growth <= TARGET_SOAK_GROWTH_MB and soak["state_bytes_constant"]),
                "note": "MiB; engine state bytes must also stay constant",
            }
        )
    return targets


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown(result: dict[str, Any]) -> str:
    """The result as Markdown tables."""
    m = result["machine"]
    s = result["settings"]
    lines = [
        f"Machine: {m['cpu']}, {m['cpu_count']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
        f"device {m['device']}; load average {result['load_start']} -> {result['load_end']}.",
    ]
    if any(result.get(k) for k in ("throughput", "deviation", "latency")):
        lines.append(
            f"Model: {s['arch']} architecture, rule weights, {s['resolution'][0]}x{s['resolution'][1]}, "
            f"window {s['window_len']}, step {s['step']}, {s['iters']} iterations; frames: {s['frames_source']}."
        )
    lines.append("")
    if result.get("throughput"):
        lines += [
            "| N | precision | engine step ms (median / p90) | engine fps | engine peak MiB "
            "| re-encoding step ms (median / p90) | re-encoding fps | re-encoding peak MiB | speed-up |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in result["throughput"]:
            e, b = r["engine"], r["reencode"]
            cells = [
                str(r["points"]),
                r["precision"],
                f"{_fmt(e['step_ms']['median'], 0)} / {_fmt(e['step_ms']['p90'], 0)}",
                _fmt(e["fps"], 2),
                _fmt(e["peak_mb"], 0),
                f"{_fmt(b['step_ms']['median'], 0)} / {_fmt(b['step_ms']['p90'], 0)}",
                _fmt(b["fps"], 2),
                _fmt(b["peak_mb"], 0),
                f"{r['speedup']:.2f}x",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if result.get("deviation"):
        lines += [
            "| precision vs fp32 | N | frames | median px | p99 px | max px | visibility flips |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for d in result["deviation"]:
            lines.append(
                f"| {d['precision']} | {d['points']} | {d['frames']} | {d['median_px']:.3f} | {d['p99_px']:.3f} | "
                f"{d['max_px']:.3f} | {d['visibility_flips']} ({100 * d['visibility_flip_fraction']:.2f}%) |"
            )
        lines.append("")
    if result.get("latency"):
        lines += [
            "| step | N | precision | resolution | frames | latency p50 ms | latency p95 ms | window ms (median) |",
            "|---:|---:|---|---|---:|---:|---:|---:|",
        ]
        for r in result["latency"]:
            lines.append(
                f"| {r['step']} | {r['points']} | {r['precision']} | {r['resolution'][0]}x{r['resolution'][1]} | "
                f"{r['frames']} | {_fmt(r['latency_ms']['median'], 0)} | {_fmt(r['latency_ms']['p95'], 0)} | "
                f"{_fmt(r['window_ms']['median'], 0)} |"
            )
        lines.append("")
    if result.get("parity"):
        p = result["parity"]
        if "skipped" in p:
            lines.append(f"Parity: skipped ({p['skipped']}).")
        else:
            lines.append(
                f"Parity (fp32 engine vs stream_steps.npz): max |xy| error {p['max_xy_err_px']:.2e} px, "
                f"visibility {p['max_vis_err']:.2e}, confidence {p['max_conf_err']:.2e}: "
                f"{'within' if p['passed'] else 'OUTSIDE'} tolerance."
            )
    if result.get("layout"):
        lines += [
            "| encoder, one frame | contiguous ms (median) | channels-last ms (median) | speed-up | max abs diff |",
            "|---|---:|---:|---:|---:|",
        ]
        for r in result["layout"]:
            lines.append(
                f"| {r['precision']} | {r['contiguous_ms']['median']:.0f} | {r['channels_last_ms']['median']:.0f} | "
                f"{r['ratio']:.2f}x | {r['max_abs_diff']:.1e} |"
            )
        lines.append("")
    if result.get("soak"):
        k = result["soak"]
        lines.append(
            f"Soak ({k['arch']} architecture, {k['resolution'][0]}x{k['resolution'][1]}, {k['points']} points, "
            f"{k['frames']} frames, {k['seconds']:.0f} s): RSS growth from frame {k['from_frame']} to "
            f"{k['to_frame']}: {_fmt(k['rss_growth_mb'], 2)} MiB; engine state constant: {k['state_bytes_constant']}."
        )
        series = k.get("series", [])
        if series:
            lines += [
                "",
                "| frame | " + " | ".join(str(m["frame"]) for m in series) + " |",
                "|---|" + "---:|" * len(series),
                "| RSS MiB | " + " | ".join(_fmt(m["rss_mb"], 1) for m in series) + " |",
                "| engine state bytes | " + " | ".join(f"{m['state_bytes']:,}" for m in series) + " |",
            ]
    if result.get("targets"):
        lines += ["", "| target | value | threshold | result |", "|---|---:|---:|---|"]
        for t in result["targets"]:
            verdict = {True: "pass", False: "FAIL", None: "not run"}[t["passed"]]
            lines.append(f"| {t['name']} ({t['note']}) | {_fmt(t['value'], 4)} | {t['threshold']} | {verdict} |")
    return "\n".join(lines)


# -- command line ----------------------------------------------------------------------------------

SECTIONS = ("throughput", "deviation", "latency", "parity", "layout", "soak")
DEFAULT_SECTIONS = "throughput,deviation,latency,parity"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cotracker3-bench",
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
    model = apply_reference_weights(build_model("online", model_resolution=args.resolution, **ARCHS[args.arch]))
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
            lat_model = apply_reference_weights(build_model("online", model_resolution=res, **ARCHS[args.arch]))
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


if __name__ == "__main__":
    sys.exit(main())
