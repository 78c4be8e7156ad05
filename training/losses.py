"""CoTracker3 training losses as pure functions on tensors (no model import).

For M refinement iterations m = 1..M (predictions P^(m), visibility logits V^(m), confidence logits
C^(m)), ground truth P* and visibility v*, and ``valid`` (where a point is supervised: it exists from
its query frame on, inside the window)::

    L_track = sum_m gamma^(M-m) * sum_valid w(v*) * mean_xy Huber_delta(P^(m) - P*)   / normalizer
    L_vis   = sum_m gamma^(M-m) * sum_valid BCE(sigmoid(V^(m)), v*)                  / normalizer
    L_conf  = sum_m gamma^(M-m) * sum_{valid [& v*]} BCE(sigmoid(C^(m)), 1[|P^(m) - P*| < 12]) / normalizer

with w = 1 for visible and 1/5 for occluded points, gamma = 0.8, delta = 6 px. The confidence target
uses the detached prediction (it teaches the head to predict the tracker's own error, without pushing
the tracks), measured in the pixel frame the predictions and ground truth are given in: pass both in the
model's input resolution (e.g. 384x512) so that 12 px means what it did in training.

Sources: the CoTracker3 paper's loss (the project's seed document, section 損失関数) and the official
``cotracker/models/core/cotracker/losses.py`` / ``train_on_kubric.py`` (facebookresearch/co-tracker):
Huber delta 6.0, coordinate error averaged over x and y, confidence threshold 12 px on the detached
prediction and only on visible points, visible track term x0.05 and occluded term x0.01 (our
``track_weight`` 0.05 with ``occluded_weight`` 0.2 gives the same ratio). Deliberate differences from
the official code: the occluded term uses the same Huber loss (the official uses L1 there); visibility
and confidence terms carry the gamma weights as in the paper's formula (the official averages them over
iterations: pass ``gamma=1.0`` for an unweighted sum); and the normalisation below.

Normalisation across processes
------------------------------
Every loss is ``sum over valid elements / normalizer``. With ``normalizer=None`` it is the local
number of valid elements (a masked mean). For data-parallel training pass the GLOBAL number of valid
elements, i.e. ``count_valid(valid)`` summed over ranks with ``all_reduce(SUM)`` (for the online model,
count each window's valid elements, summed over windows, the same way). Then the per-rank losses add up
exactly to the loss of the whole global batch, and their gradients add up to its gradient, however the
batch is split across processes or micro-batches. DistributedDataParallel *averages* gradients (sum /
world size), so multiply the local loss by the world size before ``backward()`` to get the gradient of
the global-batch loss. The normalizer is clamped to >= 1 so an all-invalid batch gives a zero loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Normalizer = torch.Tensor | float | int | None


@dataclass(frozen=True)
class LossConfig:
    """Loss hyper-parameters (defaults from the paper / official training code).

    Attributes:
        gamma: iteration weight base, iteration m of M is weighted gamma^(M-m).
        huber_delta: Huber transition point, pixels.
        occluded_weight: weight of occluded points in the track loss.
        confidence_threshold_px: a prediction is "confident" when its error is below this.
        confidence_visible_only: confidence loss only on visible points (as the official code).
        track_weight, visibility_weight, confidence_weight: weights in the total loss.
    """

    gamma: float = 0.8
    huber_delta: float = 6.0
    occluded_weight: float = 0.2
    confidence_threshold_px: float = 12.0
    confidence_visible_only: bool = True
    track_weight: float = 0.05
    visibility_weight: float = 1.0
    confidence_weight: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma}")
        if self.huber_delta <= 0:
            raise ValueError(f"huber_delta must be > 0, got {self.huber_delta}")
        if self.occluded_weight < 0:
            raise ValueError(f"occluded_weight must be >= 0, got {self.occluded_weight}")
        if self.confidence_threshold_px <= 0:
            raise ValueError(f"confidence_threshold_px must be > 0, got {self.confidence_threshold_px}")
        for name in ("track_weight", "visibility_weight", "confidence_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class LossTerms:
    """Scalar loss terms and their weighted sum."""

    track: torch.Tensor
    visibility: torch.Tensor
    confidence: torch.Tensor
    total: torch.Tensor


def count_valid(valid: torch.Tensor) -> torch.Tensor:
    """Number of valid elements as a float32 scalar tensor (all-reduce it to get the global normalizer)."""
    if valid.dtype != torch.bool:
        raise ValueError(f"valid must be a bool tensor, got {valid.dtype}")
    return valid.sum().to(torch.float32)


def iteration_weights(num_iterations: int, gamma: float) -> list[float]:
    """[gamma^(M-1), ..., gamma, 1] for iterations m = 1..M (the last one weighs most)."""
    if num_iterations < 1:
        raise ValueError(f"need at least one iteration, got {num_iterations}")
    return [gamma ** (num_iterations - m) for m in range(1, num_iterations + 1)]


def _check_masks(
    gt_visibility: torch.Tensor, valid: torch.Tensor, expected: tuple[int, ...] | None = None
) -> None:
    expected = expected if expected is not None else tuple(gt_visibility.shape)
    if len(expected) != 3:
        raise ValueError(f"gt_visibility must be (B, T, N), got {tuple(gt_visibility.shape)}")
    for label, tensor in (("gt_visibility", gt_visibility), ("valid", valid)):
        if tuple(tensor.shape) != expected:
            raise ValueError(f"{label} must be (B, T, N) = {expected}, got {tuple(tensor.shape)}")
        if tensor.dtype != torch.bool:
            raise ValueError(f"{label} must be a bool tensor, got {tensor.dtype}")


def _check_targets(gt_tracks: torch.Tensor, gt_visibility: torch.Tensor, valid: torch.Tensor) -> None:
    if gt_tracks.ndim != 4 or gt_tracks.shape[-1] != 2:
        raise ValueError(f"gt_tracks must be (B, T, N, 2), got {tuple(gt_tracks.shape)}")
    _check_masks(gt_visibility, valid, tuple(gt_tracks.shape[:3]))


def _check_iterations(label: str, tensors: Sequence[torch.Tensor], shape: tuple[int, ...]) -> None:
    if isinstance(tensors, torch.Tensor) or len(tensors) == 0:
        raise ValueError(f"{label} must be a non-empty list of tensors, one per refinement iteration")
    for m, tensor in enumerate(tensors):
        if tuple(tensor.shape) != shape:
            raise ValueError(f"{label}[{m}] must have shape {shape}, got {tuple(tensor.shape)}")
        if not tensor.is_floating_point():
            raise ValueError(f"{label}[{m}] must be floating point, got {tensor.dtype}")


def _normalizer(valid: torch.Tensor, normalizer: Normalizer, dtype: torch.dtype) -> torch.Tensor:
    if normalizer is None:
        value = valid.sum().to(dtype)
    elif isinstance(normalizer, torch.Tensor):
        if normalizer.numel() != 1:
            raise ValueError(f"normalizer must be a scalar, got shape {tuple(normalizer.shape)}")
        value = normalizer.detach().to(device=valid.device, dtype=dtype).reshape(())
    elif isinstance(normalizer, (int, float)) and not isinstance(normalizer, bool):
        if not normalizer >= 0 or normalizer == float("inf"):
            raise ValueError(f"normalizer must be a finite count >= 0, got {normalizer}")
        value = torch.tensor(float(normalizer), device=valid.device, dtype=dtype)
    else:
        kind = type(normalizer).__name__
        raise ValueError(f"normalizer must be None, a number or a scalar tensor, got {kind}")
    return value.clamp_min(1.0)


def _compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    # Losses are summed over many elements: never accumulate in half precision.
    dtype = torch.float32
    for tensor in tensors:
        dtype = torch.promote_types(dtype, tensor.dtype)
    return dtype


def track_loss(
    predictions: Sequence[torch.Tensor],
    gt_tracks: torch.Tensor,
    gt_visibility: torch.Tensor,
    valid: torch.Tensor,
    *,
    gamma: float = 0.8,
    huber_delta: float = 6.0,
    occluded_weight: float = 0.2,
    normalizer: Normalizer = None,
) -> torch.Tensor:
    """gamma-weighted Huber loss on coordinates; occluded points weighted ``occluded_weight``.

    Args:
        predictions: M tensors (B, T, N, 2), pixel x, y, iteration 1 first.
        gt_tracks: (B, T, N, 2) ground truth, same pixel frame (entries outside ``valid`` are ignored,
            NaN allowed there).
        gt_visibility: (B, T, N) bool.
        valid: (B, T, N) bool, supervised elements.
        normalizer: see module docstring (None: local count of valid elements).

    Returns:
        Scalar tensor.
    """
    _check_targets(gt_tracks, gt_visibility, valid)
    _check_iterations("predictions", predictions, tuple(gt_tracks.shape))
    dtype = _compute_dtype(gt_tracks, *predictions)
    target = torch.where(valid[..., None], gt_tracks.to(dtype), 0.0)
    ones = torch.ones(gt_visibility.shape, dtype=dtype, device=gt_visibility.device)
    weight = torch.where(gt_visibility, ones, ones * occluded_weight)
    total = torch.zeros((), dtype=dtype, device=gt_tracks.device)
    for w_m, prediction in zip(iteration_weights(len(predictions), gamma), predictions, strict=True):
        pred = torch.where(valid[..., None], prediction.to(dtype), 0.0)
        error = F.huber_loss(pred, target, reduction="none", delta=huber_delta).mean(dim=-1)
        total = total + w_m * (error * weight).sum()
    return total / _normalizer(valid, normalizer, dtype)


def visibility_loss(
    logits: Sequence[torch.Tensor],
    gt_visibility: torch.Tensor,
    valid: torch.Tensor,
    *,
    gamma: float = 0.8,
    normalizer: Normalizer = None,
) -> torch.Tensor:
    """gamma-weighted binary cross-entropy of visibility logits against ``gt_visibility``.

    Args:
        logits: M tensors (B, T, N), pre-sigmoid.
        gt_visibility: (B, T, N) bool.
        valid: (B, T, N) bool.
        normalizer: see module docstring.
    """
    _check_masks(gt_visibility, valid)
    _check_iterations("visibility logits", logits, tuple(gt_visibility.shape))
    dtype = _compute_dtype(*logits)
    target = gt_visibility.to(dtype)
    total = torch.zeros((), dtype=dtype, device=gt_visibility.device)
    for w_m, logit in zip(iteration_weights(len(logits), gamma), logits, strict=True):
        bce = F.binary_cross_entropy_with_logits(logit.to(dtype), target, reduction="none")
        total = total + w_m * torch.where(valid, bce, 0.0).sum()
    return total / _normalizer(valid, normalizer, dtype)


def confidence_loss(
    logits: Sequence[torch.Tensor],
    predictions: Sequence[torch.Tensor],
    gt_tracks: torch.Tensor,
    gt_visibility: torch.Tensor,
    valid: torch.Tensor,
    *,
    gamma: float = 0.8,
    threshold_px: float = 12.0,
    visible_only: bool = True,
    normalizer: Normalizer = None,
) -> torch.Tensor:
    """gamma-weighted BCE of confidence logits against "this iteration's error < threshold_px".

    The error uses the detached predictions, so this loss trains only the confidence output.

    Args:
        logits: M tensors (B, T, N), pre-sigmoid.
        predictions: the M track predictions (B, T, N, 2) the confidences belong to.
        gt_tracks: (B, T, N, 2), same pixel frame as the predictions.
        gt_visibility: (B, T, N) bool.
        valid: (B, T, N) bool.
        visible_only: count only visible points (occluded ones are excluded from this term).
        normalizer: see module docstring (the count of ``valid``, not of the visible subset, so that
            all three terms share one normalizer).
    """
    _check_targets(gt_tracks, gt_visibility, valid)
    _check_iterations("predictions", predictions, tuple(gt_tracks.shape))
    _check_iterations("confidence logits", logits, tuple(gt_tracks.shape[:3]))
    if len(logits) != len(predictions):
        raise ValueError(f"got {len(logits)} confidence logits for {len(predictions)} track predictions")
    dtype = _compute_dtype(gt_tracks, *logits, *predictions)
    mask = valid & gt_visibility if visible_only else valid
    target_xy = torch.where(valid[..., None], gt_tracks.to(dtype), 0.0)
    total = torch.zeros((), dtype=dtype, device=gt_tracks.device)
    weights = iteration_weights(len(logits), gamma)
    for w_m, logit, prediction in zip(weights, logits, predictions, strict=True):
        error = torch.linalg.vector_norm(prediction.detach().to(dtype) - target_xy, dim=-1)
        target = (error < threshold_px).to(dtype)
        bce = F.binary_cross_entropy_with_logits(logit.to(dtype), target, reduction="none")
        total = total + w_m * torch.where(mask, bce, 0.0).sum()
    return total / _normalizer(valid, normalizer, dtype)


def tracking_losses(
    track_predictions: Sequence[torch.Tensor],
    visibility_logits: Sequence[torch.Tensor] | None,
    confidence_logits: Sequence[torch.Tensor] | None,
    gt_tracks: torch.Tensor,
    gt_visibility: torch.Tensor,
    valid: torch.Tensor,
    config: LossConfig | None = None,
    normalizer: Normalizer = None,
) -> LossTerms:
    """All three terms and their weighted sum.

    ``total = track_weight * track + visibility_weight * visibility + confidence_weight * confidence``.

    Pass ``None`` for visibility/confidence logits to train the tracks only (pseudo-label stage, where
    those heads are frozen); the missing terms are zero.

    Shapes: predictions M x (B, T, N, 2); logits M x (B, T, N); gt_tracks (B, T, N, 2);
    gt_visibility and valid (B, T, N) bool. See the module docstring for ``normalizer``.
    """
    config = config or LossConfig()
    track = track_loss(
        track_predictions, gt_tracks, gt_visibility, valid, gamma=config.gamma,
        huber_delta=config.huber_delta, occluded_weight=config.occluded_weight, normalizer=normalizer,
    )
    zero = torch.zeros((), dtype=track.dtype, device=track.device)
    vis = (
        zero
        if visibility_logits is None
        else visibility_loss(
            visibility_logits, gt_visibility, valid, gamma=config.gamma, normalizer=normalizer
        )
    )
    conf = (
        zero if confidence_logits is None
        else confidence_loss(
            confidence_logits, track_predictions, gt_tracks, gt_visibility, valid, gamma=config.gamma,
            threshold_px=config.confidence_threshold_px, visible_only=config.confidence_visible_only,
            normalizer=normalizer,
        )
    )
    total = config.track_weight * track + config.visibility_weight * vis + config.confidence_weight * conf
    return LossTerms(track=track, visibility=vis, confidence=conf, total=total)
