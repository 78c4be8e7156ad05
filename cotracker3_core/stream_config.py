"""Settings of the streaming engine (`StreamConfig`, re-exported by `cotracker3_core.streaming`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
STEPS = (1, 2, 4, 8)


@dataclass
class StreamConfig:
    """Settings of a streaming tracker (the ROS node's parameters mirror these).

    Args:
        checkpoint: local file, official name ("scaled_online") or URL; None gives untrained weights.
        device: "auto" (CUDA when present), "cuda" or "cpu".
        precision: "fp32", or "bf16"/"fp16" autocast.
        model_resolution: (H, W) frames are resized to.
        window_len: frames per window (16 as trained).
        step: frames between windows: 8 as trained; 1, 2 or 4 for lower latency.
        iters: refinement iterations per window.
        visibility_threshold: visible = visibility * confidence > threshold.
        arch: architecture overrides (small models for tests and small robots).
        motion_init: start each window's new frames from the tracks' recent motion (constant velocity over
            the last carried frames) instead of repeating their last position. Off by default (as trained);
            may help fast motion with small steps. Not validated for accuracy here: no trained weights.
        compile: wrap the window refinement in `torch.compile` (fixed shapes: it recompiles when the number
            of queries changes). Meant for CUDA; off by default.
    """

    checkpoint: str | None = None
    device: str = "auto"
    precision: str = "fp32"
    model_resolution: tuple[int, int] = (384, 512)
    window_len: int = 16
    step: int = 8
    iters: int = 6
    visibility_threshold: float = 0.6
    arch: dict[str, Any] = field(default_factory=dict)
    motion_init: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        self.model_resolution = tuple(int(v) for v in self.model_resolution)
        if self.device not in ("auto", "cuda", "cpu") and not str(self.device).startswith("cuda:"):
            raise ValueError(f"device must be auto, cuda or cpu, got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {self.precision!r}")
        if self.step not in STEPS or self.step > self.window_len // 2:
            raise ValueError(f"step must be one of {STEPS} and at most window_len/2, got {self.step}")
        if self.iters < 1:
            raise ValueError(f"iters must be >= 1, got {self.iters}")
        check_threshold(self.visibility_threshold)


def check_threshold(value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"visibility_threshold must be in [0, 1], got {value}")
    return value


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available")
    return torch.device(device)


def stream_config_from_dict(d: dict[str, Any]) -> StreamConfig:
    known = {f.name for f in dataclasses.fields(StreamConfig)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown stream settings: {unknown}")
    return StreamConfig(**d)
