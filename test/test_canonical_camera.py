"""The ``canonical`` resize policy: each frame resized so its focal length is the model's
training focal length (aspect ratio kept), padded to the stride, tiled beyond the maximum
network size, run, undone. A stand-in backend records what the network is given."""

from __future__ import annotations

import itertools
import logging
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from depth_ros.inference import DepthEstimator
from depth_ros.inference.preprocessing import resize_rgb, tile_starts, tile_weights
from depth_ros.inference.processor import FrameProcessor, ProcessorOptions
from depth_ros.models import ModelMetadata, read_onnx_metadata
from depth_ros.models.metadata import MetadataError

REPO = Path(__file__).resolve().parents[1]
TRAIN_FOCAL = 242.39  # the bundled mono model's: KITTI's 721.5 px at 416 of 1242 columns


def canonical_metadata(**changes) -> ModelMetadata:
    """A canonical mono model's metadata (128×416 training crops, stride 32)."""
    values = dict(architecture="mono_cnn", kind="mono", output="metric", stride=32,
                  train_input_height=128, train_input_width=416, min_depth_m=0.1,
                  max_depth_m=500.0, train_focal_px=TRAIN_FOCAL, resize_policy="canonical")
    values.update(changes)
    return ModelMetadata(**values)


class RecordingBackend:
    """Depth = 1 + 50 · the red channel at each network pixel (a pixelwise function, so any
    tiling must give the same answer as one run); records every input's shape and data."""

    name = "stand-in"
    model_path = "stand_in.onnx"

    def __init__(self, metadata: ModelMetadata) -> None:
        self.metadata = metadata
        self.inputs: list[np.ndarray] = []

    def run(self, image: np.ndarray, sparse: np.ndarray | None) -> np.ndarray:
        """The stand-in network."""
        assert image.shape[2] % self.metadata.stride == 0
        assert image.shape[3] % self.metadata.stride == 0
        self.inputs.append(image.copy())
        return (1.0 + 50.0 * image[:, :1]).astype(np.float32)


def estimator(metadata: ModelMetadata | None = None, **kwargs) -> DepthEstimator:
    """A DepthEstimator around a fresh stand-in backend."""
    return DepthEstimator.from_backend(RecordingBackend(metadata or canonical_metadata()),
                                       **kwargs)


