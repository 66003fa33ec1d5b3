"""The DDIM refinement head: schedule, the unrolled sampler, self-diffusion training terms."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from depth_ros.models import create_model
from depth_ros.models.diffusion import (
    DiffusionRefinementHead,
    ddim_timesteps,
    linear_alpha_bars,
)

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # training/ runs from the repository root; it is not installed
    sys.path.insert(0, str(REPO))

from training.losses import diffusion_depth_loss  # noqa: E402

TINY = {"widths": (8, 8, 16, 16, 16), "depths": (1, 1, 1, 1), "latent_channels": 4,
        "width": 16}


def test_schedule_and_timesteps():
    a = linear_alpha_bars(1000)
    assert a.shape == (1000,) and bool((a[1:] < a[:-1]).all())
    assert float(a[0]) == pytest.approx(1 - 1e-4) and 0 < float(a[-1]) < 1e-4
    assert ddim_timesteps(1000, 4) == [999, 749, 499, 249]
    assert ddim_timesteps(10, 10) == list(range(9, -1, -1))
    with pytest.raises(ValueError, match="sample_steps"):
        ddim_timesteps(10, 0)


def test_one_step_sampler_is_the_ddim_update_by_hand():
    torch.manual_seed(0)
    head = DiffusionRefinementHead([8, 16], latent_channels=4, width=16, train_steps=100,
                                   sample_steps=1).eval()
    features = [torch.randn(1, 8, 8, 12), torch.randn(1, 16, 4, 6)]
    cond = head.condition(features, (8, 12))
    t = 99
    a = head.alpha_bars[t]
    zero = torch.zeros(1, 4, 8, 12)
    eps = head.denoiser(zero, torch.tensor([t]), cond)
    # From z_T = 0 one step lands on the predicted clean latent (ᾱ after the last step is 1).
    expected = ((zero - torch.sqrt(1 - a) * eps) / torch.sqrt(a)).clamp(-1, 1)
    with torch.no_grad():
        torch.testing.assert_close(head.sample(cond), expected)


def test_sampling_is_deterministic_and_depth_is_in_range():
    model = create_model("mono_diffusion", **TINY, max_depth_m=50.0).eval()
    image = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        first, second = model(image), model(image)
    assert first.shape == (2, 1, 64, 96)
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    assert float(first.min()) >= 0.1 and float(first.max()) <= 50.0


def test_self_diffusion_terms_train_every_part():
    torch.manual_seed(1)
    model = create_model("mono_diffusion", **TINY)
    image = torch.rand(2, 3, 32, 64)
    target = torch.rand(2, 1, 32, 64) * 20 + 5
    valid = torch.rand(2, 1, 32, 64) < 0.1  # sparse, LiDAR-like supervision
    terms = model.training_terms(image, torch.Generator().manual_seed(0))
    assert terms["pred_noise"].shape == terms["noise"].shape == terms["latent"].shape
    assert terms["depth"].shape == (2, 1, 32, 64)
    target_latent, latent_mask = model.head.encode_target(target, valid,
                                                          tuple(terms["latent"].shape[-2:]))
    assert latent_mask.shape == (2, 1, 8, 16) and 0 < latent_mask.float().mean() <= 1
    loss = diffusion_depth_loss(terms["pred_noise"], terms["noise"], terms["depth"], target,
                                valid, terms["latent"], target_latent, latent_mask)
    loss.total.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and bool(param.grad.abs().sum() > 0), name


def test_masked_average_pooling_ignores_invalid_pixels():
    head = DiffusionRefinementHead([8], latent_channels=4, width=16)
    depth = torch.full((1, 1, 8, 8), 10.0)
    depth[..., :4, :] = 1000.0  # garbage where there is no ground truth
    valid = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    valid[..., 4:, :] = True
    latent, mask = head.encode_target(depth, valid, (2, 2))
    clean, _ = head.encode_target(torch.full((1, 1, 8, 8), 10.0), valid, (2, 2))
    torch.testing.assert_close(latent, clean)
    assert mask[0, 0].tolist() == [[False, False], [True, True]]


def test_training_lowers_the_objective():
    torch.manual_seed(2)
    model = create_model("mono_diffusion", **TINY)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    image = torch.rand(2, 3, 32, 64)
    target = torch.linspace(5, 30, 64).expand(2, 1, 32, 64).contiguous()
    valid = torch.ones_like(target, dtype=torch.bool)
    values = []
    for step in range(25):
        terms = model.training_terms(image, torch.Generator().manual_seed(step))
        target_latent, latent_mask = model.head.encode_target(
            target, valid, tuple(terms["latent"].shape[-2:]))
        loss = diffusion_depth_loss(terms["pred_noise"], terms["noise"], terms["depth"],
                                    target, valid, terms["latent"], target_latent, latent_mask)
        optimizer.zero_grad()
        loss.total.backward()
        optimizer.step()
        values.append(float(loss.pixel.detach()))
    assert sum(values[-5:]) / 5 < 0.7 * sum(values[:5]) / 5
