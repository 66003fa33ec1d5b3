"""Export a checkpoint to one self-contained ONNX file and verify it.

    python training/export.py --checkpoint runs/<name>/best.pt --output model.onnx \
        [--height H --width W] [--check-size HxW ...] [--no-release-checkpoint] \
        [--tensorrt fp16|int8|fp32 [--opt-size HxW [--min-size HxW --max-size HxW]] \
         [--max-batch N] [--calibration-data DIR --calibration-frames N] [--engine-cache DIR] \
         [--workspace-mib N] [--tensorrt-log warning]]

The graph has input ``image`` (N×3×H×W, RGB in [0, 1]) — fusion models also ``sparse_depth``
(N×1×H×W metres, 0 = no LiDAR return), sharing its batch, height and width — and output
``depth`` (or ``inverse_depth`` for relative models; completion models add ``confidence``
N×1×H×W in [0, 1]), dynamic batch, height and width
(multiples of the stride), opset 18, the ``ModelMetadata`` in ``metadata_props``. It must pass
``onnx.checker.check_model(full_check=True)`` and match PyTorch under onnxruntime at two
sizes (fusion models with LiDAR-like input, ~5 % of the pixels with a return); the operators it
uses are checked against TensorRT 10's ONNX parser. A release checkpoint (weights + metadata
only) is written beside it with the same stem, which the torch backend of ``DepthEstimator``
looks for.

With ``--tensorrt`` a TensorRT 10.x engine is then built for this GPU (or reused from the
engine cache, ``~/.cache/depth_ros/engines`` or ``$DEPTH_ROS_ENGINE_CACHE``) and compared
with onnxruntime. Its profile and cache key follow the same recipe as the nodes' backend
(``engine_profile``): built for ``--opt-size`` (the size the node runs at: its
``input_height``/``input_width``, default the training size), it is the engine the node loads.
A range (``--min-size``/``--max-size``) only on request; the node uses a cached engine whose
range covers its size. That needs the ``tensorrt`` package (10.x) and a CUDA device; without
them the ONNX file is still written and the command fails with one line naming what is
missing (exit 3).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch.export import Dim

from depth_ros.inference.engine_cache import (
    OptimizationProfile,
    describe_profile,
    engine_profile,
)
from depth_ros.inference.trt_ops import unsupported_onnx_ops
from depth_ros.models import ModelMetadata
from depth_ros.models.checkpoints import (
    CheckpointError,
    load_checkpoint,
    model_from_checkpoint,
)
from training.checkpoint import release_payload, save_checkpoint

LOG = logging.getLogger("depth_ros.export")
OPSET = 18
# Largest height and width the dynamic graph accepts, in strides (32 · 512 = 16384 pixels).
MAX_SIZE_IN_STRIDES = 512
# Exit code when the ONNX file was written but no TensorRT engine could be built here.
EXIT_NO_TENSORRT = 3
# Largest accepted max |TensorRT − onnxruntime| / max |onnxruntime| per precision (INT8:
# reported only, its error depends on the calibration data).
TENSORRT_TOLERANCE = {"fp32": 1e-3, "fp16": 3e-2}


class ExportError(RuntimeError):
    """Export or its verification failed."""


def output_name(metadata: ModelMetadata) -> str:
    """``depth`` for metric models, ``inverse_depth`` for relative ones (the I/O contract)."""
    return "depth" if metadata.output == "metric" else "inverse_depth"


def output_names(metadata: ModelMetadata) -> list[str]:
    """Every graph output in order: ``output_name`` and, for completion models,
    ``confidence``."""
    return list(metadata.output_names)


def input_names(metadata: ModelMetadata) -> list[str]:
    """``image``, and ``sparse_depth`` for fusion models (the I/O contract)."""
    return ["image", "sparse_depth"] if metadata.kind == "fusion" else ["image"]


def lidar_like_sparse_depth(batch: int, height: int, width: int, generator: torch.Generator,
                            density: float = 0.05) -> torch.Tensor:
    """Sparse depth as a spinning LiDAR projects it: returns (2–60 m) on ~``density`` of the
    pixels of the lower 3/5 of the frame, none above (where the beams do not reach)."""
    depth = 2.0 + 58.0 * torch.rand(batch, 1, height, width, generator=generator)
    keep = torch.rand(batch, 1, height, width, generator=generator) < density / 0.6
    keep[:, :, : (2 * height) // 5] = False
    return depth * keep


def example_inputs(metadata: ModelMetadata, height: int, width: int, batch: int = 1,
                   seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random inputs of the model's kind: an image in [0, 1] (+ LiDAR-like sparse depth)."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 3, height, width, generator=generator)
    if metadata.kind == "fusion":
        return image, lidar_like_sparse_depth(batch, height, width, generator)
    return (image,)


def export_onnx(model: torch.nn.Module, metadata: ModelMetadata, path: str | os.PathLike,
                height: int, width: int, extra_metadata: dict[str, str] | None = None) -> Path:
    """Trace ``model`` at height × width (multiples of the stride) and write one ONNX file
    with dynamic batch/height/width (shared by all inputs) and the metadata; returns the
    path. ``extra_metadata``: more ``metadata_props`` beside the model's (e.g. the camera a
    model was adapted to: ``camera_K``, ``camera_width``, ``camera_height``); runtimes read
    the model's own keys and ignore the rest."""
    stride = metadata.stride
    if height % stride or width % stride:
        raise ExportError(f"export size {height}x{width} must be a multiple of the stride "
                          f"{stride}")
    props = metadata.to_dict()
    clash = sorted(set(extra_metadata or {}) & set(props))
    if clash:
        raise ExportError(f"extra metadata would overwrite the model's {', '.join(clash)}")
    path = Path(path)
    names = input_names(metadata)
    # Height and width as stride × a free integer: the graph states the stride contract. The
    # same Dim objects for every input: image and sparse depth always share their size.
    dynamic = {0: Dim("batch", min=1, max=1024),
               2: stride * Dim("height_in_strides", min=1, max=MAX_SIZE_IN_STRIDES),
               3: stride * Dim("width_in_strides", min=1, max=MAX_SIZE_IN_STRIDES)}
    try:
        program = torch.onnx.export(model.eval(), example_inputs(metadata, height, width),
                                    dynamo=True, opset_version=OPSET, input_names=names,
                                    output_names=output_names(metadata),
                                    dynamic_shapes={n: dynamic for n in names},
                                    external_data=False)
    except Exception as exc:  # the exporter raises many types; all mean "no graph"
        raise ExportError(f"torch.onnx.export failed: {str(exc).splitlines()[0]}") from exc
    proto = program.model_proto
    onnx.helper.set_model_props(proto, {**props, **(extra_metadata or {})})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        onnx.save_model(proto, os.fspath(tmp))
        onnx.checker.check_model(os.fspath(tmp), full_check=True)
        os.replace(tmp, path)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise ExportError(f"ONNX check failed: {str(exc).splitlines()[0]}") from exc
    return path


