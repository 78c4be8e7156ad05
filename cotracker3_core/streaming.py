"""A streaming point tracker for live cameras, independent of ROS.

Frames are pushed one at a time with a timestamp. Each frame is encoded once, on arrival; its features are
kept only while a future window still needs them. Every `step` frames a 16-frame window is tracked; each
frame's tracks are emitted once, from the first window in which it is among the `step` newest frames (the
first window emits all of its frames), and once more, flagged `refined`, when the next window re-estimates
it. Queries are added (on any frame still in the window, named by its stamp) and removed at any time.

State is bounded by the window, however long the stream runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint import build_model
from .model import CoTracker3, IterationEstimate
from .online import (
    WindowState,
    add_frame_features,
    append_queries,
    empty_queries,
    keep_queries,
    run_window,
    window_ready,
)
from .queries import mask_grid_points

logger = logging.getLogger(__name__)

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
        _check_threshold(self.visibility_threshold)


@dataclass
class FrameTracks:
    """The tracks of one frame.

    stamp: the frame's timestamp; frame_index: frames since the start or the last reset;
    refined: True when these values re-estimate a frame already emitted;
    ids: (N,) int64 query ids; xy: (N, 2) float32 input-image pixels (x right, y down);
    visibility, confidence: (N,) float32 in [0, 1]; visible: (N,) bool.
    """

    stamp: int
    frame_index: int
    refined: bool
    ids: np.ndarray
    xy: np.ndarray
    visibility: np.ndarray
    confidence: np.ndarray
    visible: np.ndarray


def pixel_scale(from_hw: tuple[int, int], to_hw: tuple[int, int]) -> np.ndarray:
    """(2,) x/y factors taking pixel coordinates in an image of size `from_hw` (H, W) to one of size `to_hw`,
    corner-aligned like the model's resize (`frame_to_tensor`)."""
    (fh, fw), (th, tw) = from_hw, to_hw
    return np.array([(tw - 1) / (fw - 1), (th - 1) / (fh - 1)])


def frame_to_tensor(image: np.ndarray, resolution: tuple[int, int], device: torch.device) -> torch.Tensor:
    """(H, W, 3) RGB frame (uint8 or float, 0-255) -> (1, 3, h, w) float32 on `device`, resized to
    `resolution` (h, w) bilinearly with aligned corners (the model's input convention)."""
    x = torch.from_numpy(np.ascontiguousarray(image)).to(device).permute(2, 0, 1)[None].float()
    if tuple(x.shape[-2:]) != tuple(resolution):
        x = F.interpolate(x, tuple(resolution), mode="bilinear", align_corners=True)
    return x


def _check_threshold(value: float) -> float:
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


