"""Time IP-Basic (``depth_ros.completion``) on a 1242×375 scan: each variant, and the steps of
the default one, on this CPU (OpenCV's own threads, ``--threads``).

The scan is kitti_dev's first real one (``../shared/data/kitti_dev``) when present, else an
engine drive's (rendered into a temporary directory). Prints the median and 90th percentile of
``--repeats`` runs and the load average before and after.
Run: .venv/bin/python bench/bench_completion.py [--repeats N] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np
from timing import sample_ms  # bench/timing.py, beside this script

from depth_ros.completion import ip_basic
from depth_ros.kitti.formats import read_depth_png
from depth_ros.synthetic import write_synthetic_drive

KITTI_DEV_SCAN = (Path(__file__).resolve().parents[1].parent / "shared" / "data"
                  / "kitti_dev" / "2011_09_26" / "2011_09_26_drive_0023_sync" / "proj_depth"
                  / "velodyne_raw" / "image_02" / "0000000000.png")
VARIANTS = {
    "fast (default: extrapolate, gaussian)": {},
    "fast, no extrapolation, bilateral": {"extrapolate": False, "blur": "bilateral"},
    "fast, extrapolate, bilateral": {"blur": "bilateral"},
    "multiscale, extrapolate, gaussian": {"variant": "multiscale"},
    "multiscale, no extrapolation, bilateral": {"variant": "multiscale", "extrapolate": False,
                                                "blur": "bilateral"},
}


def _scan() -> tuple[np.ndarray, str]:
    if KITTI_DEV_SCAN.is_file():
        return read_depth_png(KITTI_DEV_SCAN), "kitti_dev image_02/0000000000"
    with tempfile.TemporaryDirectory() as tmp:
        write_synthetic_drive(tmp, num_frames=1, seed=5, progress=False, stereo=False,
                              azimuth_decimation=2)
        path = next(Path(tmp).rglob("proj_depth/velodyne_raw/image_02/*.png"))
        return read_depth_png(path), "engine drive (seed 5, azimuth decimation 2)"


def _times_ms(fn, repeats: int) -> tuple[float, float]:
    times = sample_ms(fn, repeats, warmup=5)
    return float(np.median(times)), float(np.percentile(times, 90))


def main(argv: list[str] | None = None) -> int:
    """Print the timing table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2, help="cv2.setNumThreads")
    args = parser.parse_args(argv)
    cv2.setNumThreads(args.threads)
    scan, source = _scan()
    print(f"# {source}: {scan.shape[1]}x{scan.shape[0]}, {int((scan > 0).sum())} returns; "
          f"{args.repeats} runs, OpenCV {cv2.__version__} on {args.threads} threads, "
          f"{os.cpu_count()} CPUs; load average before {os.getloadavg()[0]:.2f}")
    print("| variant | median (ms) | p90 (ms) |")
    print("| --- | --- | --- |")
    for name, options in VARIANTS.items():
        median, p90 = _times_ms(lambda options=options: ip_basic(scan, **options),
                                args.repeats)
        print(f"| {name} | {median:.1f} | {p90:.1f} |")
    print(f"# load average after {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
