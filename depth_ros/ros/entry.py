"""The shared ``main()`` of depth_ros nodes: init, spin, clean exit, one-line start-up errors."""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import time
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
            release_for_exit(node)
        else:
            rclpy.try_shutdown()  # no node, no DDS participant yet: nothing can block
    return 0


def release_for_exit(node: Node, grace_s: float = 0.2) -> None:
    """Wind a node down before its process ends: its own ``finish()`` (stop the worker, log
    the totals, write reports), then its timers, subscriptions, services and publishers, so
    that the rest of the graph sees its topics go at once.

    The rcl node itself is not finalised: finalising the last node of a context deletes the
    DDS participant, and Fast DDS 3.2 can deadlock there (``TCPTransportInterface::clean`` →
    ``TCPChannelResourceBasic::disconnect`` waits for a mutex that a TCP reader thread holds
    while it blocks reading from a peer that is alive and silent; seen under CPU load, in
    nodes and in test processes alike, with gdb). The process ends next (``end_process``); the
    kernel closes its sockets, and other participants drop it from their graph when its lease
    runs out. ``grace_s`` lets discovery send the endpoints' disposal before that.
    """
    finish = getattr(node, "finish", None)
    if finish is not None:
        finish()
    for destroy, items in ((node.destroy_timer, node.timers),
                           (node.destroy_subscription, node.subscriptions),
                           (node.destroy_service, node.services),
                           (node.destroy_client, node.clients),
                           (node.destroy_publisher, node.publishers)):
        for item in list(items):
            destroy(item)
    time.sleep(grace_s)


def end_process(code: int) -> NoReturn:
    """End a node's process with ``code`` once the node is wound down (``run_node``),
    skipping the interpreter's teardown of the libraries it imported.

    ROS logging is finalised first, which closes the log file under ``~/.ros/log`` (rclpy's
    SIGINT handler shuts the context down without doing that; the file is otherwise flushed by
    a C++ destructor at exit). The DDS participant is not deleted (see ``release_for_exit``),
    and module teardown is skipped: torch's alone takes 0.5 s on every exit here.
    """
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
