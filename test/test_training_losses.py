"""Tests for the CoTracker3 training losses (training/losses.py) on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from training.losses import (
    LossConfig,
    confidence_loss,
    count_valid,
    iteration_weights,
    track_loss,
    tracking_losses,
    visibility_loss,
)

GAMMA = 0.8


def _huber(e: float, delta: float = 6.0) -> float:
    return 0.5 * e * e if abs(e) <= delta else delta * (abs(e) - 0.5 * delta)


def _bce_logit(logit: float, target: float) -> float:
    p = 1 / (1 + math.exp(-logit))
    return -(target * math.log(p) + (1 - target) * math.log(1 - p))


def _tracks(*points: tuple[float, float]) -> torch.Tensor:
    """(1, 1, N, 2) float64 from N (x, y) pairs."""
    return torch.tensor([[list(points)]], dtype=torch.float64)


def test_track_loss_hand_computed() -> None:
    """Two points (visible, occluded), two iterations, Huber delta 6, occluded weight 1/5, gamma 0.8."""
    gt = _tracks((0.0, 0.0), (0.0, 0.0))
    vis = torch.tensor([[[True, False]]])
    valid = torch.ones(1, 1, 2, dtype=torch.bool)
    it1 = _tracks((3.0, 0.0), (10.0, 0.0))  # visible: huber(3)=4.5 -> mean_xy 2.25; occluded: 42 -> 21
    it2 = _tracks((1.0, 1.0), (0.0, -8.0))  # visible: 0.5 + 0.5 -> 0.5; occluded: 30 -> 15
    expected = (GAMMA * (2.25 + 0.2 * 21.0) + 1.0 * (0.5 + 0.2 * 15.0)) / 2  # = 4.33
    got = track_loss([it1, it2], gt, vis, valid)
    assert got.item() == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(4.33)
    # The same from the Huber helper, to pin the transition at delta = 6.
    assert _huber(10.0) == 42.0 and _huber(3.0) == 4.5


@pytest.mark.parametrize("erroneous_iteration", [1, 2, 3])
def test_track_loss_iteration_weights_are_gamma_powers(erroneous_iteration: int) -> None:
    gt = _tracks((5.0, 5.0))
    vis = torch.ones(1, 1, 1, dtype=torch.bool)
    valid = torch.ones(1, 1, 1, dtype=torch.bool)
    predictions = [gt.clone() for _ in range(3)]
    predictions[erroneous_iteration - 1] = _tracks((7.0, 5.0))  # error 2 px in x: huber 2, mean_xy 1
    got = track_loss(predictions, gt, vis, valid, gamma=GAMMA)
    assert got.item() == pytest.approx(GAMMA ** (3 - erroneous_iteration) * 1.0)
    assert iteration_weights(3, GAMMA) == pytest.approx([0.64, 0.8, 1.0])


def test_occluded_points_weigh_one_fifth() -> None:
    gt = _tracks((0.0, 0.0))
    pred = [_tracks((20.0, -4.0))]
    valid = torch.ones(1, 1, 1, dtype=torch.bool)
    visible = track_loss(pred, gt, torch.ones(1, 1, 1, dtype=torch.bool), valid)
    occluded = track_loss(pred, gt, torch.zeros(1, 1, 1, dtype=torch.bool), valid)
    assert visible.item() == pytest.approx((_huber(20.0) + _huber(4.0)) / 2)
    assert occluded.item() == pytest.approx(visible.item() / 5)


def test_invalid_elements_are_ignored_even_with_nan_ground_truth() -> None:
    base = torch.zeros(1, 2, 1, 2, dtype=torch.float64, requires_grad=True)
    gt = torch.tensor([[[[1.0, 0.0]], [[float("nan"), float("nan")]]]], dtype=torch.float64)
    vis = torch.ones(1, 2, 1, dtype=torch.bool)
    valid = torch.tensor([[[True], [False]]])
    predictions = [base * 1.0, base + 1000.0]
    loss = track_loss(predictions, gt, vis, valid)
    # Only frame 0 counts: iteration 1 error (-1, 0) -> 0.25; iteration 2 error (999, 1000) -> huge.
    expected = GAMMA * 0.25 + (_huber(999.0) + _huber(1000.0)) / 2
    assert loss.item() == pytest.approx(expected)
    loss.backward()
    assert torch.isfinite(base.grad).all() and (base.grad[0, 1] == 0).all()


def test_visibility_loss_hand_computed() -> None:
    vis = torch.tensor([[[True, False, True]]])
    valid = torch.tensor([[[True, True, False]]])
    it1 = torch.tensor([[[0.0, 0.0, 50.0]]], dtype=torch.float64)
    it2 = torch.tensor([[[2.0, -1.0, -50.0]]], dtype=torch.float64)
    expected = (GAMMA * 2 * math.log(2.0) + _bce_logit(2.0, 1.0) + _bce_logit(-1.0, 0.0)) / 2
    assert visibility_loss([it1, it2], vis, valid).item() == pytest.approx(expected)


def test_confidence_loss_hand_computed_and_detached() -> None:
    gt = _tracks((0.0, 0.0), (0.0, 0.0), (0.0, 0.0))
    base = torch.zeros(1, 1, 3, 2, dtype=torch.float64, requires_grad=True)
    # Errors 11.9 px (confident), 12.1 px (not), 1 px on an occluded point.
    prediction = base + _tracks((11.9, 0.0), (0.0, 12.1), (1.0, 0.0))
    vis = torch.tensor([[[True, True, False]]])
    valid = torch.ones(1, 1, 3, dtype=torch.bool)
    logits = [torch.full((1, 1, 3), 3.0, dtype=torch.float64, requires_grad=True)]
    loss = confidence_loss(logits, [prediction], gt, vis, valid)
    visible_terms = _bce_logit(3.0, 1.0) + _bce_logit(3.0, 0.0)
    assert loss.item() == pytest.approx(visible_terms / 3)  # normalised by all valid elements
    everything = confidence_loss(logits, [prediction], gt, vis, valid, visible_only=False)
    assert everything.item() == pytest.approx((visible_terms + _bce_logit(3.0, 1.0)) / 3)
    loss.backward()
    assert base.grad is None  # the target comes from the detached prediction
    assert logits[0].grad is not None and logits[0].grad.abs().sum() > 0


def test_losses_use_gamma_per_iteration_for_visibility_and_confidence() -> None:
    vis = torch.ones(1, 1, 1, dtype=torch.bool)
    valid = torch.ones(1, 1, 1, dtype=torch.bool)
    zero = torch.zeros(1, 1, 1, dtype=torch.float64)
    confident = torch.full((1, 1, 1), 9.0, dtype=torch.float64)
    gt = _tracks((0.0, 0.0))
    assert visibility_loss([zero, confident], vis, valid).item() == pytest.approx(
        GAMMA * math.log(2.0) + _bce_logit(9.0, 1.0)
    )
    assert confidence_loss([zero, confident], [gt, gt], gt, vis, valid).item() == pytest.approx(
        GAMMA * math.log(2.0) + _bce_logit(9.0, 1.0)
    )


def _random_batch(batch: int, generator: torch.Generator, iterations: int = 3, T: int = 5, N: int = 7):
    shape = (batch, T, N)
    gt = torch.rand(*shape, 2, generator=generator, dtype=torch.float64) * 50
    vis = torch.rand(*shape, generator=generator) > 0.3
    valid = torch.rand(*shape, generator=generator) > 0.2
    offsets = [torch.randn(*shape, 2, generator=generator, dtype=torch.float64) * s for s in (20, 8, 3)]
    vis_logits = [torch.randn(*shape, generator=generator, dtype=torch.float64) for _ in range(iterations)]
    conf_logits = [torch.randn(*shape, generator=generator, dtype=torch.float64) for _ in range(iterations)]
    return gt, vis, valid, offsets[:iterations], vis_logits, conf_logits


def test_splitting_the_batch_with_the_global_normalizer_gives_the_same_loss_and_gradients() -> None:
    """Sum of per-half losses (normalised by the global valid count) == full-batch loss; same gradients."""
    generator = torch.Generator().manual_seed(0)
    gt, vis, valid, offsets, vis_logits, conf_logits = _random_batch(4, generator)
    config = LossConfig()

    def run(rows: slice, normalizer: torch.Tensor | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        # Model stand-in: parameters shared by all samples, like a network's weights.
        shift = torch.zeros(2, dtype=torch.float64, requires_grad=True)
        vis_bias = torch.zeros((), dtype=torch.float64, requires_grad=True)
        conf_bias = torch.zeros((), dtype=torch.float64, requires_grad=True)
        predictions = [gt[rows] + o[rows] + shift for o in offsets]
        terms = tracking_losses(
            predictions,
            [v[rows] + vis_bias for v in vis_logits],
            [c[rows] + conf_bias for c in conf_logits],
            gt[rows], vis[rows], valid[rows], config, normalizer=normalizer,
        )
        grads = torch.autograd.grad(terms.total, [shift, vis_bias, conf_bias])
        return terms.total.detach(), list(grads)

    full_loss, full_grads = run(slice(0, 4), None)
    total = count_valid(valid)  # what all_reduce(SUM) of the per-rank counts would give
    first_loss, first_grads = run(slice(0, 2), total)
    second_loss, second_grads = run(slice(2, 4), total)
    assert (first_loss + second_loss).item() == pytest.approx(full_loss.item(), rel=1e-12)
    for full, a, b in zip(full_grads, first_grads, second_grads, strict=True):
        torch.testing.assert_close(a + b, full, rtol=1e-12, atol=1e-12)
    # Without the shared normaliser the halves would be averaged separately: not the same loss.
    local_first, _ = run(slice(0, 2), None)
    local_second, _ = run(slice(2, 4), None)
    assert (local_first + local_second).item() != pytest.approx(full_loss.item(), rel=1e-6)


def test_normalizer_forms_and_empty_batches() -> None:
    generator = torch.Generator().manual_seed(1)
    gt, vis, valid, offsets, _, _ = _random_batch(2, generator)
    predictions = [gt + o for o in offsets]
    local = track_loss(predictions, gt, vis, valid)
    count = int(valid.sum())
    for normalizer in (count, float(count), torch.tensor(count), torch.tensor([float(count)])):
        explicit = track_loss(predictions, gt, vis, valid, normalizer=normalizer)
        assert explicit.item() == pytest.approx(local.item())
    nothing = torch.zeros_like(valid)
    assert track_loss(predictions, gt, vis, nothing).item() == 0.0
    assert track_loss(predictions, gt, vis, nothing, normalizer=0).item() == 0.0


def test_tracking_losses_total_and_track_only_mode() -> None:
    generator = torch.Generator().manual_seed(2)
    gt, vis, valid, offsets, vis_logits, conf_logits = _random_batch(2, generator)
    predictions = [gt + o for o in offsets]
    config = LossConfig(track_weight=0.05, visibility_weight=2.0, confidence_weight=0.5)
    terms = tracking_losses(predictions, vis_logits, conf_logits, gt, vis, valid, config)
    expected = 0.05 * terms.track + 2.0 * terms.visibility + 0.5 * terms.confidence
    assert terms.total.item() == pytest.approx(expected.item())
    assert terms.track.item() == pytest.approx(track_loss(predictions, gt, vis, valid).item())
    track_only = tracking_losses(predictions, None, None, gt, vis, valid, config)
    assert track_only.visibility.item() == 0.0 and track_only.confidence.item() == 0.0
    assert track_only.total.item() == pytest.approx(0.05 * terms.track.item())


def test_half_precision_inputs_are_accumulated_in_float32() -> None:
    generator = torch.Generator().manual_seed(3)
    gt, vis, valid, offsets, vis_logits, _ = _random_batch(1, generator)
    reference = track_loss([gt + o for o in offsets], gt, vis, valid)
    low = track_loss([(gt + o).bfloat16() for o in offsets], gt.float(), vis, valid)
    assert low.dtype == torch.float32
    assert low.item() == pytest.approx(reference.item(), rel=2e-2)
    assert visibility_loss([v.bfloat16() for v in vis_logits], vis, valid).dtype == torch.float32


def test_bad_inputs_raise_clear_errors() -> None:
    gt = torch.zeros(1, 2, 3, 2)
    vis = torch.ones(1, 2, 3, dtype=torch.bool)
    valid = torch.ones(1, 2, 3, dtype=torch.bool)
    pred = [torch.zeros(1, 2, 3, 2)]
    with pytest.raises(ValueError, match="non-empty list"):
        track_loss([], gt, vis, valid)
    with pytest.raises(ValueError, match="non-empty list"):
        track_loss(pred[0], gt, vis, valid)  # a tensor, not a list of iterations
    with pytest.raises(ValueError, match=r"predictions\[0\] must have shape"):
        track_loss([torch.zeros(1, 2, 4, 2)], gt, vis, valid)
    with pytest.raises(ValueError, match=r"gt_tracks must be \(B, T, N, 2\)"):
        track_loss(pred, torch.zeros(1, 2, 3, 3), vis, valid)
    with pytest.raises(ValueError, match="valid must be a bool tensor"):
        track_loss(pred, gt, vis, valid.float())
    with pytest.raises(ValueError, match="gt_visibility must be"):
        track_loss(pred, gt, vis[:, :1], valid)
    with pytest.raises(ValueError, match="floating point"):
        track_loss([torch.zeros(1, 2, 3, 2, dtype=torch.int64)], gt, vis, valid)
    with pytest.raises(ValueError, match="finite count >= 0"):
        track_loss(pred, gt, vis, valid, normalizer=-1)
    with pytest.raises(ValueError, match="scalar"):
        track_loss(pred, gt, vis, valid, normalizer=torch.ones(2))
    with pytest.raises(ValueError, match="normalizer must be None"):
        track_loss(pred, gt, vis, valid, normalizer="6")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="2 confidence logits for 1 track predictions"):
        confidence_loss([torch.zeros(1, 2, 3)] * 2, pred, gt, vis, valid)
    with pytest.raises(ValueError, match=r"visibility logits\[0\] must have shape"):
        visibility_loss([torch.zeros(1, 2, 4)], vis, valid)
    with pytest.raises(ValueError, match="gamma"):
        LossConfig(gamma=0.0)
    with pytest.raises(ValueError, match="huber_delta"):
        LossConfig(huber_delta=-1.0)
    with pytest.raises(ValueError, match="at least one iteration"):
        iteration_weights(0, 0.8)
