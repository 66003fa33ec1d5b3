"""Pseudo-label unlabelled images with a teacher model (Depth Anything's data engine).

    python training/pseudo_label.py --teacher depth_anything_v2_vitl.pth --images DIR --out DIR
    python training/pseudo_label.py --teacher depth_anything_v2_metric_vkitti_vitl.pth \\
        --max-depth 80 --images DIR --out DIR
    python training/pseudo_label.py --teacher runs/mono/best.pt --images DIR --out DIR
    python training/pseudo_label.py --teacher model.onnx --images DIR --out DIR

The teacher is an official Depth Anything V2 ``.pth`` (relative; metric with ``--max-depth``),
or a depth_ros model: a weights-only ``.pt`` checkpoint or an exported ``.onnx``. Every
``.png``/``.jpg`` under ``--images`` (recursively, so KITTI raw drives' ``image_0X/data`` too;
``proj_depth`` folders skipped) gets ``<out>/<relative path>.npy`` and the directory a manifest,
``pseudo_labels.json`` (format: ``training/pseudo/labels.py``). A rerun with the same teacher
skips the labels that exist; unreadable images are skipped, counted and listed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from depth_ros.fileio import write_atomic, write_bytes_atomic
from depth_ros.inference.backends import ModelLoadError
from depth_ros.inference.engine_cache import sha256_of_file
from depth_ros.inference.estimator import DepthEstimator
from depth_ros.models.checkpoints import (
    CheckpointError,
    load_weights_only,
    model_from_checkpoint,
)
from depth_ros.models.metadata import ModelMetadata
from training.pseudo.labels import (
    IMAGE_SUFFIXES,
    LABEL_SUFFIX,
    MANIFEST_NAME,
    PseudoLabelError,
    PseudoManifest,
    encode_label,
    label_name,
    read_image_rgb,
)

LOG = logging.getLogger("depth_ros.pseudo_label")
DA_V2_INPUT_SIZE = 518  # the official infer_image's input_size
EXCLUDED_DIRS = ("proj_depth",)  # KITTI depth annotations: uint16 PNGs, not photographs
WARN_UNREADABLE = 10  # unreadable images named one by one; the rest only counted


class TeacherError(ValueError):
    """The teacher cannot be used as asked."""


class ModuleBackend:
    """``DepthEstimator``'s backend interface around a model already in memory."""

    name = "torch"

    def __init__(self, model: torch.nn.Module, metadata: ModelMetadata,
                 device: torch.device, model_path: str | os.PathLike) -> None:
        self.model = model.to(device).eval()
        self.metadata = metadata
        self.device = device
        self.model_path = Path(model_path)

    @property
    def description(self) -> str:
        """``torch[<device>]``, as ``DepthEstimator.backend_name`` reports it."""
        return f"torch[{self.device}]"

    def run(self, image: np.ndarray, sparse_depth: np.ndarray | None = None) -> np.ndarray:
        """N×3×H×W float32 → N×1×H×W float32."""
        with torch.inference_mode():
            return self.model(torch.from_numpy(image).to(self.device)).float().cpu().numpy()


@dataclass
class Teacher:
    """A loaded teacher: ``estimator.predict_relative(rgb)`` is the label."""

    estimator: DepthEstimator
    kind: str  # metric | relative
    info: dict[str, Any]  # the manifest's "teacher" entry


def parse_input_size(text: str) -> tuple[int, int]:
    """``518`` → (518, 518); ``352x1216`` → (352, 1216)."""
    parts = text.lower().split("x")
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        size = ()
    if len(size) == 1:
        size = size * 2
    if len(size) != 2 or min(size) < 1:
        raise argparse.ArgumentTypeError(f"expected N or HxW, got {text!r}")
    return size


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TeacherError("--device cuda: no CUDA device available")
    return torch.device(name)


def _official_metadata(model: torch.nn.Module) -> ModelMetadata:
    """Metadata for official weights, which have none. Only ``predict_relative`` is used, so
    the depth range and focal length (required fields) never affect a label."""
    max_depth = model.max_depth or 80.0
    return ModelMetadata(architecture="depth_anything_v2", kind="mono", output=model.output,
                         stride=model.stride, train_input_height=DA_V2_INPUT_SIZE,
                         train_input_width=DA_V2_INPUT_SIZE, min_depth_m=1e-3,
                         max_depth_m=max_depth, train_focal_px=1.0,
                         train_data="official Depth Anything V2 release",
                         model_kwargs={"encoder": model.encoder, "max_depth": model.max_depth})


