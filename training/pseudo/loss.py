"""The student's loss against pseudo-labels: SILog for metric labels, the scale-and-shift-
invariant loss for relative ones, aligned separately inside and outside CutMix boxes."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from training.losses import silog_loss, ssi_loss
from training.pseudo.labels import LABEL_KINDS


def _ssi_regions(inverse: torch.Tensor, label: torch.Tensor, mask: torch.Tensor,
                 region: torch.Tensor, method: str) -> torch.Tensor:
    """Per image, the SSI loss inside and outside ``region`` separately, weighted by their
    shares of the valid pixels (Depth Anything's CutMix loss), averaged over the images."""
    losses = []
    for i in range(inverse.shape[0]):
        total = int(mask[i].sum())
        if total < 2:
            continue
        loss = inverse.new_zeros(())
        for part in (region[i], ~region[i]):
            m = (mask[i] & part)[None]
            count = int(m.sum())
            if count >= 2:
                loss = loss + (count / total) * ssi_loss(inverse[i:i + 1], label[i:i + 1], m,
                                                         method)
        losses.append(loss)
    if not losses:
        return inverse.sum() * 0.0
    return torch.stack(losses).mean()


def pseudo_label_loss(pred_depth: torch.Tensor, label: torch.Tensor, mask: torch.Tensor,
                      label_kind: str | Sequence[str], region: torch.Tensor | None = None,
                      silog_lambda: float = 0.85, ssi_method: str = "median",
                      depth_range: tuple[float, float] | None = None,
                      student_output: str = "metric") -> torch.Tensor:
    """The student's loss against pseudo-labels (N×1×H×W tensors).

    Metric labels: SILog of the predicted depth against the label (clamped into
    ``depth_range`` when given, as the labelled loss does). Relative labels (affine-invariant
    inverse depth): the scale-and-shift-invariant loss of the student's inverse depth
    (``1 / pred_depth``, or ``pred_depth`` itself for a ``relative`` student) against the
    label; with a CutMix ``region`` the pixels inside and outside it are aligned separately,
    since each came from a different image whose label has its own scale and shift.

    Args:
        pred_depth: the student's output, metres (positive) for a metric student.
        label: the pseudo-labels.
        mask: bool, where the label is valid.
        label_kind: ``metric`` or ``relative`` (or one per sample, all equal).
        region: bool, the CutMix boxes (``PseudoBatch.region``); None: no CutMix.
        silog_lambda: SILog's λ for metric labels.
        ssi_method: ``median`` (Depth Anything) or ``lstsq`` (MiDaS) for relative labels.
        depth_range: (min, max) metres the metric labels are clamped into.
        student_output: ``metric`` (depth in metres) or ``relative`` (inverse depth).
    """
    kinds = {label_kind} if isinstance(label_kind, str) else set(label_kind)
    if len(kinds) != 1 or not kinds <= set(LABEL_KINDS):
        raise ValueError(f"label_kind must be one of {LABEL_KINDS} for the whole batch, got "
                         f"{sorted(kinds)}")
    if student_output not in ("metric", "relative"):
        raise ValueError(f"student_output must be metric or relative, got {student_output!r}")
    (kind,) = kinds
    if kind == "metric":
        if student_output != "metric":
            raise ValueError("metric pseudo-labels need a metric student")
        mask = mask & (label > 0)
        target = label if depth_range is None else label.clamp(*depth_range)
        return silog_loss(pred_depth, target, mask, silog_lambda)
    inverse = pred_depth if student_output == "relative" else 1.0 / pred_depth.clamp(min=1e-6)
    if region is None:
        return ssi_loss(inverse, label, mask, ssi_method)
    return _ssi_regions(inverse, label, mask, region, ssi_method)
