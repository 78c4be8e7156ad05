"""Drop-in predictors with the official call semantics, so users of the official package can switch.

Both resize the video to the model resolution (bilinear, corners aligned) and map the tracks back.
`CoTrackerPredictor` tracks a whole clip (offline); `CoTrackerOnlinePredictor` is fed chunks of
2 x step frames, the official online loop, and returns the tracks of every frame seen so far.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checkpoint import build_model
from .model import CoTracker3
from .online import WindowState, add_frame_features, append_queries, empty_queries, run_window
from .queries import grid_points
from .streaming import resolve_device

SUPPORT_GRID_SIZE = 6


def _build(
    mode: str,
    checkpoint: str | os.PathLike[str] | None,
    window_len: int | None,
    model_resolution: tuple[int, int],
    device: str | torch.device | None,
    v2: bool,
) -> CoTracker3:
    if v2:
        raise NotImplementedError("CoTracker2 (v2=True) is not supported: this package implements CoTracker3")
    model = build_model(mode, checkpoint=checkpoint, window_len=window_len, model_resolution=model_resolution)
    return model.to(resolve_device(str(device)) if device is not None else torch.device("cpu")).eval()


def _resize(video: Tensor, size: tuple[int, int]) -> Tensor:
    b, t = video.shape[:2]
    frames = F.interpolate(video.reshape(b * t, *video.shape[2:]).float(), size, mode="bilinear", align_corners=True)
    return frames.reshape(b, t, 3, *size)


def _to_model(xy: Tensor, image_hw: tuple[int, int], model_hw: tuple[int, int]) -> Tensor:
    (h, w), (mh, mw) = image_hw, model_hw
    return xy * xy.new_tensor([(mw - 1) / (w - 1), (mh - 1) / (h - 1)])


def _to_image(xy: Tensor, image_hw: tuple[int, int], model_hw: tuple[int, int]) -> Tensor:
    (h, w), (mh, mw) = image_hw, model_hw
    return xy * xy.new_tensor([(w - 1) / (mw - 1), (h - 1) / (mh - 1)])


def _check_video(video: Tensor) -> None:
    if not isinstance(video, Tensor) or video.ndim != 5 or video.shape[2] != 3:
        shape = tuple(video.shape) if isinstance(video, Tensor) else type(video).__name__
        raise ValueError(f"video must be a (B, T, 3, H, W) tensor in 0-255, got {shape}")


class CoTrackerPredictor(nn.Module):
    """Offline predictor: `predictor(video, queries=..., grid_size=..., segm_mask=..., ...)`.

    Args:
        checkpoint: file, official name or URL (None: untrained weights).
        offline: False wraps an online-mode model (sliding windows), as the official flag does.
        v2: CoTracker2 is not implemented (NotImplementedError).
        window_len: defaults to 60 offline / 16 online (or the checkpoint's).
        model_resolution: (H, W) frames are resized to.
        device: torch device (default CPU).
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike[str] | None = None,
        offline: bool = True,
        v2: bool = False,
        window_len: int | None = None,
        model_resolution: tuple[int, int] = (384, 512),
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__()
        self.model = _build("offline" if offline else "online", checkpoint, window_len, model_resolution, device, v2)
        self.interp_shape = tuple(self.model.config.model_resolution)
        self.support_grid_size = SUPPORT_GRID_SIZE

    @torch.no_grad()
    def forward(
        self,
        video: Tensor,
        queries: Tensor | None = None,
        segm_mask: Tensor | None = None,
        grid_size: int = 0,
        grid_query_frame: int = 0,
        backward_tracking: bool = False,
    ) -> tuple[Tensor, Tensor]:
        """Track points through a clip.

        Args:
            video: (B, T, 3, H, W) float in 0-255.
            queries: (B, N, 3) as (frame, x, y) in pixels; or None to use a grid.
            segm_mask: (B, 1, H, W): keep only grid points inside the mask.
            grid_size: grid_size x grid_size points on `grid_query_frame` when no queries are given.
            backward_tracking: also track backwards from each query frame.
        Returns:
            tracks (B, T, N, 2) pixels, visibility (B, T, N) bool (visibility > 0.9).
        """
        _check_video(video)
        if queries is None and grid_size <= 0:
            raise ValueError("give queries or a grid_size > 0 (dense tracking of every pixel is not supported)")
        b, t, _, h, w = video.shape
        device = self.model.time_embedding.device
        video = _resize(video.to(device), self.interp_shape)
        if queries is not None:
            queries = queries.to(device).float().clone()
            if queries.ndim != 3 or queries.shape[-1] != 3 or queries.shape[0] != b:
                raise ValueError(f"queries must be (B, N, 3) with B={b}, got {tuple(queries.shape)}")
            queries[..., 1:] = _to_model(queries[..., 1:], (h, w), self.interp_shape)
        else:
            pts = grid_points(grid_size, self.interp_shape, device)
            if segm_mask is not None:
                mask = F.interpolate(segm_mask.float().to(device), self.interp_shape, mode="nearest")[0, 0]
                inside = mask[pts[0, :, 1].round().long(), pts[0, :, 0].round().long()].bool()
                pts = pts[:, inside]
            queries = torch.cat([torch.full_like(pts[..., :1], float(grid_query_frame)), pts], dim=-1).repeat(b, 1, 1)
        add_support = queries is not None and (grid_size == 0 or segm_mask is not None)
        n = queries.shape[1]
        if add_support:
            support = grid_points(self.support_grid_size, self.interp_shape, device)
            support = torch.cat([torch.zeros_like(support[..., :1]), support], dim=-1).repeat(b, 1, 1)
            queries = torch.cat([queries, support], dim=1)
        out = self.model(video, queries, iters=6)
        tracks, vis = out.coords, out.visibility
        if backward_tracking:
            tracks, vis = self._merge_backward(video, queries, tracks, vis)
        tracks, vis = tracks[:, :, :n], vis[:, :, :n] > 0.9
        # The query point itself is known exactly, and visible.
        frames = queries[:, :n, 0].long()
        batch = torch.arange(b, device=device)[:, None]
        points = torch.arange(n, device=device)[None]
        tracks[batch, frames, points] = queries[:, :n, 1:]
        vis[batch, frames, points] = True
        return _to_image(tracks, (h, w), self.interp_shape), vis

    def _merge_backward(self, video: Tensor, queries: Tensor, tracks: Tensor, vis: Tensor) -> tuple[Tensor, Tensor]:
        t = video.shape[1]
        flipped = queries.clone()
        flipped[..., 0] = t - 1 - flipped[..., 0]
        back = self.model(video.flip(1), flipped, iters=6)
        before = torch.arange(t, device=video.device)[None, :, None] < queries[:, None, :, 0]  # (B, T, N)
        tracks = torch.where(before[..., None], back.coords.flip(1), tracks)
        vis = torch.where(before, back.visibility.flip(1), vis)
        return tracks, vis


class CoTrackerOnlinePredictor(nn.Module):
    """Online predictor, called as the official one is::

        predictor(video_chunk, is_first_step=True, queries=queries)   # sets the queries
        for ind in range(0, T - predictor.step, predictor.step):
            tracks, visible = predictor(video[:, ind : ind + 2 * predictor.step])

    Each chunk starts `step` frames after the previous one; only its new frames are encoded. Returns the
    tracks (B, T_seen, N, 2) of every frame so far and visible = visibility x confidence > 0.6.
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike[str] | None = None,
        offline: bool = False,
        v2: bool = False,
        window_len: int | None = 16,
        model_resolution: tuple[int, int] = (384, 512),
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__()
        if offline:
            raise ValueError("CoTrackerOnlinePredictor needs an online model (offline=False)")
        self.model = _build("online", checkpoint, window_len, model_resolution, device, v2)
        self.interp_shape = tuple(self.model.config.model_resolution)
        self.step = self.model.step
        self.support_grid_size = SUPPORT_GRID_SIZE
        self._state: WindowState | None = None

    @torch.no_grad()
    def forward(
        self,
        video_chunk: Tensor,
        is_first_step: bool = False,
        queries: Tensor | None = None,
        grid_size: int = 5,
        grid_query_frame: int = 0,
        add_support_grid: bool = False,
    ) -> tuple[Tensor | None, Tensor | None]:
        _check_video(video_chunk)
        b, t, _, h, w = video_chunk.shape
        device = self.model.time_embedding.device
        if is_first_step:
            self._start(b, h, w, queries, grid_size, grid_query_frame, add_support_grid, device)
            return None, None
        if self._state is None:
            raise RuntimeError("call with is_first_step=True (and the queries) before the first chunk")
        state = self._state
        new = state.frames_seen - state.next_start  # frames of this chunk already encoded
        if new < 0 or new >= t:
            raise ValueError(f"chunk of {t} frames brings no new frame (expected chunks that advance by {self.step})")
        frames = _resize(video_chunk[:, new:].to(device), self.interp_shape)
        features = self.model.pyramid(self.model.encode(frames))
        for k in range(frames.shape[1]):
            add_frame_features(state, [level[:, k] for level in features])
        start, available, est = run_window(self.model, state, self.step, iters=6)
        self._store(start, available, est)
        n = self._n
        tracks = _to_image(self._coords[:, :, :n], (h, w), self.interp_shape)
        visible = (self._vis[:, :, :n].sigmoid() * self._conf[:, :, :n].sigmoid()) > 0.6
        return tracks, visible

    def _start(self, b, h, w, queries, grid_size, grid_query_frame, add_support_grid, device) -> None:
        if queries is not None:
            if queries.ndim != 3 or queries.shape[-1] != 3:
                raise ValueError(f"queries must be (B, N, 3), got {tuple(queries.shape)}")
            queries = queries.to(device).float().clone()
            queries[..., 1:] = _to_model(queries[..., 1:], (h, w), self.interp_shape)
            self._n = queries.shape[1]
            if add_support_grid:
                support = grid_points(self.support_grid_size, self.interp_shape, device)
                support = torch.cat([torch.zeros_like(support[..., :1]), support], dim=-1).repeat(b, 1, 1)
                queries = torch.cat([queries, support], dim=1)
        elif grid_size > 0:
            pts = grid_points(grid_size, self.interp_shape, device)
            queries = torch.cat([torch.full_like(pts[..., :1], float(grid_query_frame)), pts], dim=-1).repeat(b, 1, 1)
            self._n = queries.shape[1]
        else:
            raise ValueError("give queries or a grid_size > 0")
        self._state = WindowState(queries=empty_queries(self.model, b, device, torch.float32))
        append_queries(self._state, queries[..., 0].long(), queries[..., 1:] / self.model.config.stride)
        self._coords = queries.new_zeros(b, 0, queries.shape[1], 2)
        self._vis = queries.new_zeros(b, 0, queries.shape[1])
        self._conf = queries.new_zeros(b, 0, queries.shape[1])

    def _store(self, start: int, available: int, est) -> None:
        # The official online predictor returns every frame seen so far; keep that history here
        # (the streaming engine is the bounded alternative).
        grow = start + available - self._coords.shape[1]
        if grow > 0:
            self._coords, self._vis, self._conf = (
                torch.cat([x, x.new_zeros(x.shape[0], grow, *x.shape[2:])], dim=1)
                for x in (self._coords, self._vis, self._conf)
            )
        self._coords[:, start : start + available] = est.coords
        self._vis[:, start : start + available] = est.vis_logits
        self._conf[:, start : start + available] = est.conf_logits
