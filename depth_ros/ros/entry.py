"""The shared ``main()`` of depth_ros nodes: init, spin, clean exit, one-line start-up errors."""

from __future__ import annotations

from collections.abc import Callable

import rclpy
import rclpy.logging
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node


def run_node(make_node: Callable[[], Node], name: str, args: list[str] | None,
             startup_errors: tuple[type[BaseException], ...]) -> int:
    """Create the node and spin it until Ctrl-C or shutdown; returns the exit code.

    An exception of ``startup_errors`` while the node is being built (a missing model, a bad
    parameter) is logged as one fatal line and gives exit code 1, not a traceback.
    """
    rclpy.init(args=args)
    node = None
    try:
        node = make_node()
        rclpy.spin(node)
    except startup_errors as exc:
        if node is not None:
            raise
        rclpy.logging.get_logger(name).fatal(str(exc))
        return 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
