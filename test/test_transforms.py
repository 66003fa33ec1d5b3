"""Transforms keep K consistent with the pixels; DepthDataset serves drives read or held."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from depth_ros import kitti
from depth_ros.geometry import PinholeCamera
from depth_ros.readers import KittiRawFrames
from training.data import transforms as tr
from training.data.drives import load_frames
from training.data.sources import DepthDataset

KITTI = PinholeCamera(721.5377, 721.5377, 609.5593, 172.854, 1242, 375)


def make_sample(height: int, width: int, camera: PinholeCamera | None = None) -> tr.Sample:
    """Depth encodes the pixel (1 + v·W + u, all distinct) so a transform's output tells which
    source pixel each value came from; sparse depth holds every 7th of those."""
    index = np.arange(height * width, dtype=np.float32).reshape(height, width)
    depth = 1.0 + index
    sparse = np.where(index % 7 == 0, depth, 0).astype(np.float32)
    rng = np.random.default_rng(0)
    K = (camera or KITTI.resized(width, height)).K  # noqa: N806
    return {"rgb": rng.random((height, width, 3), dtype=np.float32), "depth": depth,
            "sparse_depth": sparse, "K": K}


def source_pixel(value: float, width: int) -> tuple[int, int]:
    """(u, v) of the source pixel a ``make_sample`` depth value came from."""
    v, u = divmod(int(round(value)) - 1, width)
    return u, v


def backproject(K: np.ndarray, u: float, v: float, depth: float) -> np.ndarray:  # noqa: N803
    return np.array([(u - K[0, 2]) / K[0, 0] * depth, (v - K[1, 2]) / K[1, 1] * depth, depth])


def assert_same_points(before: tr.Sample, after: tr.Sample, mirror: bool = False) -> None:
    """Every pixel of ``after`` back-projects to the point of the source pixel it holds."""
    width = before["rgb"].shape[1]
    height_out, width_out = after["depth"].shape
    for v in range(0, height_out, max(1, height_out // 5)):
        for u in range(0, width_out, max(1, width_out // 7)):
            d = float(after["depth"][v, u])
            su, sv = source_pixel(d, width)
            point = backproject(before["K"], su, sv, d)
            if mirror:
                point[0] = -point[0]
            np.testing.assert_allclose(backproject(after["K"], u, v, d), point, rtol=1e-9,
                                       atol=1e-6)


def test_kb_crop_is_the_benchmark_window():
    sample = make_sample(375, 1242, KITTI)
    out = tr.KBCrop()(sample)
    assert out["rgb"].shape == (352, 1216, 3) and out["depth"].shape == (352, 1216)
    # top = 375 − 352, left = (1242 − 1216) / 2
    assert source_pixel(out["depth"][0, 0], 1242) == (13, 23)
    np.testing.assert_allclose(out["K"][:2, 2], [609.5593 - 13, 172.854 - 23])
    assert out["K"][0, 0] == KITTI.fx
    assert_same_points(sample, out)
    np.testing.assert_array_equal(out["rgb"], sample["rgb"][23:, 13:1229])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_crop_shifts_the_principal_point(seed):
    torch.manual_seed(seed)
    sample = make_sample(30, 40)
    out = tr.RandomCrop(12, 20)(sample)
    left, top = source_pixel(out["depth"][0, 0], 40)
    np.testing.assert_allclose(out["K"][:2, 2], sample["K"][:2, 2] - [left, top])
    assert_same_points(sample, out)
    np.testing.assert_array_equal(out["sparse_depth"],
                                  sample["sparse_depth"][top:top + 12, left:left + 20])


def test_kb_crop_of_a_small_image():
    with pytest.raises(ValueError, match=r"crop 352x1216 at \(-2, 3\) does not fit in a 350x1222"):
        tr.KBCrop()(make_sample(350, 1222))


def test_random_crop_larger_than_the_image():
    with pytest.raises(ValueError, match="larger than the 10x10 image"):
        tr.RandomCrop(12, 8)(make_sample(10, 10))


def test_flip_mirrors_the_scene():
    sample = make_sample(10, 16)
    out = tr.hflip(sample)
    assert source_pixel(out["depth"][3, 0], 16) == (15, 3)
    assert out["K"][0, 2] == pytest.approx(16 - 1 - sample["K"][0, 2])
    assert_same_points(sample, out, mirror=True)
    twice = tr.hflip(out)
    np.testing.assert_allclose(twice["K"], sample["K"])
    np.testing.assert_array_equal(twice["depth"], sample["depth"])
    torch.manual_seed(0)
    assert tr.RandomHorizontalFlip(prob=0.0)(sample) is sample


@pytest.mark.parametrize("width, height", [(8, 5), (32, 20), (24, 15)])
def test_resize_keeps_rays(width, height):
    sample = make_sample(10, 16)
    out = tr.resize(sample, width, height)
    sx, sy = width / 16, height / 10
    assert out["rgb"].shape == (height, width, 3)
    # Pixel-centre convention: target pixel (u, v) sees source point ((u + .5)/s − .5, ...),
    # and both back-project to the same ray.
    for u, v in ((0, 0), (width - 1, height - 1), (width // 2, height // 3)):
        su, sv = (u + 0.5) / sx - 0.5, (v + 0.5) / sy - 0.5
        np.testing.assert_allclose(backproject(out["K"], u, v, 7.0),
                                   backproject(sample["K"], su, sv, 7.0), atol=1e-12)
        # Nearest: the depth comes from the source pixel containing that point, unblended.
        assert source_pixel(out["depth"][v, u], 16) == (int(np.floor(su + 0.5)),
                                                        int(np.floor(sv + 0.5)))
    np.testing.assert_allclose(out["K"], PinholeCamera.from_K(sample["K"], 16, 10)
                               .resized(width, height).K)
    np.testing.assert_array_equal(tr.Resize(width, height)(sample)["depth"], out["depth"])


def test_resize_never_averages_depth_across_an_edge():
    sample = make_sample(12, 12)
    sample["depth"] = np.where(np.arange(12)[None, :] < 5, 2.0, 50.0).repeat(12, 0)
    sample["depth"] = sample["depth"].astype(np.float32)
    sample["depth"][0, :3] = 0.0  # no data stays no data, never blended into a neighbour
    for size in ((5, 5), (7, 9), (30, 17)):
        values = set(np.unique(tr.resize(sample, *size)["depth"]).tolist())
        assert values <= {0.0, 2.0, 50.0}


def test_resize_keeps_every_lidar_point_and_the_nearest():
    sample = make_sample(8, 8)
    sparse = np.zeros((8, 8), np.float32)
    sparse[0, 0], sparse[0, 1] = 9.0, 4.0  # same 2×2 block: the nearer one survives
    sparse[5, 6], sparse[7, 7] = 3.0, 6.0
    sample["sparse_depth"] = sparse
    down = tr.resize(sample, 4, 4)["sparse_depth"]
    assert down[0, 0] == 4.0 and down[2, 3] == 3.0 and down[3, 3] == 6.0
    assert np.count_nonzero(down) == 3
    up = tr.resize(sample, 16, 16)["sparse_depth"]
    assert np.count_nonzero(up) == 4  # one pixel per point, not smeared


@pytest.mark.parametrize("transform", [tr.ColorJitter(0.4, 0.4, 0.4), tr.GaussianBlur(prob=1.0)])
def test_photometric_transforms_touch_only_the_image(transform):
    torch.manual_seed(0)
    sample = make_sample(16, 16)
    out = transform(sample)
    assert out["rgb"].shape == sample["rgb"].shape and out["rgb"].dtype == np.float32
    assert out["rgb"].min() >= 0.0 and out["rgb"].max() <= 1.0
    assert not np.allclose(out["rgb"], sample["rgb"])
    for key in ("depth", "sparse_depth", "K"):
        np.testing.assert_array_equal(out[key], sample[key])


def test_gaussian_blur_smooths():
    torch.manual_seed(0)
    sample = make_sample(32, 32)
    assert tr.GaussianBlur(1.0, 1.5, 1.5)(sample)["rgb"].std() < 0.5 * sample["rgb"].std()


def test_to_tensors():
    sample = make_sample(4, 6)
    out = tr.to_tensors(sample)
    assert out["image"].shape == (3, 4, 6) and out["K"].dtype == torch.float32
    assert out["depth"].shape == (1, 4, 6) and out["sparse_mask"].dtype == torch.bool
    assert int(out["sparse_mask"].sum()) == int((sample["sparse_depth"] > 0).sum())
    assert bool(out["depth_mask"].all())


def write_engine_drive(root: Path, velodyne: bool) -> Path:
    """A tiny engine-style drive (8×6, fx = 10, c = (4, 3)), optionally with velodyne scans."""
    camera = PinholeCamera(10.0, 10.0, 4.0, 3.0, 8, 6)
    drive = root / "2011_09_26" / "2011_09_26_drive_0001_sync"
    kitti.write_calib_file(drive.parent / "calib_cam_to_cam.txt",
                           kitti.cam_to_cam_calibration(camera))
    for i in range(3):
        name = f"{kitti.frame_name(i)}.png"
        kitti.write_rgb_png(drive / "image_02" / "data" / name, np.full((6, 8, 3), 51, np.uint8))
        kitti.write_depth_png(drive / "proj_depth" / "groundtruth" / "image_02" / name,
                              np.full((6, 8), 10.0 + i))
        if velodyne:
            scan_dir = drive / "velodyne_points" / "data"
            scan_dir.mkdir(parents=True, exist_ok=True)
            # Velodyne at camera 00 (x forward, y left, z up); camera 02 sits 6 cm to its
            # left, so P_rect_02 shifts the point by fx·0.06/5 = 0.12 px: still pixel (5, 3).
            scan = np.array([[5.0, -0.5, 0.0, 1.0]], np.float32)
            scan.tofile(scan_dir / f"{kitti.frame_name(i)}.bin")
    if velodyne:
        kitti.write_calib_file(drive.parent / "calib_velo_to_cam.txt",
                               {"R": np.array([0, -1, 0, 0, 0, -1, 1, 0, 0.0]),
                                "T": np.zeros(3)})
    return drive


@pytest.mark.parametrize("velodyne", [False, True])
def test_depth_dataset_serves_a_drive_read_or_held_in_memory(tmp_path, velodyne):
    """Frame by frame through its reader or decoded once into memory, a drive gives the same
    items; depth and LiDAR are rescaled from the drive's fx = 10 to the canonical 20."""
    write_engine_drive(tmp_path, velodyne)
    drives = kitti.find_drives(tmp_path)
    read = DepthDataset(KittiRawFrames(drives), canonical_focal_px=20.0, lidar=True)
    held = DepthDataset(load_frames(drives, height=6, width=8, sparse=velodyne), 20.0,
                        lidar=velodyne)
    assert len(read) == len(held) == 3
    image, depth, sparse = read[1]
    assert image.shape == (3, 6, 8) and image[0, 0, 0].item() == pytest.approx(0.2)
    assert depth.shape == (1, 6, 8) and bool((depth == 22.0).all())
    if velodyne:
        assert int((sparse > 0).sum()) == 1
        assert sparse[0, 3, 5].item() == pytest.approx(10.0, abs=1e-4)
    else:  # no LiDAR yet: zeros, not an error
        assert float(sparse.abs().sum()) == 0.0
    held_item = held[1]
    assert torch.equal(held_item[0], image) and torch.equal(held_item[1], depth)
    if velodyne:
        torch.testing.assert_close(held_item[2], sparse)


def test_dataset_with_transforms_batches(tmp_path):
    write_engine_drive(tmp_path, velodyne=True)
    torch.manual_seed(0)
    transform = tr.Compose([tr.RandomCrop(4, 6), tr.RandomHorizontalFlip(), tr.ColorJitter()])
    dataset = DepthDataset(KittiRawFrames(kitti.find_drives(tmp_path)), 10.0, transform,
                           lidar=True)
    image, depth, sparse = next(iter(DataLoader(dataset, batch_size=3)))
    assert image.shape == (3, 3, 4, 6) and depth.shape == sparse.shape == (3, 1, 4, 6)
    # Each frame's constant ground truth (10, 11, 12 m at fx = 10, canonical 10) survives.
    assert depth.flatten(1).amin(1).tolist() == depth.flatten(1).amax(1).tolist() == [10, 11, 12]
