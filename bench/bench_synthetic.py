"""Time the synthetic data engine at KITTI size (1242×375): per-frame parts and whole drives.

Prints the median time of one camera render, one LiDAR sweep and one LiDAR projection, then
frames/s of whole drives written to disk (camera 02 only, and the full rig: both cameras,
LiDAR with its projections, OXTS).
Run: .venv/bin/python bench/bench_synthetic.py [--frames N] [--repeats N]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from timing import median_ms  # bench/timing.py, beside this script

from depth_ros import kitti
from depth_ros.geometry import project_velodyne
from depth_ros.synthetic import cast_lidar, plan_drive, render_frame, rig, write_synthetic_drive
from depth_ros.synthetic.lidar import LidarModel


def _drive_fps(frames: int, **kwargs: bool | int) -> float:
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        write_synthetic_drive(root, num_frames=frames, seed=3, progress=False, **kwargs)
        return frames / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=30, help="frames per timed drive")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)

    plan = plan_drive(10, seed=3)
    pose = plan.poses[5]
    velo_to_world = rig.sensor_to_world(pose, 2, "velo")
    calib = kitti.cam_to_cam_calibration(plan.camera)
    scan = cast_lidar(plan.scene, velo_to_world)
    rows = [
        ("camera render (RGB + depth)", median_ms(
            lambda: render_frame(plan.scene, pose, plan.camera), args.repeats)),
        (f"LiDAR sweep ({len(LidarModel().elevations_deg)}×{LidarModel().num_columns} rays, "
         f"{len(scan.points)} returns)",
         median_ms(lambda: cast_lidar(plan.scene, velo_to_world), args.repeats)),
        ("LiDAR sweep, azimuth decimated 2×", median_ms(
            lambda: cast_lidar(plan.scene, velo_to_world, LidarModel(azimuth_decimation=2)),
            args.repeats)),
        ("LiDAR → image_02 projection (z-buffered)", median_ms(
            lambda: project_velodyne(scan.points, rig.velo_to_cam_matrix(), calib["R_rect_00"],
                                     calib["P_rect_02"], 1242, 375), args.repeats)),
    ]
    for name, ms in rows:
        print(f"{name:<58} {ms:8.1f} ms")
    drives = [("drive, camera 02 only", {"stereo": False, "lidar": False}),
              ("drive, full rig (stereo + LiDAR + OXTS)", {}),
              ("drive, full rig on one thread", {"threads": 1})]
    for name, kwargs in drives:
        print(f"{name:<58} {_drive_fps(args.frames, **kwargs):8.2f} frames/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
