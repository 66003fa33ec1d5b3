"""GPU check in one table: the bundled models through the torch backend (fp32 and fp16) at
1216×352, Depth Anything V2 ViT-S (random weights) at 518×518, and training steps per second.

    bash bench/device_check.sh            # on a machine with a CUDA GPU and PyTorch
    bash bench/device_check.sh --cpu --tiny   # the same code path on a CPU, small and quick

Needs only PyTorch and this repository: no TensorRT, no onnxruntime-gpu, no network. Without a
CUDA device (and without ``--cpu``) it says "no CUDA device" and exits 0. Timings are medians
of ``--iterations`` runs after ``--warmup`` runs, synchronised with the device.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from depth_ros.models import ModelMetadata, create_model
from depth_ros.models.checkpoints import load_checkpoint, model_from_checkpoint
from depth_ros.weights import DEFAULT_FUSION_MODEL, DEFAULT_MONO_MODEL, FAST_FUSION_OPTIONS

KITTI_SIZE = (352, 1216)
DAV2_SIZE = (518, 518)
TRAIN_CROP = (256, 640)
TRAIN_BATCH = 8
TINY = {"kitti": (64, 192), "dav2": (70, 70), "crop": (64, 128), "batch": 2}


@dataclass
class Row:
    """One line of the table."""

    what: str
    size: str
    precision: str
    ms: float
    rate: float
    unit: str


def lidar_like(batch: int, height: int, width: int, device: torch.device) -> torch.Tensor:
    """~5 % of the pixels of the lower 3/5 of the frame with returns of 2–60 m."""
    generator = torch.Generator().manual_seed(0)
    depth = 2.0 + 58.0 * torch.rand(batch, 1, height, width, generator=generator)
    keep = torch.rand(batch, 1, height, width, generator=generator) < 0.08
    keep[:, :, : (2 * height) // 5] = False
    return (depth * keep).to(device)


def timed(step: Callable[[], object], device: torch.device, warmup: int,
          iterations: int) -> float:
    """Median milliseconds of ``step`` after ``warmup`` calls, synchronised with the device."""
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        step()
    times = []
    for _ in range(iterations):
        sync()
        start = time.perf_counter()
        step()
        sync()
        times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times)


def inference_rows(name: str, model: torch.nn.Module, inputs: list[torch.Tensor],
                   device: torch.device, args: argparse.Namespace) -> list[Row]:
    """fp32 and fp16 (autocast on CUDA; bfloat16 autocast on a CPU) inference timings."""
    rows = []
    model = model.to(device).eval()
    size = f"{inputs[0].shape[-1]}x{inputs[0].shape[-2]}"
    half = torch.float16 if device.type == "cuda" else torch.bfloat16
    for precision, dtype in (("fp32", None), ("fp16" if device.type == "cuda" else "bf16",
                                              half)):
        autocast = (torch.autocast(device.type, dtype=dtype) if dtype is not None
                    else contextlib.nullcontext())

        def step(autocast: contextlib.AbstractContextManager = autocast) -> object:
            with torch.inference_mode(), autocast:
                return model(*inputs)

        ms = timed(step, device, args.warmup, args.iterations)
        rows.append(Row(name, size, precision, ms, 1e3 / ms, "frames/s"))
    return rows


def bundled(path: Path, **overrides: object) -> torch.nn.Module:
    """A bundled model from its weights-only checkpoint (``overrides``: constructor kwargs
    that do not change the weights, e.g. ``feature_scale``)."""
    payload = load_checkpoint(path.with_suffix(".pt"))
    if overrides:
        payload = {**payload, "metadata": {**payload["metadata"]}}
        kwargs = json.loads(payload["metadata"]["model_kwargs"])
        payload["metadata"]["model_kwargs"] = json.dumps({**kwargs, **overrides})
    model, _ = model_from_checkpoint(payload)
    return model


def training_rows(device: torch.device, args: argparse.Namespace) -> list[Row]:
    """Optimiser steps per second of the bundled fusion architecture on random crops."""
    from training.losses import completion_loss, silog_loss

    height, width = TINY["crop"] if args.tiny else TRAIN_CROP
    batch = TINY["batch"] if args.tiny else TRAIN_BATCH
    payload = load_checkpoint(DEFAULT_FUSION_MODEL.with_suffix(".pt"))
    model, meta = model_from_checkpoint(payload)
    model = model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    image = torch.rand(batch, 3, height, width, device=device)
    sparse = lidar_like(batch, height, width, device)
    target = 2.0 + 50.0 * torch.rand(batch, 1, height, width, device=device)
    rows = []
    amp = [("fp32", False)] + ([("amp fp16", True)] if device.type == "cuda" else [])
    for precision, use_amp in amp:
        scaler = torch.amp.GradScaler(device.type, enabled=use_amp)

        def step(use_amp: bool = use_amp, scaler: torch.amp.GradScaler = scaler) -> None:
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                out = model(image, sparse, aux=True) if meta.has_confidence \
                    else model(image, sparse)
            if meta.has_confidence:
                out = {k: v.float() for k, v in out.items()}
                loss = completion_loss(out, target, target > 0).total
            else:  # an older fusion model: its SILog recipe
                loss = silog_loss(out.float(), target, target > 0)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

        ms = timed(step, device, args.warmup, args.iterations)
        rows.append(Row(f"train {meta.architecture} (batch {batch})", f"{width}x{height}",
                        precision, ms, 1e3 / ms, "steps/s"))
    return rows


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true",
                        help="time on the CPU when there is no CUDA device (a code-path check)")
    parser.add_argument("--tiny", action="store_true",
                        help="small sizes and batches (seconds; for tests)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=50)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: prints one table; returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.tiny:
        args.warmup, args.iterations = 0, 1
    if torch.cuda.is_available():
        device = torch.device("cuda")
        where = f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, CUDA " \
                f"{torch.version.cuda}"
        torch.backends.cudnn.benchmark = True
    elif args.cpu:
        device = torch.device("cpu")
        where = f"no CUDA device: timing on the CPU ({torch.get_num_threads()} threads), " \
                f"torch {torch.__version__}"
    else:
        print("no CUDA device: nothing to time (bench/device_check.sh --cpu times the same "
              "code on the CPU)")
        return 0
    print(where)
    kitti = TINY["kitti"] if args.tiny else KITTI_SIZE
    dav2 = TINY["dav2"] if args.tiny else DAV2_SIZE
    image = torch.rand(1, 3, *kitti, device=device)
    sparse = lidar_like(1, *kitti, device)
    rows: list[Row] = []
    rows += inference_rows(DEFAULT_MONO_MODEL.stem, bundled(DEFAULT_MONO_MODEL), [image],
                           device, args)
    rows += inference_rows(DEFAULT_FUSION_MODEL.stem, bundled(DEFAULT_FUSION_MODEL),
                           [image, sparse], device, args)
    fusion_meta = ModelMetadata.from_dict(
        load_checkpoint(DEFAULT_FUSION_MODEL.with_suffix(".pt"))["metadata"])
    if "feature_scale" in fusion_meta.model_kwargs:  # fusion_spn's reduced option
        rows += inference_rows(f"{DEFAULT_FUSION_MODEL.stem} (reduced: _fast's options)",
                               bundled(DEFAULT_FUSION_MODEL, **FAST_FUSION_OPTIONS),
                               [image, sparse], device, args)
    torch.manual_seed(0)
    dav2_model = create_model("depth_anything_v2", encoder="vits")  # random weights
    rows += inference_rows("depth_anything_v2 vits (random weights)", dav2_model,
                           [torch.rand(1, 3, *dav2, device=device)], device, args)
    rows += training_rows(device, args)
    header = ("what", "size (WxH)", "precision", "median ms", "rate")
    widths = [max(len(header[0]), *(len(r.what) for r in rows)), 11, 9, 10, 18]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    for r in rows:
        cells = (r.what, r.size, r.precision, f"{r.ms:.2f}", f"{r.rate:.1f} {r.unit}")
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