def parity(model: torch.nn.Module, onnx_path: str | os.PathLike, height: int, width: int,
           batch: int = 1, seed: int = 0,
           metadata: ModelMetadata | None = None) -> tuple[float, float]:
    """(max |onnxruntime − torch|, max relative difference) on a random batch (with
    LiDAR-like sparse depth for fusion models; the kind is read from ``metadata``, else from
    the model)."""
    kind = metadata.kind if metadata is not None else getattr(model, "kind", "mono")
    names = ["image", "sparse_depth"] if kind == "fusion" else ["image"]
    generator = torch.Generator().manual_seed(seed)
    inputs = [torch.rand(batch, 3, height, width, generator=generator)]
    if kind == "fusion":
        inputs.append(lidar_like_sparse_depth(batch, height, width, generator))
    with torch.no_grad():
        expected = model.eval()(*inputs)
    # Completion models return (depth, confidence): every output is compared.
    expected = [t.numpy() for t in (expected if isinstance(expected, tuple | list)
                                    else [expected])]
    session = ort.InferenceSession(os.fspath(onnx_path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {n: t.numpy() for n, t in zip(names, inputs, strict=True)})
    if len(outputs) != len(expected):
        raise ExportError(f"the ONNX graph has {len(outputs)} outputs, torch {len(expected)}")
    max_abs = max_rel = 0.0
    for got, want in zip(outputs, expected, strict=True):
        if got.shape != want.shape:
            raise ExportError(f"onnxruntime output shape {got.shape} != torch {want.shape} "
                              f"at {height}x{width}")
        diff = np.abs(got.astype(np.float64) - want)
        # Relative to the output's magnitude; the floor keeps ReLU zeros from dividing by 0.
        scale = np.maximum(np.abs(want), 1e-3 * max(np.abs(want).max(), 1e-12))
        max_abs = max(max_abs, float(diff.max()))
        max_rel = max(max_rel, float((diff / scale).max()))
    return max_abs, max_rel


def parse_size(text: str) -> tuple[int, int]:
    """``HxW`` → (H, W)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW, e.g. 352x1216, got {text!r}") from None
    return h, w


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--output", required=True, type=Path, help="the .onnx file to write")
    parser.add_argument("--height", type=int, default=0, help="trace height (default: the "
                        "training input height)")
    parser.add_argument("--width", type=int, default=0, help="trace width (default: training)")
    parser.add_argument("--check-size", type=parse_size, action="append", default=None,
                        metavar="HxW", help="parity sizes (default: the trace size and "
                        "352x1216, batch 2)")
    parser.add_argument("--rtol", type=float, default=1e-4,
                        help="largest accepted relative difference onnxruntime vs torch")
    parser.add_argument("--no-release-checkpoint", action="store_true",
                        help="do not write <output stem>.pt (weights + metadata)")
    trt = parser.add_argument_group("TensorRT engine (needs the tensorrt package and a GPU)")
    trt.add_argument("--tensorrt", choices=("fp16", "int8", "fp32"), default=None,
                     help="also build (or reuse from the cache) a TensorRT engine")
    trt.add_argument("--opt-size", type=parse_size, default=None, metavar="HxW",
                     help="the network size the engine is built for: the node's "
                     "input_height x input_width (default: the trace size)")
    trt.add_argument("--min-size", type=parse_size, default=None, metavar="HxW",
                     help="smallest input size, for an engine that takes a range (default: "
                     "--opt-size; a range costs GPU memory and speed)")
    trt.add_argument("--max-size", type=parse_size, default=None, metavar="HxW",
                     help="largest input size (default: --opt-size)")
    trt.add_argument("--max-batch", type=int, default=1, help="largest batch (default 1)")
    trt.add_argument("--calibration-data", type=Path, default=None, metavar="DIR",
                     help="INT8: KITTI-layout drives (image_02/data/*.png) to calibrate on")
    trt.add_argument("--calibration-frames", type=int, default=64, metavar="N",
                     help="INT8: frames to calibrate on, spread over the drives (default 64)")
    trt.add_argument("--engine-cache", type=Path, default=None, metavar="DIR",
                     help="engine cache directory (default: $DEPTH_ROS_ENGINE_CACHE or "
                     "~/.cache/depth_ros/engines)")
    trt.add_argument("--workspace-mib", type=int, default=None, metavar="N",
                     help="builder workspace limit in MiB (default 512, which fits an 8 GB "
                     "Jetson Orin)")
    trt.add_argument("--tensorrt-log", default=None,
                     choices=("error", "warning", "info", "verbose"),
                     help="TensorRT messages to show (default: $DEPTH_ROS_TENSORRT_LOG, else "
                     "warning and worse)")
    return parser


def check_tensorrt_ops(onnx_path: Path) -> list[str]:
    """What of the ONNX graph TensorRT 10's parser cannot import (printed as a warning)."""
    unsupported = unsupported_onnx_ops(onnx_path)
    if unsupported:
        print(f"export.py: warning: TensorRT 10 cannot import {', '.join(unsupported)}",
              file=sys.stderr)
    else:
        print("TensorRT 10 ONNX parser: every operator of the graph is supported")
    return unsupported


def tensorrt_profile(args: argparse.Namespace, metadata: ModelMetadata
                     ) -> tuple[tuple[int, int], OptimizationProfile]:
    """(opt size, profile) of the engine asked for: the recipe the node's backend uses."""
    height = args.height or metadata.train_input_height
    width = args.width or metadata.train_input_width
    opt = args.opt_size or (height, width)
    try:
        return opt, engine_profile(metadata.stride, metadata.kind, opt, args.min_size,
                                   args.max_size, args.max_batch)
    except ValueError as exc:
        raise ExportError(str(exc)) from exc


def open_tensorrt_engine(args: argparse.Namespace, metadata: ModelMetadata) -> Any:
    """The ``TensorRTBackend`` for the engine asked for, loaded from the cache or built now;
    raises ``TensorRTUnavailable`` when this machine cannot run TensorRT 10.x."""
    from depth_ros.inference.tensorrt import (
        DEFAULT_WORKSPACE_BYTES,
        CalibrationData,
        TensorRTBackend,
        require_tensorrt,
        set_log_severity,
    )

    opt, profile = tensorrt_profile(args, metadata)
    if args.workspace_mib is not None and args.workspace_mib < 1:
        raise ExportError(f"--workspace-mib must be >= 1, got {args.workspace_mib}")
    if args.tensorrt_log is not None:
        set_log_severity(args.tensorrt_log)
    require_tensorrt()  # before reading calibration images: fail fast without a GPU
    calibration = None
    if args.tensorrt == "int8":
        calibration = CalibrationData(args.calibration_data, args.calibration_frames, *opt,
                                      kind=metadata.kind)
    workspace = (DEFAULT_WORKSPACE_BYTES if args.workspace_mib is None
                 else args.workspace_mib << 20)
    image = profile["image"]
    return TensorRTBackend(args.output, args.tensorrt, opt, image.min[2:], image.max[2:],
                           args.max_batch, args.engine_cache, calibration=calibration,
                           workspace_bytes=workspace)


def build_tensorrt_engine(args: argparse.Namespace, metadata: ModelMetadata) -> None:
    """Build or reuse the engine, compare it with onnxruntime; raises ``TensorRTUnavailable``
    when this machine cannot run TensorRT, ``ExportError`` when the engine is wrong."""
    from depth_ros.inference.tensorrt import tensorrt_parity

    opt, _ = tensorrt_profile(args, metadata)
    backend = open_tensorrt_engine(args, metadata)
    print(f"{'built' if backend.built else 'reused'} TensorRT {args.tensorrt} engine "
          f"{backend.engine_path} ({describe_profile(backend.profile)})")
    feeds = {n: t.numpy() for n, t in zip(input_names(metadata),
                                          example_inputs(metadata, *opt, seed=5), strict=True)}
    max_abs, max_rel = tensorrt_parity(backend, args.output, feeds)
    print(f"parity tensorrt {args.tensorrt} {opt[0]}x{opt[1]}: max |tensorrt - onnxruntime| = "
          f"{max_abs:.3e}, relative to the output range = {max_rel:.3e}")
    tolerance = TENSORRT_TOLERANCE.get(args.tensorrt)
    if tolerance is not None and not max_rel <= tolerance:
        raise ExportError(f"the TensorRT {args.tensorrt} engine differs from onnxruntime: "
                          f"{max_rel:.3e} > {tolerance:.0e} of the output range")


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.output.suffix != ".onnx":
        print(f"export.py: error: --output must end in .onnx, got {args.output}",
              file=sys.stderr)
        return 2
    if args.tensorrt == "int8" and args.calibration_data is None:
        print("export.py: error: --tensorrt int8 needs --calibration-data DIR (KITTI-layout "
              "drives to calibrate on)", file=sys.stderr)
        return 2
    try:
        payload = load_checkpoint(args.checkpoint)
        model, metadata = model_from_checkpoint(payload)
        height = args.height or metadata.train_input_height
        width = args.width or metadata.train_input_width
        export_onnx(model, metadata, args.output, height, width)
        sizes = args.check_size or [(height, width), (352, 1216)]
        for index, (h, w) in enumerate(sizes):
            batch = 2 if index == 1 else 1  # one size with a batch: the batch axis is dynamic
            max_abs, max_rel = parity(model, args.output, h, w, batch=batch,
                                      metadata=metadata)
            print(f"parity {h}x{w} batch {batch}: max |onnxruntime - torch| = {max_abs:.3e}, "
                  f"max relative = {max_rel:.3e}")
            if not max_rel <= args.rtol:
                raise ExportError(f"onnxruntime differs from torch at {h}x{w}: max relative "
                                  f"difference {max_rel:.3e} > {args.rtol:.1e}")
        release_path = args.output.with_suffix(".pt")
        # Exporting best.pt to best.onnx: the sibling .pt is the checkpoint itself, keep it.
        if not args.no_release_checkpoint and \
                release_path.resolve() != args.checkpoint.resolve():
            release = save_checkpoint(release_payload(payload), release_path)
            print(f"wrote {release} ({release.stat().st_size / 1e6:.2f} MB)")
        unsupported = check_tensorrt_ops(args.output)
    except (CheckpointError, ExportError) as exc:
        print(f"export.py: error: {exc}", file=sys.stderr)
        return 1
    inputs = " and ".join(f"{n} N×{c}×H×W" for n, c in
                          zip(input_names(metadata), (3, 1), strict=False))
    print(f"wrote {args.output} ({args.output.stat().st_size / 1e6:.2f} MB), inputs "
          f"{inputs}, outputs {', '.join(output_names(metadata))}, opset {OPSET}")
    if args.tensorrt is None:
        return 0
    if unsupported:
        print(f"export.py: error: TensorRT 10 cannot import {', '.join(unsupported)}",
              file=sys.stderr)
        return 1
    from depth_ros.inference.tensorrt import EngineBuildError, TensorRTUnavailable

    try:
        build_tensorrt_engine(args, metadata)
    except TensorRTUnavailable as exc:
        reason = " ".join(str(exc).split())
        print(f"export.py: error: cannot build a TensorRT engine here: {reason}",
              file=sys.stderr)
        return EXIT_NO_TENSORRT
    except (EngineBuildError, ExportError, ValueError, OSError) as exc:
        print(f"export.py: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
