"""Pseudo-label distillation: the labelling CLI (official Depth Anything V2 and depth_ros
teachers, resume, invalidation, bad input), the label format, the pseudo-labelled dataset and
its strong perturbations, CutMix, the 1:ratio batch stream and the pseudo-label loss."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from depth_ros.inference import DepthEstimator
from depth_ros.models import ModelMetadata
from depth_ros.models.depth_anything_v2 import DepthAnythingV2
from training import pseudo_label as cli
from training.checkpoint import save_checkpoint
from training.config import PseudoConfig
from training.data.transforms import (
    HueJitter,
    RandomGrayscale,
    cutmix,
    cutmix_boxes,
    cutmix_partners,
)
from training.pseudo.data import PseudoBatch, PseudoBatchStream, PseudoLabelFrames, mix_batches
from training.pseudo.labels import (
    MANIFEST_NAME,
    PseudoLabelError,
    PseudoManifest,
    encode_label,
    label_name,
    read_label,
)
from training.pseudo.loss import pseudo_label_loss

REPO = Path(__file__).resolve().parents[1]

ONNX_TEACHER = REPO / "depth_ros" / "weights" / "mono_cnn_synthetic.onnx"
GOOD_IMAGES = ("a/scene.png", "drive/image_02/data/0000000000.png", "photos/b.jpg")
FLOAT16_RTOL = 2e-3  # float16 keeps 11 significant bits (relative step 4.9e-4)


# --- Fixtures ----------------------------------------------------------------------------------


def official_state(seed: int) -> dict[str, torch.Tensor]:
    """A ViT-S Depth Anything V2 state dict in the released key layout, random weights (the
    last bias lifted so the relative head's ReLU passes)."""
    torch.manual_seed(seed)
    model = DepthAnythingV2("vits")
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
        model.depth_head.scratch.output_conv2[2].bias.fill_(2.0)
    return model.state_dict()


@pytest.fixture(scope="module")
def teachers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two official-layout .pth teachers and a depth_ros .pt bundle of the first one."""
    root = tmp_path_factory.mktemp("teachers")
    paths = {}
    for name, seed in (("a", 0), ("b", 5)):
        state = official_state(seed)
        paths[name] = root / f"depth_anything_v2_vits_{name}.pth"
        torch.save(state, paths[name])
        if name == "a":
            meta = ModelMetadata(architecture="depth_anything_v2", kind="mono",
                                 output="relative", stride=14, train_input_height=518,
                                 train_input_width=518, min_depth_m=1e-3, max_depth_m=80.0,
                                 train_focal_px=1.0, model_kwargs={"encoder": "vits"})
            paths["bundle"] = save_checkpoint({"state_dict": state,
                                               "metadata": meta.to_dict()}, root / "a.pt")
    return paths


def image(height: int, width: int, seed: int) -> np.ndarray:
    rgb = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return cv2.GaussianBlur(rgb, (5, 5), 0)  # image-like: neighbouring pixels correlate


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """Three readable images (PNG and JPEG, nested, one in a KITTI drive layout), one
    truncated file, one uint16 PNG, and a KITTI ``proj_depth`` PNG that must be ignored."""
    root = tmp_path / "images"
    for rel, size, seed in zip(GOOD_IMAGES, ((48, 64), (40, 90), (56, 56)), range(3),
                               strict=True):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / rel), image(*size, seed))
    (root / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    cv2.imwrite(str(root / "a" / "depth16.png"), np.full((8, 8), 1000, np.uint16))
    gt = root / "drive" / "proj_depth" / "groundtruth" / "image_02" / "0000000000.png"
    gt.parent.mkdir(parents=True)
    cv2.imwrite(str(gt), np.full((40, 90), 2560, np.uint16))
    return root


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread (--threads 1 sets it process-wide), restored afterwards: on a
    loaded 2-core machine a ViT's first pass at each new shape took seconds with two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_cli(capsys: pytest.CaptureFixture, *args: str | Path) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in args] + ["--threads", "1"])
    out, err = capsys.readouterr()
    return code, out, err


def rgb_of(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


# --- The labelling CLI -------------------------------------------------------------------------


def test_official_teacher_writes_relative_labels_equal_to_depth_estimator(
        teachers: dict[str, Path], images: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "labels"
    code, stdout, _ = run_cli(capsys, "--teacher", teachers["a"], "--images", images,
                              "--out", out, "--input-size", "70", "--device", "cpu")
    assert code == 0
    assert "3 labels" in stdout and "3 written, 0 already there), 2 unreadable" in stdout
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["kind"] == "relative" and manifest["complete"] is True
    assert manifest["label"].startswith("affine-invariant inverse depth")
    assert manifest["count"] == 3 and manifest["images"] == sorted(GOOD_IMAGES)
    assert manifest["unreadable"] == ["a/broken.png", "a/depth16.png"]
    assert manifest["input_size"] == [70, 70] and manifest["preprocess"] == "depth_anything_v2"
    assert manifest["images_root"] == str(images.resolve()) and manifest["version"] == 1
    teacher = manifest["teacher"]
    assert teacher["format"] == "depth_anything_v2_pth" and teacher["encoder"] == "vits"
    assert teacher["sha256"] == cli.sha256_of_file(teachers["a"])
    assert teacher["max_depth_m"] is None and teacher["output"] == "relative"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.npy")) == sorted(
        label_name(r) for r in GOOD_IMAGES)  # the proj_depth PNG was not labelled
    # The same weights through the file-based DepthEstimator give the same numbers.
    reference = DepthEstimator(teachers["bundle"], backend="torch", input_size=(70, 70),
                               preprocess="depth_anything_v2")
    for rel in GOOD_IMAGES:
        stored = np.load(out / label_name(rel))
        rgb = rgb_of(images / rel)
        expected = reference.predict_relative(rgb)
        assert stored.dtype == np.float16 and stored.shape == rgb.shape[:2]
        assert expected.max() - expected.min() > 0.01 * expected.max()  # not a flat output
        np.testing.assert_allclose(stored.astype(np.float32), expected, rtol=FLOAT16_RTOL,
                                   atol=1e-6)


def test_resume_skips_existing_labels_and_another_teacher_invalidates_them(
        teachers: dict[str, Path], images: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "labels"
    base = ("--images", images, "--out", out, "--input-size", "42", "--device", "cpu")
    assert run_cli(capsys, "--teacher", teachers["a"], *base)[0] == 0
    first = {r: np.load(out / label_name(r)) for r in GOOD_IMAGES}
    mtime = (out / label_name(GOOD_IMAGES[0])).stat().st_mtime_ns

    (out / label_name(GOOD_IMAGES[1])).unlink()  # as an interrupted run would leave it
    code, stdout, _ = run_cli(capsys, "--teacher", teachers["a"], *base)
    assert code == 0 and "3 labels" in stdout and "(1 written, 2 already there)" in stdout
    assert (out / label_name(GOOD_IMAGES[0])).stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(np.load(out / label_name(GOOD_IMAGES[1])),
                                  first[GOOD_IMAGES[1]])

    code, _, stderr = run_cli(capsys, "--teacher", teachers["b"], *base)
    assert code == 2 and "from another teacher" in stderr and "--overwrite" in stderr
    assert len(stderr.strip().splitlines()) == 1
    np.testing.assert_array_equal(np.load(out / label_name(GOOD_IMAGES[0])),
                                  first[GOOD_IMAGES[0]])

    code, stdout, _ = run_cli(capsys, "--teacher", teachers["b"], *base, "--overwrite")
    assert code == 0 and "(3 written, 0 already there)" in stdout
    manifest = PseudoManifest.read(out)
    assert manifest.teacher["sha256"] == cli.sha256_of_file(teachers["b"])
    for rel in GOOD_IMAGES:
        assert np.abs(np.load(out / label_name(rel)).astype(np.float32)
                      - first[rel].astype(np.float32)).max() > 1e-3


def test_onnx_model_as_metric_teacher(images: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "metric"
    # The first two paths (sorted) are the unreadable ones: no label at all is exit code 1.
    code, stdout, _ = run_cli(capsys, "--teacher", ONNX_TEACHER, "--images", images,
                              "--out", out, "--limit", "2")
    assert code == 1 and "0 labels" in stdout and "2 unreadable" in stdout
    code, stdout, _ = run_cli(capsys, "--teacher", ONNX_TEACHER, "--images", images,
                              "--out", out, "--limit", "4")
    assert code == 0 and "2 labels" in stdout
    manifest = PseudoManifest.read(out)
    assert (manifest.kind, manifest.label) == ("metric", "depth in metres")
    assert manifest.teacher["format"] == "onnx" and manifest.preprocess == "default"
    assert manifest.input_size == [128, 416]  # the model's training size
    reference = DepthEstimator(ONNX_TEACHER)
    for rel in manifest.images:
        stored = read_label(out / label_name(rel))
        expected = reference.predict_relative(rgb_of(images / rel))
        assert 0.1 <= stored.min() and stored.max() <= 80.0
        np.testing.assert_allclose(stored, expected, rtol=FLOAT16_RTOL)


def test_a_missing_teacher_exits_2_with_one_line(images: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "training" / "pseudo_label.py"), "--teacher",
         str(tmp_path / "missing.pth"), "--images", str(images), "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"pseudo_label.py: error: teacher not found: {tmp_path / 'missing.pth'}"]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args, message", [
    (("--images", "{empty}"), "no .png/.jpg images under"),
    (("--images", "{missing}"), "images directory not found"),
    (("--images", "{images}", "--max-depth", "80"),
     "--encoder and --max-depth apply to official"),
])
def test_bad_input_is_one_line_and_exit_2(images: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture, args, message) -> None:
    (tmp_path / "empty").mkdir()
    paths = {"empty": tmp_path / "empty", "missing": tmp_path / "nope", "images": images}
    argv = [a.format(**paths) for a in args]
    code, _, stderr = run_cli(capsys, "--teacher", ONNX_TEACHER, "--out", tmp_path / "o", *argv)
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1


def test_label_encoding() -> None:
    values = np.array([[0.5, np.inf], [np.nan, 1234.5]], np.float32)
    stored = encode_label(values)
    assert stored.dtype == np.dtype("<f2")
    assert np.isnan(stored[0, 1]) and np.isnan(stored[1, 0])
    assert stored[1, 1] == np.float16(1234.5)
    assert encode_label(np.array([[1e5]], np.float32)).dtype == np.dtype("<f4")  # no overflow


# --- Pseudo-labelled dataset, perturbations, CutMix -------------------------------------------


def write_pseudo_dir(root: Path, count: int, kind: str = "relative",
                     size: tuple[int, int] = (24, 32)) -> Path:
    """A pseudo-label directory written by hand: label = 1 + the image's index + a ramp."""
    images, out = root / "images", root / f"labels_{kind}"
    rels = []
    images.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        rel = f"img_{i:03d}.png"
        cv2.imwrite(str(images / rel), image(*size, 100 + i))
        ramp = np.linspace(0, 1, size[1], dtype=np.float32)[None].repeat(size[0], 0)
        label = 1.0 + i + ramp
        label[0, 0] = np.nan  # one pixel without a label
        np.save(out / label_name(rel), encode_label(label))
        rels.append(rel)
    manifest = PseudoManifest(kind=kind, teacher={"sha256": "0" * 64}, images_root=str(images),
                              input_size=[70, 70], preprocess="default", images=rels,
                              complete=True)
    (out / MANIFEST_NAME).write_text(manifest.to_json())
    return out


def test_dataset_items_and_perturbations_change_the_image_not_the_label(
        tmp_path: Path) -> None:
    directory = write_pseudo_dir(tmp_path, 3)
    plain = PseudoLabelFrames(directory, 16, 20)
    strong = PseudoConfig(dirs=[str(directory)], hflip_prob=0.0, jitter_prob=1.0,
                          grayscale_prob=0.0, blur_prob=1.0)
    perturbed = PseudoLabelFrames(directory, 16, 20, strong)
    assert len(plain) == 3 and plain.label_kind == "relative"
    item = plain[1]
    assert item["image"].shape == (3, 16, 20) and item["label"].shape == (1, 16, 20)
    assert item["kind"] == "relative" and item["mask"].dtype == torch.bool
    assert not item["mask"][0, 0, 0] and item["mask"].sum() == 16 * 20 - 1
    assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0
    # label 2 + ramp resized by nearest pixel: 2 ≤ label ≤ 3
    assert 2.0 <= item["label"][item["mask"]].min() and item["label"].max() <= 3.0
    for index in range(3):
        a, b = plain[index], perturbed[(index, 7)]
        assert (a["image"] - b["image"]).abs().mean() > 0.01
        assert torch.equal(a["label"], b["label"]) and torch.equal(a["mask"], b["mask"])
        assert torch.equal(b["image"], perturbed[(index, 7)]["image"])  # the seed decides
    assert not torch.equal(perturbed[(0, 7)]["image"], perturbed[(0, 8)]["image"])
    # Blur alone: smoother image (smaller neighbour differences), label untouched.
    blur = PseudoLabelFrames(directory, 16, 20, PseudoConfig(
        hflip_prob=0.0, jitter_prob=0.0, grayscale_prob=0.0, blur_prob=1.0,
        blur_sigma_max=2.0))
    blurred = blur[(0, 3)]
    assert (blurred["image"].diff(dim=-1).abs().mean()
            < 0.8 * plain[0]["image"].diff(dim=-1).abs().mean())
    assert torch.equal(blurred["label"], plain[0]["label"])


def test_flip_moves_image_and_label_together(tmp_path: Path) -> None:
    directory = write_pseudo_dir(tmp_path, 1)
    flipped = PseudoLabelFrames(directory, 24, 32, PseudoConfig(
        hflip_prob=1.0, jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0))[(0, 1)]
    plain = PseudoLabelFrames(directory, 24, 32)[0]
    assert torch.equal(flipped["image"], plain["image"].flip(-1))
    assert torch.equal(flipped["label"], plain["label"].flip(-1))


def test_mixed_label_kinds_are_refused(tmp_path: Path) -> None:
    relative = write_pseudo_dir(tmp_path, 2, "relative")
    metric = write_pseudo_dir(tmp_path, 2, "metric")
    with pytest.raises(PseudoLabelError, match="mix label kinds"):
        PseudoLabelFrames([relative, metric], 16, 20)
    assert len(PseudoLabelFrames([metric, metric], 16, 20)) == 4


def test_hue_jitter_and_grayscale() -> None:
    rgb = np.random.default_rng(0).random((6, 7, 3), dtype=np.float32)
    torch.manual_seed(0)
    shifted = HueJitter(0.5)({"rgb": rgb, "label": np.ones((6, 7))})
    hsv_in, hsv_out = (cv2.cvtColor(x, cv2.COLOR_RGB2HSV) for x in (rgb, shifted["rgb"]))
    turn = np.mod(hsv_out[..., 0] - hsv_in[..., 0], 360.0)
    assert np.ptp(turn) < 0.1 and 1.0 < turn[0, 0] < 359.0  # one rotation for every pixel
    np.testing.assert_allclose(hsv_out[..., 1:], hsv_in[..., 1:], atol=1e-5)
    assert shifted["label"].sum() == 42
    grey = RandomGrayscale(1.0)({"rgb": rgb})["rgb"]
    np.testing.assert_allclose(grey[..., 0], rgb @ np.array([0.299, 0.587, 0.114]), rtol=1e-6)
    assert np.array_equal(grey[..., 0], grey[..., 2])
    with pytest.raises(ValueError, match="hue"):
        HueJitter(0.6)


def test_cutmix_takes_the_partners_pixels_inside_the_box_only() -> None:
    n, h, w = 4, 20, 30
    image = torch.rand(n, 3, h, w)
    label = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, h, w) + 1
    mask = torch.rand(n, 1, h, w) > 0.3
    (m_image, m_label, m_mask), boxes, partners = cutmix(
        [image, label, mask], torch.Generator().manual_seed(3), prob=1.0)
    assert sorted(partners.tolist()) == list(range(n))
    assert all(partners[i] != i for i in range(n))
    for i in range(n):
        box = boxes[i, 0]
        rows, cols = box.any(1).nonzero(), box.any(0).nonzero()
        assert box.sum() == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert 0.02 * h * w * 0.5 <= box.sum() <= 0.4 * h * w * 1.5
        j = partners[i]
        for mixed, original in ((m_image, image), (m_label, label), (m_mask, mask)):
            assert torch.equal(mixed[i][:, box], original[j][:, box])
            assert torch.equal(mixed[i][:, ~box], original[i][:, ~box])
    assert torch.equal(image, image.clone())  # inputs untouched: a new tensor was returned
    again = cutmix([image, label, mask], torch.Generator().manual_seed(3), prob=1.0)
    assert torch.equal(again[1], boxes) and torch.equal(again[0][0], m_image)
    other = cutmix_boxes(n, h, w, torch.Generator().manual_seed(4), prob=1.0)
    assert not torch.equal(other, boxes)


