"""Python ``logging`` from the ROS-free core (``depth_ros.*``), shown in a node's ROS log.

The core logs through ``logging`` (the backend choice, "no cached TensorRT engine: building
one now", TensorRT's warnings); rclpy does not read ``logging``, so without this a node would
show none of it below WARNING, and WARNING only on stderr. ROS-free itself: it takes any
logger with ``debug``/``info``/``warning``/``error`` methods (an rclpy ``RcutilsLogger``).
"""

from __future__ import annotations

import logging
from typing import Any

CORE_LOGGER = "depth_ros"


class RosLogHandler(logging.Handler):
    """Forwards each record to the ROS logger method of its level."""

    def __init__(self, ros_logger: Any, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.ros_logger = ros_logger
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        """Send one record; a ROS logger that fails (shutting down) drops it silently."""
        try:
            text = self.format(record)
            if record.levelno >= logging.ERROR:
                self.ros_logger.error(text)
            elif record.levelno >= logging.WARNING:
                self.ros_logger.warning(text)
            elif record.levelno >= logging.INFO:
                self.ros_logger.info(text)
            else:
                self.ros_logger.debug(text)
        except Exception:  # a log line must never take the node down
            pass


def forward_core_logs(ros_logger: Any, level: int = logging.INFO) -> RosLogHandler:
    """Show ``depth_ros.*`` records of ``level`` and above in ``ros_logger``; replaces the
    handler an earlier call installed (one node per process is the usual case, the newest
    node's logger wins otherwise). Records still propagate to other handlers."""
    core = logging.getLogger(CORE_LOGGER)
    for handler in list(core.handlers):
        if isinstance(handler, RosLogHandler):
            core.removeHandler(handler)
    handler = RosLogHandler(ros_logger, level)
    core.addHandler(handler)
    if core.getEffectiveLevel() > level:
        core.setLevel(level)
    return handler
