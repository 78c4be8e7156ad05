"""Held-out TAP-Vid evaluation during training ("first" query mode) and the zero-motion baseline.

Clips come from a Kubric-layout folder (``eval.root``, e.g. generated held-out scenes) or a TAP-Vid /
RoboTAP pickle (``eval.tapvid_pickle``). Each clip is resized to the model resolution; every track
visible at least once is queried at its first visible frame (``TapVidClip.make_queries("first")``), at
most ``eval.max_points`` of them (a fixed random subset). Metrics are the TAP-Vid ones from
``cotracker3_core.evaluation`` in the 256x256 raster: AJ, delta_avg (< delta^x averaged over 1..16 px) and
OA. A point is predicted visible where visibility x confidence > ``eval.visibility_threshold``.

The zero-motion baseline predicts every frame at the query position, always visible.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from cotracker3_core.evaluation import (
    TapVidClip,
    compute_tapvid_metrics,
    load_tapvid_pickle,
    pixels_to_raster,
    query_points_to_raster,
    summarize,
)
from cotracker3_core.model import CoTracker3
from training.config import EvalSettings
from training.data.kubric import KubricReader


@dataclass(frozen=True)
class EvalClip:
    """One evaluation clip at the model resolution.

    Attributes:
        name: clip name.
        video: (T, 3, h, w) float32 0..255 RGB.
        queries: (Q, 3) float32 (frame, x, y) in model pixels.
        query_points: (Q, 3) (t, y, x) in the 256x256 raster.
        gt_tracks: (Q, T, 2) x/y in the raster.
        gt_occluded: (Q, T) bool.
    """

    name: str
    video: torch.Tensor
    queries: torch.Tensor
    query_points: np.ndarray
    gt_tracks: np.ndarray
    gt_occluded: np.ndarray


def _resize_video(video: np.ndarray, size_hw: tuple[int, int]) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, h, w) float32."""
    h, w = size_hw
    if video.shape[1:3] != (h, w):
        shrink = video.shape[1] > h or video.shape[2] > w
        interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        video = np.stack([cv2.resize(frame, (w, h), interpolation=interp) for frame in video])
    return torch.from_numpy(np.ascontiguousarray(video.transpose(0, 3, 1, 2))).float()


def make_eval_clip(clip: TapVidClip, size_hw: tuple[int, int], max_points: int, rng: np.random.Generator,
                   max_frames: int | None = None) -> EvalClip | None:
    """"first"-mode queries of a clip at the model resolution; None when no track is ever visible."""
    if max_frames is not None and clip.num_frames > max_frames:
        clip = TapVidClip(clip.name, clip.video[:max_frames], clip.points[:, :max_frames],
                          clip.occluded[:, :max_frames])
    queries = clip.make_queries("first", size_hw=size_hw)
    if queries.num_queries == 0:
        return None
    keep = np.arange(queries.num_queries)
    if len(keep) > max_points:
        keep = np.sort(rng.choice(len(keep), size=max_points, replace=False))
    h, w = size_hw
    query_points = queries.query_points[keep]
    target = queries.target_points[keep]
    model_queries = np.stack([query_points[:, 0], query_points[:, 2], query_points[:, 1]], axis=-1)
    return EvalClip(
        name=clip.name,
        video=_resize_video(clip.video, size_hw),
        queries=torch.from_numpy(model_queries.astype(np.float32)),
        query_points=query_points_to_raster(query_points, w, h),
        gt_tracks=pixels_to_raster(target, w, h),
        gt_occluded=queries.occluded[keep],
    )


def _kubric_clips(root: str, num_clips: int) -> list[TapVidClip]:
    reader = KubricReader(root)
    clips = []
    for index in range(min(num_clips, len(reader))):
        seq = reader.read(index)
        tracks = seq.tracks.numpy().transpose(1, 0, 2).astype(np.float64)  # (N, T, 2)
        occluded = ~seq.visibility.numpy().T
        tracks = np.where(np.isfinite(tracks), tracks, 0.0)
        video = seq.video.numpy().transpose(0, 2, 3, 1)
        clips.append(TapVidClip.from_pixels(seq.name, video, tracks, occluded))
    return clips


def load_eval_clips(settings: EvalSettings, size_hw: tuple[int, int]) -> list[EvalClip]:
    """The held-out clips named by ``settings`` (empty list when evaluation is off)."""
    if settings.root is not None:
        source = _kubric_clips(settings.root, settings.num_clips)
    elif settings.tapvid_pickle is not None:
        dataset = load_tapvid_pickle(settings.tapvid_pickle)
        source = [dataset[i] for i in range(min(settings.num_clips, len(dataset)))]
    else:
        return []
    clips = []
    for index, clip in enumerate(source):
        rng = np.random.default_rng([settings.seed, index])
        made = make_eval_clip(clip, size_hw, settings.max_points, rng, settings.max_frames)
        if made is not None:
            clips.append(made)
    if not clips:
        raise ValueError("no evaluation clip has a visible track")
    return clips


def _metrics_of(clip: EvalClip, pred_xy_model: np.ndarray, pred_visible: np.ndarray,
                size_hw: tuple[int, int]) -> dict[str, np.ndarray]:
    """pred_xy_model (Q, T, 2) model pixels, pred_visible (Q, T) -> per-clip metric arrays."""
    h, w = size_hw
    return compute_tapvid_metrics(
        clip.query_points[None],
        clip.gt_occluded[None],
        clip.gt_tracks[None],
        ~pred_visible[None],
        pixels_to_raster(pred_xy_model, w, h)[None],
        query_mode="first",
    )


@torch.no_grad()
def evaluate_model(
    model: CoTracker3,
    clips: list[EvalClip],
    iters: int,
    visibility_threshold: float,
    device: torch.device,
    amp: bool = False,
) -> dict[str, float]:
    """TAP-Vid summary (AJ, delta_avg, OA, ...) of ``model`` on ``clips``; restores the model's mode."""
    was_training = model.training
    model.eval()
    size_hw = tuple(model.config.model_resolution)
    per_clip = []
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if amp and device.type == "cuda" else contextlib.nullcontext()
    )
    try:
        for clip in clips:
            with autocast:
                out = model(clip.video[None].to(device), clip.queries[None].to(device), iters=iters)
            coords = out.coords[0].float().cpu().numpy().transpose(1, 0, 2)  # (Q, T, 2)
            visible = ((out.visibility * out.confidence)[0].float().cpu().numpy() > visibility_threshold).T
            per_clip.append(_metrics_of(clip, coords, visible, size_hw))
    finally:
        model.train(was_training)
    return summarize(per_clip)


def zero_motion_baseline(clips: list[EvalClip]) -> dict[str, float]:
    """TAP-Vid summary of predicting the query position on every frame, always visible."""
    per_clip = []
    for clip in clips:
        num_frames = clip.gt_tracks.shape[1]
        query_xy = clip.query_points[:, [2, 1]]  # raster x, y
        pred = np.broadcast_to(query_xy[:, None], (len(query_xy), num_frames, 2))
        per_clip.append(
            compute_tapvid_metrics(
                clip.query_points[None], clip.gt_occluded[None], clip.gt_tracks[None],
                np.zeros_like(clip.gt_occluded)[None], pred[None], query_mode="first",
            )
        )
    return summarize(per_clip)