class StreamingTracker:
    """Tracks queried points on a stream of frames (see the module docstring).

    Args:
        model: an online-mode CoTracker3 (see `build_model`).
        config: stream settings; its checkpoint/arch/model_resolution fields are informational here.
        untrained: whether the model's weights are untrained (reported to users).
    """

    def __init__(self, model: CoTracker3, config: StreamConfig | None = None, untrained: bool = False) -> None:
        self.config = config or StreamConfig(model_resolution=model.config.model_resolution)
        if model.config.mode != "online":
            raise ValueError("the streaming tracker needs an online-mode model")
        if self.config.step > model.window_len // 2:
            raise ValueError(f"step {self.config.step} exceeds half the window ({model.window_len})")
        self.device = resolve_device(self.config.device)
        self.model = model.to(self.device).eval()
        self.untrained = untrained
        self._threshold = _check_threshold(self.config.visibility_threshold)
        self._refine = torch.compile(self.model.refine, dynamic=False) if self.config.compile else None
        self.reset()

    @classmethod
    def from_config(cls, config: StreamConfig) -> StreamingTracker:
        model = build_model(
            "online",
            checkpoint=config.checkpoint,
            window_len=config.window_len,
            model_resolution=config.model_resolution,
            **config.arch,
        )
        return cls(model, config, untrained=config.checkpoint is None)

    # -- public state --------------------------------------------------------------------------------

    @property
    def visibility_threshold(self) -> float:
        return self._threshold

    @visibility_threshold.setter
    def visibility_threshold(self, value: float) -> None:
        self._threshold = _check_threshold(value)

    @property
    def step(self) -> int:
        return self.config.step

    @property
    def frame_size(self) -> tuple[int, int] | None:
        """(H, W) of the input frames, fixed by the first frame after a reset."""
        return self._frame_size

    @property
    def query_ids(self) -> list[int]:
        return list(self._ids)

    @property
    def window_stamps(self) -> list[int]:
        """Stamps of the frames still in the window: the frames queries may be added on."""
        return [self._stamps[i] for i in sorted(self._state.features)]

    @property
    def frames_seen(self) -> int:
        return self._state.frames_seen

    def state_nbytes(self) -> int:
        """Bytes held by the engine's tensors (features, queries, carried estimates)."""
        return self._state.nbytes()

    def reset(self) -> None:
        """Forget frames, queries and estimates."""
        dtype = torch.float32
        self._state = WindowState(queries=empty_queries(self.model, 1, self.device, dtype))
        self._ids: list[int] = []
        self._stamps: dict[int, int] = {}
        self._frame_size: tuple[int, int] | None = None
        self._last_stamp: int | None = None
        self._next_id = 0
        self._emitted_until = 0  # frames [0, this) were emitted as new

    # -- frames --------------------------------------------------------------------------------------

    def push(self, frame: np.ndarray, stamp: int) -> list[FrameTracks]:
        """Add one (H, W, 3) RGB frame (uint8, or float in 0-255) with a strictly increasing stamp.

        Returns the tracks the step emitted (possibly none).
        Raises:
            ValueError: bad array, non-increasing stamp, or a size other than the stream's; the state is
                left untouched (call `reset()` to start a new stream).
        """
        image = self._check_frame(frame)
        stamp = int(stamp)
        if self._last_stamp is not None and stamp <= self._last_stamp:
            raise ValueError(f"frame stamp {stamp} is not later than the previous one ({self._last_stamp})")
        with self._inference():
            pyramid = self._encode(image)
        if self._frame_size is None:
            self._frame_size = tuple(image.shape[:2])
        index = add_frame_features(self._state, pyramid)
        self._stamps[index] = stamp
        self._last_stamp = stamp
        if window_ready(self._state, self.model.window_len):
            return self._step()
        return []

    def flush(self) -> list[FrameTracks]:
        """Track the last partial window (padded with the final frame) and emit what it holds."""
        if self._state.frames_seen <= self._emitted_until:
            return []
        return self._step()

    # -- queries -------------------------------------------------------------------------------------

    def add_queries(
        self, xy: np.ndarray | Sequence[Sequence[float]], stamp: int | None = None, ids: Sequence[int] | None = None
    ) -> list[int]:
        """Track new points from the frame named by `stamp` (None or 0: the newest frame).

        Args:
            xy: (N, 2) x/y in input-image pixels.
            stamp: stamp of a frame still in the window (`window_stamps`).
            ids: caller's ids (unique, unused); assigned by the engine when omitted.
        Returns:
            the ids of the new points.
        """
        pts = np.asarray(xy, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 2:
            raise ValueError(f"query points must be an (N, 2) array of x/y, got shape {pts.shape}")
        if not np.isfinite(pts).all():
            raise ValueError("query points contain NaN or infinite values")
        if self._frame_size is None:
            raise ValueError("no frame received yet: queries are placed on a frame in the window")
        h, w = self._frame_size
        outside = (pts[:, 0] < 0) | (pts[:, 0] > w - 1) | (pts[:, 1] < 0) | (pts[:, 1] > h - 1)
        if outside.any():
            raise ValueError(
                f"{int(outside.sum())} query point(s) outside the {w}x{h} image, e.g. {pts[outside][0].tolist()}"
            )
        frame_index = self._frame_for_stamp(stamp)
        new_ids = self._new_ids(len(pts), ids)
        if not len(pts):
            return []
        scale = pixel_scale((h, w), (self._model_h, self._model_w))
        feat_xy = torch.as_tensor(pts * scale / self.model.config.stride, dtype=torch.float32)
        frames = torch.full((1, len(pts)), frame_index, dtype=torch.long)
        append_queries(self._state, frames.to(self.device), feat_xy[None].to(self.device))
        self._ids.extend(new_ids)
        return new_ids

    def add_mask_queries(self, mask: np.ndarray, grid_size: int, stamp: int | None = None) -> list[int]:
        """Track the points of a grid_size x grid_size grid that fall inside `mask` ((H, W), nonzero = in)."""
        mask = np.asarray(mask)
        if self._frame_size is not None and mask.shape != self._frame_size:
            raise ValueError(f"mask is {mask.shape[:2]} but frames are {self._frame_size}")
        if grid_size < 1:
            raise ValueError(f"grid_size must be >= 1, got {grid_size}")
        pts = mask_grid_points(mask, grid_size)
        if not len(pts):
            raise ValueError("no grid point falls inside the mask")
        return self.add_queries(pts, stamp=stamp)

    def remove_queries(self, ids: Sequence[int]) -> None:
        """Stop tracking the given ids (all must be known); their memory is freed."""
        ids = [int(i) for i in ids]
        unknown = sorted(set(ids) - set(self._ids))
        if unknown:
            raise ValueError(f"unknown query ids: {unknown}")
        drop = set(ids)
        keep = [i for i, qid in enumerate(self._ids) if qid not in drop]
        keep_queries(self._state, torch.as_tensor(keep, dtype=torch.long, device=self.device))
        self._ids = [self._ids[i] for i in keep]

    # -- internals -----------------------------------------------------------------------------------

    @property
    def _model_h(self) -> int:
        return self.model.config.model_resolution[0]

    @property
    def _model_w(self) -> int:
        return self.model.config.model_resolution[1]

    def _check_frame(self, frame: np.ndarray) -> np.ndarray:
        if isinstance(frame, torch.Tensor):
            frame = frame.detach().cpu().numpy()
        if not isinstance(frame, np.ndarray):
            raise ValueError(f"frame must be a numpy array, got {type(frame).__name__}")
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frame must be (H, W, 3) RGB, got shape {frame.shape}")
        if frame.shape[0] < 2 or frame.shape[1] < 2:
            raise ValueError(f"frame is too small: {frame.shape[:2]}")
        if frame.dtype != np.uint8 and not np.issubdtype(frame.dtype, np.floating):
            raise ValueError(f"frame dtype must be uint8 or float (0-255), got {frame.dtype}")
        if np.issubdtype(frame.dtype, np.floating) and not np.isfinite(frame).all():
            raise ValueError("frame contains NaN or infinite values")
        if self._frame_size is not None and frame.shape[:2] != self._frame_size:
            raise ValueError(
                f"frame size {frame.shape[:2]} differs from the stream's {self._frame_size}; reset() first"
            )
        return frame

    def _encode(self, image: np.ndarray) -> list[torch.Tensor]:
        x = frame_to_tensor(image, (self._model_h, self._model_w), self.device)
        # Kept in the compute dtype: under bf16/fp16 autocast the lookups run in it anyway, at half the memory.
        features = self.model.encode(x)  # (1, C, h, w)
        return self.model.pyramid(features)

    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        dtype = PRECISIONS[self.config.precision]
        with torch.inference_mode():
            if dtype is None:
                yield
            else:
                with torch.autocast(self.device.type, dtype=dtype):
                    yield

    def _frame_for_stamp(self, stamp: int | None) -> int:
        if stamp is None or int(stamp) == 0:
            return self._state.frames_seen - 1
        for index in sorted(self._state.features):
            if self._stamps[index] == int(stamp):
                return index
        stamps = self.window_stamps
        raise ValueError(
            f"stamp {stamp} is not a frame in the window (window holds {len(stamps)} frames, "
            f"stamps {stamps[0] if stamps else None}..{stamps[-1] if stamps else None})"
        )

    def _new_ids(self, count: int, ids: Sequence[int] | None) -> list[int]:
        if ids is None or len(ids) == 0:
            out = list(range(self._next_id, self._next_id + count))
        else:
            out = [int(i) for i in ids]
            if len(out) != count:
                raise ValueError(f"{len(out)} ids given for {count} points")
            if min(out) < 0:
                raise ValueError("ids must be non-negative")
            if len(set(out)) != len(out):
                raise ValueError(f"duplicate ids in request: {sorted({i for i in out if out.count(i) > 1})}")
            taken = sorted(set(out) & set(self._ids))
            if taken:
                raise ValueError(f"ids already in use: {taken}")
        self._next_id = max([self._next_id - 1, *out]) + 1
        return out

    def _step(self) -> list[FrameTracks]:
        state = self._state
        if not state.queries.count:
            # Nothing to track: slide the window without running the model (the engine idles) and emit
            # empty tracks for the frames that became due, so that consumers still see every frame.
            start = state.next_start
            available = min(state.frames_seen - start, self.model.window_len)
            state.next_start += self.step
            for index in [i for i in state.features if i < state.next_start]:
                del state.features[index]
            state.carry = None
            out = [
                self._empty_tracks(i)
                for i in range(max(start, self._emitted_until), start + available)
            ]
            self._emitted_until = max(self._emitted_until, start + available)
            self._forget_stamps()
            return out
        frames_of_queries = state.queries.frames[0].cpu().numpy()
        ids = np.asarray(self._ids, dtype=np.int64)
        with self._inference():
            start, available, estimate = run_window(
                self.model, state, self.step, self.config.iters, self.config.motion_init, self._refine
            )
        out = self._emit(start, available, estimate, ids, frames_of_queries)
        self._forget_stamps()
        return out

    def _emit(
        self, start: int, available: int, estimate: IterationEstimate, ids: np.ndarray, query_frames: np.ndarray
    ) -> list[FrameTracks]:
        scale = pixel_scale((self._model_h, self._model_w), self._frame_size).astype(np.float32)
        coords = estimate.coords[0].float().cpu().numpy() * scale  # (F, N, 2)
        vis = estimate.vis_logits[0].float().sigmoid().cpu().numpy()
        conf = estimate.conf_logits[0].float().sigmoid().cpu().numpy()
        refine_from = max(start, self._emitted_until - self.step) if start > 0 else start
        out = []
        for k in range(available):
            index = start + k
            if index < refine_from:
                continue
            refined = index < self._emitted_until
            active = query_frames <= index
            v, c = vis[k][active], conf[k][active]
            out.append(
                FrameTracks(
                    stamp=self._stamps[index],
                    frame_index=index,
                    refined=refined,
                    ids=ids[active],
                    xy=coords[k][active].astype(np.float32),
                    visibility=v.astype(np.float32),
                    confidence=c.astype(np.float32),
                    visible=(v * c) > self._threshold,
                )
            )
        self._emitted_until = max(self._emitted_until, start + available)
        return out

    def _forget_stamps(self) -> None:
        for index in [i for i in self._stamps if i < self._state.next_start]:
            del self._stamps[index]

    def _empty_tracks(self, index: int) -> FrameTracks:
        empty = np.zeros(0, dtype=np.float32)
        return FrameTracks(
            stamp=self._stamps[index],
            frame_index=index,
            refined=False,
            ids=np.zeros(0, dtype=np.int64),
            xy=np.zeros((0, 2), dtype=np.float32),
            visibility=empty,
            confidence=empty.copy(),
            visible=np.zeros(0, dtype=bool),
        )


def stream_config_from_dict(d: dict[str, Any]) -> StreamConfig:
    known = {f.name for f in dataclasses.fields(StreamConfig)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown stream settings: {unknown}")
    return StreamConfig(**d)
