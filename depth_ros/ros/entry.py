"""The shared ``main()`` of depth_ros nodes: init, spin, clean exit, one-line start-up errors."""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
from collections.abc import Callable
from typing import NoReturn

import rclpy
import rclpy.logging
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from depth_ros.ros.memory import keep_large_buffers


def prepare_process(name: str) -> None:
    """Process-wide set-up of a depth_ros node or tool, before ``rclpy.init``.

    ``kill -USR1 <pid>`` prints every thread's stack to stderr: how a hung node is diagnosed
    (``launching.stop_process`` asks for it before it kills). Large message buffers are kept
    in the heap (``memory.keep_large_buffers``): publishing a point cloud otherwise costs
    more in page faults than everything else the node does besides inference.
    """
    if hasattr(signal, "SIGUSR1"):  # not on Windows
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    reason = keep_large_buffers()
    if reason is not None:
        rclpy.logging.get_logger(name).info(f"malloc thresholds left as they are: {reason}")


def run_node(make_node: Callable[[], Node], name: str, args: list[str] | None,
             startup_errors: tuple[type[BaseException], ...]) -> int:
    """Create the node and spin it until Ctrl-C or shutdown; returns the exit code.

    An exception of ``startup_errors`` while the node is being built (a missing model, a bad
    parameter) is logged as one fatal line and gives exit code 1, not a traceback.
    """
    prepare_process(name)
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


def end_process(code: int) -> NoReturn:
    """End a node's process with ``code`` once its ROS side is shut down, skipping the
    interpreter's teardown of the libraries it imported.

    What the node owns is released here, in order: the rcl context is shut down and destroyed
    (the DDS participant leaves the graph) and ROS logging is finalised, which closes the log
    file under ``~/.ros/log`` (rclpy's SIGINT handler shuts the context down without doing
    that; the file is otherwise flushed by a C++ destructor at exit). What is left is module
    teardown, which only costs: torch's alone takes 0.5 s on every exit here, and a node under
    CI load once hung in the interpreter's finalisation past the 10 s a test (or ``ros2
    launch``, which escalates to SIGTERM after 5 s) waits after Ctrl-C.
    """
    context = rclpy.get_default_context()
    context.try_shutdown()
    context.destroy()
    _finalise_ros_logging()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken pipe: nothing left to flush
            pass
    os._exit(code)


def _finalise_ros_logging() -> None:
    """Close rcl logging (and its log file) if no context has done so; the process ends next.

    rclpy counts the contexts that configured logging and finalises it when the count drops to
    zero, which its SIGINT path skips. The counter is rclpy's module state (Humble to Kilted);
    without it, nothing is done and the file keeps what the logger flushed so far.
    """
    import rclpy.context
    from rclpy.impl.implementation_singleton import rclpy_implementation

    lock = getattr(rclpy.context, "g_logging_configure_lock", None)
    if lock is None or not hasattr(rclpy.context, "g_logging_ref_count"):
        return
    with lock:
        if rclpy.context.g_logging_ref_count > 0:
            rclpy_implementation.rclpy_logging_fini()
            rclpy.context.g_logging_ref_count = 0
