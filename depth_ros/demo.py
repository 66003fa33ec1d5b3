"""The end-to-end demo: a synthetic KITTI-format drive played through mono_depth_node.

1. The data engine writes a drive (held-out seed) with exact ground-truth depth.
2. mono_depth_node starts as its own process with config/mono_depth.yaml and the bundled model.
3. This process plays the drive's camera at 10 Hz (kitti_drive_publisher's node) and collects
   the published depth and point clouds.
4. It writes colourised depth PNGs, a point-cloud view, and summary.json with frames in and
   out, rates, latency and the depth metrics against the ground truth.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from depth_ros.kitti import KittiDrive
from depth_ros.metrics import depth_metrics
from depth_ros.synthetic import write_synthetic_drive
from depth_ros.viz import birds_eye_view, colorize_depth, stack_panels, write_png

LOG = logging.getLogger("depth_ros.demo")
DEMO_SEED = 9001  # not one of the training seeds


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"))
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--rate-hz", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=DEMO_SEED)
    parser.add_argument("--model-path", default="", help="default: the bundled model")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--domain-id", type=int, default=None,
                        help="ROS_DOMAIN_ID for the demo's processes (default: inherited)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the exit code."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # Imported here: the environment must be set before rclpy starts its middleware.
    from depth_ros.ros.launching import ros_environment

    env = ros_environment(args.domain_id)
    os.environ.update(env)
    from depth_ros.ros.demo_runner import run_demo

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    LOG.info("1/4 writing a synthetic KITTI drive (%d frames, seed %d)", args.frames, args.seed)
    drive_dir = write_synthetic_drive(out / "drive", num_frames=args.frames, seed=args.seed)
    LOG.info("2/4 starting mono_depth_node and playing the drive at %g Hz", args.rate_hz)
    t0 = time.monotonic()
    try:
        result = run_demo(drive_dir, out, args.rate_hz, args.model_path, args.backend, env)
    except (RuntimeError, subprocess.SubprocessError) as exc:
        LOG.error("demo failed: %s", exc)
        return 1
    LOG.info("3/4 scoring %d depth images against the ground truth", len(result.depths))
    summary = summarise(KittiDrive(drive_dir), result, out)
    summary["wall_time_s"] = round(time.monotonic() - t0, 2)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    LOG.info("4/4 wrote %s", out / "summary.json")
    LOG.info(json.dumps({k: summary[k] for k in (
        "frames_in", "frames_out", "fps_out", "latency_ms_median", "abs_rel", "delta1")}))
    return 0 if summary["frames_out"] > 0 else 1


def summarise(drive: KittiDrive, result, out: Path) -> dict:
    """Metrics per frame (averaged per image, as the KITTI devkit does) and pictures."""
    per_frame = []
    depth_dir = out / "depth_colored"
    for index, depth in sorted(result.depths.items()):
        gt = drive.groundtruth(index)
        per_frame.append(depth_metrics(depth, gt, mask=(gt > 0) & np.isfinite(depth)))
        # One colour scale for prediction and ground truth: the ground truth's 2-98 %.
        lo, hi = (float(v) for v in np.percentile(gt[gt > 0], [2.0, 98.0]))
        gt_vis = colorize_depth(np.where(gt > 0, gt, np.nan), lo, hi)
        pred_vis = colorize_depth(depth, lo, hi)
        write_png(depth_dir / f"{index:06d}.png", pred_vis)
        if index == min(result.depths):
            panel = stack_panels([drive.rgb(index), pred_vis, gt_vis],
                                 ["camera", "mono_depth_node depth", "ground truth"])
            write_png(out / "panel.png", panel)
    if result.points is not None:
        write_png(out / "points_bev.png", birds_eye_view(result.points))
    latencies = np.asarray(result.latencies_ms) if result.latencies_ms else np.array([np.nan])
    keys = per_frame[0].keys() if per_frame else ()
    metrics = {k: float(np.mean([m[k] for m in per_frame])) for k in keys}
    duration = result.last_receive_s - result.first_receive_s
    frames_out = len(result.depths)
    return {
        "drive": str(drive.path),
        "model": result.model,
        "frames_in": result.frames_published,
        "frames_out": frames_out,
        "frames_lost_or_dropped": result.frames_published - frames_out,
        "fps_in": round(result.fps_in, 2),
        "fps_out": round((frames_out - 1) / duration, 2) if frames_out > 1 and duration > 0
        else 0.0,
        "latency_ms_median": round(float(np.median(latencies)), 2),
        "latency_ms_p90": round(float(np.percentile(latencies, 90)), 2),
        "abs_rel": round(metrics.get("abs_rel", float("nan")), 4),
        "delta1": round(metrics.get("a1", float("nan")), 4),
        "metrics": {k: round(v, 4) for k, v in metrics.items()},
        "pictures": {"depth_colored": str(depth_dir), "panel": str(out / "panel.png"),
                     "points_bev": str(out / "points_bev.png")},
    }


if __name__ == "__main__":
    sys.exit(main())
