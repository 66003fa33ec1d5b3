"""The one base class of user-facing errors: a mistake the user can fix (a bad parameter, a
missing or broken model file, a runtime that is not installed).

Its message is a complete sentence that names what is wrong and what is allowed; the node
entry point (``depth_ros.ros.entry.run_node``) logs it as one FATAL line and exits with code
1, without a traceback. Programming errors stay ordinary exceptions, and keep their
tracebacks. ROS-free on purpose: the core raises these without importing rclpy.
"""

from __future__ import annotations


class DepthRosError(Exception):
    """A user-facing error: its message is the one line the user sees."""


def one_line(text: object, limit: int = 300) -> str:
    """``text`` as one line: whitespace runs (newlines included) become one space, and
    anything past ``limit`` characters is cut with an ellipsis (library messages can run to
    pages: torch's ``weights_only`` explanation, onnxruntime's source locations)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"
