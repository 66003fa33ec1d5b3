"""Large images between two processes through Fast DDS: delivered/sent and latency by size.

A publisher process sends ``--count`` rgb8 images of each size (KITTI 1242×375, 1920×1080,
2560×1440, 4000×3000 by default) at ``--rate`` Hz, first best effort (a camera driver's
sensor-data QoS: keep-last 5; the subscriber keeps 1, as the depth nodes' input does), then
reliable (keep-last 10 both sides), to a subscriber process. Both run under one transport
set-up at a time:

- ``defaults``: Fast DDS's built-in transports as they come (no variable set);
- ``large_data``: ``FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA`` (TCP + shared memory);
- ``profile``: the shipped XML profile ``config/fastdds_large_data.xml`` through
  ``depth_ros.transport.transport_environment`` (or ``--profile PATH``, repeatable, to compare
  other profiles; each is named by its file name).

Latency is the time from just before ``publish`` (the stamp) to the subscriber's callback,
both on this machine's clock: it includes rclpy's conversion of the message on both sides.

Run: .venv/bin/python bench/bench_transport.py [--count 10] [--configs defaults large_data
profile] [--sizes 2560x1440] [--json out.json]. Each configuration takes ~20-40 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SIZES = ("1242x375", "1920x1080", "2560x1440", "4000x3000")
MODES = ("best_effort", "reliable")
MATCH_TIMEOUT_S = 60.0
# A publisher counts a subscription as matched before the subscriber's side has matched it:
# wait this long after the count is reached (depth_ros_bag_play's MATCH_SETTLE_S).
SETTLE_S = 2.0
LINGER_S = 3.0  # after the last publish: reliable retransmissions and queued fragments


def topic_name(mode: str, size: str) -> str:
    """The topic one (reliability, size) stream uses."""
    return f"/bench_transport/{mode}/s{size}"


def parse_size(text: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT`` to (width, height)."""
    width, sep, height = text.partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        raise argparse.ArgumentTypeError(f"size must look like 2560x1440, got {text!r}")
    return int(width), int(height)


def _qos(mode: str, publisher: bool):
    from depth_ros.ros.qos import make_qos

    if mode == "best_effort":
        return make_qos("best_effort", 5 if publisher else 1)
    return make_qos("reliable", 10)


def _exit(code: int) -> None:
    # Skip deleting the DDS participant: with LARGE_DATA's TCP transport Fast DDS 3.2 can
    # deadlock there (see depth_ros/ros/entry.py); a benchmark process has nothing to save.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_publisher(sizes: list[str], modes: list[str], count: int, rate_hz: float) -> None:
    """The publisher process: match every stream, then send ``count`` images per stream."""
    import numpy as np
    import rclpy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("bench_transport_pub")
    pubs = {(m, s): node.create_publisher(Image, topic_name(m, s), _qos(m, True))
            for m in modes for s in sizes}
    deadline = time.monotonic() + MATCH_TIMEOUT_S
    while any(p.get_subscription_count() < 1 for p in pubs.values()):
        if time.monotonic() > deadline:
            print("publisher: subscriber never matched", file=sys.stderr)
            _exit(2)
        time.sleep(0.05)
    time.sleep(SETTLE_S)
    period = 1.0 / rate_hz
    rng = np.random.default_rng(0)
    for mode in modes:
        for size in sizes:
            width, height = parse_size(size)
            msg = Image(height=height, width=width, encoding="rgb8", step=3 * width)
            # Random bytes: nothing on the way may profit from repeated content.
            msg.data = rng.integers(0, 256, 3 * width * height, dtype=np.uint8).tobytes()
            next_send = time.monotonic()
            for index in range(count):
                time.sleep(max(0.0, next_send - time.monotonic()))
                next_send += period
                msg.header.frame_id = str(index)
                now = time.time_ns()
                msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now, 1_000_000_000)
                pubs[(mode, size)].publish(msg)
    time.sleep(LINGER_S)
    print("publisher: done", flush=True)
    _exit(0)