def test_cutmix_probability_and_single_sample() -> None:
    generator = torch.Generator().manual_seed(0)
    boxes = cutmix_boxes(2000, 8, 8, generator, prob=0.5)
    share = boxes.flatten(1).any(1).float().mean().item()
    assert 0.45 < share < 0.55
    assert not cutmix_boxes(10, 8, 8, generator, prob=0.0).any()
    _, box, _ = cutmix([torch.rand(1, 3, 8, 8)], generator, prob=1.0)
    assert not box.any()
    assert cutmix_partners(1, generator).tolist() == [0]


# --- The batch stream ---------------------------------------------------------------------------


@pytest.fixture
def stream_set(tmp_path: Path) -> PseudoLabelFrames:
    # No flips: a label's left column (1 + the image's index) then names its image.
    return PseudoLabelFrames(write_pseudo_dir(tmp_path, 10), 12, 16,
                             PseudoConfig(hflip_prob=0.0))


def take(stream: PseudoBatchStream, count: int) -> list:
    iterator = iter(stream)
    return [next(iterator) for _ in range(count)]


def test_mix_ratio_is_one_to_two_and_the_stream_is_deterministic(
        stream_set: PseudoLabelFrames) -> None:
    config = PseudoConfig(dirs=["x"], cutmix_prob=1.0)
    labelled = [torch.zeros(2, 3, 12, 16) for _ in range(7)]  # 7 steps of 2 labelled samples
    stream = PseudoBatchStream(stream_set, labelled_batch_size=2, config=config, seed=11)
    assert stream.steps_per_epoch == 2  # 10 images // 4 per batch
    pairs = list(mix_batches(labelled, stream))
    assert len(pairs) == 7
    n_labelled = sum(len(batch) for batch, _ in pairs)
    n_pseudo = sum(len(p) for _, p in pairs)
    assert (n_labelled, n_pseudo) == (14, 28)  # 1:2
    assert [p.step for _, p in pairs] == list(range(7))
    assert all(p.region.any() and p.kind == "relative" for _, p in pairs)
    # The same seed gives the same batches; another seed others.
    again = take(PseudoBatchStream(stream_set, 2, config, seed=11), 7)
    for (_, a), b in zip(pairs, again, strict=True):
        assert torch.equal(a.image, b.image) and torch.equal(a.label, b.label)
        assert torch.equal(a.region, b.region)
    other = take(PseudoBatchStream(stream_set, 2, config, seed=12), 1)[0]
    assert not torch.equal(other.image, pairs[0][1].image)
    # Resuming at step 5 continues the same sequence (across an epoch boundary), also when
    # worker processes load the samples.
    resumed = take(PseudoBatchStream(stream_set, 2, config, seed=11, start_step=5,
                                     num_workers=2), 2)
    for (_, a), b in zip(pairs[5:], resumed, strict=True):
        assert b.step == a.step
        assert torch.equal(a.image, b.image) and torch.equal(a.label, b.label)
        assert torch.equal(a.mask, b.mask) and torch.equal(a.region, b.region)


