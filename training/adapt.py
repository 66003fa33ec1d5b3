"""Adapting a model to a robot's own recording (``data.dataset: bag``): the training loss of
bag items and the report after training.

The loss of a batch from ``training.data.adapt`` (bag frames and engine frames together,
one forward pass):

- engine frames: what normal training uses — SILog against the exact depth (mono; the
  engine's 0 is sky, trained as the far bound) or the completion loss (fusion);
- bag frames: the LiDAR as sparse supervision, occlusion-filtered (``training.selfsup``):
  log-L1 (mono) or the completion loss with a share of the input returns held out and
  supervised (fusion, ``loss.holdout_fraction``/``holdout_weight``); plus the photometric loss
  against t−1 and t+1 (``loss.photometric_weight``) with edge-aware smoothness.

After the last step (rank 0, ``finish_adaptation``): the initial and the adapted model are
scored on the held-out bag frames against the LiDAR (mono: AbsRel and RMSE over every return;
fusion: RMSE and MAE over the 20 % of returns withheld from the input), the adapted model is
exported to ONNX with the bag camera's intrinsics in its metadata, and the model card
template (``training/adapt_model_card.md``) is filled in.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from depth_ros.metrics import depth_metrics
from depth_ros.models import create_model
from training.losses import completion_loss, weighted_depth_loss
from training.selfsup import occlusion_filter, photometric_loss, sparse_supervision_loss

if TYPE_CHECKING:
    from training.trainer import Trainer

LOG = logging.getLogger("depth_ros.training")
CARD_TEMPLATE = Path(__file__).with_name("adapt_model_card.md")


def _zero(like: torch.Tensor) -> torch.Tensor:
    return like.sum() * 0.0


def adapt_loss(trainer: Trainer, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The loss of one micro-batch of bag items (see the module docstring)."""
    device = trainer.device
    image, depth, sparse, sources, K, poses, ok, scale, is_bag = (  # noqa: N806
        t.to(device, non_blocking=True) for t in batch)
    model, loss_config = trainer.model, trainer.config.loss
    low, high = model.min_depth_m, model.max_depth_m
    bag, engine = is_bag, ~is_bag
    fusion = trainer.completion
    held = None
    with torch.autocast(device.type, dtype=trainer.amp_dtype, enabled=trainer.amp):
        if fusion:
            given = sparse
            if loss_config.holdout_fraction > 0:
                held = (sparse > 0) & (torch.rand_like(sparse) < loss_config.holdout_fraction)
                given = torch.where(held, torch.zeros_like(sparse), sparse)
            outputs = trainer.net(image, given, aux=True)
            outputs = {k: v.float() for k, v in outputs.items()}
            pred = outputs["depth"]
        else:
            pred = trainer.net(image).float()
    total = _zero(pred)
    if engine.any():
        target = depth[engine]
        if fusion:
            far = target <= 0
            target = torch.where(far, torch.full_like(target, high), target)
            terms = completion_loss({k: v[engine] for k, v in outputs.items()},
                                    target.clamp(low, high), torch.ones_like(far), far,
                                    loss_config.far_weight, loss_config.l2_weight,
                                    loss_config.log_weight, loss_config.initial_weight,
                                    loss_config.confidence_weight, model.confidence_threshold)
            total = total + terms.total
        else:
            # Rendered depth: 0 is sky, trained as the far bound (as the engine's models).
            target = torch.where(target > 0, target, torch.full_like(target, high))
            total = total + trainer.loss_fn(pred[engine], target.clamp(low, high),
                                            torch.ones_like(target, dtype=torch.bool))
    if not bag.any():
        return total
    lidar = depth[bag]
    keep = occlusion_filter(lidar, loss_config.occlusion_radius_px)
    target = torch.where(keep, lidar, torch.ones_like(lidar)).clamp(low, high)
    if fusion:
        terms = completion_loss({k: v[bag] for k, v in outputs.items()}, target, keep, None,
                                loss_config.far_weight, loss_config.l2_weight,
                                loss_config.log_weight, loss_config.initial_weight,
                                loss_config.confidence_weight, model.confidence_threshold)
        sparse_term = terms.total
        if held is not None and loss_config.holdout_weight > 0:
            weight = (held[bag] & keep).to(pred.dtype)
            sparse_term = sparse_term + loss_config.holdout_weight * weighted_depth_loss(
                pred[bag], target, weight, loss_config.l2_weight, loss_config.log_weight)
    else:
        sparse_term = sparse_supervision_loss(pred[bag], target, keep,
                                              loss_config.occlusion_radius_px)
    total = total + loss_config.sparse_weight * sparse_term
    if loss_config.photometric_weight > 0 and ok[bag].any():
        # The model's depth is at its training focal length: back to metres for the warp.
        metres = pred[bag] / scale[bag].view(-1, 1, 1, 1)
        photo = photometric_loss(image[bag], sources[bag], metres, K[bag], poses[bag],
                                 ok[bag], loss_config.smoothness_weight)
        total = total + loss_config.photometric_weight * photo.total
    return total


# --- After training --------------------------------------------------------------------------


