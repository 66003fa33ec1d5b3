"""DepthEstimator: pre/post-processing, focal rescaling, the default backend, errors (the
backends' parity and their selection: test_backends.py)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from depth_ros.inference import DepthEstimator, ModelLoadError
from depth_ros.inference.alignment import fit_scale_shift
from depth_ros.inference.preprocessing import round_to_stride
from depth_ros.metrics import depth_metrics
from depth_ros.models import ModelMetadata, create_model
from depth_ros.weights import DEFAULT_MONO_MODEL

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # training/ runs from the repository root; it is not installed
    sys.path.insert(0, str(REPO))

from training.checkpoint import save_checkpoint  # noqa: E402
from training.export import export_onnx  # noqa: E402

NET_H, NET_W = 64, 128
TRAIN_FOCAL = 721.5377 * NET_W / 1242


def tiny_metadata(output: str = "metric") -> ModelMetadata:
    return ModelMetadata(architecture="mono_cnn", kind="mono", output=output, stride=32,
                         train_input_height=NET_H, train_input_width=NET_W, min_depth_m=0.5,
                         max_depth_m=80.0, train_focal_px=TRAIN_FOCAL, train_data="test",
                         model_kwargs={"base_channels": 8, "output": output,
                                       "min_depth_m": 0.5})


def tiny_model(output: str = "metric") -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model("mono_cnn", **tiny_metadata(output).model_kwargs)
    with torch.no_grad():  # move BatchNorm statistics off their defaults
        for _ in range(3):
            model.train()(torch.rand(2, 3, NET_H, NET_W))
    return model.eval()


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """model.onnx + model.pt (weights-only) of a freshly exported tiny mono_cnn."""
    base = tmp_path_factory.mktemp("bundle")
    model, meta = tiny_model(), tiny_metadata()
    save_checkpoint({"state_dict": model.state_dict(), "metadata": meta.to_dict()},
                    base / "model.pt")
    return export_onnx(model, meta, base / "model.onnx", NET_H, NET_W)


def street_like_image(height: int = 375, width: int = 1242, seed: int = 0) -> np.ndarray:
    """Vertical gradients plus texture: varied enough to exercise the network."""
    rng = np.random.default_rng(seed)
    rows = np.linspace(0, 255, height)[:, None, None]
    cols = np.linspace(0, 255, width)[None, :, None]
    image = 0.5 * rows + 0.3 * cols * np.array([1.0, 0.5, 0.2]) + rng.normal(0, 20, (height,
                                                                                   width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def test_auto_backend_on_this_cpu_machine(tiny_bundle: Path, tmp_path: Path) -> None:
    # onnxruntime beats torch on the CPU (DESIGN.md): auto takes the .onnx, even beside a .pt.
    estimator = DepthEstimator(tiny_bundle)
    assert estimator.backend_name == "onnxruntime[CPUExecutionProvider]"
    assert estimator.backend_family == "onnxruntime"
    from_pt = DepthEstimator(tiny_bundle.with_suffix(".pt"))
    assert from_pt.backend_name == "onnxruntime[CPUExecutionProvider]"
    assert from_pt.model_path == tiny_bundle
    # The torch backend given the .onnx path uses the sibling checkpoint.
    estimator = DepthEstimator(tiny_bundle, backend="torch")
    assert estimator.backend_name == "torch[cpu]" and estimator.model_path.suffix == ".pt"
    assert estimator.metadata == tiny_metadata()
    # A checkpoint alone: torch.
    lonely = tmp_path / "lonely.pt"
    lonely.write_bytes(tiny_bundle.with_suffix(".pt").read_bytes())
    assert DepthEstimator(lonely).backend_name == "torch[cpu]"


def test_torch_and_onnxruntime_agree_on_a_fresh_export(tiny_bundle: Path) -> None:
    rgb = street_like_image()
    ort_depth = DepthEstimator(tiny_bundle, num_threads=2).predict(rgb)
    torch_depth = DepthEstimator(tiny_bundle, backend="torch").predict(rgb)
    assert ort_depth.shape == rgb.shape[:2] and ort_depth.dtype == np.float32
    np.testing.assert_allclose(ort_depth, torch_depth, rtol=1e-4)


def test_output_is_clipped_to_the_model_range(tiny_bundle: Path) -> None:
    depth = DepthEstimator(tiny_bundle).predict(street_like_image(100, 300))
    assert depth.shape == (100, 300)
    assert np.isfinite(depth).all()
    assert depth.min() >= 0.5 and depth.max() <= 80.0


@pytest.mark.parametrize(("requested", "expected"), [
    (None, (NET_H, NET_W)), ((100, 300), (96, 288)), ((10, 1216), (32, 1216)),
])
def test_input_size_rounds_to_the_stride(tiny_bundle: Path, requested, expected) -> None:
    assert DepthEstimator(tiny_bundle, input_size=requested).input_size == expected
    assert round_to_stride((352, 1216), 32) == (352, 1216)


@pytest.mark.parametrize("factor", [0.5, 1.0, 1.5])
def test_fx_rescales_metric_depth(tiny_bundle: Path, factor: float) -> None:
    estimator = DepthEstimator(tiny_bundle)
    rgb = street_like_image(120, 400)
    # fx at the image resolution whose network-resolution focal is factor × the training one:
    # fx · W_net / W_img = factor · train_focal_px.
    fx = factor * TRAIN_FOCAL * 400 / NET_W
    plain = estimator.predict(rgb)
    scaled = estimator.predict(rgb, fx=fx)
    np.testing.assert_allclose(scaled, np.clip(plain * factor, 0.5, 80.0), rtol=1e-5)


def test_relative_model_is_fitted_to_sparse_depth(tmp_path: Path) -> None:
    meta = tiny_metadata("relative")
    save_checkpoint({"state_dict": tiny_model("relative").state_dict(),
                     "metadata": meta.to_dict()}, tmp_path / "rel.pt")
    estimator = DepthEstimator(tmp_path / "rel.pt")
    rgb = street_like_image(64, 200)
    inverse = estimator.predict_relative(rgb)
    truth = 1.0 / (0.02 * inverse + 0.05)  # metres, for inverse depth s = 0.02, t = 0.05
    sparse = np.zeros_like(truth)
    sparse[::7, ::5] = truth[::7, ::5]  # LiDAR-like: a few percent of the pixels
    depth = estimator.predict(rgb, sparse_depth=sparse)
    np.testing.assert_allclose(depth, np.clip(truth, 0.5, 80.0), rtol=1e-4)
    with pytest.raises(ValueError, match="relative depth"):
        estimator.predict(rgb)


def test_fit_scale_shift_ignores_outliers() -> None:
    rng = np.random.default_rng(0)
    inverse = rng.uniform(0.0, 1.0, 200)
    depth = 1.0 / (2.0 * inverse + 0.1)
    depth[:10] = 3.0  # returns through glass, mixed edges
    s, t = fit_scale_shift(inverse, depth)
    assert s == pytest.approx(2.0, rel=1e-9) and t == pytest.approx(0.1, rel=1e-9)


@pytest.mark.parametrize(("rgb", "kwargs", "message"), [
    (np.zeros((10, 10, 3), np.float32), {}, "H×W×3 uint8"),
    (np.zeros((10, 10), np.uint8), {}, "H×W×3 uint8"),
    (np.zeros((10, 10, 4), np.uint8), {}, "H×W×3 uint8"),
    (np.zeros((0, 10, 3), np.uint8), {}, "empty"),
    ([[0, 0, 0]], {}, "numpy array"),
    (np.zeros((10, 10, 3), np.uint8), {"sparse_depth": np.zeros((5, 5))}, "sparse_depth"),
    (np.zeros((10, 10, 3), np.uint8), {"fx": -1.0}, "fx must be"),
    (np.zeros((10, 10, 3), np.uint8), {"fx": math.nan}, "fx must be"),
])
def test_bad_inputs_are_value_errors(tiny_bundle: Path, rgb, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        DepthEstimator(tiny_bundle).predict(rgb, **kwargs)


def test_unknown_backend_is_a_value_error(tiny_bundle: Path) -> None:
    with pytest.raises(ValueError, match="backend must be one of"):
        DepthEstimator(tiny_bundle, backend="tensorflow")


def _without_metadata(src: Path, dst: Path, keep: tuple[str, ...] = ()) -> Path:
    model = onnx.load(str(src))
    props = [(p.key, p.value) for p in model.metadata_props if p.key in keep]
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, dict(props))
    onnx.save(model, str(dst))
    return dst


def _with_metadata(src: Path, dst: Path, **changes: str) -> Path:
    model = onnx.load(str(src))
    props = {p.key: p.value for p in model.metadata_props}
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {**props, **changes})
    onnx.save(model, str(dst))
    return dst


def _checkpoint_without(src: Path, dst: Path, drop: str) -> Path:
    payload = torch.load(src, weights_only=True)
    if drop == "metadata":
        del payload["metadata"]
    else:
        payload["metadata"] = {k: v for k, v in payload["metadata"].items()
                               if k not in drop.split(",")}
    torch.save(payload, dst)
    return dst


_ALL_BUT_KIND_AND_STRIDE = ("architecture", "output", "train_input_height",
                            "train_input_width", "min_depth_m", "max_depth_m", "train_focal_px")


@pytest.mark.parametrize(("make", "backend", "message"), [
    (lambda d, b: d / "missing.onnx", "auto", "missing.onnx"),
    (lambda d, b: d / "missing.pt", "auto", "missing.pt"),
    (lambda d, b: (d / "junk.onnx").write_bytes(b"\x00garbage") and d / "junk.onnx", "auto",
     "junk.onnx"),
    (lambda d, b: (d / "junk.pt").write_bytes(b"\x00garbage") and d / "junk.pt", "auto",
     "junk.pt"),
    (lambda d, b: _without_metadata(b, d / "bare.onnx"), "auto", "no valid depth_ros metadata"),
    (lambda d, b: _without_metadata(b, d / "lonely.onnx"), "torch", "lonely.pt"),
    # Missing keys are named, with the file.
    (lambda d, b: _without_metadata(b, d / "partial.onnx", _ALL_BUT_KIND_AND_STRIDE),
     "onnxruntime", r"partial\.onnx has no valid depth_ros metadata: model metadata lacks "
     r"kind, stride"),
    (lambda d, b: _with_metadata(b, d / "badstride.onnx", stride="thirty-two"), "auto",
     r"badstride\.onnx.*stride='thirty-two'"),
    (lambda d, b: _with_metadata(b, d / "notfusion.onnx", kind="fusion"), "auto",
     r"notfusion\.onnx: a fusion model needs the inputs \['image', 'sparse_depth'\]"),
    (lambda d, b: _checkpoint_without(b.with_suffix(".pt"), d / "nometa.pt", "metadata"),
     "torch", r"nometa\.pt is not a depth_ros checkpoint: it lacks metadata"),
    (lambda d, b: _checkpoint_without(b.with_suffix(".pt"), d / "partial.pt", "kind,stride"),
     "auto", r"partial\.pt: .*lacks kind, stride"),
])
def test_model_load_errors_name_the_file(tiny_bundle: Path, tmp_path: Path, make, backend,
                                         message) -> None:
    path = make(tmp_path, tiny_bundle)
    with pytest.raises(ModelLoadError, match=message) as info:
        DepthEstimator(path, backend=backend)
    assert isinstance(info.value, RuntimeError)


# The bundled default model ----------------------------------------------------------------

bundled = pytest.mark.skipif(not DEFAULT_MONO_MODEL.is_file()
                             or not DEFAULT_MONO_MODEL.with_suffix(".pt").is_file(),
                             reason="bundled model not built yet")


@pytest.fixture(scope="module")
def held_out_frame(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, np.ndarray]:
    """One frame of an engine drive whose seed no training config uses."""
    from depth_ros.kitti import KittiDrive
    from depth_ros.synthetic import write_synthetic_drive

    drive = KittiDrive(write_synthetic_drive(tmp_path_factory.mktemp("heldout"), num_frames=1,
                                             seed=4242, progress=False))
    return drive.rgb(0), drive.groundtruth(0)


@bundled
def test_bundled_model_beats_the_median_baseline(held_out_frame) -> None:
    rgb, gt = held_out_frame
    depth = DepthEstimator(DEFAULT_MONO_MODEL).predict(rgb)
    valid = gt > 0
    model = depth_metrics(depth, gt, mask=valid)
    baseline = depth_metrics(np.full(gt.shape, np.median(gt[valid & (gt < 80)])), gt,
                             mask=valid)
    assert model["abs_rel"] < 0.2 and model["a1"] > 0.75
    assert model["abs_rel"] < 0.5 * baseline["abs_rel"]


@bundled
def test_from_backend_is_the_same_estimator_around_an_open_backend():
    """``from_backend`` (models in memory, e.g. pseudo-label teachers) runs the same pre- and
    post-processing as an estimator opened from the file."""
    opened = DepthEstimator(DEFAULT_MONO_MODEL, backend="onnxruntime", input_size=(100, 330))
    wrapped = DepthEstimator.from_backend(opened._backend, input_size=(100, 330))
    assert wrapped.input_size == opened.input_size == (96, 320)  # rounded to the stride
    assert wrapped.backend_name == opened.backend_name and wrapped.skipped_backends == []
    assert wrapped.model_path == opened.model_path and wrapped.min_fit_points == 20
    rgb = np.random.default_rng(3).integers(0, 255, (128, 416, 3), dtype=np.uint8)
    np.testing.assert_array_equal(wrapped.predict(rgb, fx=300.0), opened.predict(rgb, fx=300.0))
    with pytest.raises(ValueError, match="preprocess"):
        DepthEstimator.from_backend(opened._backend, preprocess="bicubic")
