"""Evaluate a model on KITTI-format drives at full resolution, against simple baselines.

    python training/evaluate.py --model depth_ros/weights/mono_cnn_synthetic.onnx \
        --data outputs/data/synthetic/val [--baselines-from outputs/data/synthetic/train]

Depth comes from ``DepthEstimator.predict`` (with each drive's fx), so pre- and
post-processing are the deployed ones. Metrics are Eigen's, per image then averaged, on
ground truth in (0, 80) m. Baselines, computed from the training drives at the network input
size and upsampled: ``median`` (one depth everywhere), ``ground_plane`` (a flat road seen
from 1.65 m, the median above the horizon) and ``pixel_median`` (the per-pixel median depth
of the training set: the best image-independent guess). For rendered data, where 0 means sky
or beyond range, ``sky_far`` is the fraction of those pixels the model puts at ≥ 60 m (a sky
read as near would be a phantom obstacle in the point cloud).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from depth_ros.inference import DepthEstimator, ModelLoadError  # noqa: E402
from depth_ros.kitti import KittiFormatError, find_drives  # noqa: E402
from depth_ros.metrics import depth_metrics, mean_metrics  # noqa: E402
from training.datasets import load_frames  # noqa: E402

CAMERA_HEIGHT_M = 1.65  # KITTI's colour camera above the road, and the data engine's
MAX_EVAL_DEPTH_M = 80.0
SKY_FAR_M = 60.0


def baseline_maps(train_root: Path, height: int, width: int) -> dict[str, np.ndarray]:
    """Image-independent depth maps (network size) from the training drives."""
    frames = load_frames(find_drives(train_root), height, width, threads=2)
    depth = np.where(frames.depth > 0, np.minimum(frames.depth, MAX_EVAL_DEPTH_M), np.nan)
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
            "ground_plane": np.broadcast_to(np.minimum(ground, MAX_EVAL_DEPTH_M),
                                            (height, width)).astype(np.float32),
            "pixel_median": pixel_median.astype(np.float32)}


def evaluate(estimator: DepthEstimator, data_root: Path,
             baselines: dict[str, np.ndarray] | None = None) -> dict[str, dict[str, float]]:
    """Mean per-image metrics of the model (and baselines) on every frame under data_root."""
    per_image: dict[str, list[dict[str, float]]] = {"model": []}
    per_image.update({name: [] for name in baselines or {}})
    sky_far = []
    for drive in find_drives(data_root):
        fx = drive.camera_model().fx
        for index in range(len(drive)):
            gt = drive.groundtruth(index)
            rgb = drive.rgb(index)
            mask = gt > 0
            predictions = {"model": estimator.predict(rgb, fx=fx)}
            if not mask.all():
                sky_far.append(float(np.mean(predictions["model"][~mask] >= SKY_FAR_M)))
            for name, small in (baselines or {}).items():
                predictions[name] = cv2.resize(small, (gt.shape[1], gt.shape[0]),
                                               interpolation=cv2.INTER_LINEAR)
            for name, pred in predictions.items():
                per_image[name].append(depth_metrics(pred, gt, mask=mask,
                                                     max_depth=MAX_EVAL_DEPTH_M))
    results = {name: mean_metrics(values) for name, values in per_image.items()}
    results["model"]["sky_far"] = float(np.mean(sky_far)) if sky_far else float("nan")
    return results


def main(argv: list[str] | None = None) -> int:
    """Entry point; prints a table (and writes JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, type=Path, help=".onnx or .pt")
    parser.add_argument("--data", required=True, type=Path, help="root of the drives to score")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--baselines-from", type=Path, default=None,
                        help="training drives to build the baselines from")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    try:
        estimator = DepthEstimator(args.model, backend=args.backend)
        baselines = None
        if args.baselines_from is not None:
            baselines = baseline_maps(args.baselines_from, *estimator.input_size)
        results = evaluate(estimator, args.data, baselines)
    except (ModelLoadError, KittiFormatError) as exc:
        print(f"evaluate.py: error: {exc}", file=sys.stderr)
        return 1
    keys = ("abs_rel", "sq_rel", "rmse", "rmse_log", "silog", "a1", "a2", "a3")
    print(f"{'predictor':<14}" + "".join(f"{k:>10}" for k in keys))
    for name, metrics in results.items():
        print(f"{name:<14}" + "".join(f"{metrics[k]:>10.4f}" for k in keys))
    print(f"no-ground-truth pixels (sky) predicted at >= {SKY_FAR_M:g} m: "
          f"{100 * results['model']['sky_far']:.1f}%")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
