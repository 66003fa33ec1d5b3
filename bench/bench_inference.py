"""Time the bundled model through onnxruntime and torch at its inference size and at KITTI
size (1216×352), on 2 threads.

DESIGN budget: the default model at 1216×352 through onnxruntime on 2 cores: ≥ 10 frames/s.
``network`` is the backend call alone; ``predict`` adds resizing a 1242×375 camera image in
and the depth out (what the node pays per frame).
Run: .venv/bin/python bench/bench_inference.py [--model PATH] [--repeats N] [--threads N]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from timing import median_ms  # bench/timing.py, beside this script

from depth_ros.inference import DepthEstimator, OnnxRuntimeBackend, TorchBackend
from depth_ros.weights import DEFAULT_MONO_MODEL

KITTI_SIZE = (352, 1216)
CAMERA_SIZE = (375, 1242)


def main(argv: list[str] | None = None) -> int:
    """Print a table of median milliseconds per frame."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MONO_MODEL)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (*CAMERA_SIZE, 3), dtype=np.uint8)
    backends = {"onnxruntime": OnnxRuntimeBackend(args.model.with_suffix(".onnx"), args.threads),
                "torch": TorchBackend(args.model.with_suffix(".pt"), args.threads)}
    train_size = backends["onnxruntime"].metadata.train_input_size
    print(f"model {args.model.name}, {args.threads} threads, camera image "
          f"{CAMERA_SIZE[1]}x{CAMERA_SIZE[0]}, median of {args.repeats}")
    print(f"{'backend':<12}{'input':>10}{'network ms':>12}{'predict ms':>12}{'predict fps':>13}")
    for size in (train_size, KITTI_SIZE):
        image = rng.random((1, 3, *size), dtype=np.float32)
        for backend in ("onnxruntime", "torch"):
            # A new estimator per size: the input size is fixed at construction.
            estimator = DepthEstimator(args.model, backend=backend, num_threads=args.threads,
                                       input_size=size)
            network = median_ms(lambda b=backends[backend], x=image: b.run(x), args.repeats)
            predict = median_ms(lambda e=estimator: e.predict(rgb), args.repeats)
            print(f"{backend:<12}{size[1]:>5}x{size[0]:<4}{network:>12.1f}{predict:>12.1f}"
                  f"{1e3 / predict:>13.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
