"""The update transformer: attention across time within each track, and across tracks through a small
set of learned virtual tracks."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .layers import CrossAttentionBlock, SelfAttentionBlock


class UpdateTransformer(nn.Module):
    """Predicts per-(track, frame) updates of position, visibility and confidence.

    Each layer attends over time within every track (virtual tracks included); every
    `time_depth // space_depth` layers, the virtual tracks gather from the real tracks, attend among
    themselves, and the real tracks read back from them: O(N * V) instead of O(N^2) across tracks.

    Args:
        input_dim: token width in.
        hidden_size: transformer width.
        time_depth / space_depth: layer counts.
        num_heads: attention heads.
        mlp_ratio: MLP width multiple.
        num_virtual_tracks: V.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_size: int = 384,
        time_depth: int = 3,
        space_depth: int = 3,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        num_virtual_tracks: int = 64,
    ) -> None:
        super().__init__()
        self.input_proj = nn.Linear(input_dim, hidden_size)
        self.virtual_tracks = nn.Parameter(torch.randn(1, num_virtual_tracks, 1, hidden_size))
        self.time_blocks = nn.ModuleList(
            SelfAttentionBlock(hidden_size, num_heads, mlp_ratio) for _ in range(time_depth)
        )
        self.virtual_gather = nn.ModuleList(
            CrossAttentionBlock(hidden_size, num_heads, mlp_ratio) for _ in range(space_depth)
        )
        self.virtual_self = nn.ModuleList(
            SelfAttentionBlock(hidden_size, num_heads, mlp_ratio) for _ in range(space_depth)
        )
        self.track_scatter = nn.ModuleList(
            CrossAttentionBlock(hidden_size, num_heads, mlp_ratio) for _ in range(space_depth)
        )
        self.space_every = time_depth // space_depth if space_depth else 0
        # Separate heads, so that fine-tuning on pseudo-labels can freeze visibility/confidence alone.
        self.flow_head = nn.Linear(hidden_size, 2)
        self.vis_conf_head = nn.Linear(hidden_size, 2)

    def forward(self, tokens: Tensor, last: int = 0, track_mask: Tensor | None = None) -> Tensor:
        """(B, N, S, input_dim) tokens -> (B, N, S, 4) updates [dx, dy, dvis, dconf]; with `last` > 0 only the
        last `last` frames' updates, (B, N, last, 4): the final layer then computes only those frames (they
        still attend over the whole window), the earlier layers everything.

        track_mask: (B, N) bool, the real tracks (None: all). The virtual tracks are the only path between
        tracks (time attention stays within a track; the real tracks only read from the virtual ones), so
        masking the tracks out of the virtual tracks' gather makes the real tracks' updates independent of the
        others: padding tracks that fill a batch element up to a common N (several streams in one call) do not
        change the real tracks' outputs. Their own outputs are meaningless.
        """
        b, n, s, d = tokens.shape
        points = self.input_proj(tokens.reshape(b * n * s, d)).view(b, n, s, -1)  # (B, N, S, C), one 2-D product
        v, c = self.virtual_tracks.shape[1], points.shape[-1]
        space_layer = 0
        x = points
        depth = len(self.time_blocks)
        for i, block in enumerate(self.time_blocks):
            keep = last if i == depth - 1 else 0  # frames whose outputs this layer computes (0: all)
            s_in, s = s, keep or s
            if i == 0:
                # The virtual tracks enter the first layer identical in every frame (they carry no time
                # embedding), so attention over time returns the same token: run the block on one frame.
                virtual = block(self.virtual_tracks.to(points.dtype).view(v, 1, c))  # (V, 1, C)
                points = block(points.reshape(b * n, s_in, c), keep).view(b, n, s, c)
                x = torch.cat([points, virtual.view(1, v, 1, c).expand(b, v, s, c)], dim=1)  # (B, N+V, S, C)
            else:
                x = block(x.reshape(b * (n + v), s_in, c), keep).view(b, n + v, s, c)
            if self.space_every and i % self.space_every == 0:
                per_frame = x.transpose(1, 2).reshape(b * s, n + v, c)  # (B*S, N+V, C)
                points, virtual = per_frame[:, :n], per_frame[:, n:]
                mask = None if track_mask is None else track_mask.repeat_interleave(s, dim=0)  # (B*S, N)
                virtual = self.virtual_gather[space_layer](virtual, points, mask)
                virtual = self.virtual_self[space_layer](virtual)
                points = self.track_scatter[space_layer](points, virtual)
                x = torch.cat([points, virtual], dim=1).view(b, s, n + v, c).transpose(1, 2)
                space_layer += 1
        x = x[:, :n].reshape(b * n * s, c)
        return torch.cat([self.flow_head(x), self.vis_conf_head(x)], dim=-1).view(b, n, s, -1)
