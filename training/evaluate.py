"""Evaluate a model (``.onnx`` or ``.pt``, through ``DepthEstimator``) on a depth benchmark.

    python training/evaluate.py --model depth_ros/weights/mono_cnn_synthetic.onnx \
        --dataset engine --data outputs/data/synthetic/test [--baselines-from .../train]
    python training/evaluate.py --model model.onnx --dataset kitti_eigen \
        --split eigen_test_files_with_gt.txt --data kitti_raw --depth-root data_depth_annotated
    python training/evaluate.py --model fusion.onnx --dataset kitti_completion \
        --data data_depth_velodyne/val --raw-root kitti_raw --depth-root data_depth_annotated/val
    python training/evaluate.py --model model.pt --dataset nyu --data nyu_depth_v2_labeled.mat
    python training/evaluate.py --model depth_ros/weights/fusion_spn_synthetic.onnx \
        --dataset lidar_holdout --data ../shared/data/kitti_dev
    python training/evaluate.py --model classical --dataset lidar_holdout \
        --data ../shared/data/kitti_dev
    python training/evaluate.py --model depth_ros/weights/fusion_spn_synthetic.onnx \
        --dataset engine --data outputs/data/completion_v4/val --compare old.onnx \
        --calibration-png docs/fusion_spn_calibration.png

Protocols (per image, then averaged over images, as the KITTI devkit does):

- ``engine`` and ``kitti_raw`` drives: ground truth in (1e-3, 80) m, no crop.
- ``kitti_eigen``: the Garg crop (``--crop eigen`` for Eigen's), 1e-3 to 80 m.
- ``kitti_completion`` / ``kitti_val_selection``: every pixel with ground truth; the devkit's
  depth-completion metrics (MAE, RMSE in mm; iMAE, iRMSE in 1/km) are the headline.
- ``nyu``: NYU's Eigen crop, 1e-3 to 10 m.
- ``lidar_holdout`` (kitti_dev's completion protocol, real KITTI raw drives with
  ``proj_depth/velodyne_raw``, cameras 2 and 3): per image, 20 % of the pixels with a return
  are held out (``numpy.random.default_rng(frame_index * 10 + camera)``,
  ``rng.random((H, W)) < 0.2``), the model gets the other 80 % and is scored at the held-out
  pixels (no crop, no depth cap); RMSE and MAE in mm are the headline. Fusion rows are also
  scored apart at the held-out returns where the scan saw past a nearer object's edge
  (``@see_through``, ``depth_ros.metrics.see_through_mask`` of the whole scan: the reference
  there is a background the camera does not see) and at the rest (``@visible``).
- ``kitti_dev_mono`` (kitti_dev's monocular protocol): the raw scan is the ground truth, Garg
  crop, 1e-3 to 80 m; fusion models get the whole scan as input.

For fusion models every protocol adds ``input_dev_m``: the median |output − input| (metres) at
the pixels that had a return in the model's input, per image, averaged (a model that keeps its
measurements scores ~0), and a baseline row ``ip_basic`` (``depth_ros.completion``, IP-Basic
with its published settings) on the same inputs (``--no-classical-baseline`` leaves it out).
``--model classical`` evaluates IP-Basic itself.

Every protocol reports Eigen's metrics (AbsRel, SqRel, RMSE, RMSE log, SILog, δ) and the KITTI
devkit's (SILog, sqErrorRel, absErrorRel, iRMSE, iMAE, MAE, RMSE). Relative models (affine-
invariant inverse depth) are aligned per image before scoring: least squares in inverse depth
(``--align lstsq``, the Depth Anything / MiDaS protocol) or median scaling of depth
(``--align median``, Monodepth2's); metric models are scored as they are unless ``--align``
asks. Fusion models get the frame's projected LiDAR as input.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from depth_ros.completion import CLASSICAL_MODEL_NAME, ClassicalCompletion
from depth_ros.inference import DepthEstimator, ModelLoadError
from depth_ros.inference.alignment import fit_scale_shift
from depth_ros.kitti import KittiFormatError, find_drives
from depth_ros.metrics import (
    DEVKIT_METRIC_NAMES,
    GROUND_BANDS,
    METRIC_NAMES,
    SCAN_BANDS,
    SEE_THROUGH_BANDS,
    above_scan_mask,
    band_metrics,
    eval_crop_mask,
    evaluation_metrics,
    ground_mask,
    mean_metrics,
    median_scale,
    see_through_mask,
)
from depth_ros.readers import (
    DepthFrame,
    KittiCompletionSplit,
    KittiEigenSplit,
    KittiRawFrames,
    KittiValSelection,
    NyuFormatError,
    NyuLabeled,
    NyuSync,
)
from depth_ros.viz import (
    colorize_depth,
    ratio_overlay,
    side_by_side,
    stack_panels,
    write_png,
)
from training.confidence_eval import ConfidenceStats, calibration_png
from training.data.drives import load_frames
from training.data.holdout import HOLDOUT_FRACTION, holdout_mask  # noqa: F401 - re-exported
from training.data.sources import FrameReader

CAMERA_HEIGHT_M = 1.65  # KITTI's colour camera above the road, and the data engine's
SKY_FAR_M = 60.0
DATASETS = ("engine", "kitti_eigen", "kitti_completion", "kitti_val_selection", "nyu",
            "lidar_holdout", "kitti_dev_mono")
# (crop, min depth, max depth) of each protocol.
PROTOCOLS = {"engine": (None, 1e-3, 80.0), "kitti_eigen": ("garg", 1e-3, 80.0),
             "kitti_completion": (None, 1e-3, 1e3), "kitti_val_selection": (None, 1e-3, 1e3),
             "nyu": ("nyu", 1e-3, 10.0), "lidar_holdout": (None, 1e-3, 1e3),
             "kitti_dev_mono": ("garg", 1e-3, 80.0)}
ALIGNMENTS = ("auto", "none", "median", "lstsq")
# Engine protocol, fusion models: scored apart above the LiDAR's field of view and below it.
BANDS = SCAN_BANDS
DEFAULT_CONFIDENCE_THRESHOLD = 0.05
CLASSICAL_ROW = "ip_basic"
PANEL_FRAMES = 2  # frames drawn by --error-png
Predictor = DepthEstimator | ClassicalCompletion


class EvaluationError(ValueError):
    """The data or the options do not make an evaluation."""


class KittiDevFrames:
    """kitti_dev (real KITTI raw drives with ``proj_depth/velodyne_raw``, cameras 2 and 3) as
    frames of one of its two protocols.

    ``lidar_holdout``: ``sparse_depth`` is the scan without its held-out pixels
    (``holdout_mask``) and ``depth`` the held-out returns only. ``kitti_dev_mono``: both are
    the whole scan. Frames run camera 2 then camera 3, each in frame order; a camera without
    drives under ``root`` is left out (``frames`` in the results says how many were scored).
    ``frame_numbers``: score only these frames (KITTI's numbers, 5 for ``0000000005.png``),
    e.g. the frames a model adapted on kitti_dev never trained on.
    """

    def __init__(self, root: str | Path, protocol: str, cameras: tuple[int, ...] = (2, 3),
                 frame_numbers: Sequence[int] | None = None) -> None:
        if protocol not in ("lidar_holdout", "kitti_dev_mono"):
            raise EvaluationError(f"KittiDevFrames: unknown protocol {protocol!r}")
        self.protocol = protocol
        drives, missing = [], []
        for camera in cameras:  # a drive with one camera only is scored on that one
            try:
                drives += find_drives(root, camera)
            except KittiFormatError as exc:
                missing.append(exc)
        if not drives:
            raise missing[0]
        self.frames = KittiRawFrames(drives, require_groundtruth=False)
        if frame_numbers is not None:
            wanted = {int(n) for n in frame_numbers}
            kept = [(drive, i) for drive, i in self.frames.index
                    if drive.frames[i].isdigit() and int(drive.frames[i]) in wanted]
            found = {int(drive.frames[i]) for drive, i in kept}
            if wanted - found:
                raise EvaluationError(f"--frames: no frame {sorted(wanted - found)} under "
                                      f"{root}")
            self.frames.index = kept

    def __len__(self) -> int:
        return len(self.frames)

    def frame(self, index: int) -> DepthFrame:
        """The index-th frame, split for the protocol."""
        frame = self.frames.frame(index)
        drive, i = self.frames.index[index]
        if frame.sparse_depth is None:
            raise EvaluationError(f"{frame.name}: no proj_depth/velodyne_raw scan (the "
                                  f"{self.protocol} protocol scores against the LiDAR)")
        scan = frame.sparse_depth
        if self.protocol == "kitti_dev_mono":
            frame.depth = scan
            return frame
        try:
            frame_index = int(drive.frames[i])
        except ValueError as exc:
            raise EvaluationError(f"{frame.name}: the held-out draw needs a numeric frame "
                                  "name (KITTI's 0000000042.png)") from exc
        held = holdout_mask(frame_index, drive.camera, scan > 0)
        frame.depth = np.where(held, scan, np.float32(0.0))
        frame.sparse_depth = np.where(held, np.float32(0.0), scan)
        return frame


def input_deviation_m(pred: np.ndarray, sparse: np.ndarray) -> float:
    """Median |output − input| (metres) at the pixels with a return in the input (NaN if
    none, or where the output has no estimate there)."""
    has = np.isfinite(sparse) & (sparse > 0) & np.isfinite(pred)
    return float(np.median(np.abs(pred[has] - sparse[has]))) if has.any() else float("nan")


def baseline_maps(train_root: Path, height: int, width: int,
                  max_depth_m: float = 80.0) -> dict[str, np.ndarray]:
    """Image-independent depth maps (network size) from KITTI-layout training drives:
    ``median`` (one depth everywhere), ``ground_plane`` (a flat road seen from 1.65 m, the
    median above the horizon) and ``pixel_median`` (the per-pixel median depth)."""
    frames = load_frames(find_drives(train_root), height, width, threads=2)
    depth = np.where(frames.depth > 0, np.minimum(frames.depth, max_depth_m), np.nan)
    median = float(np.nanmedian(depth))
    with warnings.catch_warnings():
        # Pixels that are sky in every frame have no median; they get the global one below.
        warnings.simplefilter("ignore", RuntimeWarning)
        pixel_median = np.nanmedian(depth, axis=0)
    pixel_median = np.where(np.isfinite(pixel_median), pixel_median, median)
    camera = find_drives(train_root)[0].camera_model().resized(width, height)
    rows = np.arange(height, dtype=np.float64)[:, None] - camera.cy
    with np.errstate(divide="ignore"):
        ground = np.where(rows > 0.5, camera.fy * CAMERA_HEIGHT_M / rows, median)
    return {"median": np.full((height, width), median, np.float32),
            "ground_plane": np.broadcast_to(np.minimum(ground, max_depth_m),
                                            (height, width)).astype(np.float32),
            "pixel_median": pixel_median.astype(np.float32)}


def align_to_groundtruth(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, method: str,
                         inverse: bool) -> np.ndarray:
    """Depth (metres) from a prediction, aligned to the ground truth over ``mask``.

    ``median`` scales depth by the ratio of medians; ``lstsq`` fits scale and shift in inverse
    depth (robustly, see ``fit_scale_shift``); ``none`` only converts. ``inverse``: ``pred``
    is inverse depth (a relative model's output), else depth.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        other = np.where(pred > 0, 1.0 / pred, np.nan)
    depth, inv = (other, pred) if inverse else (pred, other)
    if method == "none":
        return depth
    if method == "median":
        return median_scale(depth, gt, mask & np.isfinite(depth))
    valid = mask & np.isfinite(inv)
    if valid.sum() < 2:
        return np.full(pred.shape, np.nan)
    s, t = fit_scale_shift(inv[valid], gt[valid])
    fitted = s * inv + t
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(fitted > 0, 1.0 / fitted, np.nan)


def predict_frame(estimator: Predictor, frame: DepthFrame, align: str) -> np.ndarray:
    """The model's depth for one frame (metres), aligned to the ground truth if asked."""
    return predict_frame_detailed(estimator, frame, align)[0]


def predict_frame_detailed(estimator: Predictor, frame: DepthFrame, align: str
                           ) -> tuple[np.ndarray, np.ndarray | None]:
    """``predict_frame``'s depth and the model's ``confidence`` (None without one)."""
    meta = estimator.metadata
    relative = meta.output == "relative"
    sparse = frame.sparse_depth if meta.kind == "fusion" else None
    if meta.kind == "fusion" and sparse is None:
        raise EvaluationError(f"{frame.name}: a fusion model needs LiDAR, and this frame has "
                              "none")
    confidence = None
    if relative:
        raw = estimator.predict_relative(frame.rgb)
    else:
        prediction = estimator.predict_detailed(frame.rgb, sparse, fx=float(frame.K[0, 0]))
        raw, confidence = prediction.depth, getattr(prediction, "confidence", None)
    method = ("lstsq" if relative else "none") if align == "auto" else align
    mask = frame.depth > 0
    return (align_to_groundtruth(raw.astype(np.float64), frame.depth, mask, method, relative),
            confidence)


def evaluate(estimator: Predictor, reader: FrameReader, dataset: str = "engine",
             align: str = "auto", crop: str | None = "default",
             baselines: dict[str, np.ndarray] | None = None, progress: bool = True,
             classical_baseline: bool = True, others: dict[str, Predictor] | None = None,
             panels: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] | None = None
             ) -> dict[str, dict]:
    """Mean per-image metrics (Eigen's and the devkit's) of the model and any baselines.

    ``crop="default"`` uses the protocol's (see ``PROTOCOLS``); ``sky_far`` (the share of
    pixels without ground truth predicted at ≥ 60 m: sky for rendered data) is reported for
    the engine protocol. Fusion models also get ``input_dev_m`` (``input_deviation_m``) and,
    with ``classical_baseline``, an ``ip_basic`` row on the same LiDAR input; ``others``
    (name → predictor, e.g. an older model) are scored on the same frames as more rows.
    On the engine protocol, fusion rows are also scored apart above the LiDAR's field of
    view (``<row>@above_scan``: pixels above the scan's top-most return, see
    ``above_scan_mask``) and below it (``<row>@in_scan``); on ``lidar_holdout``, at the
    held-out returns where the scan saw past a nearer object (``<row>@see_through``,
    ``see_through_mask`` of the whole scan: the camera sees the object, the reference the
    background) and at the rest (``<row>@visible``). A model with a ``confidence``
    output adds ``results["confidence"]`` (``ConfidenceStats.summary()``, every scored
    pixel pooled). ``panels``, a list: the first ``PANEL_FRAMES`` frames' (name, RGB, model
    depth, ground truth) are appended to it, for ``error_panel``.
    """
    if dataset not in PROTOCOLS:
        raise EvaluationError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
    if align not in ALIGNMENTS:
        raise EvaluationError(f"align must be one of {ALIGNMENTS}, got {align!r}")
    default_crop, min_depth, max_depth = PROTOCOLS[dataset]
    crop = default_crop if crop == "default" else crop
    per_image: dict[str, list[dict[str, float]]] = {"model": []}
    per_image.update({name: [] for name in baselines or {}})
    fusion = estimator.metadata.kind == "fusion"
    classical = (ClassicalCompletion() if fusion and classical_baseline
                 and not isinstance(estimator, ClassicalCompletion) else None)
    if classical is not None:
        per_image[CLASSICAL_ROW] = []
    clash = sorted(set(others or {}) & set(per_image))
    if clash:
        raise EvaluationError(f"other models may not be named {', '.join(clash)}")
    per_image.update({name: [] for name in others or {}})
    fused_rows = [name for name in ("model", CLASSICAL_ROW, *(others or {}))
                  if name in per_image and fusion]
    # Rows also scored in two bands of each frame (band pair → rows): fusion rows above and
    # inside the LiDAR's view (engine) and at the held-out returns the scan saw past a near
    # object's edge and the rest (lidar_holdout); image-only models on the ground plane and
    # off it.
    split_rows = {BANDS: fused_rows if dataset == "engine" else [],
                  SEE_THROUGH_BANDS: fused_rows if dataset == "lidar_holdout" else [],
                  GROUND_BANDS: [] if fusion else ["model", *(others or {})]}
    per_image.update({f"{name}@{band}": [] for pair, rows in split_rows.items()
                      for name in rows for band in pair})
    has_confidence = fusion and getattr(estimator.metadata, "has_confidence", False)
    confidence_stats = (ConfidenceStats(float(estimator.metadata.model_kwargs.get(
        "confidence_threshold", DEFAULT_CONFIDENCE_THRESHOLD))) if has_confidence else None)
    sky_far = []
    for index in tqdm(range(len(reader)), desc="evaluate", unit="frame", disable=not progress):
        frame = reader.frame(index)
        if frame.depth is None:
            raise EvaluationError(f"{frame.name}: no ground truth to evaluate against")
        gt = frame.depth
        height, width = gt.shape
        model_depth, confidence = predict_frame_detailed(estimator, frame, align)
        predictions = {"model": model_depth}
        if panels is not None and index < PANEL_FRAMES:
            panels.append((frame.name, frame.rgb, model_depth, gt))
        if dataset == "engine" and not (gt > 0).all():
            sky_far.append(float(np.mean(predictions["model"][gt <= 0] >= SKY_FAR_M)))
        if classical is not None:
            predictions[CLASSICAL_ROW] = classical.predict(frame.rgb, frame.sparse_depth)
        for name, other in (others or {}).items():
            predictions[name] = predict_frame(other, frame, align)
        for name, small in (baselines or {}).items():
            predictions[name] = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
        split_masks = {}  # band pair → this frame's mask of its first band (or None)
        if split_rows[BANDS]:
            split_masks[BANDS] = above_scan_mask(frame.sparse_depth)
        if split_rows[SEE_THROUGH_BANDS]:
            # The whole scan (input and held-out returns are disjoint) decides what is seen
            # past.
            split_masks[SEE_THROUGH_BANDS] = see_through_mask(frame.sparse_depth + gt)
        if split_rows[GROUND_BANDS]:
            split_masks[GROUND_BANDS] = ground_mask(gt, frame.K)  # None: no ground in view
        for name, pred in predictions.items():
            metrics = evaluation_metrics(pred, gt, crop, min_depth, max_depth)
            if name in fused_rows:
                metrics["input_dev_m"] = input_deviation_m(pred, frame.sparse_depth)
            per_image[name].append(metrics)
            for pair, mask in split_masks.items():
                if mask is None or name not in split_rows[pair]:
                    continue
                # A band with (almost) no ground truth in this frame is not scored.
                for band, metrics in band_metrics(pred, gt, mask, crop, min_depth, max_depth,
                                                  bands=pair).items():
                    per_image[f"{name}@{band}"].append(metrics)
        if confidence_stats is not None and confidence is not None:
            in_range = (gt > min_depth) & (gt < max_depth) & eval_crop_mask(height, width, crop)
            confidence_stats.add(confidence, model_depth, gt, in_range)
    for name in [name for name in per_image if "@" in name]:
        # No frame had enough pixels of this band (e.g. no floor in view, nothing seen
        # past an edge).
        if not per_image[name]:
            del per_image[name]
    results: dict[str, dict] = {name: mean_metrics(values) for name, values in per_image.items()}
    results["model"]["frames"] = len(per_image["model"])
    for name in results:
        if "@" in name:
            results[name]["frames"] = len(per_image[name])
    if sky_far:
        results["model"]["sky_far"] = float(np.mean(sky_far))
    if confidence_stats is not None:
        results["confidence"] = confidence_stats.summary()
    return results


def error_panel(panels: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
                title: str, scale: float = 0.4) -> np.ndarray:
    """One column per frame: the camera, the model's depth and log2(depth / ground truth)
    at the ground truth's pixels (``ratio_overlay``: red too far, blue too near), as RGB."""
    if not panels:
        raise EvaluationError("no frames to draw")
    columns = []
    for name, rgb, depth, gt in panels:
        valid = gt[(gt > 0) & np.isfinite(gt)]
        lo, hi = (3.0, 80.0) if valid.size == 0 else (max(0.5, float(np.percentile(valid, 2))),
                                                     float(np.percentile(valid, 98)))
        columns.append(stack_panels(
            [rgb, colorize_depth(depth, lo, hi), ratio_overlay(rgb, depth, gt)],
            [f"{title}: {Path(name).name}", "depth", "log2(depth / reference): red far, "
             "blue near, +-0.5 saturates"]))
    return side_by_side(columns, scale)


def make_reader(args: argparse.Namespace, needs_lidar: bool) -> FrameReader:
    """The reader of ``--dataset`` from the command-line paths."""
    # Checked first: every other dataset would score all its frames, silently.
    if args.frames is not None and args.dataset not in ("lidar_holdout", "kitti_dev_mono"):
        raise EvaluationError("--frames selects kitti_dev frames: use it with --dataset "
                              "lidar_holdout or kitti_dev_mono")
    if args.dataset == "engine":
        return KittiRawFrames(find_drives(args.data))
    if args.dataset == "kitti_eigen":
        if args.split is None or args.depth_root is None:
            raise EvaluationError("kitti_eigen needs --split (the Eigen test list) and "
                                  "--depth-root (data_depth_annotated)")
        return KittiEigenSplit(args.split, args.data, args.depth_root, velodyne=needs_lidar)
    if args.dataset == "kitti_completion":
        if args.raw_root is None:
            raise EvaluationError("kitti_completion needs --raw-root (the KITTI raw tree)")
        return KittiCompletionSplit(args.data, args.raw_root, args.depth_root)
    if args.dataset == "kitti_val_selection":
        return KittiValSelection(args.data)
    if args.dataset in ("lidar_holdout", "kitti_dev_mono"):
        return KittiDevFrames(args.data, args.dataset, frame_numbers=args.frames)
    return NyuLabeled(args.data) if Path(args.data).is_file() else NyuSync(args.data, args.split)


def frame_list(text: str) -> list[int]:
    """``5-6`` or ``0,2,4-5`` → frame numbers (inclusive ranges)."""
    numbers = []
    for part in text.split(","):
        low, dash, high = part.strip().partition("-")
        try:  # "5-" and "6-5" are typos, not frame 5 or no frames: refuse them
            first, last = int(low), int(high) if dash else int(low)
        except ValueError:
            first, last = 0, -1
        if last < first:
            raise argparse.ArgumentTypeError(
                f"not a frame list (e.g. 5-6 or 0,2,4-5): {text!r}")
        numbers += range(first, last + 1)
    return sorted(set(numbers))


def print_table(results: dict[str, dict[str, float]]) -> None:
    """Eigen's metrics, then the devkit's, one row per predictor."""
    devkit = tuple(f"devkit_{k}" for k in DEVKIT_METRIC_NAMES[:7])
    rows_only = {name: m for name, m in results.items() if name != "confidence"}
    width = max(14, *(len(name) + 1 for name in rows_only))
    for keys, title in ((METRIC_NAMES, "Eigen"), (devkit, "KITTI devkit")):
        header = [k.removeprefix("devkit_") for k in keys]
        print(f"{title:<{width}}" + "".join(f"{k:>14}" for k in header))
        for name, metrics in rows_only.items():
            print(f"{name:<{width}}" + "".join(f"{metrics[k]:>14.4f}" for k in keys))
    if "confidence" in results:
        c = results["confidence"]
        print(f"confidence: AbsRel {c['abs_rel_confident']:.4f} where >= 0.5 "
              f"({100 * c['confident_share']:.1f}% of the pixels), {c['abs_rel_rest']:.4f} "
              f"elsewhere (ratio {c['ratio']:.2f}); calibration error {c['ece']:.3f} "
              f"(|err|/gt < {c['threshold']:g})")
    rows = {name: m["input_dev_m"] for name, m in rows_only.items() if "input_dev_m" in m}
    if rows:
        print("median |output - input| at the input's LiDAR returns (m): "
              + ", ".join(f"{name} {value:.4f}" for name, value in rows.items()))
    if "sky_far" in results["model"]:
        print(f"no-ground-truth pixels (sky) predicted at >= {SKY_FAR_M:g} m: "
              f"{100 * results['model']['sky_far']:.1f}%")


def main(argv: list[str] | None = None) -> int:
    """Entry point; prints the tables (and writes JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, type=Path,
                        help=f".onnx or .pt, or {CLASSICAL_MODEL_NAME!r} (IP-Basic, "
                             "depth_ros.completion)")
    parser.add_argument("--dataset", choices=DATASETS, default="engine")
    parser.add_argument("--data", required=True, type=Path,
                        help="drives root (engine), KITTI raw root (kitti_eigen), "
                             "data_depth_velodyne/<split> (kitti_completion), "
                             "val_selection_cropped, the NYU .mat / sync folder, or "
                             "kitti_dev (lidar_holdout, kitti_dev_mono)")
    parser.add_argument("--split", type=Path, default=None, help="split list (Eigen, NYU)")
    parser.add_argument("--depth-root", type=Path, default=None,
                        help="data_depth_annotated (kitti_eigen, kitti_completion)")
    parser.add_argument("--raw-root", type=Path, default=None, help="KITTI raw (completion)")
    parser.add_argument("--crop", default="default",
                        choices=("default", "garg", "eigen", "nyu", "none"))
    parser.add_argument("--align", choices=ALIGNMENTS, default="auto",
                        help="auto: least squares for relative models, none for metric")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--baselines-from", type=Path, default=None,
                        help="engine: training drives to build image-independent baselines")
    parser.add_argument("--no-classical-baseline", action="store_true",
                        help="fusion models: leave out the ip_basic baseline row")
    parser.add_argument("--compare", type=Path, action="append", default=[],
                        metavar="MODEL", help="another .onnx/.pt model scored on the same "
                        "frames (a row named after its file; repeatable)")
    parser.add_argument("--calibration-png", type=Path, default=None,
                        help="models with a confidence output: write the reliability diagram")
    parser.add_argument("--error-png", type=Path, default=None,
                        help=f"draw the first {PANEL_FRAMES} frames: camera, the model's depth "
                             "and its ratio to the ground truth at the ground truth's pixels")
    parser.add_argument("--frames", type=frame_list, default=None,
                        help="kitti_dev protocols: score only these frame numbers, e.g. 5-6 "
                             "or 0,2,4 (frames an adapted model never trained on)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        estimator = (ClassicalCompletion() if str(args.model) == CLASSICAL_MODEL_NAME
                     else DepthEstimator(args.model, backend=args.backend))
        reader = make_reader(args, estimator.metadata.kind == "fusion")
        baselines = None
        if args.baselines_from is not None:
            baselines = baseline_maps(args.baselines_from, *estimator.input_size)
        others = {}
        for path in args.compare:  # rows named after the files, never "model"/"ip_basic"
            name = path.stem if path.stem not in ("model", CLASSICAL_ROW) \
                else f"compare_{path.stem}"
            others[name] = DepthEstimator(path, backend=args.backend)
        panels: list | None = [] if args.error_png is not None else None
        results = evaluate(estimator, reader, args.dataset, args.align,
                           None if args.crop == "none" else args.crop, baselines,
                           progress=not args.no_progress,
                           classical_baseline=not args.no_classical_baseline, others=others,
                           panels=panels)
    except (ModelLoadError, KittiFormatError, NyuFormatError, EvaluationError) as exc:
        print(f"evaluate.py: error: {exc}", file=sys.stderr)
        return 1
    print_table(results)
    if args.calibration_png is not None:
        if "confidence" not in results:
            print("evaluate.py: error: --calibration-png: the model has no confidence output",
                  file=sys.stderr)
            return 1
        calibration_png(args.calibration_png, results["confidence"],
                        f"{args.model.stem} confidence on {args.dataset}")
    if args.error_png is not None:
        write_png(args.error_png, error_panel(panels, args.model.stem))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": str(args.model), "dataset": args.dataset,
                                         "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
