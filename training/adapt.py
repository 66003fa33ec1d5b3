"""Adapting a model to a robot's own recording (``data.dataset: bag``): the report after
training (the loss of bag items is ``training.selfsup.bag_batch_loss``).

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
from typing import Any

import numpy as np
import torch

from depth_ros.completion import ClassicalCompletion
from depth_ros.metrics import depth_metrics
from depth_ros.models import create_model

LOG = logging.getLogger("depth_ros.training")
CARD_TEMPLATE = Path(__file__).with_name("adapt_model_card.md")


# --- After training --------------------------------------------------------------------------


def _score(predict: Any, val_set: Any, max_depth_m: float) -> dict[str, float]:
    """Mean per-frame metrics of ``predict(item) -> H×W metres`` (NaN: no estimate) on the
    held-out frames against their LiDAR reference."""
    per_frame = []
    returns = 0
    for item in range(len(val_set)):
        values = val_set[item]
        pred, ref = predict(values), values[1][0].numpy()
        mask = ref > 0
        returns += int(mask.sum())
        metrics = depth_metrics(pred, ref, mask=mask, max_depth=max_depth_m)
        valid = mask & (ref < max_depth_m) & np.isfinite(pred)
        clipped = np.clip(pred[valid], 1e-3, max_depth_m)
        metrics["mae"] = (float(np.abs(clipped - ref[valid]).mean()) if valid.any()
                          else float("nan"))
        per_frame.append(metrics)
    out = {key: float(np.nanmean([m[key] for m in per_frame]))
           for key in ("abs_rel", "rmse", "mae", "a1")}
    out["reference_returns"] = returns
    return out


@torch.no_grad()
def score_on_bag(model: torch.nn.Module, val_set: Any) -> dict[str, float]:
    """Mean per-frame metrics of ``model`` on the held-out bag frames, in metres, against
    the LiDAR (``training.data.adapt.BagValidation``): ``abs_rel``, ``rmse``, ``mae``, ``a1``
    and the number of reference returns."""
    model = model.eval()

    def predict(values: tuple[torch.Tensor, ...]) -> np.ndarray:
        image, _, *given = values
        pred = model(image[None], *(g[None] for g in given))
        if isinstance(pred, tuple | list):  # (depth, confidence)
            pred = pred[0]
        return pred[0, 0].float().numpy()

    return _score(predict, val_set, model.max_depth_m)


def ip_basic_on_bag(val_set: Any, max_depth_m: float) -> dict[str, float]:
    """``score_on_bag`` of IP-Basic (``depth_ros.completion``) on the same input returns:
    the classical baseline of every fusion table."""
    completion = ClassicalCompletion(max_depth_m=max_depth_m)

    def predict(values: tuple[torch.Tensor, ...]) -> np.ndarray:
        image, _, given = values
        rgb = (image.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
        return completion.predict(rgb, given[0].numpy())

    return _score(predict, val_set, max_depth_m)


def initial_model(trainer: Any) -> torch.nn.Module:
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


def finish_adaptation(trainer: Any, export: bool = True) -> dict[str, Any]:
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
    if trainer.model.kind == "fusion":
        report["ip_basic"] = ip_basic_on_bag(val, trainer.model.max_depth_m)
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


def model_card(report: dict[str, Any], trainer: Any) -> str:
    """``training/adapt_model_card.md`` filled in with the run's figures."""
    before, after = report["before"], report["after"]
    reference = ("every LiDAR return" if report["kind"] == "mono"
                 else "the 20 % of LiDAR returns withheld from the model's input")
    rows = "\n".join(f"| {name} | {before[key]:.4f} | {after[key]:.4f} |"
                     for name, key in (("AbsRel", "abs_rel"), ("RMSE (m)", "rmse"),
                                       ("MAE (m)", "mae"), ("δ < 1.25", "a1")))
    baseline = ""
    if "ip_basic" in report:
        ip = report["ip_basic"]
        baseline = (f"\nIP-Basic (classical completion) on the same input returns: RMSE "
                    f"{ip['rmse']:.4f} m, MAE {ip['mae']:.4f} m.\n")
    config = trainer.config
    return CARD_TEMPLATE.read_text().format(
        name=config.name, architecture=config.model.name, kind=report["kind"],
        init=report["init_checkpoint"] or "its own initialisation", bag=report["bag"],
        train_frames=_ranges(report["train_frames"]),
        scored_frames=_ranges(report["scored_frames"]), steps=report["steps"],
        engine=config.data.mix_engine_root or "none",
        ratio=config.data.mix_engine_ratio if config.data.mix_engine_root else 0,
        reference=reference, returns=after["reference_returns"], rows=rows, baseline=baseline,
        onnx=report.get("onnx", "not exported"),
        photometric=config.loss.photometric_weight, sparse=config.loss.sparse_weight)
