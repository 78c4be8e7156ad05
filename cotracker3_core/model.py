"""CoTracker3: frames -> encoder -> correlation -> update transformer -> tracks.

One module serves both modes. Offline, the whole clip is a single window (the time embedding is
resampled to the clip length). Online, windows of `window_len` frames slide by half a window, and each
window starts from the previous window's estimates for the frames they share. The module holds no
streaming state: `cotracker3_core.online` keeps that as an explicit value.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from .config import ModelConfig
from .correlation import CorrelationEncoder, WindowFeatures, build_pyramid
from .embeddings import displacement_encoding, resample_time_embedding, sincos_time_embedding
from .encoder import FeatureEncoder, l2_normalize, normalize_frames
from .update_transformer import UpdateTransformer
from .windows import (
    IterationEstimate,
    emission_plan,
    extrapolate_motion,
    initial_estimates,
    track_window,
    window_starts,
)


class WindowOutput(NamedTuple):
    """All iterations of one window, trimmed to the frames that exist. `start`: first frame index."""

    start: int
    iterations: list[IterationEstimate]


class TrackerOutput(NamedTuple):
    """coords: (B, T, N, 2) pixels of the model input; visibility, confidence: (B, T, N) in [0, 1];
    windows: per-window, per-iteration estimates (for training losses)."""

    coords: Tensor
    visibility: Tensor
    confidence: Tensor
    windows: list[WindowOutput]


class CoTracker3(nn.Module):
    """The CoTracker3 network (see `cotracker3_core.build_model` to construct one).

    Args:
        config: architecture and mode.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = FeatureEncoder(config.latent_dim, config.stride)
        self.correlation = CorrelationEncoder(
            config.corr_levels, config.corr_radius, config.corr_hidden, config.corr_embed_dim
        )
        self.transformer = UpdateTransformer(
            input_dim=config.transformer_input_dim,
            hidden_size=config.hidden_size,
            time_depth=config.time_depth,
            space_depth=config.space_depth,
            num_heads=config.num_heads,
            mlp_ratio=config.mlp_ratio,
            num_virtual_tracks=config.num_virtual_tracks,
        )
        self.register_buffer(
            "time_embedding", sincos_time_embedding(config.window_len, config.transformer_input_dim)
        )
        h, w = config.model_resolution
        self.register_buffer(
            "displacement_scale", torch.tensor([w / config.stride, h / config.stride]), persistent=False
        )

    @property
    def window_len(self) -> int:
        return self.config.window_len

    @property
    def step(self) -> int:
        """How far online windows slide: half a window, as trained."""
        return self.config.window_len // 2

    # -- stages ---------------------------------------------------------------------------------------

    def encode(self, frames: Tensor) -> Tensor:
        """(..., 3, H, W) frames in 0-255 -> (..., C, H/stride, W/stride) unit-norm features."""
        lead = frames.shape[:-3]
        features = self.encoder(normalize_frames(frames.reshape(-1, *frames.shape[-3:])))
        features = l2_normalize(features.float()).to(features.dtype)
        return features.reshape(*lead, *features.shape[-3:])

    def pyramid(self, features: Tensor) -> list[Tensor]:
        """(..., C, H, W) features -> correlation pyramid."""
        return build_pyramid(features, self.config.corr_levels)

    def sample_support(self, pyramid: list[Tensor], query_frames: Tensor, query_xy: Tensor) -> list[Tensor]:
        """Query supports, each from its own frame.

        Args:
            pyramid: per level (B, T, C, H_l, W_l).
            query_frames: (B, N) frame index into T (clamped to the clip; callers mask invalid ones).
            query_xy: (B, N, 2) in level-0 feature pixels.
        Returns:
            per level (B, N, K, C).
        """
        b, n = query_frames.shape
        t = pyramid[0].shape[1]
        frames = query_frames.clamp(0, t - 1)
        out: list[Tensor | None] = [None] * len(pyramid)
        # One lookup per distinct query frame: gathering a whole map per query would cost N full maps.
        for bi in range(b):
            for frame in frames[bi].unique().tolist():
                sel = (frames[bi] == frame).nonzero()[:, 0]
                maps = [level[bi, frame][None] for level in pyramid]  # per level (1, C, H_l, W_l)
                sampled = self.correlation.sample_support(maps, query_xy[bi, sel][None])  # per level (1, m, K, C)
                for i, part in enumerate(sampled):
                    if out[i] is None:
                        out[i] = part.new_zeros(b, n, *part.shape[2:])
                    out[i][bi, sel] = part[0]
        return out

    def refine(
        self,
        pyramid: list[Tensor] | WindowFeatures,
        support: list[Tensor],
        start: IterationEstimate,
        iters: int,
        track_mask: Tensor | None = None,
    ) -> list[IterationEstimate]:
        """Iteratively update the tracks of one window.

        Args:
            pyramid: per level (B, S, C, H_l, W_l) window features, or their `WindowFeatures`.
            support: per level (B, N, K, C) query supports.
            start: initial (B, S, N, 2) coords in feature pixels and (B, S, N) logits.
            iters: refinement iterations.
            track_mask: (B, N) bool, the real tracks when batch elements are padded to a common N (None: all
                real); see `UpdateTransformer.forward`. Padding tracks need finite inputs.
        Returns:
            one estimate per iteration, coords in pixels of the model input.
        """
        coords, vis, conf = start
        time_embedding = resample_time_embedding(self.time_embedding, coords.shape[1])
        # Lay out the features and supports for lookups once per window, not once per iteration; under
        # autocast, in the compute dtype (the lookup's product would cast them at every iteration otherwise).
        dtype = _autocast_dtype(coords.device.type)
        if not isinstance(pyramid, WindowFeatures):
            pyramid = WindowFeatures.from_pyramid(pyramid, dtype)
        elif dtype is not None and pyramid.rows.dtype != dtype:
            pyramid = pyramid._replace(rows=pyramid.rows.to(dtype))
        pyramid = pyramid._replace(rows=pyramid.rows.contiguous())
        support = self.correlation.prepare_support(support, pyramid.rows.dtype)  # (B, N, L, C, K)
        out = []
        for _ in range(iters):
            coords = coords.detach()
            tokens = self.transformer_input(pyramid, support, IterationEstimate(coords, vis, conf), time_embedding)
            delta = self.updates(tokens, track_mask=track_mask).to(coords.dtype)  # (B, S, N, 4)
            coords = coords + delta[..., :2]
            vis = vis + delta[..., 2]
            conf = conf + delta[..., 3]
            out.append(IterationEstimate(coords * self.config.stride, vis, conf))
        return out

    def transformer_input(
        self,
        pyramid: list[Tensor] | WindowFeatures,
        support: list[Tensor] | Tensor,
        estimate: IterationEstimate,
        time_embedding: Tensor,
    ) -> Tensor:
        """Tokens of one iteration: (B, S, N, D) = [vis logit, conf logit, correlation embeddings,
        displacement code] + time embedding (1, S, D); coords of `estimate` in feature pixels. `pyramid` and
        `support` as `CorrelationEncoder.forward` takes them."""
        corr = self.correlation(pyramid, support, estimate.coords)  # (B, S, N, L*E)
        return self.assemble_tokens(estimate, corr, time_embedding)

    def assemble_tokens(self, estimate: IterationEstimate, corr: Tensor, time_embedding: Tensor) -> Tensor:
        """Tokens (B, S, N, D) from an estimate (coords in feature pixels, logits), its correlation embeddings
        (B, S, N, L*E) at those coords, and the (1, S, D) time embedding."""
        coords, vis, conf = estimate
        motion = displacement_encoding(coords, self.displacement_scale, self.config.posenc_degrees)
        tokens = torch.cat([vis[..., None], conf[..., None], corr.to(vis.dtype), motion], dim=-1)
        return tokens + time_embedding[:, :, None]

    def updates(self, tokens: Tensor, last: int = 0, track_mask: Tensor | None = None) -> Tensor:
        """(B, S, N, D) tokens -> (B, S, N, 4) updates [dx, dy (feature pixels), dvis, dconf (logits)]; with
        `last` > 0 only those of the last `last` frames, (B, last, N, 4); `track_mask` (B, N) bool: the real
        tracks (see `UpdateTransformer.forward`)."""
        return self.transformer(tokens.transpose(1, 2), last, track_mask).transpose(1, 2)

    # -- whole clips ----------------------------------------------------------------------------------

    def forward(self, video: Tensor, queries: Tensor, iters: int = 4) -> TrackerOutput:
        """Track a whole clip.

        Args:
            video: (B, T, 3, H, W) float in 0-255, H and W divisible by the stride.
            queries: (B, N, 3) as (frame, x, y), x/y in pixels of `video`.
            iters: refinement iterations per window.
        Returns:
            TrackerOutput; coords (B, T, N, 2) in pixels of `video`.
        """
        _check_inputs(video, queries, self.config.stride)
        b, t = video.shape[:2]
        query_frames = queries[..., 0].long()
        query_xy = queries[..., 1:3].float() / self.config.stride
        features = self.encode(video.float())
        if self.config.mode == "offline":
            return self._track_offline(features, query_frames, query_xy, iters)
        return self._track_sliding(features, query_frames, query_xy, iters)

    def _track_offline(self, features: Tensor, query_frames: Tensor, query_xy: Tensor, iters: int) -> TrackerOutput:
        pyramid = self.pyramid(features)
        support = self.sample_support(pyramid, query_frames, query_xy)
        its = self.refine(pyramid, support, initial_estimates(query_xy, features.shape[1]), iters)
        final = its[-1]
        return TrackerOutput(
            final.coords, final.vis_logits.sigmoid(), final.conf_logits.sigmoid(), [WindowOutput(0, its)]
        )

    def _track_sliding(self, features: Tensor, query_frames: Tensor, query_xy: Tensor, iters: int) -> TrackerOutput:
        b, t = features.shape[:2]
        n = query_xy.shape[1]
        s, step = self.window_len, self.step
        starts = window_starts(t, s, step)
        padded_len = starts[-1] + s
        if padded_len > t:  # repeat the last frame, as the official model pads the video
            features = torch.cat([features, features[:, -1:].expand(-1, padded_len - t, -1, -1, -1)], dim=1)
        pyramid = self.pyramid(features)
        support = self.sample_support(pyramid, query_frames, query_xy)
        window_features = WindowFeatures.from_pyramid(pyramid, _autocast_dtype(features.device.type))
        coords = query_xy.new_zeros(b, t, n, 2)  # model pixels
        vis = query_xy.new_zeros(b, t, n)
        conf = query_xy.new_zeros(b, t, n)
        windows: list[WindowOutput] = []
        carry, emitted = None, 0
        for start in starts:
            started = query_frames < start + s  # queries whose frame has come by the window's end
            its, carry = track_window(
                self,
                window_features.frames(start, start + s),
                [sup * started[:, :, None, None] for sup in support],
                query_xy,
                carry,
                query_frames < start + s - step,
                step,
                iters,
            )
            final = its[-1]
            keep = min(t - start, s)
            # Each frame keeps its latest emitted estimate, as a stream consumer does.
            plan = emission_plan(start, keep, emitted, step)
            emitted = plan.new.stop
            lo, hi = plan.frames.start, plan.frames.stop
            coords[:, lo:hi] = final.coords[:, lo - start : hi - start]
            vis[:, lo:hi] = final.vis_logits[:, lo - start : hi - start]
            conf[:, lo:hi] = final.conf_logits[:, lo - start : hi - start]
            windows.append(WindowOutput(start, [IterationEstimate(*(x[:, :keep] for x in it)) for it in its]))
        return TrackerOutput(coords, vis.sigmoid(), conf.sigmoid(), windows)


def _autocast_dtype(device_type: str) -> torch.dtype | None:
    """The autocast compute dtype in effect for `device_type`, or None."""
    if not torch.is_autocast_enabled(device_type):
        return None
    return torch.get_autocast_dtype(device_type)


def _check_inputs(video: Tensor, queries: Tensor, stride: int) -> None:
    if video.ndim != 5 or video.shape[2] != 3:
        raise ValueError(f"video must be (B, T, 3, H, W), got {tuple(video.shape)}")
    if video.shape[-1] % stride or video.shape[-2] % stride:
        raise ValueError(f"video H and W must be divisible by the stride {stride}, got {tuple(video.shape[-2:])}")
    if queries.ndim != 3 or queries.shape[-1] != 3 or queries.shape[0] != video.shape[0]:
        raise ValueError(f"queries must be (B, N, 3) with B={video.shape[0]}, got {tuple(queries.shape)}")
    if not torch.isfinite(queries).all():
        raise ValueError("queries contain NaN or infinite values")


__all__ = [
    "CoTracker3",
    "TrackerOutput",
    "WindowOutput",
    "IterationEstimate",
    "initial_estimates",
    "extrapolate_motion",
]
