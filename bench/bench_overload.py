"""Overload: a camera at three times the rate mono_depth_node can process, for 60 s; latency
must stay flat (no backlog).

DESIGN: inference never runs on a backlog; the node keeps the newest input only, drops the
rest and counts the drops. Issue budget: at 3× the processing rate, latency stays flat for a
60 s run.

1. The processing rate: frames sent one at a time, each as soon as the previous depth came
   back (closed loop, --calibrate-s), with the same outputs subscribed as below.
2. The overload: rendered 1216×352 frames published at 3× that rate (open loop, --duration-s)
   by this process; every depth that comes back is timed from its image's publication.
3. Median latency of the first and last 10 s; the run fails (exit code 1) unless the last is
   within 1.5× of the first. Frames not answered are counted as drops (the node's own count
   of frames it replaced unprocessed is reported beside it).
Writes outputs/bench/overload.json and outputs/bench/overload_latency.png.
Run: .venv/bin/python bench/bench_overload.py [--duration-s 60] [--factor 3]
[--outputs all|depth]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from node_rig import (  # bench/node_rig.py, beside this script
    CameraClient,
    NodeProcess,
    kitti_frames,
    load_average,
    use_own_domain,
)
from plot import scatter_png
from tqdm import tqdm

from depth_ros.fileio import write_bytes_atomic
from depth_ros.weights import DEFAULT_MONO_MODEL

OUTPUTS = {"all": ("depth", "points", "depth/colored"), "depth": ("depth",)}
WINDOW_S = 10.0  # the first and last windows compared
MAX_GROWTH = 1.5  # last-window median latency / first-window median latency


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--factor", type=float, default=3.0,
                        help="publish rate / processing rate")
    parser.add_argument("--calibrate-s", type=float, default=10.0)
    parser.add_argument("--outputs", choices=sorted(OUTPUTS), default="all")
    parser.add_argument("--model-path", type=Path, default=DEFAULT_MONO_MODEL)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/overload.json"))
    parser.add_argument("--plot", type=Path, default=Path("outputs/bench/overload_latency.png"))
    return parser.parse_args(argv)


def processing_rate(client: CameraClient, frames: list[np.ndarray], seconds: float) -> float:
    """Frames per second the node answers when each is sent once the last came back."""
    start = time.perf_counter()
    answered = 0
    while time.perf_counter() - start < seconds:
        stamp = client.send(frames[answered % len(frames)])
        if client.spin_until(lambda s=stamp: s in client.received, 10.0):
            answered += 1
    return answered / (time.perf_counter() - start)


def overload(client: CameraClient, frames: list[np.ndarray], rate_hz: float,
             seconds: float) -> tuple[int, int]:
    """Publish at rate_hz for seconds; returns (frames sent, sends that fell behind)."""
    period = 1.0 / rate_hz
    start = time.perf_counter()
    next_send, sent, late = start, 0, 0
    with tqdm(total=round(seconds), desc="overload", unit="s") as progress:
        while next_send - start < seconds:
            client.spin_until(lambda t=next_send: time.perf_counter() >= t, period + 1.0)
            client.send(frames[sent % len(frames)])
            sent += 1
            next_send += period
            if time.perf_counter() - next_send > period:  # this process fell behind
                late += 1
                next_send = time.perf_counter()
            elapsed = min(int(time.perf_counter() - start), round(seconds))
            if elapsed > progress.n:
                progress.update(elapsed - progress.n)
    return sent, late


def window_median_ms(points: list[tuple[float, float]], lo: float, hi: float) -> float:
    """Median latency (ms) of frames sent within [lo, hi) seconds."""
    values = [lat for t, lat in points if lo <= t < hi]
    return float(np.median(values)) * 1e3 if values else float("nan")


def _delta(after: dict[str, str], before: dict[str, str], key: str) -> int:
    """A node total's growth between two diagnostics reports (-1 when one is missing)."""
    if key not in after or key not in before:
        return -1
    return int(after[key]) - int(before[key])


