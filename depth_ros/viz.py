"""Pictures of depth: colourised depth images and side-by-side panels, written as PNG."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np


def colorize_depth(depth_m: np.ndarray, min_depth_m: float | None = None,
                   max_depth_m: float | None = None, colormap: int = cv2.COLORMAP_TURBO
                   ) -> np.ndarray:
    """Colourise metric depth as H×W×3 uint8 RGB; near is red, far is blue, invalid is black.

    Colours follow inverse depth, which spreads the near range where detail matters. Without
    an explicit range, the 2nd–98th percentiles of the valid depths are used.
    """
    depth = np.asarray(depth_m, dtype=np.float32)
    if depth.ndim != 2:
        raise ValueError(f"depth must be H×W, got shape {depth.shape}")
    valid = np.isfinite(depth) & (depth > 0)
    out = np.zeros((*depth.shape, 3), dtype=np.uint8)
    if not valid.any():
        return out
    if min_depth_m is None or max_depth_m is None:
        lo, hi = np.percentile(depth[valid], [2.0, 98.0])
        min_depth_m = float(lo) if min_depth_m is None else min_depth_m
        max_depth_m = float(hi) if max_depth_m is None else max_depth_m
    if not 0 < min_depth_m < max_depth_m:
        max_depth_m = min_depth_m * 1.01 + 1e-3 if min_depth_m > 0 else 1.0
        min_depth_m = max(min_depth_m, 1e-3)
    inv_lo, inv_hi = 1.0 / max_depth_m, 1.0 / min_depth_m
    # Whole-image arithmetic, invalid pixels masked out at the end: boolean indexing at every
    # step cost 20x as much (16 ms at 1216×352, the node's largest cost after inference).
    with np.errstate(invalid="ignore"):  # NaN's cast value is dropped by the mask
        inv = 1.0 / np.clip(depth, min_depth_m, max_depth_m)
        scaled = np.round(255.0 * (inv - inv_lo) / (inv_hi - inv_lo)).astype(np.uint8)
    # TURBO maps 0 to dark blue (far) and 255 to dark red (near).
    colored = cv2.cvtColor(cv2.applyColorMap(scaled, colormap), cv2.COLOR_BGR2RGB)
    cv2.copyTo(colored, valid.view(np.uint8), out)
    return out


def stack_panels(panels: list[np.ndarray], labels: list[str] | None = None) -> np.ndarray:
    """Stack H×W×3 uint8 RGB panels vertically (resized to the first one's width), labelled."""
    if not panels:
        raise ValueError("no panels to stack")
    width = panels[0].shape[1]
    rows = []
    for i, panel in enumerate(panels):
        if panel.shape[1] != width:
            height = round(panel.shape[0] * width / panel.shape[1])
            panel = cv2.resize(panel, (width, height), interpolation=cv2.INTER_AREA)
        panel = np.ascontiguousarray(panel)
        if labels is not None and i < len(labels):
            cv2.putText(panel, labels[i], (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7,
                        (255, 255, 255), 2, cv2.LINE_AA)
        rows.append(panel)
    return np.vstack(rows)


def write_png(path: str | os.PathLike, rgb: np.ndarray) -> None:
    """Write an H×W×3 uint8 RGB picture as PNG, creating the directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(os.fspath(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")


def birds_eye_view(points: np.ndarray, x_range_m: tuple[float, float] = (-20.0, 20.0),
                   z_range_m: tuple[float, float] = (0.0, 60.0), metres_per_px: float = 0.1,
                   height_range_m: tuple[float, float] = (-2.0, 3.0)) -> np.ndarray:
    """Top-down view of N×3 camera-optical-frame points (x right, y down, z forward).

    Each cell shows the highest point above it, coloured by its height above the camera
    (``height_range_m``; blue low, red high: a camera 1.65 m up sees the road in blue);
    the camera sits at the bottom centre, looking up the picture. Grid lines every 10 m.
    """
    points = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    points = points[np.isfinite(points).all(axis=1)]
    width = round((x_range_m[1] - x_range_m[0]) / metres_per_px)
    height = round((z_range_m[1] - z_range_m[0]) / metres_per_px)
    out = np.zeros((height, width, 3), dtype=np.uint8)
    for metres in np.arange(0.0, z_range_m[1], 10.0):
        row = height - 1 - round((metres - z_range_m[0]) / metres_per_px)
        if 0 <= row < height:
            out[row, :] = 60
    col = ((points[:, 0] - x_range_m[0]) / metres_per_px).astype(np.int64)
    row = height - 1 - ((points[:, 2] - z_range_m[0]) / metres_per_px).astype(np.int64)
    up = -points[:, 1]
    keep = (col >= 0) & (col < width) & (row >= 0) & (row < height)
    col, row, up = col[keep], row[keep], up[keep]
    # Draw low points first so that the highest point of a cell ends on top.
    order = np.argsort(up)
    lo, hi = height_range_m
    level = np.clip((up[order] - lo) / (hi - lo), 0.0, 1.0)
    lut = cv2.cvtColor(cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None],
                                         cv2.COLORMAP_TURBO), cv2.COLOR_BGR2RGB)[:, 0]
    out[row[order], col[order]] = lut[np.round(level * 255).astype(np.int64)]
    return out


def _dimmed(rgb: np.ndarray) -> np.ndarray:
    """The backdrop of the overlays: ``rgb`` at 45 % brightness."""
    return (np.asarray(rgb, np.float32) * 0.45).astype(np.uint8)


def _grow_nearest(sparse: np.ndarray, dot_px: int) -> np.ndarray:
    """Sparse depth (0 or non-finite = none) with each point grown to a ``dot_px`` square,
    the nearest point winning where squares overlap (as it would hide the others); inf where
    no point reaches."""
    far_first = np.where(np.isfinite(sparse) & (sparse > 0), sparse, np.inf)
    if dot_px > 1:
        return -cv2.dilate(-far_first, np.ones((dot_px, dot_px), np.uint8))
    return far_first


def side_by_side(columns: list[np.ndarray], scale: float = 1.0) -> np.ndarray:
    """H×W×3 panels side by side, bottom-padded to the tallest, a 4-pixel gap after each,
    the sheet resized by ``scale`` (area averaging)."""
    height = max(c.shape[0] for c in columns)
    sheet = np.hstack([np.pad(c, ((0, height - c.shape[0]), (0, 4), (0, 0))) for c in columns])
    if scale != 1.0:
        size = (max(1, round(sheet.shape[1] * scale)), max(1, round(sheet.shape[0] * scale)))
        sheet = cv2.resize(sheet, size, interpolation=cv2.INTER_AREA)
    return sheet


def lidar_overlay(rgb: np.ndarray, sparse_depth_m: np.ndarray, min_depth_m: float = 3.0,
                  max_depth_m: float = 80.0, dot_px: int = 2) -> np.ndarray:
    """Projected LiDAR points (sparse depth, 0 = none) drawn as coloured dots on a dimmed
    copy of ``rgb``; colours as ``colorize_depth`` over a fixed range, so frames compare."""
    sparse = np.asarray(sparse_depth_m, dtype=np.float32)
    if sparse.shape != np.shape(rgb)[:2]:
        raise ValueError(f"sparse depth {sparse.shape} does not match the image "
                         f"{np.shape(rgb)[:2]}")
    grown = _grow_nearest(sparse, dot_px)
    dots = np.isfinite(grown)
    colours = colorize_depth(np.where(dots, grown, 0), min_depth_m, max_depth_m)
    out = _dimmed(rgb)
    out[dots] = colours[dots]
    return out


def ratio_overlay(rgb: np.ndarray, depth_m: np.ndarray, reference_m: np.ndarray,
                  max_log2: float = 0.5, dot_px: int = 2) -> np.ndarray:
    """Where ``reference_m`` (sparse depth, 0 = none, e.g. a LiDAR scan) has a value, a dot
    coloured by log2(depth / reference) on a dimmed copy of ``rgb``: red too far, blue too
    near, white right, saturating at ±``max_log2`` (0.5: ×1.41). Dots are grown as in
    ``lidar_overlay`` (the nearest reference wins) and compared with the prediction under
    them. What a wrong region of a prediction looks like, at a glance."""
    reference = np.asarray(reference_m, dtype=np.float32)
    depth = np.asarray(depth_m, dtype=np.float32)
    if reference.shape != depth.shape or reference.shape != np.shape(rgb)[:2]:
        raise ValueError(f"image {np.shape(rgb)[:2]}, depth {depth.shape} and reference "
                         f"{reference.shape} must have the same size")
    far_first = _grow_nearest(reference, dot_px)
    dots = np.isfinite(far_first) & np.isfinite(depth) & (depth > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        level = np.where(dots, np.log2(depth / far_first), 0.0) / max_log2
    level = np.clip(level, -1.0, 1.0).astype(np.float32)
    # Diverging: white at 0, towards blue (near) or red (far).
    colours = np.stack([np.where(level < 0, 1.0 + level, 1.0), 1.0 - np.abs(level),
                        np.where(level > 0, 1.0 - level, 1.0)], axis=-1)
    out = _dimmed(rgb)
    out[dots] = (colours[dots] * 255).astype(np.uint8)
    return out


def drive_contact_sheet(drive_dir: str | os.PathLike, num_frames: int = 3,
                        scale: float = 0.5) -> np.ndarray:
    """A contact sheet of a KITTI-layout drive: for ``num_frames`` frames spread over it, a
    column of RGB, ground-truth depth and the projected LiDAR over the image.

    Panels whose files are missing (no ground truth, no ``velodyne_raw``) are left out.
    """
    # Imported here: depth_ros.kitti builds on geometry only, and viz stays importable without it.
    from depth_ros import kitti

    drive = kitti.KittiDrive(drive_dir)
    picks = np.unique(np.linspace(0, len(drive) - 1, max(1, num_frames)).round().astype(int))
    raw_dir = drive.path / "proj_depth" / "velodyne_raw" / f"image_{drive.camera:02d}"
    columns = []
    for index in picks:
        rgb = drive.rgb(int(index))
        name = drive.frames[index]
        panels, labels = [rgb], [f"{name} RGB"]
        if drive.groundtruth_path(int(index)).is_file():
            panels.append(colorize_depth(drive.groundtruth(int(index)), 3.0, 80.0))
            labels.append("depth (ground truth)")
        if (raw_dir / f"{name}.png").is_file():
            sparse = kitti.read_depth_png(raw_dir / f"{name}.png")
            panels.append(lidar_overlay(rgb, sparse))
            labels.append(f"LiDAR ({np.count_nonzero(sparse)} px)")
        columns.append(stack_panels(panels, labels))
    return side_by_side(columns, scale)
