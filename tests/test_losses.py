"""Losses: CE + Dice (paper Eqs. 12–13), Dice, focal; 1- and 2-channel logits; deep supervision."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from atd_dl.losses import (
    CEDiceLoss,
    DiceLoss,
    FocalDiceLoss,
    FocalLoss,
    SegmentationLoss,
    cross_entropy,
    dice_loss,
    focal_loss,
)


@pytest.fixture
def target() -> torch.Tensor:
    y = torch.zeros(2, 1, 16, 16)
    y[0, 0, 4:7, 4:7] = 1
    y[1, 0, 10:12, 2:5] = 1
    return y


def _perfect_logits(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    signed = (2 * target - 1) * 60.0  # sigmoid(±60) is 0/1 to float32 precision
    if num_classes == 1:
        return signed
    return torch.cat([-signed / 2, signed / 2], dim=1)


@pytest.mark.parametrize("num_classes", [1, 2])
def test_dice_is_zero_for_perfect_prediction(target, num_classes):
    logits = _perfect_logits(target, num_classes)
    assert float(DiceLoss()(logits, target)) == pytest.approx(0.0, abs=1e-6)
    assert float(CEDiceLoss()(logits, target)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("num_classes", [1, 2])
def test_dice_positive_for_imperfect_prediction(target, num_classes):
    logits = _perfect_logits(target, num_classes)
    shifted = torch.roll(logits, shifts=1, dims=-1)
    assert float(dice_loss(shifted, target)) > 0.1
    assert float(dice_loss(torch.zeros_like(logits), target)) > 0.5


def test_dice_matches_equation_13(target):
    p = torch.rand_like(target).clamp(0.01, 0.99)
    logits = torch.log(p / (1 - p))
    expected = 1 - (2 * (p * target).sum() + 1.0) / (p.sum() + target.sum() + 1.0)
    assert float(dice_loss(logits, target, smooth=1.0)) == pytest.approx(float(expected), rel=1e-5)


def test_two_class_ce_equals_binary_ce_of_logit_difference(target):
    torch.manual_seed(0)
    logits2 = torch.randn(2, 2, 16, 16)
    diff = logits2[:, 1:2] - logits2[:, 0:1]
    assert float(cross_entropy(logits2, target)) == pytest.approx(
        float(F.binary_cross_entropy_with_logits(diff, target)), rel=1e-5
    )
    # class-1 probability and Dice agree between the two parameterisations
    assert float(dice_loss(logits2, target)) == pytest.approx(
        float(dice_loss(diff, target)), rel=1e-5
    )


def test_pos_weight_raises_the_source_pixel_term(target):
    logits = torch.zeros(2, 1, 16, 16)
    assert float(cross_entropy(logits, target, pos_weight=5.0)) > float(
        cross_entropy(logits, target)
    )
    logits2 = torch.zeros(2, 2, 16, 16)
    assert float(cross_entropy(logits2, target, pos_weight=5.0)) > float(
        cross_entropy(logits2, target)
    )


def test_weights_combine_linearly(target):
    torch.manual_seed(1)
    logits = torch.randn(2, 2, 16, 16)
    ce, dc = cross_entropy(logits, target), dice_loss(logits, target)
    loss = CEDiceLoss(ce_weight=2.0, dice_weight=0.5)(logits, target)
    assert float(loss) == pytest.approx(float(2 * ce + 0.5 * dc), rel=1e-6)


def test_focal_reduces_to_bce_with_gamma0_no_alpha(target):
    torch.manual_seed(2)
    logits = torch.randn(2, 1, 16, 16)
    assert float(focal_loss(logits, target, gamma=0.0, alpha=None)) == pytest.approx(
        float(F.binary_cross_entropy_with_logits(logits, target)), rel=1e-5
    )
    # easy pixels are down-weighted: focal < BCE
    assert float(focal_loss(logits, target, gamma=2.0, alpha=None)) < float(
        F.binary_cross_entropy_with_logits(logits, target)
    )
    assert float(FocalLoss()(logits, target)) > 0
    combo = FocalDiceLoss(focal_weight=1.0, dice_weight=1.0)(logits, target)
    assert float(combo) == pytest.approx(
        float(focal_loss(logits, target) + dice_loss(logits, target)), rel=1e-5
    )


def test_deep_supervision_list_is_averaged(target):
    torch.manual_seed(3)
    outs = [torch.randn(2, 2, 16, 16) for _ in range(3)]
    loss = CEDiceLoss()
    assert float(loss(outs, target)) == pytest.approx(
        sum(float(loss(o, target)) for o in outs) / 3, rel=1e-6
    )


def test_target_without_channel_axis_and_bad_shapes(target):
    logits = torch.randn(2, 2, 16, 16)
    assert float(CEDiceLoss()(logits, target[:, 0])) == pytest.approx(
        float(CEDiceLoss()(logits, target))
    )
    with pytest.raises(ValueError, match="does not fit logits"):
        CEDiceLoss()(logits, target[:, :, :8])
    with pytest.raises(ValueError, match="at least one loss weight"):
        SegmentationLoss(0.0, 0.0, 0.0)


def test_gradients_flow(target):
    logits = torch.randn(2, 2, 16, 16, requires_grad=True)
    CEDiceLoss()(logits, target).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
