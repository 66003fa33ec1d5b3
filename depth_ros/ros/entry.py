"""The shared ``main()`` of depth_ros nodes, ros2/demos style: ``rclpy.init``, the node,
spin, a clean exit on Ctrl-C or shutdown, and one FATAL line (exit code 1) for a user-facing
error at start-up.

Processes that run Fast DDS over TCP wind down through ``fastdds_tcp`` (the upstream deadlock
it names); on the shipped shared-memory + UDP profile the node is simply destroyed.
"""

from __future__ import annotations

import faulthandler
import re
import signal
from collections.abc import Callable

import rclpy
import rclpy.logging
from rclpy.executors import ExternalShutdownException
from rclpy.impl.implementation_singleton import rclpy_implementation
from rclpy.node import Node

from depth_ros.errors import DepthRosError, one_line
from depth_ros.ros import fastdds_tcp
from depth_ros.ros.memory import keep_large_buffers

RCLError = rclpy_implementation.RCLError  # rclpy's C extension error (Humble to Kilted)


def prepare_process(name: str) -> None:
    """Process-wide set-up of a depth_ros node or tool, before ``rclpy.init``.

    ``kill -USR1 <pid>`` prints every thread's stack to stderr: how a hung node is diagnosed
    (``launching.stop_process`` asks for it before it kills). Large message buffers are kept
    in the heap (``memory.keep_large_buffers``, off with ``DEPTH_ROS_MALLOC_TUNING=0``):
    publishing a point cloud otherwise costs more in page faults than everything else the
    node does besides inference.
    """
    if hasattr(signal, "SIGUSR1"):  # not on Windows
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    reason = keep_large_buffers()
    if reason is not None:
        rclpy.logging.get_logger(name).info(f"malloc thresholds left as they are: {reason}")


def run_node(make_node: Callable[[], Node], name: str, args: list[str] | None,
             startup_errors: tuple[type[BaseException], ...] = ()) -> int:
    """Create the node and spin it until Ctrl-C or shutdown; returns the exit code.

    A user-facing error (``DepthRosError``: a bad parameter, a missing or broken model, a
    backend that is not installed) or one of ``startup_errors`` while the node is being built
    is logged as one FATAL line and gives exit code 1, not a traceback.
    """
    prepare_process(name)
    try:
        rclpy.init(args=args)
    except RCLError as exc:  # rcl could not parse --ros-args (a -p rule, a params file)
        rclpy.logging.get_logger(name).fatal(ros_args_problem(exc))
        return 1
    node = None
    try:
        node = make_node()
        rclpy.spin(node)
    except (DepthRosError, *startup_errors) as exc:
        if node is not None:
            raise
        rclpy.logging.get_logger(name).fatal(one_line(exc, limit=1000))
        return 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RCLError:
        # Ctrl-C shuts the context down at once, and a spin between two waits then fails to
        # build its wait set ("the given context is not valid") before KeyboardInterrupt
        # reaches this thread (seen once in CI): a stop, not an error. While the context is
        # up it is an error.
        if rclpy.ok():
            raise
    finally:
        if node is not None:
            release(node)
        rclpy.try_shutdown()
    return 0


def release(node: Node) -> None:
    """Destroy a node at the end of its process (its ``destroy_node`` stops its worker and
    logs its totals); over Fast DDS TCP through ``fastdds_tcp`` instead."""
    if fastdds_tcp.uses_fastdds_tcp():
        fastdds_tcp.release_before_exit(node)
    else:
        node.destroy_node()


def ros_args_problem(exc: BaseException) -> str:
    """rcl's refusal of the command line as one line, without its C source locations.

    rcl parses ``-p`` rules and ``--params-file`` YAML itself; its commonest refusal is a list
    that mixes integers and floats (``[1, 0.5]``), which no node code can accept or coerce.
    """
    text = re.sub(r",? at /\S+:\d+", "", one_line(exc, limit=1000))
    if "Sequence should be of same type" in text:
        text += ("; every item of a list must be of one type: in a list of numbers, write "
                 "each with a decimal point (1.0, not 1)")
    return f"cannot read the ROS arguments: {text}"
