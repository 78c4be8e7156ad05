"""Several cameras tracked by one model: their frames encoded together and their due windows refined in one
call.

Every camera is a `StreamingTracker` of its own (its queries, ids, stamps, frame size, window and carry:
the single-camera engine's `StreamState`, unchanged), all sharing one model, hence one resolution, window,
step and iteration count. `MultiStreamTracker.push_many` takes one frame from any subset of the cameras:
the frames are checked (all before any is taken), resized to the model resolution and encoded in one
encoder call, and the cameras whose window became due run in one refinement call of batch B = their number
(`window_batch.refine_batch`; their query counts are padded to the largest and the padding masked out of
the virtual tracks' gather, so that it does not change the real tracks; `max_padding` can split them into
several calls). Each camera's outputs are those of
its own `StreamingTracker` on the same frames, to float rounding (batched products reorder arithmetic).

Per-camera operations (queries, reset, state) are the camera's `StreamingTracker` itself: ``tracker[camera]``.
Its own `push` still works, unbatched, on the same state. Only update "window" is batched (update
"newest" answers every frame on its own push: use one `StreamingTracker` per camera).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping

import numpy as np
import torch

from .frame_tracks import FrameTracks
from .model import CoTracker3
from .stream_config import StreamConfig
from .streaming import StreamingTracker
from .window_batch import padding_groups, refine_batch

#: One camera's frame in a `push_many`: an (H, W, 3) RGB image (uint8, or float in 0-255) and its stamp.
CameraFrame = tuple[np.ndarray, int]


class MultiStreamTracker:
    """Tracks queried points on several cameras' streams with one model (see the module docstring).

    Args:
        model: an online-mode CoTracker3, shared by every camera.
        config: stream settings, shared by every camera (update "window").
        cameras: names of the cameras to start with (any hashable: a topic, an index).
        untrained: whether the model's weights are untrained (reported to users).
        max_padding: most padding tracks per real track in one call; windows whose query counts differ more
            run in several calls (`window_batch.padding_groups`). inf (default): one call. On a CPU, where a
            batched refinement gains nothing over one call per camera and padding costs what real tracks cost
            (docs/benchmarks.md), 0 batches only cameras with equal counts.
    """

    def __init__(
        self,
        model: CoTracker3,
        config: StreamConfig | None = None,
        cameras: Iterable[Hashable] = (),
        untrained: bool = False,
        max_padding: float = math.inf,
    ) -> None:
        # The settings resolve once, as a single stream resolves them; this stream is never pushed to: it
        # holds the shared settings, device, precision and encoder.
        self._shared = StreamingTracker(model, config, untrained)
        if self._shared.config.update != "window":
            raise ValueError("only update 'window' is batched across cameras; use one StreamingTracker per camera")
        self.model = self._shared.model
        self.untrained = untrained
        if not max_padding >= 0:
            raise ValueError(f"max_padding must be >= 0, got {max_padding}")
        self.max_padding = max_padding
        self._refine = torch.compile(self.model.refine, dynamic=False) if self.config.compile else None
        self._streams: dict[Hashable, StreamingTracker] = {}
        #: camera -> windows of it refined in one call together with other cameras' windows.
        self.batched_windows: dict[Hashable, int] = {}
        for camera in cameras:
            self.add_camera(camera)

    @classmethod
    def from_config(cls, config: StreamConfig, cameras: Iterable[Hashable] = ()) -> MultiStreamTracker:
        """Build the model and the tracker; unset settings take the checkpoint's recommendation."""
        config = config.resolved()
        return cls(config.build_online_model(), config, cameras, untrained=config.checkpoint is None)

    @property
    def config(self) -> StreamConfig:
        """The resolved settings every camera runs."""
        return self._shared.config

    @property
    def cameras(self) -> list[Hashable]:
        return list(self._streams)

    def __getitem__(self, camera: Hashable) -> StreamingTracker:
        """The camera's own stream: its queries (`add_queries`, `remove_queries`), `reset`, state."""
        if camera not in self._streams:
            raise KeyError(f"unknown camera {camera!r} (cameras: {self.cameras})")
        return self._streams[camera]

    def add_camera(self, camera: Hashable, stream: StreamingTracker | None = None) -> StreamingTracker:
        """Start an empty stream for `camera` (a new name), or take `stream` as its stream: a `StreamingTracker`
        of this model with these settings (its state is kept)."""
        if camera in self._streams:
            raise ValueError(f"camera {camera!r} exists already")
        if stream is None:
            stream = StreamingTracker(self.model, self.config, self.untrained)
        elif stream.model is not self.model or stream.config != self.config:
            raise ValueError(f"camera {camera!r}: its stream must run this tracker's model with the same settings")
        self._streams[camera] = stream
        self.batched_windows[camera] = 0
        return stream

    def remove_camera(self, camera: Hashable) -> None:
        """Forget `camera`'s stream (its memory is freed)."""
        self[camera]  # KeyError for an unknown camera, with the known ones
        del self._streams[camera]
        del self.batched_windows[camera]

    def push_many(self, frames: Mapping[Hashable, CameraFrame]) -> dict[Hashable, list[FrameTracks]]:
        """Add one frame to each camera named in `frames` (camera -> (frame, stamp)); the frames are encoded in
        one call and the windows that become due run in one refinement call.

        Returns:
            camera -> the tracks its step emitted (possibly none), for every camera of `frames`.
        Raises:
            KeyError: an unknown camera; ValueError (as `StreamingTracker.push`, with a note naming the camera):
                a bad frame or stamp. Nothing is taken then, from any camera.
        """
        streams = {camera: self[camera] for camera in frames}
        checked = {}
        for camera, (frame, stamp) in frames.items():
            try:
                checked[camera] = streams[camera].check_push(frame, stamp)
            except ValueError as error:
                error.add_note(f"camera {camera!r}: no frame of this push_many was taken")
                raise
        out: dict[Hashable, list[FrameTracks]] = {camera: [] for camera in frames}
        if not checked:
            return out
        with self._shared.inference():
            pyramids = self._shared.encode_frames([image for image, _ in checked.values()])
            for (camera, (image, stamp)), pyramid in zip(checked.items(), pyramids, strict=True):
                streams[camera].add_frame(image, stamp, pyramid)
            out.update(self._run_windows([camera for camera in checked if streams[camera].window_due]))
        return out

    def flush(self, cameras: Iterable[Hashable] | None = None) -> dict[Hashable, list[FrameTracks]]:
        """Track each camera's last partial window (as `StreamingTracker.flush`), in one call; all cameras when
        `cameras` is None. Returns camera -> tracks emitted."""
        names = self.cameras if cameras is None else list(cameras)
        out: dict[Hashable, list[FrameTracks]] = {camera: [] for camera in names}
        with self._shared.inference():
            out.update(self._run_windows([camera for camera in names if self[camera].flush_due]))
        return out

    def state_nbytes(self) -> int:
        """Bytes held by every camera's stream."""
        return sum(stream.state_nbytes() for stream in self._streams.values())

    def _run_windows(self, cameras: list[Hashable]) -> dict[Hashable, list[FrameTracks]]:
        """Run the next window of each camera (under `inference()`): the cameras with queries in one
        refinement call, the others slide without the model."""
        pending = {camera: self[camera].begin_window() for camera in cameras}
        tracked = [camera for camera in cameras if pending[camera].inputs is not None]
        finals = {}
        if tracked:
            inputs = [pending[camera].inputs for camera in tracked]
            estimates = refine_batch(self.model, inputs, self.config.iters, self._refine, self.max_padding)
            finals = dict(zip(tracked, estimates, strict=True))
            for group in padding_groups([item.count for item in inputs], self.max_padding):  # refine_batch's calls
                for index in group if len(group) > 1 else ():
                    self.batched_windows[tracked[index]] += 1
        return {camera: self[camera].end_window(pending[camera], finals.get(camera)) for camera in cameras}


__all__ = ["CameraFrame", "MultiStreamTracker"]