def main(argv: list[str] | None = None) -> int:
    """Run the calibration and the overload; 1 if latency grew (a backlog)."""
    args = parse_args(argv)
    domain = use_own_domain()
    frames, camera = kitti_frames()
    log_path = args.out.with_suffix(".node.log")
    load_before = load_average()
    params = {"model_path": str(args.model_path), "backend": args.backend}
    with NodeProcess("mono_depth_node", log_path, params) as node:
        client = CameraClient(camera, OUTPUTS[args.outputs])
        try:
            if not (client.wait_for_node() and client.warm_up(frames)):
                raise SystemExit(f"the node did not answer; see {log_path}")
            rate = processing_rate(client, frames, args.calibrate_s)
            print(f"processing rate (closed loop, {args.calibrate_s:g} s): {rate:.1f} frames/s")
            client.spin_until(lambda: False, 1.5)  # a diagnostics report from before the run
            start_counts = client.diagnostics[-1] if client.diagnostics else {}
            client.sent.clear()
            client.received.clear()
            client.extra_outputs = dict.fromkeys(client.extra_outputs, 0)
            before = len(client.diagnostics)
            sent, late = overload(client, frames, args.factor * rate, args.duration_s)
            client.spin_until(lambda: False, 2.0)  # the last answers
            client.spin_until(lambda: len(client.diagnostics) > before, 3.0)
            if not node.alive():
                raise SystemExit(f"the node died; see {log_path}")
            points = client.latencies()
            diagnostics = client.diagnostics[-1] if client.diagnostics else {}
            extra = dict(client.extra_outputs)
        finally:
            client.close()

    duration = args.duration_s
    first = window_median_ms(points, 0.0, WINDOW_S)
    last = window_median_ms(points, duration - WINDOW_S, duration)
    answered = len(points)
    growth = last / first
    flat = bool(growth <= MAX_GROWTH)
    report = {
        "image_size": [camera.width, camera.height], "outputs": list(OUTPUTS[args.outputs]),
        "processing_rate_hz": rate, "publish_rate_hz": args.factor * rate,
        "duration_s": duration, "frames_sent": sent, "sends_behind_schedule": late,
        "depth_received": answered, "frames_dropped": sent - answered,
        # The node's own counts over the overload (its totals since start, less those before).
        "node_frames_dropped": _delta(diagnostics, start_counts, "frames dropped"),
        "node_frames_received": _delta(diagnostics, start_counts, "frames received"),
        "other_outputs_received": extra, "output_rate_hz": answered / duration,
        "latency_first_10s_median_ms": first, "latency_last_10s_median_ms": last,
        "latency_p90_ms": float(np.percentile([lat for _, lat in points], 90)) * 1e3,
        "growth": growth, "max_growth": MAX_GROWTH, "flat": flat, "ros_domain_id": domain,
        "load_average_before": load_before, "load_average_after": load_average(),
    }
    write_bytes_atomic(args.out, (json.dumps(report, indent=2) + "\n").encode())
    times = np.array([t for t, _ in points])
    latencies = np.array([lat for _, lat in points]) * 1e3
    scatter_png(args.plot, times, latencies,
                f"mono_depth_node at {args.factor:g}x its rate ({args.factor * rate:.0f} Hz in, "
                f"{camera.width}x{camera.height}): {answered}/{sent} answered",
                "time since the first frame (s)", "latency (ms)",
                lines=[(0.0, WINDOW_S, first, f"first 10 s median {first:.0f} ms", (0, 150, 0)),
                       (duration - WINDOW_S, duration, last,
                        f"last 10 s median {last:.0f} ms", (200, 0, 0))])
    print(f"published {sent} frames at {args.factor * rate:.1f} Hz for {duration:g} s "
          f"({late} sends behind schedule); {answered} answered ({answered / duration:.1f} Hz), "
          f"{sent - answered} dropped (node: {report['node_frames_dropped']} replaced "
          f"unprocessed)")
    print(f"median latency: first 10 s {first:.1f} ms, last 10 s {last:.1f} ms "
          f"({growth:.2f}x, limit {MAX_GROWTH}x); p90 {report['latency_p90_ms']:.1f} ms; "
          f"load {load_before} -> {report['load_average_after']}")
    print(f"{'flat: no backlog' if flat else 'LATENCY GREW: a backlog'} ({args.out}, "
          f"{args.plot})")
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(main())
