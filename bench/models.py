"""Every registered model at its default size: parameters, GFLOPs at 1216×352, and onnxruntime
latency on this CPU at 1216×352 and 518×518.

Sizes are rounded to each model's stride (a ViT with 14-pixel patches runs 1218×350 for
"1216×352"). FLOPs are PyTorch's own count (``torch.utils.flop_counter``: 2 per
multiply-accumulate of convolutions and matrix products; attention counted on its plain path,
which the counter can see into). Latency is the median of
``--repeats`` runs of an ONNX export (dynamo exporter, opset 18) on ``--threads`` threads.
Run: .venv/bin/python bench/models.py [--models NAME[:key=value,...] ...] [--repeats N]
[--threads N]; e.g. ``--models depth_anything_v2:encoder=vits`` for another size of a model.
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import onnxruntime as ort
import torch
from timing import median_ms  # bench/timing.py, beside this script
from torch.utils.flop_counter import FlopCounterMode

from depth_ros.models import create_model, list_models
from depth_ros.models.attention import set_fused_attn

SIZES = ((352, 1216), (518, 518))


def _round(size: tuple[int, int], stride: int) -> tuple[int, int]:
    return tuple(max(stride, int(round(v / stride)) * stride) for v in size)


def _parse_variant(text: str) -> tuple[str, dict[str, object]]:
    """``name`` or ``name:key=value,key=value`` (values parsed as YAML scalars)."""
    import yaml

    name, _, args = text.partition(":")
    kwargs = {}
    for item in filter(None, args.split(",")):
        key, _, value = item.partition("=")
        kwargs[key] = yaml.safe_load(value)
    return name, kwargs


def _inputs(model: torch.nn.Module, height: int, width: int) -> tuple[torch.Tensor, ...]:
    image = torch.rand(1, 3, height, width)
    if getattr(model, "kind", "mono") != "fusion":
        return (image,)
    # About 5 % of pixels with a LiDAR return, as a 64-beam scan gives at KITTI size.
    sparse = torch.rand(1, 1, height, width) * 60 + 2
    return image, sparse * (torch.rand(1, 1, height, width) < 0.05)


def _gflops(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> float:
    # The counter does not see inside fused attention kernels on the CPU: count the plain path.
    set_fused_attn(model, False)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(*inputs)
    set_fused_attn(model, True)
    return counter.get_total_flops() / 1e9


def _onnx_ms(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...], path: Path,
             repeats: int, threads: int) -> float:
    names = ["image", "sparse_depth"][:len(inputs)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, inputs, dynamo=True, opset_version=18,
                                    input_names=names, external_data=False, verbose=False)
    program.save(str(path))
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feeds = {name: x.numpy() for name, x in zip(names, inputs, strict=True)}
    return median_ms(lambda: session.run(None, feeds), repeats, warmup=2)


def main(argv: list[str] | None = None) -> int:
    """Print one row per model."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=None, help="default: every model")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    # The completion model as bundled (with its context attention and the mono prior) and its
    # reduced option (features from a half-size frame) too.
    bundled = "fusion_spn:context_attention=true,mono_prior={base_channels: 32}"
    names = args.models or [*list_models(), "fusion_spn:context_attention=true", bundled,
                            f"{bundled},feature_scale=2"]
    print(f"{args.threads} threads, median of {args.repeats}; sizes rounded to the stride")
    print(f"{'model':<50}{'params M':>10}{'GFLOPs 1216x352':>17}"
          f"{'ms 1216x352':>13}{'ms 518x518':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            base, kwargs = _parse_variant(name)
            model = create_model(base, **kwargs).eval()
            stride = int(getattr(model, "stride", 32))
            params = sum(p.numel() for p in model.parameters()) / 1e6
            row = [f"{name:<50}{params:>10.2f}"]
            for i, size in enumerate(SIZES):
                inputs = _inputs(model, *_round(size, stride))
                if i == 0:
                    row.append(f"{_gflops(model, inputs):>17.1f}")
                ms = _onnx_ms(model, inputs, Path(tmp) / f"model_{i}.onnx", args.repeats,
                              args.threads)
                row.append(f"{ms:>{13 if i == 0 else 12}.1f}")
            print("".join(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