@torch.no_grad()
def score_on_bag(model: torch.nn.Module, val_set: Any) -> dict[str, float]:
    """Mean per-frame metrics of ``model`` on the held-out bag frames, in metres, against
    the LiDAR (``training.data.adapt.BagValidation``): ``abs_rel``, ``rmse``, ``mae``, ``a1``
    and the number of reference returns."""
    model = model.eval()
    per_frame = []
    returns = 0
    for item in range(len(val_set)):
        image, reference, *given = val_set[item]
        inputs = (image[None], *(g[None] for g in given))
        pred = model(*inputs)
        if isinstance(pred, tuple | list):
            pred = pred[0]
        pred, ref = pred[0, 0].float().numpy(), reference[0].numpy()
        mask = ref > 0
        returns += int(mask.sum())
        metrics = depth_metrics(pred, ref, mask=mask, max_depth=model.max_depth_m)
        valid = mask & (ref < model.max_depth_m)
        clipped = np.clip(pred[valid], 1e-3, model.max_depth_m)
        metrics["mae"] = float(np.abs(clipped - ref[valid]).mean()) if valid.any() else \
            float("nan")
        per_frame.append(metrics)
    out = {key: float(np.nanmean([m[key] for m in per_frame]))
           for key in ("abs_rel", "rmse", "mae", "a1")}
    out["reference_returns"] = returns
    return out


def initial_model(trainer: Trainer) -> torch.nn.Module:
    """The model as it was before adapting: the configured model with ``init_checkpoint``'s
    weights (or its own initialisation)."""
    from training.checkpoint import load_checkpoint

    config = trainer.config
    model = create_model(config.model.name, **config.model.kwargs)
    if config.init_checkpoint:
        model.load_state_dict(load_checkpoint(config.init_checkpoint)["state_dict"])
    return model.eval()


def camera_metadata(frames: Any) -> dict[str, str]:
    """The bag camera's intrinsics for the ONNX metadata: ``camera_K`` (row-major 3×3 as
    JSON, of the first frame), ``camera_width``, ``camera_height``."""
    K = np.asarray(frames.K[0], np.float64)  # noqa: N806
    return {"camera_K": json.dumps([round(float(v), 6) for v in K.ravel()]),
            "camera_width": str(int(frames.rgb.shape[2])),
            "camera_height": str(int(frames.rgb.shape[1]))}


def finish_adaptation(trainer: Trainer, export: bool = True) -> dict[str, Any]:
    """Score the initial and the adapted model on the held-out bag frames, export the
    adapted one (``<run dir>/adapted.onnx``, with the camera's intrinsics), and write
    ``adapt_report.json`` and ``MODEL_CARD.md`` into the run directory; returns the report.
    Rank 0 only."""
    from training.export import export_onnx

    val = trainer.val_set
    before = score_on_bag(initial_model(trainer), val)
    after = score_on_bag(trainer.eval_model, val)
    frames, config = val.frames, trainer.config
    report = {"bag": frames.source, "names": list(frames.names),
              "train_frames": list(trainer.train_set.bag.indices),
              "scored_frames": list(val.indices), "steps": trainer.step,
              "kind": trainer.model.kind, "before": before, "after": after,
              "init_checkpoint": config.init_checkpoint}
    run_dir = trainer.run_dir
    if export:
        extra = {**camera_metadata(frames), "adapted_from": config.init_checkpoint or "scratch",
                 "adapted_on": frames.source}
        path = export_onnx(trainer.eval_model, trainer.metadata, run_dir / "adapted.onnx",
                           config.data.input_height, config.data.input_width, extra)
        report["onnx"] = str(path)
    (run_dir / "adapt_report.json").write_text(json.dumps(report, indent=2) + "\n")
    (run_dir / "MODEL_CARD.md").write_text(model_card(report, trainer))
    LOG.info("held-out bag frames %s: AbsRel %.4f -> %.4f, RMSE %.3f -> %.3f m, MAE %.3f -> "
             "%.3f m", val.indices, before["abs_rel"], after["abs_rel"], before["rmse"],
             after["rmse"], before["mae"], after["mae"])
    return report


def _ranges(indices: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2, 5"``."""
    parts, start = [], None
    for i, value in enumerate(indices):
        if start is None:
            start = value
        if i + 1 == len(indices) or indices[i + 1] != value + 1:
            parts.append(str(start) if start == value else f"{start}-{value}")
            start = None
    return ", ".join(parts)


def model_card(report: dict[str, Any], trainer: Trainer) -> str:
    """``training/adapt_model_card.md`` filled in with the run's figures."""
    before, after = report["before"], report["after"]
    reference = ("every LiDAR return" if report["kind"] == "mono"
                 else "the 20 % of LiDAR returns withheld from the model's input")
    rows = "\n".join(f"| {name} | {before[key]:.4f} | {after[key]:.4f} |"
                     for name, key in (("AbsRel", "abs_rel"), ("RMSE (m)", "rmse"),
                                       ("MAE (m)", "mae"), ("δ < 1.25", "a1")))
    config = trainer.config
    return CARD_TEMPLATE.read_text().format(
        name=config.name, architecture=config.model.name, kind=report["kind"],
        init=report["init_checkpoint"] or "its own initialisation", bag=report["bag"],
        train_frames=_ranges(report["train_frames"]),
        scored_frames=_ranges(report["scored_frames"]), steps=report["steps"],
        engine=config.data.mix_engine_root or "none",
        ratio=config.data.mix_engine_ratio if config.data.mix_engine_root else 0,
        reference=reference, returns=after["reference_returns"], rows=rows,
        onnx=report.get("onnx", "not exported"),
        photometric=config.loss.photometric_weight, sparse=config.loss.sparse_weight)