def run_subscriber(sizes: list[str], modes: list[str], stop_file: Path, out: Path) -> None:
    """The subscriber process: record (index, latency, bytes) per stream until ``stop_file``
    exists, then write them to ``out`` as JSON."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("bench_transport_sub")
    got: dict[str, list[tuple[int, float, int]]] = {topic_name(m, s): []
                                                    for m in modes for s in sizes}

    def callback(topic: str):
        def store(msg: Image) -> None:
            now = time.time_ns()
            sent = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            got[topic].append((int(msg.header.frame_id), (now - sent) / 1e6, len(msg.data)))
        return store

    for topic in got:
        mode = topic.split("/")[2]
        node.create_subscription(Image, topic, callback(topic), _qos(mode, False))
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    while not stop_file.exists():
        executor.spin_once(timeout_sec=0.1)
    out.write_text(json.dumps(got))
    _exit(0)


def transport_env(config: str, profile: Path | None = None) -> dict[str, str]:
    """The process environment of one transport configuration (others' settings removed)."""
    env = dict(os.environ)
    for key in ("FASTDDS_BUILTIN_TRANSPORTS", "FASTDDS_DEFAULT_PROFILES_FILE",
                "FASTRTPS_DEFAULT_PROFILES_FILE", "RMW_FASTRTPS_USE_QOS_FROM_XML"):
        env.pop(key, None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["RMW_IMPLEMENTATION"] = "rmw_fastrtps_cpp"
    if config == "large_data":
        env["FASTDDS_BUILTIN_TRANSPORTS"] = "LARGE_DATA"
    elif config != "defaults":
        from depth_ros.transport import transport_environment

        env.update(transport_environment(env, profile_path=profile))
    return env


def measure(config: str, sizes: list[str], modes: list[str], count: int, rate_hz: float,
            profile: Path | None = None, timeout_s: float = 300.0) -> dict[str, dict]:
    """Run one configuration; per topic: sent, delivered, distinct, bytes_ok, latencies."""
    env = transport_env(config, profile)
    common = ["--sizes", *sizes, "--modes", *modes]
    with tempfile.TemporaryDirectory(prefix="bench_transport_") as tmp:
        stop_file, out = Path(tmp) / "stop", Path(tmp) / "got.json"
        sub = subprocess.Popen([sys.executable, __file__, "--role", "sub", *common,
                                "--stop-file", str(stop_file), "--json", str(out)], env=env)
        try:
            pub = subprocess.run([sys.executable, __file__, "--role", "pub", *common,
                                  "--count", str(count), "--rate", str(rate_hz)],
                                 env=env, timeout=timeout_s, capture_output=True, text=True)
            if pub.returncode != 0:
                raise RuntimeError(f"{config}: publisher failed ({pub.returncode}): "
                                   f"{pub.stderr.strip()[-500:]}")
        finally:
            stop_file.touch()
            try:
                sub.wait(timeout=30)
            except subprocess.TimeoutExpired:
                sub.kill()
        got = json.loads(out.read_text())
    results = {}
    for mode in modes:
        for size in sizes:
            width, height = parse_size(size)
            rows = got[topic_name(mode, size)]
            results[f"{mode} {size}"] = {
                "sent": count, "delivered": len({i for i, _, _ in rows}),
                "bytes_ok": all(n == 3 * width * height for _, _, n in rows),
                "latency_ms": [lat for _, lat, _ in rows]}
    return results


def _row(config: str, key: str, r: dict) -> str:
    lat = r["latency_ms"]
    median = f"{statistics.median(lat):.0f}" if lat else "-"
    worst = f"{max(lat):.0f}" if lat else "-"
    mode, size = key.split()
    return (f"| {config} | {mode} | {size} | {r['delivered']}/{r['sent']} | {median} | "
            f"{worst} |")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with ``--role``, one of its two processes)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--role", choices=("pub", "sub"), help=argparse.SUPPRESS)
    parser.add_argument("--stop-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), type=str)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--count", type=int, default=10, help="images per size and mode")
    parser.add_argument("--rate", type=float, default=5.0, help="images per second")
    parser.add_argument("--configs", nargs="+", default=["defaults", "large_data", "profile"],
                        choices=("defaults", "large_data", "profile"))
    parser.add_argument("--profile", type=Path, action="append", default=[],
                        help="XML profile(s) to measure as 'profile' (default: the shipped one)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    for size in args.sizes:
        parse_size(size)
    if args.role == "pub":
        run_publisher(args.sizes, args.modes, args.count, args.rate)
    if args.role == "sub":
        run_subscriber(args.sizes, args.modes, args.stop_file, args.json)
    runs: list[tuple[str, Path | None]] = []
    for config in args.configs:
        if config == "profile" and args.profile:
            runs.extend(("profile:" + p.name, p) for p in args.profile)
        else:
            runs.append((config, None))
    print(f"{os.cpu_count()} CPU cores, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.count} images per "
          f"size and mode at {args.rate:g} Hz", flush=True)
    print("| transport | QoS | size | delivered | median ms | max ms |")
    print("|---|---|---|---|---|---|")
    figures = {}
    for name, profile in runs:
        config = "profile" if name.startswith("profile") else name
        results = measure(config, args.sizes, args.modes, args.count, args.rate, profile)
        figures[name] = results
        for key, r in results.items():
            print(_row(name, key, r), flush=True)
            if not r["bytes_ok"]:
                print(f"  {name} {key}: an image arrived with the wrong size", flush=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
