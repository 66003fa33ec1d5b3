"""Bag figures at KITTI size: kitti_to_bag speed and size per frame, player throughput.

An engine drive (1242×375, both colour cameras, LiDAR at KITTI's density, OXTS, ground truth)
goes to MCAP and sqlite3, plain and zstd-compressed; then the MCAP bag is played as fast as
the player can go to a subscriber in this process (another DDS participant).
Run: .venv/bin/python bench/bench_bags.py [--frames 20] [--root outputs/bench_bags]
"""

from __future__ import annotations

import argparse
import os
import shutil
import threading
import time
from pathlib import Path

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import Image

from depth_ros.bags.kitti_to_bag import ConversionOptions, convert_drive
from depth_ros.bags.topics import BagTopics
from depth_ros.ros.bag_play import BagPlayer, PlayOptions
from depth_ros.ros.qos import make_qos
from depth_ros.synthetic import write_synthetic_drive
from depth_ros.transport import transport_environment


def _convert_table(drive: Path, root: Path) -> Path:
    print(f"{'storage':<10}{'compression':<13}{'frames/s':>10}{'MB/frame':>10}{'MB':>9}")
    mcap = root / "bag_mcap_none"
    for storage in ("mcap", "sqlite3"):
        for compression in ("none", "zstd"):
            out = root / f"bag_{storage}_{compression}"
            result = convert_drive(drive, out, ConversionOptions(
                storage=storage, compression=compression, overwrite=True, progress=False))
            print(f"{storage:<10}{compression:<13}{result.frames_per_s:>10.1f}"
                  f"{result.bytes_per_frame / 1e6:>10.2f}{result.bytes / 1e6:>9.1f}")
    return mcap


def _play_throughput(bag: Path, frames: int) -> None:
    os.environ.update(transport_environment())
    rclpy.init()
    sub_context = Context()
    rclpy.init(context=sub_context)
    player_node = Node("bench_player")
    listener = Node("bench_listener", context=sub_context)
    got: list[float] = []
    listener.create_subscription(Image, BagTopics().image(2), lambda _: got.append(
        time.monotonic()), make_qos("reliable", 50))
    executor = SingleThreadedExecutor(context=sub_context)
    executor.add_node(listener)
    player = BagPlayer(player_node, bag, PlayOptions(rate=1000.0, wait_for_subscribers=1,
                                                     qos_depth=50, progress=False))
    spinning = threading.Event()

    def spin() -> None:
        while not spinning.is_set():
            executor.spin_once(timeout_sec=0.05)

    thread = threading.Thread(target=spin)
    thread.start()
    try:
        player.wait_for_subscribers(30)
        started = time.monotonic()
        published = player.play_once() or player.published
        elapsed = time.monotonic() - started
        deadline = time.monotonic() + 5
        while len(got) < frames and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        spinning.set()
        thread.join()
        player.close()
        player_node.destroy_node()
        listener.destroy_node()
        rclpy.shutdown()
        rclpy.shutdown(context=sub_context)
    print(f"depth_ros_bag_play, as fast as it goes: {published} messages in {elapsed:.2f} s "
          f"({frames / elapsed:.1f} frames/s of every topic); {len(got)}/{frames} camera-2 "
          "images received in another participant")


def main(argv: list[str] | None = None) -> int:
    """Print the conversion table and the player's throughput."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--root", type=Path, default=Path("outputs/bench_bags"))
    args = parser.parse_args(argv)
    args.root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    drive = write_synthetic_drive(args.root / "drive", num_frames=args.frames, seed=4242,
                                  azimuth_decimation=2, progress=False)
    print(f"engine drive: {args.frames} frames at 1242×375 ({time.monotonic() - started:.0f} s,"
          " skipped when already written)")
    bag = _convert_table(drive, args.root)
    _play_throughput(bag, args.frames)
    for path in args.root.glob("bag_*"):
        shutil.rmtree(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
