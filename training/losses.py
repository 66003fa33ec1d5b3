"""Depth losses. Every loss takes an explicit valid mask: ground truth is sparse or partial
(LiDAR, sky), and a mask is never inferred from the target's values.

Tensors are N×1×H×W (or any shape for the element-wise losses); per-image losses average
over the images that have valid pixels, so one empty frame never turns a batch's loss NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812 - the conventional name
from torch import nn


def _check_shapes(pred: torch.Tensor, target: torch.Tensor, valid_mask: torch.Tensor) -> None:
    if pred.shape != target.shape or pred.shape != valid_mask.shape:
        raise ValueError(f"shapes differ: pred {tuple(pred.shape)}, target "
                         f"{tuple(target.shape)}, mask {tuple(valid_mask.shape)}")
    if valid_mask.dtype != torch.bool:
        raise ValueError(f"valid_mask must be bool, got {valid_mask.dtype}")


def silog_loss(pred: torch.Tensor, target: torch.Tensor, valid_mask: torch.Tensor,
               lambd: float = 0.85, eps: float = 1e-8) -> torch.Tensor:
    """Scale-invariant log loss (Eigen et al. 2014, as in BTS/AdaBins/Depth-Anything-V2).

    ``sqrt(mean(d²) − λ · mean(d)²)`` with ``d = ln target − ln pred`` over the pixels where
    ``valid_mask`` is true, pooled over the batch. λ = 1 is fully scale-invariant; λ < 1 keeps
    part of the absolute scale in the loss, which a metric model needs.

    Args:
        pred: predicted depth, positive, any shape.
        target: ground-truth depth, same shape; values outside the mask are ignored.
        valid_mask: bool, same shape.
        lambd: weight of the scale-invariance term, in [0, 1].
        eps: floor under the square root, so a perfect prediction has a finite gradient.

    Returns:
        A scalar; zero (still attached to ``pred``) when no pixel is valid.
    """
    _check_shapes(pred, target, valid_mask)
    if not valid_mask.any():
        return pred.sum() * 0.0
    diff = torch.log(target[valid_mask]) - torch.log(pred[valid_mask])
    value = (diff**2).mean() - lambd * diff.mean() ** 2
    return torch.sqrt(value.clamp(min=eps))


def silog_scale_loss(pred: torch.Tensor, target: torch.Tensor, valid_mask: torch.Tensor,
                     lambd: float = 0.85, eps: float = 1e-8) -> torch.Tensor:
    """The scale part of SILog alone, ``sqrt((1 − λ) · mean(d)²)``: the DepthFormer /
    Monocular-Depth-Estimation-Toolbox warm-up, which fits the global scale before the
    structure so that a freshly initialised metric head does not start far off."""
    _check_shapes(pred, target, valid_mask)
    if not valid_mask.any():
        return pred.sum() * 0.0
    diff = torch.log(target[valid_mask]) - torch.log(pred[valid_mask])
    return torch.sqrt(((1.0 - lambd) * diff.mean() ** 2).clamp(min=eps))


class SiLogLoss(nn.Module):
    """Module form of ``silog_loss``: ``forward(pred, target, valid_mask)``.

    With ``warmup_steps`` > 0 the first that many calls in training mode return
    ``silog_scale_loss`` instead (the DepthFormer warm-up); the count is a buffer, so it is
    saved and restored with the module's state dict.

    Args:
        lambd: weight of the scale-invariance term, in [0, 1].
        warmup_steps: training calls that use the scale-only warm-up loss.
    """

    def __init__(self, lambd: float = 0.85, warmup_steps: int = 0) -> None:
        super().__init__()
        if not 0.0 <= lambd <= 1.0:
            raise ValueError(f"lambd must be in [0, 1], got {lambd}")
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be non-negative, got {warmup_steps}")
        self.lambd = lambd
        self.warmup_steps = int(warmup_steps)
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def forward(self, pred: torch.Tensor, target: torch.Tensor,
                valid_mask: torch.Tensor) -> torch.Tensor:
        """The loss over the valid pixels."""
        if self.training and int(self.calls) < self.warmup_steps:
            self.calls += 1
            return silog_scale_loss(pred, target, valid_mask, self.lambd)
        return silog_loss(pred, target, valid_mask, self.lambd)


def masked_l1_loss(pred: torch.Tensor, target: torch.Tensor,
                   valid_mask: torch.Tensor) -> torch.Tensor:
    """Mean |pred − target| over the valid elements (zero, still attached, when none)."""
    _check_shapes(pred, target, valid_mask)
    if not valid_mask.any():
        return pred.sum() * 0.0
    return (pred[valid_mask] - target[valid_mask]).abs().mean()


def _per_image(t: torch.Tensor) -> torch.Tensor:
    if t.dim() != 4 or t.shape[1] != 1:
        raise ValueError(f"expected N×1×H×W, got {tuple(t.shape)}")
    return t.flatten(1)


def align_scale_shift(pred: torch.Tensor, target: torch.Tensor, valid_mask: torch.Tensor
                      ) -> torch.Tensor:
    """``s · pred + t`` with the per-image least-squares (s, t) against ``target`` over the
    valid pixels (MiDaS's closed form); images with fewer than two valid pixels, or a flat
    prediction, are returned unchanged. Gradients flow through s and t."""
    _check_shapes(pred, target, valid_mask)
    p, g, m = _per_image(pred), _per_image(target), _per_image(valid_mask).to(pred.dtype)
    a00 = (m * p * p).sum(1)
    a01 = (m * p).sum(1)
    a11 = m.sum(1)
    b0 = (m * p * g).sum(1)
    b1 = (m * g).sum(1)
    det = a00 * a11 - a01 * a01
    ok = (a11 >= 2) & (det.abs() > 1e-12 * a11.clamp(min=1) ** 2)
    safe = torch.where(ok, det, torch.ones_like(det))
    scale = torch.where(ok, (a11 * b0 - a01 * b1) / safe, torch.ones_like(det))
    shift = torch.where(ok, (a00 * b1 - a01 * b0) / safe, torch.zeros_like(det))
    return pred * scale.view(-1, 1, 1, 1) + shift.view(-1, 1, 1, 1)


def _median_normalise(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """(x − median) / mean |x − median| over one image's valid pixels (Depth Anything)."""
    values = x[m]
    t = values.median()
    s = (values - t).abs().mean().clamp(min=1e-6)
    return (values - t) / s


def ssi_loss(pred: torch.Tensor, target: torch.Tensor, valid_mask: torch.Tensor,
             method: str = "median") -> torch.Tensor:
    """Scale-and-shift-invariant loss for relative (affine-invariant) predictions.

    ``median``: Depth Anything's affine-invariant loss — each image's prediction and target
    are shifted by their median and divided by their mean absolute deviation over the valid
    pixels, then compared by mean |·|. ``lstsq``: MiDaS's — the prediction is aligned to the
    target by least squares (``align_scale_shift``), then mean |·|. Both are averaged over the
    images with at least two valid pixels. Use it in the same space as the model's output
    (disparity for an ``inverse_depth`` model).
    """
    _check_shapes(pred, target, valid_mask)
    if method not in ("median", "lstsq"):
        raise ValueError(f"method must be 'median' or 'lstsq', got {method!r}")
    if method == "lstsq":
        pred = align_scale_shift(pred, target, valid_mask)
    losses = []
    for p, g, m in zip(_per_image(pred), _per_image(target), _per_image(valid_mask),
                       strict=True):
        if int(m.sum()) < 2:
            continue
        if method == "median":
            losses.append((_median_normalise(p, m) - _median_normalise(g, m)).abs().mean())
        else:
            losses.append((p[m] - g[m]).abs().mean())
    if not losses:
        return pred.sum() * 0.0
    return torch.stack(losses).mean()


@dataclass(frozen=True)
class DiffusionLossTerms:
    """The DiffusionDepth objective's terms and their weighted sum."""

    total: torch.Tensor
    ddim: torch.Tensor
    pixel: torch.Tensor
    latent: torch.Tensor


def diffusion_depth_loss(pred_noise: torch.Tensor, true_noise: torch.Tensor,
                         pred_depth: torch.Tensor, target: torch.Tensor,
                         valid_mask: torch.Tensor, pred_latent: torch.Tensor,
                         target_latent: torch.Tensor, latent_mask: torch.Tensor,
                         weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
                         ) -> DiffusionLossTerms:
    """DiffusionDepth's ``L = L_ddim + L_pixel + L_latent`` (each with a weight).

    ``L_ddim``: mean squared error between the noise the denoiser predicts and the noise that
    was added to the (self-diffused) latent, over every latent element. ``L_pixel``: masked
    L1 between the decoded depth and the sparse ground truth over ``valid_mask``.
    ``L_latent``: masked L1 between the refined latent and the latent of the ground truth,
    over ``latent_mask`` (the validity mask at latent resolution; broadcast over channels).
    """
    if pred_noise.shape != true_noise.shape:
        raise ValueError(f"noise shapes differ: {tuple(pred_noise.shape)} and "
                         f"{tuple(true_noise.shape)}")
    if pred_latent.shape != target_latent.shape:
        raise ValueError(f"latent shapes differ: {tuple(pred_latent.shape)} and "
                         f"{tuple(target_latent.shape)}")
    ddim = F.mse_loss(pred_noise, true_noise)
    pixel = masked_l1_loss(pred_depth, target, valid_mask)
    mask = latent_mask.expand_as(pred_latent)
    latent = masked_l1_loss(pred_latent, target_latent, mask.contiguous())
    w_ddim, w_pixel, w_latent = weights
    return DiffusionLossTerms(w_ddim * ddim + w_pixel * pixel + w_latent * latent, ddim, pixel,
                              latent)


@dataclass(frozen=True)
class CompletionLossTerms:
    """The depth-completion objective's terms and their weighted sum."""

    total: torch.Tensor
    depth: torch.Tensor
    initial: torch.Tensor
    confidence: torch.Tensor


def weighted_depth_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor,
                        l2_weight: float = 0.1, log_weight: float = 10.0) -> torch.Tensor:
    """``mean_w(|e|) + l2_weight · mean_w(e²) + log_weight · mean_w(|log pred − log target|)``
    with ``e = pred − target`` in metres, weighted by ``weight`` (≥ 0, 0 = not in the loss).

    L1 + L2 in metres is the completion benchmarks' recipe (their RMSE and MAE); the log term,
    a relative error, keeps near pixels (small errors in metres) from being ignored.
    ``l2_weight`` is per metre and ``log_weight`` in metres, so every term is in metres.
    Zero, still attached, when every weight is 0.
    """
    if pred.shape != target.shape or pred.shape != weight.shape:
        raise ValueError(f"shapes differ: pred {tuple(pred.shape)}, target "
                         f"{tuple(target.shape)}, weight {tuple(weight.shape)}")
    total = weight.sum()
    if not total > 0:
        return pred.sum() * 0.0
    valid = weight > 0
    safe = torch.where(valid, target, torch.ones_like(target))
    error = pred - safe
    log_error = torch.log(pred.clamp(min=1e-3)) - torch.log(safe.clamp(min=1e-3))
    per_pixel = error.abs() + l2_weight * error**2 + log_weight * log_error.abs()
    return (per_pixel * weight).sum() / total


