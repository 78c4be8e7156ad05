"""Frames entering the streaming engine: checks, the model's resize, pixel scales, and the refusals."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


class StampOrderError(ValueError):
    """A frame's stamp is not later than the previous frame's (time went backwards or repeated).

    stamp: the refused frame's stamp; last: the previous frame's.
    """

    def __init__(self, stamp: int, last: int) -> None:
        super().__init__(f"frame stamp {stamp} is not later than the previous one ({last})")
        self.stamp, self.last = stamp, last


class FrameSizeError(ValueError):
    """A frame's size differs from the stream's (fixed by its first frame).

    size: the refused frame's (H, W); expected: the stream's.
    """

    def __init__(self, size: tuple[int, int], expected: tuple[int, int]) -> None:
        super().__init__(f"frame size {size} differs from the stream's {expected}; reset() first")
        self.size, self.expected = size, expected


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


def check_frame(frame: np.ndarray, frame_size: tuple[int, int] | None) -> np.ndarray:
    """A pushed frame, checked: an (H, W, 3) uint8 or finite float array of the stream's size (`frame_size`,
    None before the first frame); raises ValueError (`FrameSizeError` for a size change) otherwise."""
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
    if frame_size is not None and frame.shape[:2] != frame_size:
        raise FrameSizeError(tuple(frame.shape[:2]), frame_size)
    return frame
