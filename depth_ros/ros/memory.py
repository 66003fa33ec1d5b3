"""Keep large message buffers in the heap instead of fresh mmaps (glibc's malloc).

glibc serves every allocation above ``M_MMAP_THRESHOLD`` (128 KiB until a freed mmapped block
raises it) from a fresh ``mmap`` and gives it back to the kernel on ``free``: each 6.8 MB
point cloud a node builds, and each serialisation buffer rmw makes to publish it, then costs
1 700 page faults. Measured here: ``rclpy.serialization.serialize_message`` of a 6 MiB message
took 9.3 ms by default and 0.5 ms with the thresholds below; the overhead of
``mono_depth_node`` beyond inference with depth, cloud and colourised depth subscribed was
6.6–7.5 ms against 16 ms with glibc's defaults, in alternating runs (docs/benchmarks.md).
The cost is memory the process keeps for reuse instead of returning it: up to
``trim_threshold`` bytes of free heap.
"""

from __future__ import annotations

import ctypes
import os
import sys

# From glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# glibc's largest allowed mmap threshold on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX): a 1242×375
# cloud (7.5 MB) or a 4K rgb8 image (25 MB) stays below it.
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 256 * 1024 * 1024


def keep_large_buffers(mmap_threshold: int = MMAP_THRESHOLD,
                       trim_threshold: int = TRIM_THRESHOLD) -> str | None:
    """Raise glibc's mmap and trim thresholds for this process; returns why not, or None.

    Nothing is changed on a C library other than glibc (musl, macOS), when ``GLIBC_TUNABLES``
    already sets a malloc threshold (the user's choice wins), or when
    ``DEPTH_ROS_MALLOC_TUNING=0``.
    """
    if os.environ.get("DEPTH_ROS_MALLOC_TUNING", "1") == "0":
        return "DEPTH_ROS_MALLOC_TUNING=0"
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if "malloc.mmap_threshold" in tunables or "malloc.trim_threshold" in tunables:
        return "GLIBC_TUNABLES sets the malloc thresholds"
    if not sys.platform.startswith("linux"):
        return f"not glibc ({sys.platform})"
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError) as exc:
        return f"no glibc mallopt: {exc}"
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success, 0 for a value out of range.
    if mallopt(M_MMAP_THRESHOLD, int(mmap_threshold)) != 1:
        return f"mallopt refused an mmap threshold of {mmap_threshold} bytes"
    if mallopt(M_TRIM_THRESHOLD, int(trim_threshold)) != 1:
        return f"mallopt refused a trim threshold of {trim_threshold} bytes"
    return None