def load_teacher(path: str | os.PathLike, encoder: str | None = None,
                 max_depth: float | None = None, input_size: tuple[int, int] | None = None,
                 preprocess: str = "auto", device: str = "auto", threads: int = 0) -> Teacher:
    """Load a teacher: official Depth Anything V2 ``.pth``, depth_ros ``.pt`` or ``.onnx``.

    Args:
        path: the teacher file.
        encoder: official weights only: ``vits``/``vitb``/``vitl`` (default: read from them).
        max_depth: official metric weights only: 20 (Hypersim) or 80 (Virtual KITTI).
        input_size: network (height, width); default 518 × 518 for official weights (the
            smallest size, aspect kept), else the model's training size.
        preprocess: ``auto`` (``depth_anything_v2`` for official weights, else ``default``),
            ``default`` or ``depth_anything_v2``.
        device: torch device for ``.pth``/``.pt`` teachers (``auto``: CUDA when available).
        threads: CPU threads (0: the runtime's default).

    Raises:
        TeacherError, CheckpointError, ModelLoadError, MetadataError: with a one-line reason.
    """
    path = Path(path)
    if not path.is_file():
        raise TeacherError(f"teacher not found: {path}")
    if threads > 0:
        torch.set_num_threads(threads)
    info: dict[str, Any] = {"path": str(path.resolve()), "sha256": sha256_of_file(path)}
    if path.suffix == ".onnx":
        info["format"] = "onnx"
        _no_official_options(encoder, max_depth)
        estimator = DepthEstimator(path, backend="onnxruntime", num_threads=threads,
                                   input_size=input_size,
                                   preprocess="default" if preprocess == "auto" else preprocess)
        meta = estimator.metadata
    else:
        payload = load_weights_only(path, "teacher")
        torch_device = _device(device)
        if isinstance(payload, dict) and "state_dict" in payload and "metadata" in payload:
            info["format"] = "depth_ros_checkpoint"
            _no_official_options(encoder, max_depth)
            model, meta = model_from_checkpoint(payload)
            size = input_size or meta.train_input_size
            chosen = "default" if preprocess == "auto" else preprocess
        else:
            from depth_ros.models.depth_anything_v2 import load_depth_anything_v2

            info["format"] = "depth_anything_v2_pth"
            model = load_depth_anything_v2(payload, encoder, max_depth)
            meta = _official_metadata(model)
            info.update(encoder=model.encoder, max_depth_m=model.max_depth)
            size = input_size or (DA_V2_INPUT_SIZE, DA_V2_INPUT_SIZE)
            chosen = "depth_anything_v2" if preprocess == "auto" else preprocess
        del payload
        estimator = DepthEstimator.from_backend(ModuleBackend(model, meta, torch_device, path),
                                                input_size=size, preprocess=chosen)
    if meta.kind != "mono":
        raise TeacherError(f"{path} is a {meta.kind} model; a teacher sees images only")
    info.update(architecture=meta.architecture, output=meta.output, version=meta.version)
    return Teacher(estimator, meta.output, info)


def _no_official_options(encoder: str | None, max_depth: float | None) -> None:
    if encoder is not None or max_depth is not None:
        raise TeacherError("--encoder and --max-depth apply to official Depth Anything V2 "
                           ".pth weights only; a depth_ros model's metadata says both")


def find_images(root: Path, skip: Path | None = None,
                excluded_dirs: tuple[str, ...] = EXCLUDED_DIRS) -> list[str]:
    """Relative POSIX paths of the images under ``root``, sorted; ``skip`` (the output
    directory, when inside) and directories named in ``excluded_dirs`` are not searched."""
    skip = skip.resolve() if skip is not None else None
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if d not in excluded_dirs
                       and (skip is None or (here / d).resolve() != skip)]
        found += [(here / f).relative_to(root).as_posix() for f in filenames
                  if Path(f).suffix.lower() in IMAGE_SUFFIXES]
    return sorted(found)


def _label_collisions(images: list[str]) -> list[tuple[str, str]]:
    seen: dict[str, str] = {}
    pairs = []
    for rel in images:
        name = label_name(rel)
        if name in seen:
            pairs.append((seen[name], rel))
        seen[name] = rel
    return pairs


def _existing_labels(out: Path) -> list[Path]:
    return [p for p in out.rglob(f"*{LABEL_SUFFIX}") if p.is_file()] if out.is_dir() else []


def _write_manifest(out: Path, manifest: PseudoManifest) -> None:
    write_bytes_atomic(out / MANIFEST_NAME, manifest.to_json().encode())


def _save_label(path: Path, label: np.ndarray) -> None:
    # Not fsynced per file (thousands of them): a crash loses at most a few whole labels,
    # never leaves a partial one, and a rerun writes the missing ones.
    write_atomic(path, lambda f: np.save(f, label, allow_pickle=False), durable=False)


@dataclass
class Summary:
    """What a run did."""

    written: int
    skipped: int
    unreadable: int
    total: int  # labels in the directory now


