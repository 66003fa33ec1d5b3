"""KITTI file formats, read and written: images, depth PNGs, calibration files, timestamps,
velodyne scans and frame names.

Layout of a raw drive (what the KITTI tools expect)::

    <root>/<date>/calib_cam_to_cam.txt
    <root>/<date>/<date>_drive_<NNNN>_sync/image_02/data/0000000000.png
    <root>/<date>/<date>_drive_<NNNN>_sync/image_02/timestamps.txt
    <root>/<date>/<date>_drive_<NNNN>_sync/velodyne_points/data/0000000000.bin
    <root>/<date>/<date>_drive_<NNNN>_sync/proj_depth/groundtruth/image_02/0000000000.png

Depth PNGs are uint16, metres × 256, 0 = no data (the KITTI depth devkit's convention).
"""

from __future__ import annotations

import calendar
import os
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from depth_ros import fileio

DEPTH_PNG_SCALE = 256.0
FRAME_NAME_DIGITS = 10
_NS_PER_S = 1_000_000_000


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


def read_rgb_png(path: str | os.PathLike, error: type[ValueError] | None = None) -> np.ndarray:
    """Read an image file (PNG, JPEG, ...) as H×W×3 uint8 RGB; an unreadable one raises
    ``error`` (``KittiFormatError`` by default) naming the file."""
    bgr = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise (error or KittiFormatError)(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def text_lines(path: str | os.PathLike, what: str,
               error: type[ValueError] = KittiFormatError) -> list[tuple[int, str]]:
    """(line number, line) of every non-blank line of a text file; a missing file raises
    ``error`` naming ``what`` and the path."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} not found: {path}")
    return [(lineno, line) for lineno, line in enumerate(path.read_text().splitlines(), 1)
            if line.strip()]


def read_calib_file(path: str | os.PathLike) -> dict[str, np.ndarray | str]:
    """Parse a KITTI calibration file (``key: v1 v2 ...``) into float64 arrays.

    Values that are not numbers (``calib_time``, ``corner_dist``'s text) stay strings.
    """
    calib: dict[str, np.ndarray | str] = {}
    for lineno, line in text_lines(path, "calibration file"):
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


def format_timestamp(seconds: float) -> str:
    """POSIX seconds → KITTI's ``YYYY-MM-DD HH:MM:SS.nnnnnnnnn`` (UTC)."""
    whole = int(np.floor(seconds))
    nanos = int(round((seconds - whole) * 1e9))
    if nanos >= _NS_PER_S:
        whole, nanos = whole + 1, nanos - _NS_PER_S
    stamp = datetime.fromtimestamp(whole, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return f"{stamp}.{nanos:09d}"


def parse_timestamp_ns(text: str) -> int:
    """KITTI's ``YYYY-MM-DD HH:MM:SS.nnnnnnnnn`` (UTC) → exact integer POSIX nanoseconds.

    The digits are taken as written (float seconds near 1.3e9 resolve only ~0.2 µs, bag stamps
    are integers); digits past the ninth are dropped.
    """
    text = text.strip()
    main, _, fraction = text.partition(".")
    try:
        seconds = calendar.timegm(datetime.strptime(main, "%Y-%m-%d %H:%M:%S").timetuple())
    except ValueError:
        raise KittiFormatError(f"bad KITTI timestamp {text!r}") from None
    if fraction and not (fraction.isascii() and fraction.isdigit()):
        raise KittiFormatError(f"bad KITTI timestamp {text!r}")
    return seconds * _NS_PER_S + (int((fraction + "000000000")[:9]) if fraction else 0)


def parse_timestamp(text: str) -> float:
    """KITTI's ``YYYY-MM-DD HH:MM:SS.nnnnnnnnn`` (UTC) → POSIX seconds (the nearest float)."""
    return parse_timestamp_ns(text) / _NS_PER_S  # int / int: one correctly rounded division


def write_timestamps(path: str | os.PathLike, seconds: list[float] | np.ndarray) -> None:
    """Write a KITTI ``timestamps.txt``, one line per frame."""
    write_bytes_atomic(path, "".join(format_timestamp(float(s)) + "\n"
                                     for s in seconds).encode())


def read_timestamps_ns(path: str | os.PathLike) -> np.ndarray:
    """Read a KITTI ``timestamps.txt`` as exact int64 POSIX nanoseconds; blank lines skipped."""
    stamps = []
    for lineno, line in text_lines(path, "timestamps file"):
        try:
            stamps.append(parse_timestamp_ns(line))
        except KittiFormatError as exc:
            raise KittiFormatError(f"{path}:{lineno}: {exc}") from None
    return np.array(stamps, dtype=np.int64)


def read_timestamps(path: str | os.PathLike) -> np.ndarray:
    """Read a KITTI ``timestamps.txt`` as float64 POSIX seconds."""
    return np.array([ns / _NS_PER_S for ns in read_timestamps_ns(path).tolist()],
                    dtype=np.float64)


def write_text_lines(path: str | os.PathLike, lines: list[str]) -> None:
    """Write text lines (each ending in a newline) atomically, e.g. ``oxts/data/*.txt``."""
    write_bytes_atomic(path, "".join(lines).encode())


VELODYNE_POINT_BYTES = 16  # x, y, z, reflectance as little-endian float32


def write_velodyne_bin(path: str | os.PathLike, points: np.ndarray) -> None:
    """Write an N×4 (x, y, z, reflectance) scan as KITTI's little-endian float32 ``.bin``."""
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 4:
        raise ValueError(f"expected N×4 points (x, y, z, reflectance), got {points.shape}")
    write_bytes_atomic(path, np.ascontiguousarray(points, dtype="<f4").tobytes())


def check_velodyne_bin(path: str | os.PathLike) -> int:
    """The number of points in a ``velodyne_points/data/*.bin`` scan, read from its size.

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
    return size // VELODYNE_POINT_BYTES


def read_velodyne_bin(path: str | os.PathLike) -> np.ndarray:
    """Read a KITTI ``velodyne_points/data/*.bin`` scan as N×4 float32 (x, y, z, reflectance);
    a truncated file raises (``check_velodyne_bin``)."""
    check_velodyne_bin(path)
    return np.fromfile(path, dtype="<f4").reshape(-1, 4).astype(np.float32, copy=False)
