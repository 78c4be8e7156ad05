"""The convolutional feature encoder: frames in, stride-4 feature maps out."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with instance norm and a (strided, projected) skip connection."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.norm = nn.InstanceNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride), nn.InstanceNorm2d(out_channels)
            )

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.norm(self.conv1(x)))
        y = F.relu(self.norm(self.conv2(y)))
        return F.relu(self.shortcut(x) + y)


class FeatureEncoder(nn.Module):
    """Multi-scale CNN: four residual stages at strides 2, 4, 8 and 16, each resampled to the output
    stride and fused by two convolutions.

    Args:
        out_dim: output channels (the model's latent_dim, 128 officially).
        stride: output stride (4).

    Shapes: frames (B, 3, H, W) normalised to [-1, 1] -> features (B, out_dim, H / stride, W / stride),
    not yet L2-normalised.
    """

    def __init__(self, out_dim: int = 128, stride: int = 4) -> None:
        super().__init__()
        self.stride = stride
        widths = (out_dim // 2, out_dim // 4 * 3, out_dim, out_dim)
        self.stem = nn.Conv2d(3, widths[0], 7, stride=2, padding=3)
        self.stem_norm = nn.InstanceNorm2d(widths[0])
        stages = []
        in_ch = widths[0]
        for i, w in enumerate(widths):
            first_stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(ResidualBlock(in_ch, w, first_stride), ResidualBlock(w, w)))
            in_ch = w
        self.stages = nn.ModuleList(stages)
        self.fuse = nn.Conv2d(sum(widths), out_dim * 2, 3, padding=1)
        self.fuse_norm = nn.InstanceNorm2d(out_dim * 2)
        self.project = nn.Conv2d(out_dim * 2, out_dim, 1)

    def forward(self, frames: Tensor) -> Tensor:
        h, w = frames.shape[-2:]
        out_size = (h // self.stride, w // self.stride)
        x = F.relu(self.stem_norm(self.stem(frames)))
        scales = []
        for stage in self.stages:
            x = stage(x)
            scales.append(F.interpolate(x, out_size, mode="bilinear", align_corners=True))
        x = F.relu(self.fuse_norm(self.fuse(torch.cat(scales, dim=1))))
        return self.project(x)


def normalize_frames(frames: Tensor) -> Tensor:
    """uint8-range frames (any shape) -> [-1, 1], the encoder's input convention."""
    return 2.0 * (frames / 255.0) - 1.0


def l2_normalize(features: Tensor, dim: int = -3) -> Tensor:
    """Unit-norm features along the channel dimension (eps 1e-12 under the square root)."""
    sq = features.square().sum(dim=dim, keepdim=True)
    return features / torch.sqrt(torch.clamp(sq, min=1e-12))
