"""Cross-process image → depth latency of mono_depth_node at KITTI size (1216×352), and the
node's overhead beyond inference.

DESIGN budget: node overhead beyond inference (decode, pre/post-process, depth + cloud
encode, publish) under 10 ms per 1216×352 frame.

A camera client (this process) publishes rendered 1216×352 frames at --rate-hz to the node
(its own process, console script) and subscribes to its depth (and, with --outputs all, to
points and depth/colored, so that the node also builds the cloud and the colours, as for
RViz). Measured: the latency from publishing an image to receiving its depth, both hops
included; the node's own latency (input received → every output published) and the part of
it spent in inference, both from its /diagnostics; and, for reference, DepthEstimator.predict
on the same frames in this process after the node has stopped. Overhead beyond inference =
node latency − the node's inference time (p50 against p50, same frames).
Writes outputs/bench/node_latency.json; exit code 1 if the overhead is over budget.
Run: .venv/bin/python bench/bench_node_latency.py [--frames 150] [--rate-hz 10]
[--outputs all|points|depth] [--input-size 1216x352] [--node-param NAME=VALUE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from node_rig import (  # bench/node_rig.py, beside this script
    CameraClient,
    NodeProcess,
    kitti_frames,
    load_average,
    percentiles_ms,
    use_own_domain,
)
from tqdm import tqdm

from depth_ros.fileio import write_bytes_atomic
from depth_ros.inference import DepthEstimator
from depth_ros.weights import DEFAULT_MONO_MODEL

OVERHEAD_BUDGET_MS = 10.0
OUTPUTS = {"all": ("depth", "points", "depth/colored"), "points": ("depth", "points"),
           "depth": ("depth",)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=150, help="frames timed")
    parser.add_argument("--rate-hz", type=float, default=10.0, help="the camera's rate")
    parser.add_argument("--outputs", choices=sorted(OUTPUTS), default="all")
    parser.add_argument("--model-path", type=Path, default=DEFAULT_MONO_MODEL)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--input-size", default="",
                        help="network input WxH (default: the model's training size)")
    parser.add_argument("--node-param", action="append", default=[], metavar="NAME=VALUE",
                        help="a node parameter, e.g. points_decimation=2 (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/node_latency.json"))
    return parser.parse_args(argv)


def time_predict(estimator: DepthEstimator, frames: list[np.ndarray], fx: float,
                 count: int) -> list[float]:
    """Seconds per DepthEstimator.predict over ``count`` calls cycling through the frames."""
    for rgb in frames[:2]:
        estimator.predict(rgb, fx=fx)  # warm-up: first-run allocations
    times = []
    for i in range(count):
        rgb = frames[i % len(frames)]
        start = time.perf_counter()
        estimator.predict(rgb, fx=fx)
        times.append(time.perf_counter() - start)
    return times


def time_stages(estimator: DepthEstimator, frames: list[np.ndarray], camera,
                count: int) -> dict[str, dict[str, float]]:
    """p50/p90 ms of each step the node takes around inference, in this process (no
    transport, no other thread): what the node's overhead is made of."""
    from std_msgs.msg import Header

    from depth_ros.ros.conversions import (
        depth_to_image,
        depth_to_pointcloud2,
        image_to_rgb,
        numpy_to_image,
    )
    from depth_ros.viz import colorize_depth

    meta = estimator.metadata
    header = Header(frame_id="camera")
    images = [numpy_to_image(rgb, "rgb8", header) for rgb in frames]
    depths = []
    for rgb in frames:
        depth = estimator.predict(rgb, fx=camera.fx).copy()
        depth[~((depth >= meta.min_depth_m) & (depth <= meta.max_depth_m))] = np.nan
        depths.append(depth)
    stages = {
        "decode image (image_to_rgb)": lambda i: image_to_rgb(images[i]),
        "depth → 32FC1 Image": lambda i: depth_to_image(depths[i], header),
        "depth → PointCloud2 (x y z rgb)": lambda i: depth_to_pointcloud2(
            depths[i], camera.K, header, rgb=frames[i]),
        "colourised depth → rgb8 Image": lambda i: numpy_to_image(
            colorize_depth(depths[i], meta.min_depth_m, meta.max_depth_m), "rgb8", header),
    }
    result = {}
    for name, stage in stages.items():
        times = []
        for k in range(count):
            start = time.perf_counter()
            stage(k % len(frames))
            times.append(time.perf_counter() - start)
        result[name] = percentiles_ms(times)
    return result


