"""Every loss against values worked out by hand on small tensors, with its mask."""

from __future__ import annotations

import math

import pytest
import torch

from training.losses import (
    SiLogLoss,
    align_scale_shift,
    diffusion_depth_loss,
    masked_l1_loss,
    silog_scale_loss,
    ssi_loss,
)


def image(*rows: list[float]) -> torch.Tensor:
    """A 1×1×H×W tensor from rows."""
    return torch.tensor(rows, dtype=torch.float64)[None, None]


def test_masked_l1_by_hand():
    pred = torch.tensor([1.0, 2.0, 3.0, 4.0])
    target = torch.tensor([2.0, 2.0, 5.0, 100.0])  # the last is masked out
    mask = torch.tensor([True, True, True, False])
    assert float(masked_l1_loss(pred, target, mask)) == pytest.approx(1.0)


@pytest.mark.parametrize("loss", [masked_l1_loss, silog_scale_loss, ssi_loss])
def test_empty_mask_gives_zero_with_a_gradient(loss):
    pred = torch.full((1, 1, 3, 3), 2.0, requires_grad=True)
    value = loss(pred, torch.ones(1, 1, 3, 3), torch.zeros(1, 1, 3, 3, dtype=torch.bool))
    value.backward()
    assert float(value.detach()) == 0.0 and pred.grad is not None


def test_mask_must_be_bool_and_shapes_must_match():
    with pytest.raises(ValueError, match="must be bool"):
        masked_l1_loss(torch.ones(3), torch.ones(3), torch.ones(3))
    with pytest.raises(ValueError, match="shapes differ"):
        masked_l1_loss(torch.ones(3), torch.ones(4), torch.ones(3, dtype=torch.bool))


def test_silog_warm_up_fits_the_scale_first():
    pred = torch.ones(4)
    target = torch.full((4,), math.e)  # d = ln e − ln 1 = 1 everywhere
    mask = torch.ones(4, dtype=torch.bool)
    assert float(silog_scale_loss(pred, target, mask)) == pytest.approx(math.sqrt(0.15))
    loss = SiLogLoss(0.85, warmup_steps=2)
    loss.eval()  # evaluation calls never use up the warm-up
    assert float(loss(pred, target, mask)) == pytest.approx(math.sqrt(1 - 0.85))
    loss.train()
    values = [float(loss(pred, target, mask)) for _ in range(3)]
    # Warm-up: sqrt(0.15 · 1²); after it full SILog: sqrt(1 − 0.85 · 1²), the same here, so
    # check on a target where the two differ.
    target2 = torch.tensor([math.e, math.e, 1.0, 1.0])  # d = 1, 1, 0, 0
    fresh = SiLogLoss(0.85, warmup_steps=1).train()
    warm = float(fresh(pred, target2, mask))
    after = float(fresh(pred, target2, mask))
    assert warm == pytest.approx(math.sqrt(0.15 * 0.5**2))
    assert after == pytest.approx(math.sqrt(0.5 - 0.85 * 0.25))
    assert values == pytest.approx([math.sqrt(0.15)] * 3)
    assert int(loss.calls) == 2 and "calls" in loss.state_dict()


def test_align_scale_shift_recovers_an_affine_map():
    pred = image([0.0, 1.0, 2.0], [3.0, 4.0, 5.0])
    target = 2.5 * pred - 1.0
    target[..., 1, 2] = 99.0  # an outlier outside the mask must not matter
    mask = torch.ones_like(pred, dtype=torch.bool)
    mask[..., 1, 2] = False
    aligned = align_scale_shift(pred, target, mask)
    torch.testing.assert_close(aligned[mask], target[mask])
    assert float(ssi_loss(pred, target, mask, method="lstsq")) == pytest.approx(0.0, abs=1e-9)


def test_lstsq_ssi_by_hand():
    # Fit of y = [1, 1, 4] on x = [0, 1, 2]: s = 1.5, t = 0.5 → [0.5, 2, 3.5], MAE 2/3.
    pred, target = image([0.0, 1.0, 2.0]), image([1.0, 1.0, 4.0])
    mask = torch.ones_like(pred, dtype=torch.bool)
    torch.testing.assert_close(align_scale_shift(pred, target, mask),
                               image([0.5, 2.0, 3.5]))
    assert float(ssi_loss(pred, target, mask, method="lstsq")) == pytest.approx(2.0 / 3.0)


def test_median_ssi_by_hand_and_invariance():
    # pred [1, 2, 3]: median 2, MAD 2/3 → [−1.5, 0, 1.5]; target [2, 4, 12]: median 4,
    # MAD 10/3 → [−0.6, 0, 2.4]; mean |difference| = (0.9 + 0 + 0.9) / 3 = 0.6.
    pred, target = image([1.0, 2.0, 3.0]), image([2.0, 4.0, 12.0])
    mask = torch.ones_like(pred, dtype=torch.bool)
    assert float(ssi_loss(pred, target, mask)) == pytest.approx(0.6)
    assert float(ssi_loss(7.0 * pred + 3.0, target, mask)) == pytest.approx(0.6)


def test_ssi_averages_over_images_with_data():
    pred = torch.cat([image([1.0, 2.0, 3.0]), image([5.0, 5.0, 5.0])])
    target = torch.cat([image([2.0, 4.0, 12.0]), image([1.0, 2.0, 3.0])])
    mask = torch.ones_like(pred, dtype=torch.bool)
    mask[1] = False  # the second image has no ground truth: it must not dilute the first
    assert float(ssi_loss(pred, target, mask)) == pytest.approx(0.6)


def test_diffusion_depth_objective_by_hand():
    noise = torch.tensor([[1.0, -1.0], [0.5, 0.0]])[None, None]
    pred_noise = noise + torch.tensor([[1.0, 1.0], [1.0, 1.0]])  # MSE 1
    depth = image([2.0, 4.0])
    target = image([3.0, 0.0])  # only the first pixel has ground truth: L1 = 1
    valid = target > 0
    latent = torch.zeros(1, 2, 2, 2)
    target_latent = torch.ones(1, 2, 2, 2) * 2.0
    latent_mask = torch.tensor([[True, False], [False, False]])[None, None]  # 1 of 4 cells
    terms = diffusion_depth_loss(pred_noise, noise, depth, target, valid, latent,
                                 target_latent, latent_mask, weights=(1.0, 0.5, 0.25))
    assert float(terms.ddim) == pytest.approx(1.0)
    assert float(terms.pixel) == pytest.approx(1.0)
    assert float(terms.latent) == pytest.approx(2.0)  # |0 − 2| over the 2 channels × 1 cell
    assert float(terms.total) == pytest.approx(1.0 + 0.5 + 0.5)
