"""AdamW over the trainable parameters and the learning-rate schedules of the two stages."""

from __future__ import annotations

import math

import torch
from torch import nn

from training.config import OptimSettings


class LrSchedule:
    """Multiplier of the peak learning rate at a step (a LambdaLR ``lr_lambda``).

    ``warmup_cosine``: linear from 1/warmup to 1 over ``warmup_steps``, then half a cosine down to
    ``min_ratio`` at ``total_steps`` (stage 1). ``cosine``: the cosine from step 0 (stage 2).
    ``constant``: 1. A plain object (not a closure) so LambdaLR can save and restore its fields.
    """

    def __init__(self, kind: str, total_steps: int, warmup_steps: int = 0, min_ratio: float = 0.0) -> None:
        self.kind = kind
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps) if kind == "warmup_cosine" else 0
        self.min_ratio = float(min_ratio)

    def __call__(self, step: int) -> float:
        if self.kind == "constant":
            return 1.0
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters with ``requires_grad`` (frozen ones never reach the optimiser, so weight decay cannot
    touch them)."""
    return [p for p in model.parameters() if p.requires_grad]


def build_optimizer(model: nn.Module, settings: OptimSettings) -> torch.optim.AdamW:
    params = trainable_parameters(model)
    if not params:
        raise ValueError("the model has no trainable parameters")
    return torch.optim.AdamW(
        params, lr=settings.lr, betas=settings.betas, eps=settings.eps, weight_decay=settings.weight_decay
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer, settings: OptimSettings, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    schedule = LrSchedule(settings.schedule, total_steps, settings.warmup_steps, settings.min_lr_ratio)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