def run_node(args: argparse.Namespace, frames: list[np.ndarray], camera,
             log_path: Path) -> dict[str, object]:
    """Play the frames through the node; latencies and the node's last diagnostics."""
    params: dict[str, object] = {"model_path": str(args.model_path), "backend": args.backend}
    for item in args.node_param:
        name, _, value = item.partition("=")
        params[name] = yaml.safe_load(value)
    if args.input_size:
        width, height = (int(v) for v in args.input_size.lower().split("x"))
        params.update(input_width=width, input_height=height)
    with NodeProcess("mono_depth_node", log_path, params) as node:
        client = CameraClient(camera, OUTPUTS[args.outputs])
        try:
            if not (client.wait_for_node() and client.warm_up(frames)):
                raise SystemExit(f"the node did not answer; see {log_path}")
            period = 1.0 / args.rate_hz
            next_send = time.perf_counter()
            for i in tqdm(range(args.frames), desc="frames", unit="frame"):
                client.spin_until(lambda t=next_send: time.perf_counter() >= t, period + 1.0)
                client.send(frames[i % len(frames)])
                next_send += period
            sent = set(client.sent)
            client.spin_until(lambda: sent <= set(client.received), 5.0)
            # The node reports over its last 5 s; read a report made after the last frame.
            before = len(client.diagnostics)
            client.spin_until(lambda: len(client.diagnostics) > before, 3.0)
            if not node.alive():
                raise SystemExit(f"the node died; see {log_path}")
            return {"latencies": client.latencies(), "sent": len(sent),
                    "diagnostics": client.diagnostics[-1] if client.diagnostics else {},
                    "extra_outputs": dict(client.extra_outputs)}
        finally:
            client.close()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON; 1 if over budget."""
    args = parse_args(argv)
    domain = use_own_domain()
    frames, camera = kitti_frames()
    load_before = load_average()
    result = run_node(args, frames, camera, args.out.with_suffix(".node.log"))
    diag = result["diagnostics"]
    input_size = None
    if args.input_size:
        width, height = (int(v) for v in args.input_size.lower().split("x"))
        input_size = (height, width)
    estimator = DepthEstimator(args.model_path, backend=args.backend, input_size=input_size)
    predict = percentiles_ms(time_predict(estimator, frames, camera.fx, 60))
    stages = time_stages(estimator, frames, camera, 60)
    latency = percentiles_ms([lat for _, lat in result["latencies"]])
    node_ms = {"p50": float(diag.get("latency p50 ms", "nan")),
               "p90": float(diag.get("latency p90 ms", "nan"))}
    # The node's own inference time on the same frames (its diagnostics), not the separate
    # predict run below: the load of the machine drifts between the two.
    inference_ms = {"p50": float(diag.get("inference p50 ms", "nan")),
                    "p90": float(diag.get("inference p90 ms", "nan"))}
    overhead = {"cross-process": latency["p50"] - inference_ms["p50"],
                "in the node": node_ms["p50"] - inference_ms["p50"]}
    report = {
        "image_size": [camera.width, camera.height], "rate_hz": args.rate_hz,
        "outputs": list(OUTPUTS[args.outputs]), "backend": estimator.backend_name,
        "node_params": args.node_param,
        "network_input": list(estimator.input_size[::-1]),
        "frames_sent": result["sent"], "depth_received": len(result["latencies"]),
        "other_outputs_received": result["extra_outputs"],
        "node_frames_dropped": int(diag.get("frames dropped", "-1")),
        "latency_cross_process_ms": latency, "latency_in_node_ms": node_ms,
        "inference_in_node_ms": inference_ms, "predict_ms": predict,
        "overhead_beyond_inference_ms": overhead,
        "stages_in_this_process_ms": stages,
        "overhead_budget_ms": OVERHEAD_BUDGET_MS, "ros_domain_id": domain,
        "load_average_before": load_before, "load_average_after": load_average(),
    }
    write_bytes_atomic(args.out, (json.dumps(report, indent=2) + "\n").encode())
    print(f"mono_depth_node, {camera.width}×{camera.height} rgb8 at {args.rate_hz:g} Hz, "
          f"outputs {', '.join(OUTPUTS[args.outputs])}, {report['backend']}")
    print(f"frames {result['sent']} sent, {len(result['latencies'])} answered, node dropped "
          f"{report['node_frames_dropped']}; load {load_before} -> {report['load_average_after']}")
    print(f"{'':40s} {'p50 ms':>8s} {'p90 ms':>8s}")
    for name, values in (("image -> depth, across processes", latency),
                         ("in the node (input -> all published)", node_ms),
                         ("  of which inference, in the node", inference_ms),
                         ("DepthEstimator.predict, this process", predict)):
        print(f"{name:40s} {values['p50']:8.2f} {values['p90']:8.2f}")
    print("steps around inference, in this process:")
    for name, values in stages.items():
        print(f"  {name:38s} {values['p50']:8.2f} {values['p90']:8.2f}")
    for name, value in overhead.items():
        print(f"overhead beyond inference, {name:13s} {value:8.2f} ms")
    met = overhead["in the node"] < OVERHEAD_BUDGET_MS
    print(f"DESIGN budget: overhead < {OVERHEAD_BUDGET_MS:g} ms: {'met' if met else 'NOT met'}"
          f" ({args.out})")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