def confidence_target(pred: torch.Tensor, target: torch.Tensor, threshold: float
                      ) -> torch.Tensor:
    """1 where |pred − target| / target < ``threshold``, else 0 (no gradient)."""
    with torch.no_grad():
        relative = (pred - target).abs() / target.clamp(min=1e-3)
        return (relative < threshold).to(pred.dtype)


def trust_loss(trust_logit: torch.Tensor, sparse_depth: torch.Tensor, target: torch.Tensor,
               valid_mask: torch.Tensor, threshold: float) -> torch.Tensor:
    """Binary cross-entropy of a completion model's trust (as its logit, so a saturated
    trust still learns) against whether each input return is right: 1 where
    |return − target| / target < ``threshold``, 0 where the LiDAR saw past the surface the
    camera sees (background through a window or past an edge), over the returns that have
    ground truth. Zero, still attached, where there are none."""
    _check_shapes(trust_logit, target, valid_mask)
    returns = valid_mask & (sparse_depth > 0)
    if not returns.any():
        return trust_logit.sum() * 0.0
    wanted = confidence_target(sparse_depth, target, threshold)
    return F.binary_cross_entropy_with_logits(trust_logit[returns], wanted[returns])


def completion_loss(outputs: dict[str, torch.Tensor], target: torch.Tensor,
                    valid_mask: torch.Tensor, far_mask: torch.Tensor | None = None,
                    far_weight: float = 0.1, l2_weight: float = 0.1, log_weight: float = 10.0,
                    initial_weight: float = 0.5, confidence_weight: float = 0.1,
                    confidence_threshold: float = 0.05) -> CompletionLossTerms:
    """Loss of a completion model's ``aux`` outputs (``depth``, ``initial``, ``confidence``).

    ``weighted_depth_loss`` on the final depth, plus ``initial_weight`` × the same on the
    depth before propagation (deep supervision of the residual), plus ``confidence_weight`` ×
    the binary cross-entropy of ``confidence`` against ``confidence_target`` of the final
    depth. Pixels in ``far_mask`` (rendered sky, trained as the far bound) are averaged apart,
    without the L2 term, weighted ``far_weight``, and left out of the confidence term.

    Args:
        outputs: the model's ``forward(..., aux=True)`` dict.
        target: ground-truth depth N×1×H×W, metres (already clamped to the model's range).
        valid_mask: bool, where ``target`` holds.
        far_mask: bool, the valid pixels that are "far" rather than measured (or None).
    """
    depth = outputs["depth"]
    _check_shapes(depth, target, valid_mask)
    measured = valid_mask if far_mask is None else valid_mask & ~far_mask
    far = None if far_mask is None else valid_mask & far_mask

    def depth_terms(pred: torch.Tensor) -> torch.Tensor:
        value = weighted_depth_loss(pred, target, measured.to(pred.dtype), l2_weight,
                                    log_weight)
        if far is not None and far_weight > 0:
            # "Far" has no true value to square an error against: L1 and log terms only.
            value = value + far_weight * weighted_depth_loss(pred, target, far.to(pred.dtype),
                                                             0.0, log_weight)
        return value

    final = depth_terms(depth)
    initial = depth_terms(outputs["initial"])
    if measured.any():
        wanted = confidence_target(depth, target, confidence_threshold)
        probability = outputs["confidence"].clamp(1e-6, 1.0 - 1e-6)
        confidence = F.binary_cross_entropy(probability[measured], wanted[measured])
    else:
        confidence = depth.sum() * 0.0
    total = final + initial_weight * initial + confidence_weight * confidence
    return CompletionLossTerms(total, final, initial, confidence)
