"""Losses of a model output against (pseudo-)ground truth, window by window.

The online model returns one ``WindowOutput`` per sliding window (frames ``start .. start + S' - 1``,
every refinement iteration); the offline model returns a single window over the whole clip. Each window
is supervised on its own frames, where ``valid`` holds (from the query frame on for online training), and
the per-window sums are divided by ONE normalizer: the number of supervised (window, frame, point)
elements of the whole global batch. See ``training.losses`` for why that makes the loss independent of
how the global batch is split over processes.
"""

from __future__ import annotations

import torch

from cotracker3_core.model import TrackerOutput
from training.losses import LossConfig, LossTerms, Normalizer, count_valid, tracking_losses


def _window_frames(window_start: int, window_len: int) -> slice:
    return slice(window_start, window_start + window_len)


def count_supervised(output: TrackerOutput, valid: torch.Tensor) -> torch.Tensor:
    """Local number of supervised elements, summed over windows (overlapping frames count per window).

    Args:
        output: the model output (its ``windows``).
        valid: (B, T, N) bool.
    """
    total = torch.zeros((), dtype=torch.float32, device=valid.device)
    for window in output.windows:
        frames = _window_frames(window.start, window.iterations[0].coords.shape[1])
        total = total + count_valid(valid[:, frames])
    return total


def windowed_losses(
    output: TrackerOutput,
    tracks: torch.Tensor,
    visibility: torch.Tensor,
    valid: torch.Tensor,
    config: LossConfig,
    normalizer: Normalizer,
    train_visibility: bool = True,
) -> LossTerms:
    """Track / visibility / confidence losses summed over windows.

    Args:
        output: model output with per-window, per-iteration estimates (pixels of the model input).
        tracks: (B, T, N, 2) targets, same pixels.
        visibility: (B, T, N) bool.
        valid: (B, T, N) bool, supervised elements.
        config: loss weights.
        normalizer: the GLOBAL count of supervised elements (``count_supervised`` all-reduced).
        train_visibility: False trains the tracks only (stage 2, visibility/confidence head frozen).
    """
    parts: list[LossTerms] = []
    for window in output.windows:
        frames = _window_frames(window.start, window.iterations[0].coords.shape[1])
        its = window.iterations
        parts.append(
            tracking_losses(
                [it.coords for it in its],
                [it.vis_logits for it in its] if train_visibility else None,
                [it.conf_logits for it in its] if train_visibility else None,
                tracks[:, frames],
                visibility[:, frames],
                valid[:, frames],
                config,
                normalizer=normalizer,
            )
        )
    return LossTerms(
        track=torch.stack([p.track for p in parts]).sum(),
        visibility=torch.stack([p.visibility for p in parts]).sum(),
        confidence=torch.stack([p.confidence for p in parts]).sum(),
        total=torch.stack([p.total for p in parts]).sum(),
    )
