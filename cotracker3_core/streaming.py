"""A streaming point tracker for live cameras, independent of ROS.

Frames are pushed one at a time with a timestamp. Each frame is encoded once, on arrival; its features are
kept only while a future window still needs them. Every `step` frames a 16-frame window is tracked; each
frame's tracks are emitted once, from the first window in which it is among the `step` newest frames (the
first window emits all of its frames), and once more, flagged `refined`, when the next window re-estimates
it. Queries are added (on any frame still in the window, named by its stamp) and removed at any time.
With ``update="newest"`` each frame is instead answered on its own push (`cotracker3_core.newest`).

State is bounded by the window, however long the stream runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .correlation import WindowFeatures
from .frame_tracks import FrameTracks, empty_tracks, tracks_from_estimate
from .frames import FrameSizeError, StampOrderError, check_frame, frame_to_tensor, pixel_scale
from .model import CoTracker3
from .newest import NewestCache, add_newest_queries, adopt_window, answer_newest, empty_cache, keep_newest_frames
from .newest import refine_newest as _refine_newest
from .online import (
    WindowInputs,
    WindowState,
    add_frame_features,
    append_queries,
    empty_queries,
    finish_window,
    keep_queries,
    prepare_window,
    refine_inputs,
    skip_window,
    window_ready,
)
from .queries import mask_grid_points
from .query_admission import QueryLimitError, assign_ids, check_grid_size, check_limits, next_free_id
from .stream_config import PRECISIONS, STEPS, StreamConfig, check_threshold, resolve_device, stream_config_from_dict
from .windows import IterationEstimate, emission_plan

logger = logging.getLogger(__name__)

__all__ = [
    "PRECISIONS",
    "STEPS",
    "FrameSizeError",
    "FrameTracks",
    "NotInWindowError",
    "PendingWindow",
    "QueryLimitError",
    "StampOrderError",
    "StreamConfig",
    "StreamState",
    "StreamingTracker",
    "frame_to_tensor",
    "pixel_scale",
    "resolve_device",
    "stream_config_from_dict",
]


#: Words every "no frame yet" / "frame not in the window" refusal contains: clients that only see the text
#: (a service answer) test for these constants, never for a paraphrase.
NO_FRAME_YET = "no frame received yet"
NOT_IN_WINDOW = "not a frame in the window"


class NotInWindowError(ValueError):
    """A query names a frame that is not in the window (not received yet, or already left it)."""


@dataclass
class StreamState:
    """Everything a `StreamingTracker` remembers between frames, as one value (bounded by the window).

    window: the sliding-window state (cached frame features, queries in feature pixels, the carry).
    ids: the query ids, in the order of the window state's queries.
    stamps: frame index -> stamp, for the frames still in the window.
    frame_size: (H, W) of the input frames, fixed by the first frame; None before it.
    last_stamp: the newest frame's stamp; stamps must increase.
    next_id: the id the next engine-assigned query gets.
    emitted_until: frames [0, emitted_until) were emitted as new.
    newest: the per-frame path's cache (update "newest"; no queries otherwise).
    reestimated_until: update "newest": the periodic re-estimate's own `emitted_until` (window mode's).
    """

    window: WindowState
    ids: list[int] = field(default_factory=list)
    stamps: dict[int, int] = field(default_factory=dict)
    frame_size: tuple[int, int] | None = None
    last_stamp: int | None = None
    next_id: int = 0
    emitted_until: int = 0
    newest: NewestCache | None = None
    reestimated_until: int = 0

    @classmethod
    def empty(cls, model: CoTracker3, device: torch.device) -> StreamState:
        queries = empty_queries(model, 1, device, torch.float32)
        return cls(window=WindowState(queries=queries), newest=empty_cache(model, 1, device))

    @property
    def window_stamps(self) -> list[int]:
        """Stamps of the frames still in the window, oldest first."""
        return [self.stamps[i] for i in sorted(self.window.features)]

    def nbytes(self) -> int:
        """Bytes held in tensors (features, queries, carried estimates, the per-frame cache)."""
        return self.window.nbytes() + (self.newest.nbytes() if self.newest is not None else 0)

    def forget_stamps(self) -> None:
        """Drop the stamps of frames that left the window."""
        for index in [i for i in self.stamps if i < self.window.next_start]:
            del self.stamps[index]


@dataclass
class PendingWindow:
    """A window taken off a stream by `StreamingTracker.begin_window`, waiting for its refinement.

    start, available: its first frame index and real frames; step: the slide; done: the emission counter
    (frames emitted before); reestimate: update "newest"'s re-estimate step, 0 in window mode; inputs: the
    refinement's inputs (None: no queries, the window was skipped); ids, query_frames: (N,) the queries' ids
    and frame indices at the window; held: a re-estimate's frames (the per-frame cache adopts its output).
    """

    start: int
    available: int
    step: int
    done: int
    reestimate: int
    inputs: WindowInputs | None
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    query_frames: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    held: list[WindowFeatures] = field(default_factory=list)


class StreamingTracker:
    """Tracks queried points on a stream of frames (see the module docstring).

    Args:
        model: an online-mode CoTracker3 (see `build_model`).
        config: stream settings; its checkpoint/arch/model_resolution fields are informational here.
        untrained: whether the model's weights are untrained (reported to users).
    """

    def __init__(self, model: CoTracker3, config: StreamConfig | None = None, untrained: bool = False) -> None:
        config = config or StreamConfig()
        # What the model fixes (its window, its resolution) fills the unset fields first; the rest resolves
        # from the checkpoint's recommendation or the library defaults.
        if config.window_len is None:
            config = dataclasses.replace(config, window_len=model.window_len)
        if config.model_resolution is None:
            config = dataclasses.replace(config, model_resolution=model.config.model_resolution)
        self.config = config.resolved()
        if model.config.mode != "online":
            raise ValueError("the streaming tracker needs an online-mode model")
        if self.config.step > model.window_len // 2:
            raise ValueError(f"step {self.config.step} exceeds half the window ({model.window_len})")
        if self.config.reestimate_every > model.window_len // 2:
            raise ValueError(f"reestimate_every {self.config.reestimate_every} exceeds half the window")
        self.device = resolve_device(self.config.device)
        self.model = model.to(self.device).eval()
        self.untrained = untrained
        #: Frames emitted with a NaN/infinite estimate since construction (not reset): their points are visible=False.
        self.nonfinite_frames = 0
        self._threshold = check_threshold(self.config.visibility_threshold)
        self._refine = torch.compile(self.model.refine, dynamic=False) if self.config.compile else None
        self._newest_step = torch.compile(_refine_newest, dynamic=False) if self.config.compile else _refine_newest
        self.reset()

    @classmethod
    def from_config(cls, config: StreamConfig) -> StreamingTracker:
        """Build the model and the tracker; unset settings take the checkpoint's recommendation."""
        config = config.resolved()
        return cls(config.build_online_model(), config, untrained=config.checkpoint is None)

    # -- public state --------------------------------------------------------------------------------

    @property
    def visibility_threshold(self) -> float:
        return self._threshold

    @visibility_threshold.setter
    def visibility_threshold(self, value: float) -> None:
        self._threshold = check_threshold(value)

    @property
    def step(self) -> int:
        return self.config.step

    @property
    def state(self) -> StreamState:
        """Everything the engine remembers (replaced by `reset`)."""
        return self._state

    @property
    def frame_size(self) -> tuple[int, int] | None:
        """(H, W) of the input frames, fixed by the first frame after a reset."""
        return self._state.frame_size

    @property
    def last_stamp(self) -> int | None:
        """Stamp of the newest frame pushed since the last reset."""
        return self._state.last_stamp

    @property
    def query_ids(self) -> list[int]:
        return list(self._state.ids)

    @property
    def window_stamps(self) -> list[int]:
        """Stamps of the frames still in the window: the frames queries may be added on."""
        return self._state.window_stamps

    @property
    def frames_seen(self) -> int:
        return self._state.window.frames_seen

    def state_nbytes(self) -> int:
        """Bytes held by the engine's tensors (features, queries, carried estimates)."""
        return self._state.nbytes()

    def reset(self) -> None:
        """Forget frames, queries and estimates."""
        self._state = StreamState.empty(self.model, self.device)

    # -- frames --------------------------------------------------------------------------------------

    def push(self, frame: np.ndarray, stamp: int) -> list[FrameTracks]:
        """Add one (H, W, 3) RGB frame (uint8, or float in 0-255) with a strictly increasing stamp.

        Returns the tracks the step emitted (possibly none).
        Raises:
            ValueError: bad array, non-increasing stamp, or a size other than the stream's; the state is
                left untouched (call `reset()` to start a new stream).
        """
        image, stamp = self.check_push(frame, stamp)
        with self.inference():
            pyramid = self._encode(image)
        index = self.add_frame(image, stamp, pyramid)
        if self.config.update == "newest":
            return self._push_newest(index)
        if self.window_due:
            return self._step()
        return []

    def flush(self) -> list[FrameTracks]:
        """Track the last partial window (padded with the final frame) and emit what it holds (update "newest":
        nothing, every frame was answered on its push)."""
        return self._step() if self.flush_due else []

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
        state = self._state
        check_limits(len(pts), len(state.ids), self.config.max_points, self.config.max_points_per_request)
        if not np.isfinite(pts).all():
            raise ValueError("query points contain NaN or infinite values")
        if state.frame_size is None:
            raise NotInWindowError(f"{NO_FRAME_YET}: queries are placed on a frame in the window")
        h, w = state.frame_size
        outside = (pts[:, 0] < 0) | (pts[:, 0] > w - 1) | (pts[:, 1] < 0) | (pts[:, 1] > h - 1)
        if outside.any():
            raise ValueError(
                f"{int(outside.sum())} query point(s) outside the {w}x{h} image, e.g. {pts[outside][0].tolist()}"
            )
        frame_index = self._frame_for_stamp(stamp)
        new_ids = assign_ids(len(pts), ids, state.ids, state.next_id)
        if not len(pts):
            return []
        scale = pixel_scale((h, w), (self._model_h, self._model_w))
        feat_xy = torch.as_tensor(pts * scale / self.model.config.stride, dtype=torch.float32)
        frames = torch.full((1, len(pts)), frame_index, dtype=torch.long)
        # All checks passed; append_queries changes the window state only once every new tensor exists, so an
        # allocation failure leaves the tracker as it was.
        if self.config.update == "newest":
            with self.inference():
                state.newest = add_newest_queries(
                    self.model, state.window, state.newest, frames.to(self.device), feat_xy[None].to(self.device)
                )
        else:
            append_queries(state.window, frames.to(self.device), feat_xy[None].to(self.device))
        state.ids.extend(new_ids)
        state.next_id = next_free_id(state.next_id, new_ids)
        return new_ids

    def add_mask_queries(self, mask: np.ndarray, grid_size: int, stamp: int | None = None) -> list[int]:
        """Track the points of a grid_size x grid_size grid that fall inside `mask` ((H, W), nonzero = in)."""
        mask = np.asarray(mask)
        if self.frame_size is not None and mask.shape != self.frame_size:
            raise ValueError(f"mask is {mask.shape[:2]} but frames are {self.frame_size}")
        check_grid_size(grid_size, self.config.max_points_per_request)
        pts = mask_grid_points(mask, grid_size)
        if not len(pts):
            raise ValueError("no grid point falls inside the mask")
        return self.add_queries(pts, stamp=stamp)

    def remove_queries(self, ids: Sequence[int]) -> None:
        """Stop tracking the given ids (all must be known); their memory is freed."""
        ids = [int(i) for i in ids]
        state = self._state
        unknown = sorted(set(ids) - set(state.ids))
        if unknown:
            more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
            raise ValueError(f"unknown query ids: {unknown[:10]}{more}; nothing removed")
        drop = set(ids)
        keep = [i for i, qid in enumerate(state.ids) if qid not in drop]
        keep = torch.as_tensor(keep, dtype=torch.long, device=self.device)
        newest = state.newest.select(keep) if self.config.update == "newest" else state.newest
        keep_queries(state.window, keep)
        state.newest = newest
        state.ids = [state.ids[i] for i in keep]

    # -- the stages of a push (for batching several streams: cotracker3_core.multi_stream) -------------

    def check_push(self, frame: np.ndarray, stamp: int) -> tuple[np.ndarray, int]:
        """The checked (H, W, 3) image and int stamp of a push; raises as `push` does, changing nothing."""
        image = check_frame(frame, self.frame_size)
        stamp = int(stamp)
        if self._state.last_stamp is not None and stamp <= self._state.last_stamp:
            raise StampOrderError(stamp, self._state.last_stamp)
        return image, stamp

    def encode_frames(self, images: Sequence[np.ndarray]) -> list[list[torch.Tensor]]:
        """Checked images (any sizes) -> each one's pyramid, per level (1, C, H_l, W_l), from one encoder call
        on the images resized to the model resolution. Call under `inference()`."""
        x = torch.cat([frame_to_tensor(image, (self._model_h, self._model_w), self.device) for image in images])
        # Kept in the compute dtype: under bf16/fp16 autocast the lookups run in it anyway, at half the memory.
        pyramid = self.model.pyramid(self.model.encode(x))  # per level (B, C, h, w)
        return [[level[k : k + 1] for level in pyramid] for k in range(len(images))]

    def add_frame(self, image: np.ndarray, stamp: int, pyramid: list[torch.Tensor]) -> int:
        """Take a checked frame's pyramid (from `encode_frames`) into the window; returns its frame index."""
        state = self._state
        if state.frame_size is None:
            state.frame_size = tuple(image.shape[:2])
        index = add_frame_features(state.window, pyramid)
        state.stamps[index] = stamp
        state.last_stamp = stamp
        return index

    @property
    def window_due(self) -> bool:
        """Whether the next window holds all of its frames (window mode then runs it: `push` does)."""
        return window_ready(self._state.window, self.model.window_len)

    @property
    def flush_due(self) -> bool:
        """Whether `flush` has frames to emit."""
        return self._state.window.frames_seen > self._state.emitted_until and self.config.update != "newest"

    @contextlib.contextmanager
    def inference(self) -> Iterator[None]:
        """Inference mode, under the configured precision's autocast."""
        dtype = PRECISIONS[self.config.precision]
        with torch.inference_mode():
            if dtype is None:
                yield
            else:
                with torch.autocast(self.device.type, dtype=dtype):
                    yield

    def begin_window(self, reestimate: int = 0) -> PendingWindow:
        """Take the next window's inputs off the state (or, without queries, slide past it). `reestimate`:
        update "newest"'s periodic re-estimate with that step, on its own emission counter. Call under
        `inference()`; finish with `end_window` before anything else changes the stream."""
        state = self._state
        window = state.window
        step = reestimate or self.step
        done = state.reestimated_until if reestimate else state.emitted_until
        if not window.queries.count:
            # Nothing to track: slide the window without running the model (the engine idles).
            start, available = skip_window(window, self.model.window_len, step)
            return PendingWindow(start, available, step, done, reestimate, None)
        query_frames = window.queries.frames[0].cpu().numpy()
        ids = np.asarray(state.ids, dtype=np.int64)
        held = [window.features[i] for i in sorted(window.features)] if reestimate else []
        inputs = prepare_window(self.model, window, step, self.config.motion_init)
        return PendingWindow(inputs.start, inputs.available, step, done, reestimate, inputs, ids, query_frames, held)

    def end_window(self, pending: PendingWindow, final: IterationEstimate | None) -> list[FrameTracks]:
        """Consume a window's final refinement estimate ((1, S, N, ...), model pixels; None for a skipped
        window): the carry, the slide, the emitted tracks. A skipped window emits empty tracks for the frames
        that became due, so that consumers still see every frame; every frame a re-estimate emits was answered
        already, so refined. Call under `inference()`."""
        state = self._state
        if pending.inputs is None:
            plan = emission_plan(pending.start, pending.available, pending.done, pending.step)
            out = [] if pending.reestimate else [self._empty_tracks(i) for i in plan.new]
        else:
            estimate = finish_window(self.model, state.window, pending.inputs, final, pending.step)
            if pending.reestimate:
                state.newest = adopt_window(self.model, state.newest, WindowFeatures.cat(pending.held), estimate)
            plan = emission_plan(pending.start, pending.available, pending.done, pending.step)
            out = self._emit(pending.start, plan.frames, estimate, pending.ids, pending.query_frames)
        if pending.reestimate:
            state.reestimated_until = max(pending.done, plan.new.stop)
        else:
            state.emitted_until = max(state.emitted_until, plan.new.stop)
        state.forget_stamps()
        return out

    # -- internals -----------------------------------------------------------------------------------

    @property
    def _model_h(self) -> int:
        return self.model.config.model_resolution[0]

    @property
    def _model_w(self) -> int:
        return self.model.config.model_resolution[1]

    def _encode(self, image: np.ndarray) -> list[torch.Tensor]:
        return self.encode_frames([image])[0]

    def _frame_for_stamp(self, stamp: int | None) -> int:
        if stamp is None or int(stamp) == 0:
            return self._state.window.frames_seen - 1
        for index in sorted(self._state.window.features):
            if self._state.stamps[index] == int(stamp):
                return index
        stamps = self.window_stamps
        raise NotInWindowError(
            f"stamp {stamp} is {NOT_IN_WINDOW} (window holds {len(stamps)} frames, "
            f"stamps {stamps[0] if stamps else None}..{stamps[-1] if stamps else None})"
        )

    def _push_newest(self, index: int) -> list[FrameTracks]:
        """update "newest": answer frame `index` now, then run the periodic re-estimate when it is due."""
        state = self._state
        keep_newest_frames(state.window, self.model.window_len)
        if state.window.queries.count:
            query_frames = state.window.queries.frames[0].cpu().numpy()
            with self.inference():
                state.newest, estimate = answer_newest(
                    self.model, state.newest, state.window.features[index], self.config.newest_iters,
                    self._newest_step,
                )
            out = self._emit(index, range(index, index + 1), estimate, np.asarray(state.ids), query_frames)
        else:
            out = [self._empty_tracks(index)]
        state.emitted_until = index + 1
        if self.config.reestimate_every and window_ready(state.window, self.model.window_len):
            out += self._step(self.config.reestimate_every)
        state.forget_stamps()
        return out

    def _step(self, reestimate: int = 0) -> list[FrameTracks]:
        """Run (or skip) the next window: `begin_window` -> the refinement -> `end_window`."""
        with self.inference():
            pending = self.begin_window(reestimate)
            final = None
            if pending.inputs is not None:
                final = refine_inputs(self.model, pending.inputs, self.config.iters, self._refine)
            return self.end_window(pending, final)

    def _emit(
        self, start: int, frames: range, estimate: IterationEstimate, ids: np.ndarray, query_frames: np.ndarray
    ) -> list[FrameTracks]:
        """FrameTracks of `frames` (absolute indices) from the window at `start`; estimate in model pixels."""
        state = self._state
        scale = pixel_scale((self._model_h, self._model_w), state.frame_size)
        out, nonfinite = tracks_from_estimate(
            estimate, start, frames, ids, query_frames, state.stamps, state.emitted_until, scale, self._threshold
        )
        self.nonfinite_frames += nonfinite
        return out

    def _empty_tracks(self, index: int) -> FrameTracks:
        return empty_tracks(self._state.stamps[index], index)
