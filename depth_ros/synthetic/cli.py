"""``make_synthetic_drive`` / ``python -m depth_ros.synthetic``: render synthetic KITTI-format
drives from the command line.

Drive k of ``--drives N`` gets drive number ``--drive + k`` and seed ``--seed + k``. Complete
drives with the same parameters are skipped, so an interrupted run picks up where it stopped;
``--jobs`` renders that many drives at once in worker processes. The camera is the
``--camera-profile``'s (``kitti``: around KITTI's, at ``--width`` × ``--height``; ``varied``:
each drive draws its sensor size, lens and height) or one ``--camera fx,fy,cx,cy,width,height``
for every drive.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from tqdm import tqdm

from depth_ros.geometry import PinholeCamera
from depth_ros.synthetic.drive import CAMERA_PROFILES, check_camera, write_synthetic_drive

CONTACT_SHEET_DIR = "contact_sheets"


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``make_synthetic_drive``."""
    parser = argparse.ArgumentParser(
        prog="make_synthetic_drive",
        description="Render procedural street drives (RGB + exact depth, stereo, a simulated "
                    "64-beam LiDAR and OXTS) in the KITTI raw layout: "
                    "<out>/<date>/<date>_drive_<NNNN>_sync.")
    parser.add_argument("--out", required=True, help="root directory of the dataset")
    parser.add_argument("--frames", type=int, default=20, help="frames per drive (10 Hz)")
    parser.add_argument("--seed", type=int, default=0, help="scene and trajectory seed")
    parser.add_argument("--drive", type=int, default=1, help="number of the first drive")
    parser.add_argument("--drives", type=int, default=1, help="number of drives")
    parser.add_argument("--jobs", type=int, default=1,
                        help="drives rendered at once in worker processes")
    parser.add_argument("--date", default="2011_09_26", help="date directory, YYYY_MM_DD")
    parser.add_argument("--width", type=int, default=None,
                        help="image width in pixels (kitti profile; default 1242)")
    parser.add_argument("--height", type=int, default=None,
                        help="image height in pixels (kitti profile; default 375)")
    parser.add_argument("--camera-profile", choices=CAMERA_PROFILES, default="kitti",
                        help="kitti: each drive's camera within ±5%% of KITTI's, resized to "
                             "--width x --height; varied: each drive draws a 4:3, 16:9 or "
                             "KITTI-wide sensor, a 45-100° horizontal field of view and a "
                             "1.3-1.9 m camera height")
    parser.add_argument("--camera", type=parse_camera, default=None,
                        metavar="FX,FY,CX,CY,WIDTH,HEIGHT",
                        help="one explicit camera for every drive (pixels); not with "
                             "--width/--height or --camera-profile varied")
    parser.add_argument("--no-stereo", action="store_true", help="skip camera 03")
    parser.add_argument("--no-lidar", action="store_true",
                        help="skip the velodyne, its projections and OXTS")
    parser.add_argument("--azimuth-decimation", type=int, default=2,
                        help="keep every k-th of the LiDAR's 4000 azimuth steps (default 2: "
                             "KITTI's ~120k points a sweep; 1 for all 4000)")
    parser.add_argument("--ideal-lidar", action="store_true",
                        help="cast an ideal LiDAR: no calibration error, mixed-pixel returns "
                             "or range dropout")
    parser.add_argument("--lidar-motion-skew", action="store_true",
                        help="cast each sweep from the moving car, uncompensated (as KITTI's "
                             "raw scans)")
    parser.add_argument("--contact-sheet", action="store_true",
                        help=f"also write <out>/{CONTACT_SHEET_DIR}/<drive>.png (RGB, depth, "
                             "LiDAR overlay)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return parser


def parse_camera(text: str) -> PinholeCamera:
    """``fx,fy,cx,cy,width,height`` as a checked ``PinholeCamera`` (argparse type)."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 6:
        raise argparse.ArgumentTypeError(
            f"expected fx,fy,cx,cy,width,height (six numbers), got {text!r}")
    try:
        fx, fy, cx, cy = (float(p) for p in parts[:4])
        width, height = (int(p) for p in parts[4:])
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected four numbers and two whole pixel counts, got {text!r}") from None
    camera = PinholeCamera(fx, fy, cx, cy, width, height)
    try:
        check_camera(camera)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return camera


def _write_one(args: argparse.Namespace, k: int, progress: bool, threads: int | None
               ) -> Path:
    path = write_synthetic_drive(
        args.out, num_frames=args.frames, seed=args.seed + k, drive=args.drive + k,
        date=args.date, width=args.width, height=args.height, progress=progress,
        stereo=not args.no_stereo, lidar=not args.no_lidar,
        azimuth_decimation=args.azimuth_decimation, lidar_motion_skew=args.lidar_motion_skew,
        ideal_lidar=args.ideal_lidar, threads=threads, camera=args.camera,
        camera_profile=args.camera_profile)
    if args.contact_sheet:
        # Imported here: only this option needs the picture code.
        from depth_ros.viz import drive_contact_sheet, write_png

        write_png(Path(args.out) / CONTACT_SHEET_DIR / f"{path.name}.png",
                  drive_contact_sheet(path))
    return path


def main(argv: list[str] | None = None) -> int:
    """Entry point; prints each drive directory, in drive order."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.drives < 1 or args.jobs < 1:
        parser.error("--drives and --jobs must be at least 1")
    if args.seed < 0 or args.drive < 0 or args.frames < 1:
        parser.error("--seed and --drive must be non-negative and --frames at least 1")
    if args.camera is not None and (args.width is not None or args.height is not None):
        parser.error("--camera sets the image size: leave out --width/--height")
    if args.camera is not None and args.camera_profile != "kitti":
        parser.error("--camera and --camera-profile varied exclude each other")
    if args.camera_profile == "varied" and (args.width is not None or args.height is not None):
        parser.error("--camera-profile varied draws each drive's image size: leave out "
                     "--width/--height")
    progress = not args.no_progress
    paths: dict[int, Path] = {}
    try:
        if args.jobs == 1 or args.drives == 1:
            for k in range(args.drives):
                paths[k] = _write_one(args, k, progress, None)
        else:
            # Drives are the unit of work; each worker renders its frames on one thread so
            # that the jobs, not threads inside them, share the cores.
            jobs = min(args.jobs, args.drives)
            # Spawned, not forked: forking a process that runs threads (tqdm's monitor) is
            # unsafe, and spawn is what macOS and newer Pythons default to anyway.
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool, tqdm(
                    total=args.drives, disable=not progress, desc="drives",
                    unit="drive") as bar:
                futures = {pool.submit(_write_one, args, k, False, 1): k
                           for k in range(args.drives)}
                for future in as_completed(futures):
                    paths[futures[future]] = future.result()
                    bar.update()
    except ValueError as exc:
        parser.error(str(exc))
    for k in sorted(paths):
        print(os.fspath(paths[k]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
