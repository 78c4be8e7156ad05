"""Settings of the streaming engine (`StreamConfig`, re-exported by `cotracker3_core.streaming`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from .checkpoint import build_model, inference_settings
from .query_admission import DEFAULT_MAX_POINTS, DEFAULT_MAX_POINTS_PER_REQUEST

if TYPE_CHECKING:
    from .model import CoTracker3

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
STEPS = (1, 2, 4, 8)
#: Values of `StreamConfig.update`.
UPDATES = ("window", "newest")

#: Settings a checkpoint may recommend, with the library's value when neither the caller nor the checkpoint
#: sets them (the official online model's: 384x512, window 16, step 8, 6 iterations, threshold 0.6).
DEFAULT_SETTINGS: dict[str, Any] = {
    "model_resolution": (384, 512),
    "window_len": 16,
    "step": 8,
    "iters": 6,
    "visibility_threshold": 0.6,
    "motion_init": False,
    "update": "window",
}


@dataclass
class StreamConfig:
    """Settings of a streaming tracker (the ROS node's parameters mirror these).

    Args:
        checkpoint: a shipped name ("lite"), local file, official name ("scaled_online") or URL; None gives
            untrained weights.
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
            its accuracy effect for ``lite`` is in docs/models.md.
        compile: wrap the window refinement in `torch.compile` (fixed shapes: it recompiles when the number
            of queries changes). Meant for CUDA; off by default.
        max_points: most points tracked at once; a request that would pass it is refused whole.
        max_points_per_request: most points one request may add (a mask grid: grid_size^2 at most).
        update: "window" (every `step` frames a whole window is refined for `iters` iterations; frames are
            answered `window_len - step` frames late) or "newest" (every frame is answered on its push: only
            the newest frame is refined, for `newest_iters` iterations, the window's older frames keeping
            their estimates; see `cotracker3_core.newest`).
        newest_iters: refinement iterations of the newest frame per push (update "newest").
        reestimate_every: update "newest" only: every this many frames, also re-estimate the whole window as
            window mode with `step` = this does (emitted as refined; the per-frame path continues from it).
            0: never; else 1, 2, 4 or 8 and at most window_len/2.

    ``model_resolution``, ``window_len``, ``step``, ``iters``, ``visibility_threshold``, ``motion_init`` and
    ``update`` may be left unset (None): ``resolved()`` fills them from the checkpoint's recommended settings (ours
    record them, e.g. ``lite``), else from ``DEFAULT_SETTINGS``. The engine always runs a resolved config.
    """

    checkpoint: str | None = None
    device: str = "auto"
    precision: str = "fp32"
    model_resolution: tuple[int, int] | None = None
    window_len: int | None = None
    step: int | None = None
    iters: int | None = None
    visibility_threshold: float | None = None
    arch: dict[str, Any] = field(default_factory=dict)
    motion_init: bool | None = None
    compile: bool = False
    max_points: int = DEFAULT_MAX_POINTS
    max_points_per_request: int = DEFAULT_MAX_POINTS_PER_REQUEST
    update: str | None = None
    newest_iters: int = 1
    reestimate_every: int = 0

    def __post_init__(self) -> None:
        if self.model_resolution is not None:
            self.model_resolution = tuple(int(v) for v in self.model_resolution)
            if len(self.model_resolution) != 2 or min(self.model_resolution) <= 0:
                raise ValueError(f"model_resolution must be (height, width) > 0, got {self.model_resolution}")
        if self.device not in ("auto", "cuda", "cpu") and not str(self.device).startswith("cuda:"):
            raise ValueError(f"device must be auto, cuda or cpu, got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {self.precision!r}")
        if self.window_len is not None and self.window_len < 2:
            raise ValueError(f"window_len must be >= 2, got {self.window_len}")
        if self.step is not None and (
            self.step not in STEPS or (self.window_len is not None and self.step > self.window_len // 2)
        ):
            raise ValueError(f"step must be one of {STEPS} and at most window_len/2, got {self.step}")
        if self.iters is not None and self.iters < 1:
            raise ValueError(f"iters must be >= 1, got {self.iters}")
        if self.update is not None and self.update not in UPDATES:
            raise ValueError(f"update must be one of {UPDATES}, got {self.update!r}")
        if self.newest_iters < 1:
            raise ValueError(f"newest_iters must be >= 1, got {self.newest_iters}")
        if self.reestimate_every and (
            self.reestimate_every not in STEPS
            or (self.window_len is not None and self.reestimate_every > self.window_len // 2)
        ):
            raise ValueError(
                f"reestimate_every must be 0 or one of {STEPS} and at most window_len/2, got {self.reestimate_every}"
            )
        if self.visibility_threshold is not None:
            check_threshold(self.visibility_threshold)
        if self.max_points < 1 or self.max_points_per_request < 1:
            raise ValueError(
                f"max_points and max_points_per_request must be >= 1, got {self.max_points}, "
                f"{self.max_points_per_request}"
            )

    def resolved(self, recommended: Mapping[str, Any] | None = None) -> StreamConfig:
        """A copy with every unset setting filled: the caller's value wins, then the checkpoint's
        recommendation (``recommended``, read from the checkpoint when None), then ``DEFAULT_SETTINGS``."""
        unset = [name for name in DEFAULT_SETTINGS if getattr(self, name) is None]
        if not unset:
            return self
        if recommended is None:
            recommended = inference_settings(self.checkpoint)
        values = {name: recommended.get(name, DEFAULT_SETTINGS[name]) for name in unset}
        if "step" in values and "step" not in recommended:  # the library default, within half the window
            window = values.get("window_len", self.window_len)
            values["step"] = min(DEFAULT_SETTINGS["step"], max(1, window // 2))
        return dataclasses.replace(self, **values)

    def build_online_model(self) -> CoTracker3:
        """The online-mode CoTracker3 these (resolved) settings run: checkpoint, window, resolution, arch."""
        return build_model(
            "online",
            checkpoint=self.checkpoint,
            window_len=self.window_len,
            model_resolution=self.model_resolution,
            **self.arch,
        )


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
