"""The end-to-end demo: a synthetic KITTI drive, as a rosbag2, replayed through both depth nodes.

1. The data engine writes a drive (held-out seed) with LiDAR and exact ground-truth depth.
2. ``kitti_to_bag`` turns it into an MCAP bag (camera 2, its camera_info, the LiDAR cloud and
   the ground-truth depth).
3. ``mono_depth_node`` and ``fusion_depth_node`` start as their own processes with their
   parameter files and the bundled models (the fusion node with the completion model's
   reduced option, ``fusion_spn_synthetic_fast``: the full-resolution one cannot keep up
   beside the mono node on two cores); ``depth_ros_bag_play`` replays the bag into them at
   the recorded rate, stamping each message as it sends it, like a live sensor.
4. This process collects both nodes' depth and points and the fusion node's confidence, and
   scores every depth image against the bag's ground truth (the KITTI metrics of
   ``training/evaluate.py``, per image, then averaged; also apart inside and above the LiDAR's
   field of view, as ``evaluate.py`` scores completion models on the engine), and writes
   pictures, an MP4 of the run, ``summary.json`` and a table of the figures.
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

import cv2
import numpy as np

from depth_ros import fileio
from depth_ros.kitti.drives import RawDrive
from depth_ros.kitti.formats import read_depth_png
from depth_ros.metrics import SCAN_BANDS, above_scan_mask, band_metrics, mean_metrics
from depth_ros.synthetic import write_synthetic_drive
from depth_ros.viz import birds_eye_view, colorize_depth, stack_panels, write_png
from depth_ros.weights import FAST_FUSION_MODEL

LOG = logging.getLogger("depth_ros.demo")
DEMO_SEED = 9001  # not one of the training seeds
LABELS = {"mono": "mono_depth_node", "fusion": "fusion_depth_node (camera + LiDAR)"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"))
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--rate", type=float, default=1.0,
                        help="playback speed factor (1: the drive's 10 Hz)")
    parser.add_argument("--seed", type=int, default=DEMO_SEED)
    parser.add_argument("--mono-model", default="", help="default: the bundled mono model")
    parser.add_argument("--fusion-model", default=str(FAST_FUSION_MODEL),
                        help="default: the bundled fusion model's reduced option "
                        "(fusion_spn_synthetic_fast.onnx); '' for the node's default, the "
                        "full-resolution fusion_spn_synthetic")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--no-video", action="store_true", help="skip demo.mp4")
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
    from depth_ros.bags.kitti_to_bag import ConversionOptions, convert_drive
    from depth_ros.ros.demo_runner import run_demo

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    LOG.info("1/5 writing a synthetic KITTI drive (%d frames, seed %d)", args.frames, args.seed)
    drive_dir = write_synthetic_drive(out / "drive", num_frames=args.frames, seed=args.seed,
                                      stereo=False, progress=False)
    LOG.info("2/5 converting it to a rosbag2 (MCAP)")
    bag_dir = out / "bag"
    conversion = convert_drive(drive_dir, bag_dir, ConversionOptions(
        cameras=(2,), oxts=False, overwrite=True, progress=False))
    LOG.info("3/5 replaying the bag through mono_depth_node and fusion_depth_node")
    t_run = time.monotonic()
    try:
        run = run_demo(drive_dir, bag_dir, out, args.rate,
                       {"mono": args.mono_model, "fusion": args.fusion_model}, args.backend,
                       env)
    except (RuntimeError, subprocess.SubprocessError) as exc:
        LOG.error("demo failed: %s", exc)
        return 1
    run_s = time.monotonic() - t_run
    LOG.info("4/5 scoring and drawing %d camera frames", len(run.images))
    summary = summarise(run, out, video=not args.no_video, drive_dir=drive_dir)
    summary.update(drive=str(drive_dir), bag=str(bag_dir), bag_frames=conversion.frames,
                   replay_s=round(run_s, 2), wall_time_s=round(time.monotonic() - t0, 2),
                   models={"mono": args.mono_model or "bundled mono_cnn_synthetic",
                           "fusion": args.fusion_model or "bundled fusion_spn_synthetic"})
    fileio.write_bytes_atomic(out / "summary.json",
                              (json.dumps(summary, indent=2) + "\n").encode(), durable=False)
    LOG.info("5/5 wrote %s", out / "summary.json")
    print(report_table(summary), flush=True)
    ok = all(summary["nodes"][n]["frames_out"] > 0 for n in LABELS)
    return 0 if ok else 1


def report_table(summary: dict) -> str:
    """The run's figures as a Markdown table (what docs/demo.md shows): per node the frames,
    drops, rate, latency, the metrics over the whole frame and in each LiDAR band, and the
    fusion node's confidence topic."""
    def band(node: dict, name: str) -> str:
        metrics = node["bands"].get(name)
        if not metrics:
            return "—"
        return f"{metrics['abs_rel']:.3f} / {metrics['rmse']:.2f} m ({metrics['frames']})"

    lines = ["| node | model | frames out / in | dropped | frames/s | latency p50 | AbsRel | "
             "δ<1.25 | RMSE | in the LiDAR's view: AbsRel / RMSE (frames) | above it |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name in LABELS:
        node = summary["nodes"][name]
        model = Path(summary.get("models", {}).get(name, "")).stem or "bundled"
        lines.append(
            f"| `{name}` | `{model}` | {node['frames_out']} / {summary['frames_in']} | "
            f"{node['frames_dropped']} | {node['fps_out']:.1f} | "
            f"{node['latency_ms_median']:.0f} ms | {node['abs_rel']:.3f} | "
            f"{node['delta1']:.3f} | {node['rmse']:.2f} m | {band(node, 'in_scan')} | "
            f"{band(node, 'above_scan')} |")
    for name in LABELS:
        confidence = summary["nodes"][name].get("confidence")
        if confidence:
            share = confidence["share_at_or_above_min"]
            lines.append(
                f"\n`/{name}/depth/confidence`: {confidence['frames']} frames received, "
                f"{'—' if share is None else f'{100 * share:.1f} %'} of their pixels ≥ "
                f"min_confidence {confidence['min_confidence']}")
    return "\n".join(lines)


def _range(gt: np.ndarray) -> tuple[float, float]:
    valid = np.isfinite(gt) & (gt > 0)
    if not valid.any():
        return 1.0, 80.0
    lo, hi = np.percentile(gt[valid], [2.0, 98.0])
    return float(lo), float(hi)


def summarise(run, out: Path, video: bool = True, drive_dir: Path | None = None) -> dict:
    """Per-node figures and metrics, and the pictures: colourised depth per frame and node,
    a panel of the middle frame, bird's-eye views of both clouds and an MP4 of the run.
    With the ``drive_dir`` the bag was made from, every node is also scored apart inside and
    above the LiDAR's field of view (``band_metrics``)."""
    stamps = sorted(run.images)
    writer = None
    if video and stamps:
        h, w = run.images[stamps[0]].shape[:2]
        # Four panels stacked vertically with their label strips, as stack_panels draws them.
        size = stack_panels([np.zeros((h, w, 3), np.uint8)] * 4, [""] * 4).shape[:2]
        writer = cv2.VideoWriter(str(out / "demo.mp4"), cv2.VideoWriter_fourcc(*"mp4v"),
                                 10.0, (size[1], size[0]))
        if not writer.isOpened():
            LOG.warning("cannot write %s (no MP4 encoder in this OpenCV): skipping the video",
                        out / "demo.mp4")
            writer = None
    # The panel shows the middle frame of those every node answered (any, if none did).
    answered = [s for s in stamps if all(s in o.depths for o in run.outputs.values())]
    candidates = answered or stamps
    middle = candidates[len(candidates) // 2] if candidates else None
    try:
        for index, stamp in enumerate(stamps):
            gt = run.groundtruth.get(stamp)
            lo, hi = _range(gt) if gt is not None else (1.0, 80.0)
            panels, labels = [run.images[stamp]], ["camera"]
            for name, output in run.outputs.items():
                depth = output.depths.get(stamp)
                vis = (colorize_depth(depth, lo, hi) if depth is not None
                       else np.zeros_like(run.images[stamp]))
                if depth is not None:
                    write_png(out / "depth_colored" / name / f"{index:06d}.png", vis)
                panels.append(vis)
                labels.append(LABELS[name] if depth is not None else f"{LABELS[name]}: dropped")
            panels.append(colorize_depth(gt, lo, hi) if gt is not None
                          else np.zeros_like(run.images[stamp]))
            labels.append("ground truth")
            frame = stack_panels(panels, labels)
            if writer is not None:
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            if stamp == middle:
                write_png(out / "panel.png", frame)
    finally:
        if writer is not None:
            writer.release()
    above = _above_scan_masks(run, drive_dir) if drive_dir is not None else {}
    nodes = {}
    for name, output in run.outputs.items():
        if output.points is not None:
            write_png(out / f"points_bev_{name}.png", birds_eye_view(output.points))
        nodes[name] = _node_summary(output, len(stamps))
        nodes[name]["bands"] = _band_summary(output, run.groundtruth, above)
        if name in run.confidence_nodes:
            shares = list(output.confidence_shares.values())
            nodes[name]["confidence"] = {
                "frames": len(shares), "min_confidence": run.min_confidence,
                "share_at_or_above_min": round(float(np.mean(shares)), 4) if shares else None}
        output.evaluator.write_report(out / f"eval_{name}.json")
    return {
        "frames_in": len(stamps),
        "nodes": nodes,
        "pictures": {"panel": str(out / "panel.png"),
                     "depth_colored": str(out / "depth_colored"),
                     "points_bev": {n: str(out / f"points_bev_{n}.png") for n in run.outputs},
                     "video": str(out / "demo.mp4") if writer is not None else None},
        "logs": {name: str(path) for name, path in run.node_logs.items()},
    }


def _above_scan_masks(run, drive_dir: Path) -> dict[int, np.ndarray]:
    """stamp ns -> ``above_scan_mask`` of that frame's LiDAR scan, projected from the drive on
    disk. The player restamps the bag, so the k-th ground-truth stamp is the drive's k-th frame:
    that holds only when every frame arrived, and the ground truth must agree; else no bands
    (a warning says why)."""
    drive = RawDrive(drive_dir, 2)
    stamps = sorted(run.groundtruth)
    if len(stamps) != len(drive) or not drive.has_velodyne():
        LOG.warning("not scoring the LiDAR bands: %d of the drive's %d frames arrived%s",
                    len(stamps), len(drive), "" if drive.has_velodyne() else ", no scans")
        return {}
    masks = {}
    for index, stamp in enumerate(stamps):
        if index in (0, len(stamps) - 1):  # the pairing holds at both ends, or nowhere
            expected = read_depth_png(drive.groundtruth_path(index))
            got = np.nan_to_num(run.groundtruth[stamp], nan=0.0)
            if expected.shape != got.shape or not np.allclose(expected, got, atol=1e-3):
                LOG.warning("not scoring the LiDAR bands: frame %d of the bag does not match "
                            "the drive's ground truth", index)
                return {}
        masks[stamp] = above_scan_mask(drive.sparse_depth(index))
    return masks


def _band_summary(output, groundtruth: dict[int, np.ndarray], above: dict[int, np.ndarray]
                  ) -> dict[str, dict]:
    """AbsRel, δ<1.25 and RMSE per band over the frames the node answered (the same protocol
    as the whole-frame figures: up to 80 m), and how many frames each band was scored in."""
    per_band: dict[str, list[dict[str, float]]] = {band: [] for band in SCAN_BANDS}
    protocol = output.evaluator.protocol  # the whole-frame figures' pixels and range
    for stamp, mask in above.items():
        pred = output.depths.get(stamp)
        if pred is None:
            continue
        for band, metrics in band_metrics(pred, groundtruth[stamp], mask, protocol.crop or None,
                                          protocol.min_depth_m, protocol.max_depth_m).items():
            per_band[band].append(metrics)
    out = {}
    for band, values in per_band.items():
        if values:
            mean = mean_metrics(values)
            out[band] = {"frames": len(values), "abs_rel": round(mean["abs_rel"], 4),
                         "delta1": round(mean["a1"], 4), "rmse": round(mean["rmse"], 3)}
    return out


def _node_summary(output, frames_in: int) -> dict:
    latencies = np.asarray(output.latencies_ms) if output.latencies_ms else np.array([np.nan])
    times = output.receive_times_s
    duration = times[-1] - times[0] if len(times) > 1 else 0.0
    evaluation = output.evaluator.summary()
    # summary() is JSON-ready: a metric no pixel could score is None there.
    metrics = {k: float("nan") if v is None else v for k, v in evaluation["metrics"].items()}
    frames_out = len(output.depths)
    return {
        "frames_out": frames_out,
        "frames_dropped": frames_in - frames_out,
        "fps_out": round((frames_out - 1) / duration, 2) if duration > 0 else 0.0,
        "latency_ms_median": round(float(np.median(latencies)), 2),
        "latency_ms_p90": round(float(np.percentile(latencies, 90)), 2),
        "frames_scored": evaluation["frames"],
        "abs_rel": round(metrics.get("abs_rel", float("nan")), 4),
        "delta1": round(metrics.get("a1", float("nan")), 4),
        "rmse": round(metrics.get("rmse", float("nan")), 3),
        "metrics": {k: round(v, 4) for k, v in metrics.items() if np.isfinite(v)},
    }


if __name__ == "__main__":
    sys.exit(main())
