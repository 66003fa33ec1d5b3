"""``make_synthetic_drive``: render a synthetic KITTI-format drive from the command line."""

from __future__ import annotations

import argparse

from depth_ros.synthetic.drive import write_synthetic_drive


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``make_synthetic_drive``."""
    parser = argparse.ArgumentParser(
        prog="make_synthetic_drive",
        description="Render a procedural street drive (RGB + exact depth) in the KITTI raw "
                    "layout: <out>/<date>/<date>_drive_<NNNN>_sync.")
    parser.add_argument("--out", required=True, help="root directory of the dataset")
    parser.add_argument("--frames", type=int, default=20, help="number of frames (10 Hz)")
    parser.add_argument("--seed", type=int, default=0, help="scene and trajectory seed")
    parser.add_argument("--drive", type=int, default=1, help="drive number in the file names")
    parser.add_argument("--date", default="2011_09_26", help="date directory, YYYY_MM_DD")
    parser.add_argument("--width", type=int, default=1242, help="image width in pixels")
    parser.add_argument("--height", type=int, default=375, help="image height in pixels")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; prints the drive directory."""
    args = build_parser().parse_args(argv)
    try:
        path = write_synthetic_drive(args.out, num_frames=args.frames, seed=args.seed,
                                     drive=args.drive, date=args.date, width=args.width,
                                     height=args.height, progress=not args.no_progress)
    except ValueError as exc:
        build_parser().error(str(exc))
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