def test_stream_shards_over_ranks_and_checks_its_size(stream_set: PseudoLabelFrames) -> None:
    config = PseudoConfig(cutmix_prob=0.0)
    rank0 = take(PseudoBatchStream(stream_set, 1, config, seed=1, rank=0, world_size=2), 2)
    rank1 = take(PseudoBatchStream(stream_set, 1, config, seed=1, rank=1, world_size=2), 2)

    def images_of(batches: list) -> set[int]:
        return {int(round(float(v))) - 1 for b in batches for v in b.label[:, 0, 5, 0]}

    # 5 images per rank, 2 batches of 2 per epoch: 4 distinct images each, none shared.
    assert len(images_of(rank0)) == len(images_of(rank1)) == 4
    assert images_of(rank0).isdisjoint(images_of(rank1))
    assert len(images_of(rank0) | images_of(rank1)) == 8
    with pytest.raises(PseudoLabelError, match="exceeds the 10 pseudo-labelled images"):
        PseudoBatchStream(stream_set, 3, config, world_size=2)


def test_batch_split_and_device() -> None:
    batch = PseudoBatch(torch.rand(5, 3, 4, 4), torch.rand(5, 1, 4, 4),
                        torch.ones(5, 1, 4, 4, dtype=torch.bool),
                        torch.zeros(5, 1, 4, 4, dtype=torch.bool), "metric", 9)
    parts = batch.split(2)
    assert [len(p) for p in parts] == [3, 2] and parts[1].step == 9
    assert torch.equal(torch.cat([p.image for p in parts]), batch.image)
    assert batch.to("cpu").label is not None


