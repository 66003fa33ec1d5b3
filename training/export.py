"""Export a checkpoint to one self-contained ONNX file and verify it.

    python training/export.py --checkpoint runs/<name>/best.pt --output model.onnx \
        [--height H --width W] [--check-size HxW ...] [--no-release-checkpoint]

The graph has input ``image`` (N×3×H×W, RGB in [0, 1]) and output ``depth`` (or
``inverse_depth`` for relative models), dynamic batch, height and width (multiples of the
stride), opset 18, the ``ModelMetadata`` in ``metadata_props``. It must pass
``onnx.checker.check_model(full_check=True)`` and match PyTorch under onnxruntime at two
sizes. A release checkpoint (weights + metadata only) is written beside it with the same stem,
which the torch backend of ``DepthEstimator`` looks for.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
from torch.export import Dim  # noqa: E402

from depth_ros.models import ModelMetadata  # noqa: E402
from depth_ros.models.checkpoints import (  # noqa: E402
    CheckpointError,
    load_checkpoint,
    model_from_checkpoint,
)
from training.checkpoint import release_payload, save_checkpoint  # noqa: E402

LOG = logging.getLogger("depth_ros.export")
OPSET = 18
# Largest height and width the dynamic graph accepts, in strides (32 · 512 = 16384 pixels).
MAX_SIZE_IN_STRIDES = 512


class ExportError(RuntimeError):
    """Export or its verification failed."""


def output_name(metadata: ModelMetadata) -> str:
    """``depth`` for metric models, ``inverse_depth`` for relative ones (the I/O contract)."""
    return "depth" if metadata.output == "metric" else "inverse_depth"


def export_onnx(model: torch.nn.Module, metadata: ModelMetadata, path: str | os.PathLike,
                height: int, width: int) -> Path:
    """Trace ``model`` at height × width (multiples of the stride) and write one ONNX file
    with dynamic batch/height/width and the metadata; returns the path."""
    stride = metadata.stride
    if height % stride or width % stride:
        raise ExportError(f"export size {height}x{width} must be a multiple of the stride "
                          f"{stride}")
    if metadata.kind != "mono":
        raise ExportError(f"exporting {metadata.kind!r} models is not supported yet")
    path = Path(path)
    example = torch.rand(1, 3, height, width)
    # Height and width as stride × a free integer: the graph states the stride contract.
    dynamic = {0: Dim("batch", min=1, max=1024),
               2: stride * Dim("height_in_strides", min=1, max=MAX_SIZE_IN_STRIDES),
               3: stride * Dim("width_in_strides", min=1, max=MAX_SIZE_IN_STRIDES)}
    try:
        program = torch.onnx.export(model.eval(), (example,), dynamo=True, opset_version=OPSET,
                                    input_names=["image"], output_names=[output_name(metadata)],
                                    dynamic_shapes={"image": dynamic}, external_data=False)
    except Exception as exc:  # the exporter raises many types; all mean "no graph"
        raise ExportError(f"torch.onnx.export failed: {str(exc).splitlines()[0]}") from exc
    proto = program.model_proto
    onnx.helper.set_model_props(proto, metadata.to_dict())
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
           batch: int = 1, seed: int = 0) -> tuple[float, float]:
    """(max |onnxruntime − torch|, max relative difference) on a random batch."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 3, height, width, generator=generator)
    with torch.no_grad():
        expected = model.eval()(image).numpy()
    session = ort.InferenceSession(os.fspath(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": image.numpy()})[0]
    if got.shape != expected.shape:
        raise ExportError(f"onnxruntime output shape {got.shape} != torch {expected.shape} "
                          f"at {height}x{width}")
    diff = np.abs(got.astype(np.float64) - expected)
    # Relative to the output's magnitude; the floor keeps ReLU zeros from dividing by 0.
    scale = np.maximum(np.abs(expected), 1e-3 * max(np.abs(expected).max(), 1e-12))
    return float(diff.max()), float((diff / scale).max())


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
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.output.suffix != ".onnx":
        print(f"export.py: error: --output must end in .onnx, got {args.output}",
              file=sys.stderr)
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
            max_abs, max_rel = parity(model, args.output, h, w, batch=batch)
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
    except (CheckpointError, ExportError) as exc:
        print(f"export.py: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.output} ({args.output.stat().st_size / 1e6:.2f} MB), inputs "
          f"image N×3×H×W, output {output_name(metadata)}, opset {OPSET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
