"""KITTI raw drive and depth-annotation formats, read and written.

Layout of a raw drive (what the KITTI tools expect)::

    <root>/<date>/calib_cam_to_cam.txt
    <root>/<date>/<date>_drive_<NNNN>_sync/image_02/data/0000000000.png
    <root>/<date>/<date>_drive_<NNNN>_sync/image_02/timestamps.txt
    <root>/<date>/<date>_drive_<NNNN>_sync/proj_depth/groundtruth/image_02/0000000000.png

Depth PNGs are uint16, metres × 256, 0 = no data (the KITTI depth devkit's convention).
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from depth_ros import fileio
from depth_ros.geometry import PinholeCamera

DEPTH_PNG_SCALE = 256.0
FRAME_NAME_DIGITS = 10
# x (metres, rightward) of cameras 00-03 in camera 00's rectified frame: grey stereo pair
# 0.54 m apart, the colour cameras 0.06 m left of each grey one (KITTI's sensor set-up).
KITTI_CAMERA_X_M = (0.0, 0.54, -0.06, 0.48)


class KittiFormatError(ValueError):
    """A KITTI file or drive is missing, malformed or inconsistent."""


def frame_name(index: int) -> str:
    """KITTI's zero-padded frame file stem, e.g. 0000000042."""
    return f"{index:0{FRAME_NAME_DIGITS}d}"


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write a file so that readers see either the old file or the whole new one (not fsynced:
    a drive is complete only once its directory is renamed into place, see synthetic/drive)."""
    fileio.write_bytes_atomic(path, data, durable=False)


def _write_png_atomic(path: Path, image: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise KittiFormatError(f"could not encode PNG for {path}")
    write_bytes_atomic(path, buf.tobytes())


def write_depth_png(path: str | os.PathLike, depth_m: np.ndarray) -> None:
    """Write metric depth as a KITTI uint16 PNG (metres × 256); NaN, inf and ≤ 0 become 0."""
    depth = np.asarray(depth_m, dtype=np.float64)
    valid = np.isfinite(depth) & (depth > 0)
    scaled = np.zeros(depth.shape, dtype=np.uint16)
    scaled[valid] = np.clip(np.round(depth[valid] * DEPTH_PNG_SCALE), 1, 65535).astype(np.uint16)
    _write_png_atomic(Path(path), scaled)


def read_depth_png(path: str | os.PathLike, scale: float = DEPTH_PNG_SCALE,
                   error: type[ValueError] | None = None) -> np.ndarray:
    """Read a uint16 depth PNG as float32 metres (``raw / scale``), 0 where there is no data.

    KITTI's scale (256 per metre) by default; NYU's ``sync`` PNGs hold millimetres. An 8-bit or
    colour PNG raises ``error`` (``KittiFormatError`` by default) naming the file: depth read
    from one would be silently wrong.
    """
    error = error or KittiFormatError
    raw = cv2.imread(os.fspath(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise error(f"cannot read depth PNG {path}")
    if raw.dtype != np.uint16 or raw.ndim != 2:
        raise error(f"{path}: expected a single-channel uint16 PNG, got "
                    f"{raw.dtype} with shape {raw.shape}")
    return raw.astype(np.float32) / np.float32(scale)


def write_rgb_png(path: str | os.PathLike, rgb: np.ndarray) -> None:
    """Write an H×W×3 uint8 RGB image as PNG."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected H×W×3 uint8 RGB, got {rgb.dtype} {rgb.shape}")
    _write_png_atomic(Path(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def read_rgb_png(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as H×W×3 uint8 RGB."""
    bgr = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise KittiFormatError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_calib_file(path: str | os.PathLike) -> dict[str, np.ndarray | str]:
    """Parse a KITTI calibration file (``key: v1 v2 ...``) into float64 arrays.

    Values that are not numbers (``calib_time``, ``corner_dist``'s text) stay strings.
    """
    path = Path(path)
    if not path.is_file():
        raise KittiFormatError(f"calibration file not found: {path}")
    calib: dict[str, np.ndarray | str] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise KittiFormatError(f"{path}:{lineno}: expected 'key: values', got {line!r}")
        try:
            calib[key.strip()] = np.array([float(v) for v in value.split()], dtype=np.float64)
        except ValueError:
            calib[key.strip()] = value.strip()
    return calib


def _format_number(value: float) -> str:
    return f"{value:.6e}"


def write_calib_file(path: str | os.PathLike, calib: dict[str, np.ndarray | str]) -> None:
    """Write a KITTI calibration file; arrays are flattened row-major as KITTI does."""
    lines = []
    for key, value in calib.items():
        if isinstance(value, str):
            lines.append(f"{key}: {value}")
        else:
            flat = np.asarray(value, dtype=np.float64).ravel()
            lines.append(f"{key}: " + " ".join(_format_number(v) for v in flat))
    write_bytes_atomic(path, ("\n".join(lines) + "\n").encode())


def cam_to_cam_calibration(camera: PinholeCamera, calib_time: str = "09-Jan-2012 13:57:47",
                           corner_dist_m: float = 0.0995) -> dict[str, np.ndarray | str]:
    """A ``calib_cam_to_cam.txt`` for an ideal rectified rig with KITTI's four-camera layout.

    Every camera gets ``camera``'s intrinsics, no distortion and identity rotations; the
    translations follow ``KITTI_CAMERA_X_M``, so ``P_rect_0X[0, 3] = -fx · x_0X`` as in KITTI
    (positive for the colour camera 02 left of 00, negative for 01 and 03).
    """
    size = np.array([camera.width, camera.height], dtype=np.float64)
    calib: dict[str, np.ndarray | str] = {"calib_time": calib_time,
                                          "corner_dist": np.array([corner_dist_m])}
    for index, x_m in enumerate(KITTI_CAMERA_X_M):
        translation = np.array([-x_m, 0.0, 0.0]) + 0.0  # + 0.0: no "-0.0" in the file
        calib[f"S_{index:02d}"] = size
        calib[f"K_{index:02d}"] = camera.K
        calib[f"D_{index:02d}"] = np.zeros(5)
        calib[f"R_{index:02d}"] = np.eye(3)
        calib[f"T_{index:02d}"] = translation
        calib[f"S_rect_{index:02d}"] = size
        calib[f"R_rect_{index:02d}"] = np.eye(3)
        calib[f"P_rect_{index:02d}"] = camera.K @ np.hstack([np.eye(3), translation[:, None]])
    return calib


def format_timestamp(seconds: float) -> str:
    """POSIX seconds → KITTI's ``YYYY-MM-DD HH:MM:SS.nnnnnnnnn`` (UTC)."""
    whole = int(np.floor(seconds))
    nanos = int(round((seconds - whole) * 1e9))
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, nanos - 1_000_000_000
    stamp = datetime.fromtimestamp(whole, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return f"{stamp}.{nanos:09d}"


def parse_timestamp(text: str) -> float:
    """KITTI's ``YYYY-MM-DD HH:MM:SS.nnnnnnnnn`` (UTC) → POSIX seconds."""
    text = text.strip()
    main, _, frac = text.partition(".")
    try:
        base = datetime.strptime(main, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
        fraction = float(f"0.{frac}") if frac else 0.0
    except ValueError as exc:
        raise KittiFormatError(f"bad KITTI timestamp {text!r}") from exc
    return base.timestamp() + fraction


def write_timestamps(path: str | os.PathLike, seconds: list[float] | np.ndarray) -> None:
    """Write a KITTI ``timestamps.txt``, one line per frame."""
    write_bytes_atomic(path, "".join(format_timestamp(float(s)) + "\n"
                                     for s in seconds).encode())


def read_timestamps(path: str | os.PathLike) -> np.ndarray:
    """Read a KITTI ``timestamps.txt`` as float64 POSIX seconds."""
    path = Path(path)
    if not path.is_file():
        raise KittiFormatError(f"timestamps file not found: {path}")
    return np.array([parse_timestamp(line) for line in path.read_text().splitlines()
                     if line.strip()], dtype=np.float64)


# --- writers ---
# Writers of the raw-drive files the synthetic engine produces beyond images and depth.


def write_velodyne_bin(path: str | os.PathLike, points: np.ndarray) -> None:
    """Write an N×4 (x, y, z, reflectance) scan as KITTI's little-endian float32 ``.bin``."""
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 4:
        raise ValueError(f"expected N×4 points (x, y, z, reflectance), got {points.shape}")
    write_bytes_atomic(path, np.ascontiguousarray(points, dtype="<f4").tobytes())


def write_text_lines(path: str | os.PathLike, lines: list[str]) -> None:
    """Write text lines (each ending in a newline) atomically, e.g. ``oxts/data/*.txt``."""
    write_bytes_atomic(path, "".join(lines).encode())


class KittiDrive:
    """One synced + rectified KITTI raw drive directory (``<date>_drive_<NNNN>_sync``).

    Calibration files are looked up in the drive directory, then its parent (KITTI's place).
    """

    def __init__(self, path: str | os.PathLike, camera: int = 2) -> None:
        self.path = Path(path)
        self.camera = camera
        self.image_dir = self.path / f"image_{camera:02d}" / "data"
        if not self.image_dir.is_dir():
            raise KittiFormatError(f"not a KITTI drive: {self.image_dir} does not exist")
        self.frames = sorted(p.stem for p in self.image_dir.glob("*.png"))
        if not self.frames:
            raise KittiFormatError(f"no PNG images in {self.image_dir}")
        self.groundtruth_dir = self.path / "proj_depth" / "groundtruth" / f"image_{camera:02d}"

    def __len__(self) -> int:
        return len(self.frames)

    def calib_path(self, name: str = "calib_cam_to_cam.txt") -> Path:
        """Path of a calibration file of this drive."""
        for candidate in (self.path / name, self.path.parent / name):
            if candidate.is_file():
                return candidate
        raise KittiFormatError(f"{name} not found in {self.path} or its parent")

    def camera_model(self) -> PinholeCamera:
        """Rectified intrinsics of this drive's camera, from ``P_rect_0X`` and ``S_rect_0X``."""
        calib = read_calib_file(self.calib_path())
        key = f"P_rect_{self.camera:02d}"
        if key not in calib:
            raise KittiFormatError(f"{key} missing from {self.calib_path()}")
        size = calib.get(f"S_rect_{self.camera:02d}")
        if isinstance(size, np.ndarray) and size.size == 2:
            width, height = int(size[0]), int(size[1])
        else:
            height, width = self.rgb(0).shape[:2]
        return PinholeCamera.from_K(np.asarray(calib[key]).reshape(3, 4), width, height)

    def timestamps(self) -> np.ndarray:
        """Frame times in POSIX seconds, one per image."""
        stamps = read_timestamps(self.image_dir.parent / "timestamps.txt")
        if len(stamps) != len(self.frames):
            raise KittiFormatError(f"{self.image_dir.parent / 'timestamps.txt'} has "
                                   f"{len(stamps)} lines for {len(self.frames)} images")
        return stamps

    def image_path(self, index: int) -> Path:
        """Path of the index-th image."""
        return self.image_dir / f"{self.frames[index]}.png"

    def rgb(self, index: int) -> np.ndarray:
        """The index-th image as H×W×3 uint8 RGB."""
        return read_rgb_png(self.image_path(index))

    def groundtruth_path(self, index: int) -> Path:
        """Path of the index-th ground-truth depth PNG (it may not exist)."""
        return self.groundtruth_dir / f"{self.frames[index]}.png"

    def groundtruth(self, index: int) -> np.ndarray:
        """The index-th ground-truth depth, float32 metres, 0 where there is no data."""
        return read_depth_png(self.groundtruth_path(index))


def find_drives(root: str | os.PathLike, camera: int = 2) -> list[KittiDrive]:
    """All drives below root (directories holding ``image_0X/data``), sorted by path.

    Hidden directories below root (names starting with '.') are skipped: writers keep drives
    that are still being written there.
    """
    root = Path(root)
    dirs = sorted({p.parent.parent for p in root.rglob(f"image_{camera:02d}/data")
                   if not any(part.startswith(".") for part in p.relative_to(root).parts)})
    if not dirs:
        raise KittiFormatError(f"no KITTI drives (image_{camera:02d}/data) found under {root}")
    return [KittiDrive(d, camera) for d in dirs]


VELODYNE_POINT_BYTES = 16  # x, y, z, reflectance as little-endian float32


def read_velodyne_bin(path: str | os.PathLike) -> np.ndarray:
    """Read a KITTI ``velodyne_points/data/*.bin`` scan as N×4 float32 (x, y, z, reflectance).

    A size that is not a whole number of points means a truncated download or copy: an error,
    never a scan silently cut short.
    """
    path = Path(path)
    if not path.is_file():
        raise KittiFormatError(f"velodyne scan not found: {path}")
    size = path.stat().st_size
    if size % VELODYNE_POINT_BYTES:
        raise KittiFormatError(f"{path}: {size} bytes is not a multiple of "
                               f"{VELODYNE_POINT_BYTES} (x, y, z, reflectance float32): "
                               "truncated scan")
    return np.fromfile(path, dtype="<f4").reshape(-1, 4).astype(np.float32, copy=False)