# --- Loss and configuration --------------------------------------------------------------------


def test_relative_loss_is_zero_up_to_scale_and_shift_and_positive_otherwise() -> None:
    depth = 1.0 + 20.0 * torch.rand(3, 1, 16, 20, generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(depth, dtype=torch.bool)
    label = 0.37 / depth + 0.05  # the teacher's affine-invariant inverse depth
    assert pseudo_label_loss(depth, label, mask, "relative") < 1e-5
    assert pseudo_label_loss(depth, label, mask, ["relative"] * 3, ssi_method="lstsq") < 1e-5
    wrong = depth * (1 + 0.3 * torch.rand(depth.shape, generator=torch.Generator()
                                          .manual_seed(1)))
    assert pseudo_label_loss(wrong, label, mask, "relative") > 0.05
    # CutMix: the box's label is in another affine frame; aligned per region it still fits.
    region = torch.zeros_like(mask)
    region[..., 4:12, 5:15] = True
    mixed = torch.where(region, 3.0 * label + 1.0, label)
    assert pseudo_label_loss(depth, mixed, mask, "relative", region=region) < 1e-5
    assert pseudo_label_loss(depth, mixed, mask, "relative") > 0.05
    assert pseudo_label_loss(wrong, mixed, mask, "relative", region=region) > 0.05


def test_metric_loss_is_silog_against_the_label() -> None:
    depth = 1.0 + 20.0 * torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(depth, dtype=torch.bool)
    assert pseudo_label_loss(depth, depth.clone(), mask, "metric") < 1e-3
    assert pseudo_label_loss(2 * depth, depth, mask, "metric") > 0.2  # λ < 1 keeps scale
    zero_label = torch.zeros_like(depth)  # never valid, whatever the mask says
    assert pseudo_label_loss(depth, zero_label, mask, "metric") == 0
    clamped = pseudo_label_loss(depth.clamp(max=10), depth, mask, "metric",
                                depth_range=(0.1, 10.0))
    assert clamped < 1e-3
    with pytest.raises(ValueError, match="whole batch"):
        pseudo_label_loss(depth, depth, mask, ["metric", "relative"])
    with pytest.raises(ValueError, match="metric student"):
        pseudo_label_loss(depth, depth, mask, "metric", student_output="relative")


def test_loss_has_gradients() -> None:
    depth = (1.0 + torch.rand(2, 1, 8, 8)).requires_grad_()
    region = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    region[..., :4, :4] = True
    loss = pseudo_label_loss(depth, torch.rand(2, 1, 8, 8), torch.ones_like(region),
                             "relative", region=region)
    loss.backward()
    assert depth.grad is not None and depth.grad.abs().sum() > 0


def test_config_validation_and_switch() -> None:
    assert not PseudoConfig().active
    assert PseudoConfig(dirs=["a"]).active and not PseudoConfig(dirs=["a"], enabled=False).active
    PseudoConfig(dirs=["a"]).validate()
    for change, name in (({"ratio": 0}, "ratio"), ({"cutmix_prob": 1.5}, "cutmix_prob"),
                         ({"hue": 0.7}, "hue"), ({"ssi_method": "l2"}, "ssi_method"),
                         ({"dirs": [""]}, "dirs")):
        with pytest.raises(ValueError, match=f"pseudo.{name}"):
            PseudoConfig(**change).validate()
