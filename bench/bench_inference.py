"""Time models through every backend here (onnxruntime and torch on the CPU; TensorRT and CUDA
where present) at their inference size and at KITTI size (1216×352), and the LiDAR fit that
makes relative models metric.

DESIGN budget: the default model at 1216×352 through onnxruntime on 2 cores: ≥ 10 frames/s.
``network`` is the backend call alone; ``predict`` adds resizing a 1242×375 camera image in
and the depth out (what the node pays per frame). Models: the bundled mono model, and a fusion
model (``--fusion-model``; default: ``fusion_attention`` at its default size with random
weights, exported here first: timing does not depend on the weights).
Per camera (KITTI, 640×480, 1280×720, KITTI halved), the network size the mono model runs at
(``canonical`` models: by the camera's focal length, tiles beyond the maximum size) and the
``predict`` time through onnxruntime on the CPU; ``--resize-policy`` overrides the model's.
Run: .venv/bin/python bench/bench_inference.py [--model PATH] [--fusion-model PATH|none]
[--repeats N] [--threads N] [--resize-policy fixed|canonical]

``--compare-fusion A.onnx B.onnx ... [--rounds N]`` instead times only those fusion models
through onnxruntime on the CPU, in interleaved rounds (each round times every model once,
``--repeats`` calls each), and prints each model's median and range over the rounds with the
load average: on a shared machine the models then see the same load, and the range shows how
much it moved the figures.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from timing import median_ms  # bench/timing.py, beside this script
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # training/ (the exporter) runs from the repository root

from depth_ros.inference import DepthEstimator, robust_scale_shift  # noqa: E402
from depth_ros.inference.selection import plan_auto  # noqa: E402
from depth_ros.weights import DEFAULT_MONO_MODEL  # noqa: E402

KITTI_SIZE = (352, 1216)
CAMERA_SIZE = (375, 1242)
CAMERA_FX = 721.5
# Projected returns of a 64-beam LiDAR in a KITTI camera image (about 5 % of its pixels).
LIDAR_POINTS = 20_000
# (name, width, height, fx) of the cameras the per-camera table runs.
CAMERAS = (("kitti", 1242, 375, 721.5), ("vga", 640, 480, 500.0), ("720p", 1280, 720, 900.0),
           ("kitti/2", 621, 188, 360.75))


def export_fusion_model(directory: Path) -> Path:
    """A default-size fusion_attention (random weights) as fusion.onnx + fusion.pt."""
    import torch

    from depth_ros.models import ModelMetadata, create_model
    from training.checkpoint import save_checkpoint
    from training.export import export_onnx

    torch.manual_seed(0)
    model = create_model("fusion_attention").eval()
    meta = ModelMetadata(architecture="fusion_attention", kind="fusion", output="metric",
                         stride=model.stride, train_input_height=KITTI_SIZE[0],
                         train_input_width=KITTI_SIZE[1], min_depth_m=0.5, max_depth_m=80.0,
                         train_focal_px=707.0, train_data="random weights (benchmark)")
    save_checkpoint({"state_dict": model.state_dict(), "metadata": meta.to_dict()},
                    directory / "fusion.pt")
    return export_onnx(model, meta, directory / "fusion.onnx", *KITTI_SIZE)


def backends_here(model: Path) -> list[dict]:
    """DepthEstimator arguments for every backend that can run ``model`` here."""
    candidates, _ = plan_auto(model)
    options = {c.option for c in candidates}
    chosen = []
    if "tensorrt" in options:
        chosen.append({"backend": "tensorrt", "precision": "fp16"})
    if "onnxruntime-gpu" in options:
        chosen.append({"backend": "onnxruntime", "device": "cuda"})
    if "torch-cuda" in options:
        chosen.append({"backend": "torch", "device": "cuda"})
    chosen += [{"backend": "onnxruntime", "device": "cpu"}, {"backend": "torch", "device": "cpu"}]
    return chosen


def time_model(model: Path, sizes: list[tuple[int, int] | None], threads: int, repeats: int,
               rgb: np.ndarray, sparse: np.ndarray | None) -> None:
    """Print one table row per backend and size (None: the size the model picks for the
    camera, as canonical models do)."""
    for wanted in sizes:
        for kwargs in backends_here(model):
            # A new estimator per size: the input size is fixed at construction.
            estimator = DepthEstimator(model, num_threads=threads, input_size=wanted, **kwargs)
            size = estimator.network_size(*CAMERA_SIZE, CAMERA_FX)
            image = np.random.default_rng(0).random((1, 3, *size), dtype=np.float32)
            net_sparse = None
            if sparse is not None:
                net_sparse = np.zeros((1, 1, *size), np.float32)
                net_sparse[..., ::17] = 20.0
            backend = estimator._backend
            network = median_ms(lambda b=backend, x=image, s=net_sparse: b.run(x, s), repeats)
            predict = median_ms(lambda e=estimator: e.predict(rgb, sparse, fx=CAMERA_FX),
                                repeats)
            print(f"{model.name:<24}{estimator.backend_name:<36}{size[1]:>5}x{size[0]:<4}"
                  f"{network:>12.1f}{predict:>12.1f}{1e3 / predict:>13.1f}")


def time_cameras(model: Path, threads: int, repeats: int, resize_policy: str | None) -> None:
    """Print the network size and the onnxruntime CPU ``predict`` time per camera."""
    estimator = DepthEstimator(model, backend="onnxruntime", device="cpu", num_threads=threads,
                               resize_policy=resize_policy)
    print(f"per camera, {model.name}, resize policy {estimator.resize_policy}, "
          f"{estimator.backend_name}")
    print(f"{'camera':<10}{'frame':>11}{'fx':>8}{'network':>10}{'tiles':>7}{'predict ms':>12}")
    rng = np.random.default_rng(0)
    for name, width, height, fx in CAMERAS:
        rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        net_h, net_w = estimator.network_size(height, width, fx)
        tiles = (estimator.canonical_plan(height, width, fx).num_tiles
                 if estimator.resize_policy == "canonical" else 1)
        predict = median_ms(lambda e=estimator, x=rgb, f=fx: e.predict(x, fx=f), repeats)
        print(f"{name:<10}{f'{width}x{height}':>11}{fx:>8.1f}{f'{net_w}x{net_h}':>10}"
              f"{tiles:>7}{predict:>12.1f}")


def compare_fusion(models: list[Path], threads: int, repeats: int, rounds: int,
                   rgb: np.ndarray, sparse: np.ndarray) -> None:
    """Print ``network`` (1248×384, the padded camera frame) and ``predict`` (the 1242×375
    camera frame) milliseconds of each fusion model through onnxruntime: the median and range
    of the per-round medians over ``rounds`` interleaved rounds."""
    estimators = [DepthEstimator(m, backend="onnxruntime", device="cpu", num_threads=threads)
                  for m in models]
    padded = tuple(-(-n // 32) * 32 for n in CAMERA_SIZE)
    image = np.random.default_rng(0).random((1, 3, *padded), dtype=np.float32)
    net_sparse = np.zeros((1, 1, *padded), np.float32)
    net_sparse[..., :CAMERA_SIZE[0], :CAMERA_SIZE[1]] = sparse
    network = [[] for _ in models]
    predict = [[] for _ in models]
    for _ in tqdm(range(rounds), desc="rounds", leave=False):
        for k, estimator in enumerate(estimators):
            backend = estimator._backend
            network[k].append(median_ms(lambda b=backend: b.run(image, net_sparse), repeats))
            predict[k].append(median_ms(lambda e=estimator: e.predict(rgb, sparse), repeats))
    print(f"{threads} threads onnxruntime, {rounds} rounds x {repeats} calls, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} (1/5/15 min) at the end")
    print(f"{'model':<36}{'network ms (median, range)':>30}{'predict ms (median, range)':>30}")
    for model, net, pred in zip(models, network, predict, strict=True):
        print(f"{model.name:<36}{_spread(net):>30}{_spread(pred):>30}")


def _spread(values: list[float]) -> str:
    return f"{np.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def time_fit(repeats: int) -> float:
    """Median ms of the robust scale-and-shift fit on a KITTI frame's worth of points with
    20 % wrong returns."""
    rng = np.random.default_rng(0)
    relative = rng.uniform(0.01, 1.0, LIDAR_POINTS)
    depth = 1.0 / (0.2 * relative + 0.02) * (1 + rng.normal(0, 0.01, LIDAR_POINTS))
    wrong = rng.random(LIDAR_POINTS) < 0.2
    depth[wrong] = rng.uniform(1, 80, int(wrong.sum()))
    return median_ms(lambda: robust_scale_shift(relative, depth), repeats)


def main(argv: list[str] | None = None) -> int:
    """Print a table of median milliseconds per frame."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MONO_MODEL)
    parser.add_argument("--fusion-model", default="", help="a fusion model (.onnx with its "
                        ".pt beside it); 'none' to skip; default: export one here")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--resize-policy", choices=("fixed", "canonical"), default=None,
                        help="the per-camera table: run the mono model with this policy "
                        "instead of its own")
    parser.add_argument("--compare-fusion", type=Path, nargs="+", default=None,
                        metavar="ONNX", help="time only these fusion models, interleaved")
    parser.add_argument("--rounds", type=int, default=7,
                        help="interleaved rounds of --compare-fusion")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (*CAMERA_SIZE, 3), dtype=np.uint8)
    sparse = np.zeros(CAMERA_SIZE, np.float32)
    sparse[150::4, ::3] = rng.uniform(2, 60, sparse[150::4, ::3].shape)
    if args.compare_fusion:
        missing = [str(m) for m in args.compare_fusion if not m.is_file()]
        if missing:
            parser.error(f"no such model: {', '.join(missing)}")
        compare_fusion(args.compare_fusion, args.threads, args.repeats, args.rounds, rgb,
                       sparse)
        return 0
    mono = DepthEstimator(args.model, device="cpu")
    # Canonical models pick their size from the camera (the KITTI camera's here).
    mono_sizes = [None] if mono.resize_policy == "canonical" else [mono.input_size, KITTI_SIZE]
    with tempfile.TemporaryDirectory() as tmp:
        fusion = None
        if args.fusion_model.lower() != "none":
            if args.fusion_model:
                fusion = Path(args.fusion_model)
            else:
                started = time.monotonic()
                fusion = export_fusion_model(Path(tmp))
                print(f"exported a default fusion_attention in {time.monotonic() - started:.0f}"
                      f" s")
        print(f"{args.threads} threads, camera image {CAMERA_SIZE[1]}x{CAMERA_SIZE[0]}, median "
              f"of {args.repeats}")
        print(f"{'model':<24}{'backend':<36}{'input':>10}{'network ms':>12}{'predict ms':>12}"
              f"{'predict fps':>13}")
        time_model(args.model, mono_sizes, args.threads, args.repeats, rgb, None)
        if fusion is not None:
            time_model(fusion, [KITTI_SIZE], args.threads, args.repeats, rgb, sparse)
    time_cameras(args.model, args.threads, args.repeats, args.resize_policy)
    print(f"relative -> metric: robust scale-and-shift fit of {LIDAR_POINTS} LiDAR points "
          f"(20 % wrong): {time_fit(args.repeats):.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
