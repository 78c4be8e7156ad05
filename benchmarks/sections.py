"""The engine benchmark's sections: throughput of the engine against the re-encoding baseline, deviation of the
reduced precisions, per-frame latency, parity with the reference, encoder memory layout, and a memory soak."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cotracker3_core.checkpoint import build_model
from cotracker3_core.model import CoTracker3
from cotracker3_core.online import WindowState, append_queries, empty_queries, replace_window_features, run_window
from cotracker3_core.reference_weights import apply_reference_weights
from cotracker3_core.streaming import (
    FrameTracks,
    StreamConfig,
    StreamingTracker,
    pixel_scale,
)

from .common import (
    COORD_TOL,
    PROB_TOL,
    REFERENCE_CANDIDATES,
    PeakMemory,
    _sync,
    autocast,
    bench_model,
    loadavg,
    query_points,
    rss_mb,
    summary_ms,
)

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
        with torch.inference_mode(), autocast(self.device, self.precision):
            video = torch.from_numpy(np.stack(frames)).to(self.device).permute(0, 3, 1, 2).float()
            if tuple(video.shape[-2:]) != tuple(self.model.config.model_resolution):
                video = F.interpolate(video, self.model.config.model_resolution, mode="bilinear", align_corners=True)
            pyramid = self.model.pyramid(self.model.encode(video))  # per level (S, C, h, w)
            replace_window_features(self.state, pyramid)
            _, _, estimate = run_window(self.model, self.state, self.step, self.iters)
            return estimate.coords[0]


def engine_config(model: CoTracker3, device: torch.device, precision: str, iters: int, **kw: Any) -> StreamConfig:
    """The engine's settings for `model` (its resolution and window, its step unless `kw` sets one); `kw`
    overrides the rest (step, compile)."""
    return StreamConfig(
        device=str(device),
        precision=precision,
        model_resolution=tuple(model.config.model_resolution),
        window_len=model.window_len,
        iters=iters,
        **{"step": model.step, **kw},
    )


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
            with torch.inference_mode(), autocast(device, precision):
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
    model = bench_model(arch, resolution)
    engine = StreamingTracker(model, engine_config(model, device, "fp32", iters))
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