def smooth_image(height: int, width: int) -> np.ndarray:
    """Gradients (resizing keeps them nearly exact), distinct per channel."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack([40 + 170 * x / width, 30 + 190 * y / height,
                    128 + 60 * np.sin(x / 37.0)], axis=-1)
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


# (width, height, fx) -> the resized (height, width) and the network (height, width), by hand:
# s = 242.39 / fx; sides round(s · side); the network pads them up to multiples of 32.
CAMERAS = [
    ((1242, 375, 721.5), (126, 417), (128, 448)),  # KITTI
    ((640, 480, 500.0), (233, 310), (256, 320)),  # VGA 4:3
    ((1280, 720, 900.0), (194, 345), (224, 352)),  # 720p 16:9
    ((621, 188, 360.75), (126, 417), (128, 448)),  # KITTI 2× downscaled
    ((320, 240, 250.0), (233, 310), (256, 320)),  # VGA 2× downscaled
    ((640, 360, 450.0), (194, 345), (224, 352)),  # 720p 2× downscaled
]


@pytest.mark.parametrize(("camera", "resized", "network"), CAMERAS)
def test_each_camera_runs_at_its_canonical_size(camera, resized, network) -> None:
    width, height, fx = camera
    est = estimator()
    plan = est.canonical_plan(height, width, fx)
    assert plan.resized == resized and plan.padded == network and plan.num_tiles == 1
    assert est.network_size(height, width, fx) == network
    depth = est.predict(smooth_image(height, width), fx=fx)
    assert depth.shape == (height, width) and np.isfinite(depth).all()
    (net_input,) = est._backend.inputs
    assert net_input.shape == (1, 3, *network)
    # The aspect ratio survives the resize (to the rounding of one pixel).
    assert abs(resized[1] / resized[0] - width / height) < width / height / resized[0] + 1e-9


def test_downscaled_frames_see_the_same_network_input() -> None:
    """A frame and its 2× downscale (fx halved) reach the network at the same size with the
    same content: that is what makes their metric depth agree."""
    full = smooth_image(480, 640)
    half = cv2.resize(full, (320, 240), interpolation=cv2.INTER_AREA)
    est = estimator()
    est.predict(full, fx=500.0)
    est.predict(half, fx=250.0)
    a, b = est._backend.inputs
    assert a.shape == b.shape
    assert np.abs(a - b)[..., :233, :310].mean() < 2 / 255


def test_pad_and_crop_round_trip_exactly() -> None:
    """The network sees the resized frame with its bottom and right edges replicated to the
    stride; the answer is cropped back to the resized frame, resized to the frame's size and
    scaled by the exact focal the rounding left."""
    height, width, fx = 480, 640, 500.0
    rgb = smooth_image(height, width)
    est = estimator()
    depth = est.predict(rgb, fx=fx)
    (net_input,) = est._backend.inputs
    resized = resize_rgb(rgb, 310, 233).astype(np.float32) / 255
    np.testing.assert_allclose(net_input[0, :, :233, :310], resized.transpose(2, 0, 1),
                               atol=1e-6)
    # Pad: rows below repeat the last row, columns to the right the last column.
    np.testing.assert_array_equal(net_input[0, :, 233:, :310],
                                  np.repeat(net_input[0, :, 232:233, :310], 256 - 233, axis=1))
    np.testing.assert_array_equal(net_input[0, :, :, 310:],
                                  np.repeat(net_input[0, :, :, 309:310], 320 - 310, axis=2))
    # Out: crop, resize back, scale by fx · (310 / 640) / train focal (0.99946 here).
    rescale = fx * 310 / 640 / TRAIN_FOCAL
    expected = cv2.resize(1 + 50 * resized[..., 0], (width, height),
                          interpolation=cv2.INTER_LINEAR) * rescale
    np.testing.assert_allclose(depth, expected, rtol=1e-5)


def test_rounding_of_the_resized_size_is_corrected() -> None:
    """KITTI: s = 242.39 / 721.5 gives 417.25 columns, 417 are used: the depth is scaled by
    721.5 · 417 / 1242 / 242.39 (0.99940), not left at the canonical focal."""
    class Constant(RecordingBackend):
        def run(self, image, sparse):
            return np.full((1, 1, *image.shape[2:]), 10.0, np.float32)

    est = DepthEstimator.from_backend(Constant(canonical_metadata()))
    depth = est.predict(np.zeros((375, 1242, 3), np.uint8), fx=721.5)
    np.testing.assert_allclose(depth, 10.0 * 721.5 * 417 / 1242 / TRAIN_FOCAL, rtol=1e-6)


def test_tiles_cover_the_frame_and_blend_to_the_untiled_answer() -> None:
    """Beyond the maximum size the frame runs in overlapping tiles of at most that size
    (never shrunk: that would change the focal); a pixelwise network must then give exactly
    the untiled answer, which proves every tile lands where it came from."""
    rgb, fx = smooth_image(375, 1242), 721.5
    whole = estimator().predict(rgb, fx=fx)
    tiled_est = estimator(max_input_size=(100, 200))  # rounded down to (96, 192)
    assert tiled_est.max_input_size == (96, 192)
    plan = tiled_est.canonical_plan(375, 1242, fx)
    # 128×448 in 96×192 tiles, a quarter tile (32 rows, 32 columns here) of overlap at least.
    assert plan.padded == (128, 448) and plan.tile == (96, 192)
    assert plan.rows == (0, 32) and plan.cols == (0, 128, 256)
    tiled = tiled_est.predict(rgb, fx=fx)
    inputs = tiled_est._backend.inputs
    assert len(inputs) == 6 and all(x.shape == (1, 3, 96, 192) for x in inputs)
    np.testing.assert_allclose(tiled, whole, rtol=1e-5)
    # The metadata's limit does the same.
    meta_est = estimator(canonical_metadata(max_input_height=96, max_input_width=192))
    assert meta_est.canonical_plan(375, 1242, fx) == plan


def test_tile_blending_fades_between_disagreeing_tiles() -> None:
    """Tiles that disagree (a CNN's tiles do, a little) meet in a ramp, not a seam: a network
    that answers each tile's index gives the own index in the middle, a monotonic blend
    across each overlap."""
    class TileIndex(RecordingBackend):
        def run(self, image, sparse):
            self.inputs.append(image)
            return np.full((1, 1, *image.shape[2:]), float(len(self.inputs)), np.float32)

    meta = canonical_metadata(max_depth_m=500.0)
    est = DepthEstimator.from_backend(TileIndex(meta), max_input_size=(128, 192))
    # fx = train focal: no resize; 128×448 in three tiles at columns 0, 128, 256.
    rgb = smooth_image(128, 448)
    out = est.predict(rgb, fx=TRAIN_FOCAL)
    row = out[64]
    assert row[0] == pytest.approx(1) and row[447] == pytest.approx(3)
    np.testing.assert_allclose(row[192:256], 2)  # only the middle tile reaches these
    assert np.all(np.diff(row[128:192]) >= -1e-6) and np.all(np.diff(row[256:320]) >= -1e-6)
    assert 1 < row[150] < 2 and 2 < row[300] < 3


@pytest.mark.parametrize(("length", "tile"), [(448, 192), (1024, 512), (2048, 352), (96, 64)])
def test_tile_starts_cover_with_overlap(length: int, tile: int) -> None:
    starts = tile_starts(length, tile, 32)
    assert starts[0] == 0 and starts[-1] + tile == length
    assert all(s % 32 == 0 for s in starts)
    overlaps = [a + tile - b for a, b in itertools.pairwise(starts)]
    assert all(o >= max(32, tile // 4 // 32 * 32) for o in overlaps)
    weights = tile_weights(starts, tile)
    total = np.zeros(length)
    for start, w in zip(starts, weights, strict=True):
        total[start:start + tile] += w
    assert total.min() > 0.5  # every pixel is covered by a real weight


def test_without_fx_the_training_field_of_view_is_assumed_with_one_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    """No fx: fx = train focal · width / train width (KITTI's field of view): a 1242×375
    frame resizes to exactly the 416 training columns, depth is left unscaled."""
    est = estimator()
    rgb = smooth_image(375, 1242)
    with caplog.at_level(logging.WARNING, logger="depth_ros.inference.estimator"):
        first = est.predict(rgb)
        est.predict(rgb)
        est.predict(smooth_image(480, 640))
    warnings = [r for r in caplog.records if "no focal length" in r.getMessage()]
    assert len(warnings) == 1
    assert est.assumed_fx(1242) == pytest.approx(TRAIN_FOCAL * 1242 / 416)
    plan = est.canonical_plan(375, 1242, None)
    assert plan.resized == (126, 416) and plan.padded == (128, 416)
    # 640 wide: the same field of view, 416 columns, 312 rows.
    assert est.canonical_plan(480, 640, None).resized == (312, 416)
    with_fx = est.predict(rgb, fx=est.assumed_fx(1242))
    np.testing.assert_array_equal(first, with_fx)


def test_an_absurd_focal_length_is_one_clear_error() -> None:
    """fx 20 px on a 1242-wide frame would ask for a 15000-column network input."""
    with pytest.raises(ValueError, match="beyond 8192 px a side: is fx"):
        estimator().predict(smooth_image(375, 1242), fx=20.0)


def test_fixed_policy_is_unchanged_and_the_policy_can_be_overridden() -> None:
    """A fixed model (older files) squeezes every camera into its training size; the
    ``resize_policy`` argument runs it canonically (how the consistency test measures it)."""
    fixed = canonical_metadata(resize_policy="fixed")
    est = estimator(fixed)
    assert est.resize_policy == "fixed" and est.network_size(480, 640, 500.0) == (128, 416)
    est.predict(smooth_image(480, 640), fx=500.0)
    assert est._backend.inputs[0].shape == (1, 3, 128, 416)
    over = estimator(fixed, resize_policy="canonical")
    assert over.resize_policy == "canonical" and over.network_size(480, 640, 500.0) == (256, 320)
    with pytest.raises(ValueError, match="native"):
        estimator(canonical_metadata(resize_policy="native"), resize_policy="canonical")
    with pytest.raises(ValueError, match="preprocess"):
        estimator(preprocess="depth_anything_v2")
    with pytest.raises(ValueError, match="max_input_size"):
        estimator(max_input_size=(0, 64))


def test_fusion_lidar_follows_the_canonical_resize() -> None:
    """A canonical fusion model's LiDAR is resampled point by point to the resized frame,
    scaled to the canonical focal and padded with 'no return'."""
    class Fusion(RecordingBackend):
        def run(self, image, sparse):
            self.sparse = sparse.copy()
            return np.full((1, 1, *image.shape[2:]), 10.0, np.float32)

    est = DepthEstimator.from_backend(Fusion(canonical_metadata(kind="fusion")))
    sparse = np.zeros((480, 640), np.float32)
    sparse[200, 300] = 20.0
    est.predict(smooth_image(480, 640), sparse, fx=500.0)
    net_sparse = est._backend.sparse
    assert net_sparse.shape == (1, 1, 256, 320)
    (ys, xs) = np.nonzero(net_sparse[0, 0])
    assert len(ys) == 1 and abs(ys[0] - 200 * 233 / 480) < 1 and abs(xs[0] - 300 * 310 / 640) < 1
    # 20 m at fx 500 is 20 · 242.39 / (500 · 310 / 640) m at the network's focal.
    assert net_sparse[0, 0, ys[0], xs[0]] == pytest.approx(20 * TRAIN_FOCAL / (500 * 310 / 640))


def test_processor_logs_the_network_size_once_per_resolution() -> None:
    """The nodes' frame processor passes CameraInfo's fx and says what size the network runs
    at when the camera changes, not every frame."""
    est = estimator()
    processor = FrameProcessor(est, ProcessorOptions(0.1, 500.0), "stand-in")
    vga = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
    hd = np.array([[900.0, 0, 640], [0, 900.0, 360], [0, 0, 1]])
    lines = []
    for rgb, intrinsics in [(smooth_image(480, 640), vga), (smooth_image(480, 640), vga),
                            (smooth_image(720, 1280), hd), (smooth_image(720, 1280), hd)]:
        out = processor.process(rgb, intrinsics)
        assert out.depth.shape == rgb.shape[:2]
        lines += [text for _, text in out.logs if "network input" in text]
    assert lines == [
        "640x480 frames (fx 500.0) run at the canonical focal 242.4 px: resized to 310x233, "
        "network input 320x256",
        "1280x720 frames (fx 900.0) run at the canonical focal 242.4 px: resized to 345x194, "
        "network input 352x224"]
    shapes = [x.shape[2:] for x in est._backend.inputs]
    assert shapes == [(256, 320)] * 2 + [(224, 352)] * 2


def test_metadata_max_size_round_trips_and_older_files_load_as_fixed() -> None:
    meta = canonical_metadata(max_input_height=384, max_input_width=1024)
    props = meta.to_dict()
    assert props["resize_policy"] == "canonical" and props["max_input_width"] == "1024"
    assert ModelMetadata.from_dict(props) == meta and meta.max_input_size == (384, 1024)
    older = {k: v for k, v in props.items()
             if k not in ("resize_policy", "max_input_height", "max_input_width")}
    loaded = ModelMetadata.from_dict(older)
    assert loaded.resize_policy == "fixed" and loaded.max_input_size is None
    with pytest.raises(MetadataError, match="multiple of the stride"):
        canonical_metadata(max_input_height=100, max_input_width=1024)
    with pytest.raises(MetadataError, match="both"):
        canonical_metadata(max_input_height=384)


@pytest.mark.slow
def test_export_carries_the_policy_into_the_onnx_file(tmp_path: Path) -> None:
    """training/export.py writes the checkpoint's metadata, resize policy and maximum size
    included, into the ONNX file, and DepthEstimator runs it canonically."""
    torch = pytest.importorskip("torch")
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from depth_ros.models import create_model
    from training.checkpoint import save_checkpoint

    meta = canonical_metadata(max_depth_m=80.0, model_kwargs={"base_channels": 8},
                              max_input_height=256, max_input_width=512)
    torch.manual_seed(0)
    model = create_model("mono_cnn", **meta.model_kwargs).eval()
    checkpoint = tmp_path / "best.pt"
    save_checkpoint({"state_dict": model.state_dict(), "metadata": meta.to_dict()}, checkpoint)
    output = tmp_path / "canonical.onnx"
    command = [sys.executable, "training/export.py", "--checkpoint", str(checkpoint),
               "--output", str(output), "--check-size", "128x416", "--no-release-checkpoint"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert read_onnx_metadata(output) == meta
    est = DepthEstimator(output, backend="onnxruntime", num_threads=1)
    assert est.resize_policy == "canonical" and est.max_input_size == (256, 512)
    depth = est.predict(smooth_image(720, 1280), fx=900.0)
    assert depth.shape == (720, 1280) and np.isfinite(depth).all()


def test_a_tensorrt_engine_of_a_canonical_model_covers_every_camera(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """TensorRT engines have fixed size ranges: a canonical model's engine (fake TensorRT
    here, as test_tensorrt_fakes) spans one stride to the metadata's maximum, so the VGA and
    720p cameras' sizes run without a rebuild."""
    pytest.importorskip("torch")
    import onnx
    from test_tensorrt_fakes import install

    from depth_ros.weights import DEFAULT_MONO_MODEL

    install(monkeypatch)
    proto = onnx.load(str(DEFAULT_MONO_MODEL))
    props = {p.key: p.value for p in proto.metadata_props}
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, {**props, "resize_policy": "canonical",
                                        "max_input_height": "256", "max_input_width": "512"})
    model = tmp_path / "canonical.onnx"
    onnx.save(proto, str(model))
    est = DepthEstimator(model, backend="tensorrt", engine_cache=tmp_path / "engines")
    image = est._backend.profile["image"]
    assert (image.min, image.opt, image.max) == ((1, 3, 32, 32), (1, 3, 128, 416),
                                                 (1, 3, 256, 512))
    for height, width, fx in ((480, 640, 500.0), (720, 1280, 900.0), (375, 1242, 721.5)):
        net = est.network_size(height, width, fx)
        assert est._backend.set_shapes({"image": (1, 3, *net)}) == (1, 1, *net)
