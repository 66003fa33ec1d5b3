"""The data engine's LiDAR beside real KITTI scans (kitti_dev), as projected into the camera.

Both sides are read the same way: ``proj_depth/velodyne_raw/image_0{2,3}/*.png`` (uint16,
metres × 256), so the comparison is of what a completion model is given. The engine drives
are rendered into a temporary directory at KITTI size (1242×375, both cameras); kitti_dev is
read from ``../shared/data/kitti_dev`` (``--kitti-dev``). Per image, then averaged (the
spread is the standard deviation over images):

- ``returns``: pixels with a return, and their share of the image;
- the beam pattern, on bands of 8 image columns (so that the azimuth step, ~1.1 px at 4000
  steps a turn, ~2.3 px at 2000, does not decide it): ``rows hit per band`` (distinct image
  rows with a return, median over bands that have one), ``row gap`` (median and 90th
  percentile of the vertical spacing between consecutive hit rows in a band, pixels),
  ``top row`` (median over bands of the top-most return: the LiDAR's upper edge in the
  image), ``returns per hit row`` (median over image rows with a return);
- ``bg-through-fg``: share of returns more than 10 % farther than the nearest return in the
  7×7 window around them (background seen past the edge of a nearer object, or a return
  beside a nearer one at a depth edge: both counted the same on both sides);
- ``density by depth``: returns per pixel in depth bins, where each pixel's depth is taken
  from IP-Basic's completion of the scan (the same proxy on both sides; rows above a column's
  top-most return excluded): how the scan thins out with range, dropouts included.

Run: .venv/bin/python bench/lidar_realism.py [--frames N] [--seed S] [--kitti-dev PATH]
     [--engine K[+skew][+ideal] ...]   (one engine drive per entry: azimuth decimation K,
     with ``+skew`` the uncompensated sweep of a moving car, as KITTI's raw scans, with
     ``+ideal`` the ideal LiDAR of engine version 3 and before instead of
     ``LidarModel.kitti``; default ``1+ideal 2``: the old default beside today's)
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from depth_ros.completion import ip_basic
from depth_ros.kitti.formats import read_depth_png
from depth_ros.metrics import SEE_THROUGH_FARTHER, SEE_THROUGH_WINDOW_PX, see_through_mask
from depth_ros.synthetic import write_synthetic_drive

REPO = Path(__file__).resolve().parents[1]
KITTI_DEV = REPO.parent / "shared" / "data" / "kitti_dev"
BAND_PX = 8  # columns per band of the beam-pattern statistics
WINDOW_PX = SEE_THROUGH_WINDOW_PX  # bg-through-fg neighbourhood (7×7)
FARTHER = SEE_THROUGH_FARTHER  # "more than 10 % farther than the nearest return"
DEPTH_BINS_M = (0.0, 10.0, 20.0, 40.0, 80.0, np.inf)


def _scans(root: Path) -> list[np.ndarray]:
    paths = sorted(root.rglob("proj_depth/velodyne_raw/image_0[23]/*.png"))
    if not paths:
        raise SystemExit(f"lidar_realism.py: no proj_depth/velodyne_raw PNGs under {root}")
    return [read_depth_png(p) for p in paths]


def scan_statistics(scan: np.ndarray) -> dict[str, float]:
    """The realism figures of one projected scan (metres, 0 = no return); see the module
    docstring for each."""
    has = scan > 0
    stats: dict[str, float] = {"returns": float(has.sum()), "share_pct": 100 * float(has.mean())}
    width = has.shape[1] - has.shape[1] % BAND_PX
    bands = has[:, :width].reshape(has.shape[0], -1, BAND_PX).any(axis=2)
    hit = np.flatnonzero(bands.any(axis=0))
    stats["rows_per_band"] = float(np.median(bands[:, hit].sum(axis=0)))
    gaps = np.concatenate([np.diff(np.flatnonzero(bands[:, b])) for b in hit])
    stats["row_gap_med"] = float(np.median(gaps)) if gaps.size else float("nan")
    stats["row_gap_p90"] = float(np.percentile(gaps, 90)) if gaps.size else float("nan")
    stats["top_row"] = float(np.median(bands[:, hit].argmax(axis=0)))
    cols = np.flatnonzero(has.any(axis=0))
    top = has[:, cols].argmax(axis=0)
    per_row = has.sum(axis=1)
    stats["per_hit_row"] = float(np.median(per_row[per_row > 0]))
    stats["bg_fg_pct"] = 100 * float(see_through_mask(scan, WINDOW_PX, FARTHER)[has].mean())
    dense = ip_basic(scan)
    below_top = np.zeros_like(has)
    for c, t in zip(cols, top, strict=True):
        below_top[t:, c] = True
    for lo, hi in itertools.pairwise(DEPTH_BINS_M):
        band = below_top & (dense > lo) & (dense <= hi)
        key = f"density_{lo:g}_{hi:g}"
        stats[key] = 100 * float(has[band].mean()) if band.any() else float("nan")
    return stats


def summarise(scans: list[np.ndarray]) -> dict[str, tuple[float, float]]:
    """Mean and standard deviation over images of each statistic (NaN where no image has
    it, e.g. no surface beyond 80 m)."""
    per_image = [scan_statistics(s) for s in scans]
    out = {}
    for key in per_image[0]:
        values = np.array([p[key] for p in per_image])
        values = values[np.isfinite(values)]
        out[key] = ((float(values.mean()), float(values.std())) if values.size
                    else (float("nan"), float("nan")))
    return out


LABELS = {"returns": "returns per image", "share_pct": "share of pixels (%)",
          "rows_per_band": f"rows hit per {BAND_PX}-column band (median)",
          "row_gap_med": "gap between hit rows in a band, median (px)",
          "row_gap_p90": "gap between hit rows in a band, p90 (px)",
          "top_row": "top-most return row in a band (median)",
          "per_hit_row": "returns per hit row (median)",
          "bg_fg_pct": f"bg-through-fg, {WINDOW_PX}x{WINDOW_PX}, >10 % (%)"}


def _label(key: str) -> str:
    if key.startswith("density_"):
        lo, hi = key.split("_")[1:]
        return f"density {lo}-{hi} m (% of pixels)".replace("-inf m", "+ m")
    return LABELS[key]


def main(argv: list[str] | None = None) -> int:
    """Render the engine drives, read kitti_dev, print the table (Markdown)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=4, help="engine frames per drive")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--kitti-dev", type=Path, default=KITTI_DEV)
    parser.add_argument("--engine", nargs="+", default=["1+ideal", "2"],
                        help="engine drives to render: azimuth decimation, +skew for motion "
                             "skew, +ideal for the ideal LiDAR (default: 1+ideal 2)")
    args = parser.parse_args(argv)
    columns: dict[str, dict[str, tuple[float, float]]] = {}
    counts = {}
    real = _scans(args.kitti_dev)
    columns["kitti_dev (real)"] = summarise(real)
    counts["kitti_dev (real)"] = len(real)
    with tempfile.TemporaryDirectory() as tmp:
        for n, spec in enumerate(args.engine):
            k, *flags = spec.split("+")
            if not k.isdigit() or not set(flags) <= {"skew", "ideal"}:
                parser.error(f"--engine entries are K[+skew][+ideal], got {spec!r}")
            skew, ideal = "skew" in flags, "ideal" in flags
            start = time.perf_counter()
            write_synthetic_drive(Path(tmp) / str(n), num_frames=args.frames, seed=args.seed,
                                  progress=False, azimuth_decimation=int(k),
                                  lidar_motion_skew=skew, ideal_lidar=ideal)
            scans = _scans(Path(tmp) / str(n))
            name = (f"engine dec. {k}" + (", skew" if skew else "")
                    + (", ideal LiDAR" if ideal else ", KITTI LiDAR"))
            columns[name] = summarise(scans)
            counts[name] = len(scans)
            print(f"# {name}: {args.frames} frames x 2 cameras rendered in "
                  f"{time.perf_counter() - start:.0f} s")
    print(f"# load average {os.getloadavg()[0]:.2f}; images: "
          + ", ".join(f"{n} {c}" for n, c in counts.items()))
    names = list(columns)
    print("| statistic | " + " | ".join(names) + " |")
    print("| --- |" + " --- |" * len(names))
    for key in columns[names[0]]:
        cells = []
        for name in names:
            mean, std = columns[name][key]
            if not np.isfinite(mean):
                cells.append("—")
                continue
            digits = 0 if key == "returns" else 1 if abs(mean) >= 10 else 2
            cells.append(f"{mean:.{digits}f} ± {std:.{digits}f}")
        print(f"| {_label(key)} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
