"""Teachers of pseudo-label training: trackers that label query points on unlabelled clips.

Any tracker can teach if it implements the ``Teacher`` protocol: ``label(video, queries) -> PseudoLabels``
on the training clip (same pixels in and out). ``CoTrackerTeacher`` wraps a CoTracker3 checkpoint (the
project's own, or an official file / name) in either mode; ``TEACHER_KINDS`` maps the ``kind`` of a teacher
spec to its class so other trackers can be registered next to it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from cotracker3_core import build_model


@dataclass(frozen=True)
class PseudoLabels:
    """tracks: (B, T, N, 2) pixels of the clip; visibility: (B, T, N) bool."""

    tracks: torch.Tensor
    visibility: torch.Tensor


@runtime_checkable
class Teacher(Protocol):
    name: str

    def label(self, video: torch.Tensor, queries: torch.Tensor) -> PseudoLabels:
        """video (B, T, 3, H, W) float 0..255, queries (B, N, 3) (frame, x, y) pixels -> labels."""
        ...


def _to_model_pixels(xy: torch.Tensor, image_hw: tuple[int, int], model_hw: tuple[int, int]) -> torch.Tensor:
    # Pixel-centre convention of an align_corners=False resize: x' = (x + 0.5) * s - 0.5.
    (h, w), (mh, mw) = image_hw, model_hw
    scale = xy.new_tensor([mw / w, mh / h])
    return (xy + 0.5) * scale - 0.5


def _to_image_pixels(xy: torch.Tensor, image_hw: tuple[int, int], model_hw: tuple[int, int]) -> torch.Tensor:
    (h, w), (mh, mw) = image_hw, model_hw
    scale = xy.new_tensor([w / mw, h / mh])
    return (xy + 0.5) * scale - 0.5


class CoTrackerTeacher:
    """A CoTracker3 model labelling clips at its own resolution.

    Visible where visibility x confidence > ``visibility_threshold``; each query point is its own label
    (and visible) on its query frame.

    Args:
        checkpoint: file, official name or URL (loaded through ``build_model``).
        mode: "online" or "offline".
        iters: refinement iterations.
        device: where the teacher runs.
        visibility_threshold: see above.
        amp: bf16 autocast on CUDA.
    """

    def __init__(self, checkpoint: str, mode: str, iters: int, device: torch.device,
                 visibility_threshold: float = 0.6, amp: bool = False) -> None:
        self.model = build_model(mode, checkpoint=checkpoint).to(device).eval()
        for param in self.model.parameters():
            param.requires_grad_(False)
        self.name = f"cotracker3_{mode}:{checkpoint}"
        self.iters = iters
        self.device = device
        self.visibility_threshold = visibility_threshold
        self.amp = amp and device.type == "cuda"

    @torch.no_grad()
    def label(self, video: torch.Tensor, queries: torch.Tensor) -> PseudoLabels:
        b, t, _, h, w = video.shape
        model_hw = tuple(self.model.config.model_resolution)
        frames = video.to(self.device).float()
        model_queries = queries.to(self.device).float().clone()
        if (h, w) != model_hw:
            frames = F.interpolate(frames.flatten(0, 1), size=model_hw, mode="bilinear", align_corners=False)
            frames = frames.view(b, t, 3, *model_hw)
            model_queries[..., 1:] = _to_model_pixels(model_queries[..., 1:], (h, w), model_hw)
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.amp else contextlib.nullcontext()
        with autocast:
            out = self.model(frames, model_queries, iters=self.iters)
        tracks = out.coords.float()
        if (h, w) != model_hw:
            tracks = _to_image_pixels(tracks, (h, w), model_hw)
        visible = (out.visibility.float() * out.confidence.float()) > self.visibility_threshold
        query_frames = queries[..., 0].long().to(self.device)
        batch = torch.arange(b, device=self.device)[:, None]
        points = torch.arange(queries.shape[1], device=self.device)[None]
        tracks[batch, query_frames, points] = queries[..., 1:].to(self.device).float()
        visible[batch, query_frames, points] = True
        return PseudoLabels(tracks=tracks, visibility=visible)


TeacherFactory = Callable[..., Teacher]
TEACHER_KINDS: dict[str, TeacherFactory] = {"cotracker3": CoTrackerTeacher}


def load_teachers(specs: Sequence, device: torch.device, visibility_threshold: float,
                  amp: bool = False) -> list[Teacher]:
    """Teachers from ``TeacherSpec``s (checkpoint, mode, kind, iters).

    Raises:
        ValueError: naming the checkpoint that does not load.
    """
    teachers: list[Teacher] = []
    for spec in specs:
        factory = TEACHER_KINDS.get(spec.kind)
        if factory is None:
            raise ValueError(f"unknown teacher kind {spec.kind!r}; known: {sorted(TEACHER_KINDS)}")
        try:
            teachers.append(factory(spec.checkpoint, spec.mode, spec.iters, device, visibility_threshold, amp))
        except (ValueError, FileNotFoundError) as err:
            raise ValueError(f"teacher {spec.checkpoint!r} ({spec.mode}) cannot be loaded: {err}") from err
    return teachers