def pseudo_label(teacher: Teacher, images_root: Path, out: Path, images: list[str],
                 overwrite: bool = False, progress: bool = True) -> Summary:
    """Label ``images`` (relative to ``images_root``) into ``out``; see the module docstring.

    Raises:
        PseudoLabelError: ``out`` holds labels of another teacher or settings and
            ``overwrite`` is false.
    """
    images_root = images_root.resolve()
    est = teacher.estimator
    manifest = PseudoManifest(kind=teacher.kind, teacher=teacher.info,
                              images_root=str(images_root), input_size=list(est.input_size),
                              preprocess=est.preprocess)
    try:
        previous = PseudoManifest.read(out) if (out / MANIFEST_NAME).exists() else None
    except PseudoLabelError:
        previous = None
    same = previous is not None and previous.identity() == manifest.identity()
    existing = _existing_labels(out)
    if existing and not same:
        if not overwrite:
            what = (f"teacher sha256 {previous.teacher.get('sha256', '?')[:12]}, "
                    f"{previous.kind}" if previous is not None else "no valid manifest")
            raise PseudoLabelError(
                f"{out} holds {len(existing)} labels from another teacher or settings ({what});"
                " pass --overwrite to replace them, or choose another --out")
        # A partial rerun must never leave the other teacher's labels to be skipped later.
        for path in existing:
            path.unlink()
    kept = set(previous.images) if same else set()
    # complete: false until the end; the labels listed so far stay listed if this run stops.
    manifest.images, manifest.count = sorted(kept), len(kept)
    _write_manifest(out, manifest)
    written, skipped, unreadable = 0, 0, []
    with logging_redirect_tqdm(loggers=[LOG]):
        for rel in tqdm(images, unit="image", disable=not progress, dynamic_ncols=True):
            label_path = out / label_name(rel)
            if same and not overwrite and label_path.is_file():
                skipped += 1
                kept.add(rel)
                continue
            try:
                rgb = read_image_rgb(images_root / rel)
            except PseudoLabelError as exc:
                unreadable.append(rel)
                if len(unreadable) <= WARN_UNREADABLE:
                    LOG.warning("skipping %s%s", exc, " (further unreadable images are only "
                                "counted)" if len(unreadable) == WARN_UNREADABLE else "")
                continue
            _save_label(label_path, encode_label(est.predict_relative(rgb)))
            written += 1
            kept.add(rel)
    manifest.images = sorted(r for r in kept if (out / label_name(r)).is_file())
    manifest.unreadable = unreadable
    manifest.count = len(manifest.images)
    manifest.complete = True
    _write_manifest(out, manifest)
    return Summary(written, skipped, len(unreadable), manifest.count)


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", required=True, type=Path,
                        help="official Depth Anything V2 .pth, or a depth_ros .pt / .onnx")
    parser.add_argument("--images", required=True, type=Path,
                        help="directory searched recursively for .png/.jpg images")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--encoder", choices=("vits", "vitb", "vitl"), default=None,
                        help="official weights: the ViT size (default: read from the file)")
    parser.add_argument("--max-depth", type=float, default=None, metavar="M",
                        help="official metric weights: 20 (Hypersim) or 80 (Virtual KITTI)")
    parser.add_argument("--input-size", type=parse_input_size, default=None, metavar="N|HxW",
                        help="network input size (default: 518 for official weights, with "
                             "the aspect ratio kept; else the model's training size)")
    parser.add_argument("--preprocess", choices=("auto", "default", "depth_anything_v2"),
                        default="auto", help="auto: depth_anything_v2 for official weights")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="torch device for .pth/.pt teachers")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: default)")
    parser.add_argument("--limit", type=int, default=0, metavar="N",
                        help="label only the first N images (sorted paths)")
    parser.add_argument("--overwrite", action="store_true",
                        help="recompute existing labels (needed to replace another teacher's)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (2: bad input, 1: no label could be written)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if not args.teacher.is_file():
            raise TeacherError(f"teacher not found: {args.teacher}")
        if not args.images.is_dir():
            raise PseudoLabelError(f"images directory not found: {args.images}")
        images = find_images(args.images, skip=args.out)
        if args.limit > 0:
            images = images[:args.limit]
        if not images:
            raise PseudoLabelError(f"no .png/.jpg images under {args.images}")
        collisions = _label_collisions(images)
        if collisions:
            raise PseudoLabelError(f"images {collisions[0][0]} and {collisions[0][1]} would "
                                   "share one label file; keep one of them")
        teacher = load_teacher(args.teacher, args.encoder, args.max_depth, args.input_size,
                               args.preprocess, args.device, args.threads)
        LOG.info("teacher %s (%s, %s) on %d images at %s", args.teacher,
                 teacher.info["format"], teacher.kind, len(images),
                 "x".join(map(str, teacher.estimator.input_size)))
        summary = pseudo_label(teacher, args.images, args.out, images, args.overwrite,
                               progress=True)
    except (ValueError, CheckpointError, ModelLoadError) as exc:
        # ValueError: ours (TeacherError, PseudoLabelError), bad metadata, bad sizes.
        print(f"pseudo_label.py: error: {exc}", file=sys.stderr)
        return 2
    print(f"pseudo_label.py: {summary.total} labels in {args.out} ({summary.written} written, "
          f"{summary.skipped} already there), {summary.unreadable} unreadable images skipped")
    return 0 if summary.total else 1


if __name__ == "__main__":
    sys.exit(main())
