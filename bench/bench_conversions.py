"""Time the message conversions at KITTI size (1216×352) and check the point-cloud budget.

DESIGN budget: depth → organised PointCloud2 within 3× a plain copy of the output buffer.
Exit code 1 if the point-cloud budget is missed.
Run: .venv/bin/python bench/bench_conversions.py [--rounds N] [--repeats N] [--default-malloc]
"""

from __future__ import annotations

import argparse
import array
import os

import numpy as np
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from timing import median_ms  # bench/timing.py, beside this script
from tqdm import tqdm

from depth_ros.geometry import PinholeCamera
from depth_ros.ros.conversions import (
    depth_to_image,
    depth_to_pointcloud2,
    image_to_rgb,
    numpy_to_image,
    pointcloud2_to_array,
)
from depth_ros.ros.memory import keep_large_buffers

HEIGHT, WIDTH = 352, 1216
POINT_STEP = 16
CLOUD_BUDGET = 3.0  # DESIGN: depth → organised PointCloud2 within 3× a plain copy


def main(argv: list[str] | None = None) -> int:
    """Print a table of median conversion times and ratios to a copy; 1 if over budget."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=40, help="runs per round")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--default-malloc", action="store_true",
                        help="leave glibc's malloc thresholds as they are (the nodes raise "
                             "them: depth_ros.ros.memory)")
    args = parser.parse_args(argv)
    malloc = "glibc defaults" if args.default_malloc else (
        keep_large_buffers() or "large buffers kept in the heap, as in the nodes")

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    depth = rng.uniform(1.0, 80.0, (HEIGHT, WIDTH)).astype(np.float32)
    depth_with_holes = depth.copy()
    depth_with_holes[rng.random(depth.shape) < 0.05] = np.nan
    camera = PinholeCamera(721.5, 721.5, 609.6, 172.9, WIDTH, HEIGHT)
    header = Header(frame_id="camera_optical")
    rgb_msg = numpy_to_image(rgb, "rgb8", header)
    bgr_msg = numpy_to_image(np.ascontiguousarray(rgb[..., ::-1]), "bgr8", header)
    cloud_buffer = np.empty((HEIGHT, WIDTH, POINT_STEP // 4), dtype=np.float32)
    cloud_msg = depth_to_pointcloud2(depth, camera.K, header, rgb=rgb)
    depth_bytes = array.array("B", depth.tobytes())
    plain = Image()

    def set_through_setter() -> None:
        plain.data = depth_bytes

    rows = [
        ("image_to_rgb(rgb8)", lambda: image_to_rgb(rgb_msg)),
        ("image_to_rgb(bgr8)", lambda: image_to_rgb(bgr_msg)),
        ("numpy_to_image(rgb8)", lambda: numpy_to_image(rgb, "rgb8", header)),
        ("depth_to_image(32FC1)", lambda: depth_to_image(depth, header)),
        ("depth_to_image(16UC1)", lambda: depth_to_image(depth, header, "16UC1")),
        ("Image.data = array.array (setter copy)", set_through_setter),
        ("np.copy of the cloud buffer (6.8 MB)", lambda: np.copy(cloud_buffer)),
        ("depth_to_pointcloud2", lambda: depth_to_pointcloud2(depth, camera.K, header)),
        ("depth_to_pointcloud2, 5% NaN",
         lambda: depth_to_pointcloud2(depth_with_holes, camera.K, header)),
        ("depth_to_pointcloud2 + rgb",
         lambda: depth_to_pointcloud2(depth, camera.K, header, rgb=rgb)),
        ("pointcloud2_to_array(x, y, z)", lambda: pointcloud2_to_array(cloud_msg)),
    ]
    # Rounds of every row in turn: on a shared machine the load drifts, and a ratio is only
    # fair between figures taken at the same time. Each figure is the median over rounds of
    # its per-round median; each ratio the median over rounds of the per-round ratio.
    copy_name = "np.copy of the cloud buffer (6.8 MB)"
    per_round: dict[str, list[float]] = {name: [] for name, _ in rows}
    for _ in tqdm(range(args.rounds), desc="rounds", unit="round"):
        for name, fn in rows:
            per_round[name].append(median_ms(fn, args.repeats, warmup=5))
    copy_per_round = np.array(per_round[copy_name])
    print(f"{WIDTH}×{HEIGHT}, median of {args.rounds} rounds × {args.repeats} runs; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; malloc: {malloc}")
    # The best round is the nearest this machine comes to an idle one.
    print(f"{'conversion':42s} {'ms':>8s} {'× copy':>8s} {'best round':>11s}")
    ratios = {}
    for name, times in per_round.items():
        per_round_ratio = np.array(times) / copy_per_round
        ratios[name] = float(np.median(per_round_ratio))
        print(f"{name:42s} {np.median(times):8.3f} {ratios[name]:8.2f} "
              f"{per_round_ratio.min():11.2f}")
    ratio = ratios["depth_to_pointcloud2"]
    met = ratio <= CLOUD_BUDGET
    print(f"depth → PointCloud2 / plain copy: {ratio:.2f}× (budget {CLOUD_BUDGET:g}×: "
          f"{'met' if met else 'NOT met'})")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
