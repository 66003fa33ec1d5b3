"""The shared ``main()`` of depth_ros nodes: init, spin, clean exit, one-line start-up errors."""

from __future__ import annotations

import faulthandler
import os
import re
import signal
import socket
import sys
from collections.abc import Callable
from typing import NoReturn

import rclpy
import rclpy.logging
from rclpy.executors import ExternalShutdownException
from rclpy.impl.implementation_singleton import rclpy_implementation
from rclpy.node import Node

from depth_ros.errors import DepthRosError, one_line
from depth_ros.ros.memory import keep_large_buffers

RCLError = rclpy_implementation.RCLError  # rclpy's C extension error (Humble to Kilted)


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
             startup_errors: tuple[type[BaseException], ...] = ()) -> int:
    """Create the node and spin it until Ctrl-C or shutdown; returns the exit code.

    A user-facing error (``DepthRosError``: a bad parameter, a missing or broken model, a
    backend that is not installed) or one of ``startup_errors`` while the node is being built
    is logged as one FATAL line and gives exit code 1, not a traceback.
    """
    startup_errors = (DepthRosError, *startup_errors)
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
    except startup_errors as exc:
        if node is not None:
            raise
        rclpy.logging.get_logger(name).fatal(one_line(exc, limit=1000))
        return 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            release_for_exit(node)
        else:
            rclpy.try_shutdown()  # no node, no DDS participant yet: nothing can block
    return 0


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


def release_for_exit(node: Node) -> None:
    """Wind a node down before its process ends, without the Fast DDS deadlock.

    In order: the node's own ``finish()`` (stop the worker, log the totals, write reports);
    its timers, subscriptions, services and publishers; then this process's connected TCP
    sockets are shut down (``_shut_down_tcp_connections``) and only then is the rcl node
    destroyed and the context shut down, which deletes the DDS participant (its departure goes
    out over UDP discovery, so the rest of the graph drops it at once).

    Why the sockets: with the ``LARGE_DATA`` transports, Fast DDS 3.2 can deadlock deleting a
    participant (``TCPTransportInterface::clean`` → ``TCPChannelResourceBasic::disconnect``
    waits for a mutex that a TCP reader thread holds while it blocks reading from a peer that
    is alive and silent). Seen here with gdb, under CPU load, in a node after Ctrl-C (CI caught
    it once) and in test processes; the call holds the GIL, so no Python timeout can help.
    A socket shut down makes that read return.
    """
    finish = getattr(node, "finish", None)
    if finish is not None:
        finish()
    # rclpy's destroy_node below would destroy these too; done first so that the endpoints'
    # disposals still go out over the TCP connections about to be shut down.
    for destroy, items in ((node.destroy_timer, node.timers),
                           (node.destroy_subscription, node.subscriptions),
                           (node.destroy_service, node.services),
                           (node.destroy_client, node.clients),
                           (node.destroy_publisher, node.publishers)):
        for item in list(items):
            destroy(item)
    _shut_down_tcp_connections()
    Node.destroy_node(node)  # rclpy's own: the subclass's would run finish() again
    context = node.context
    context.try_shutdown()
    context.destroy()


def _shut_down_tcp_connections() -> int:
    """``shutdown(SHUT_RDWR)`` every connected TCP socket of this process (Linux; elsewhere
    nothing): threads blocked reading them return. The descriptors stay open for their owners
    to close. Returns how many were shut down."""
    fd_dir = "/proc/self/fd"
    if not os.path.isdir(fd_dir):
        return 0
    count = 0
    for name in os.listdir(fd_dir):
        try:
            if not os.readlink(f"{fd_dir}/{name}").startswith("socket:"):
                continue
            sock = socket.socket(fileno=os.dup(int(name)))  # a duplicate: closing it is safe
        except (OSError, ValueError):
            continue
        try:
            if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET,
                                                                      socket.AF_INET6):
                continue
            sock.getpeername()  # listening sockets have no peer: OSError, left alone
            sock.shutdown(socket.SHUT_RDWR)
            count += 1
        except OSError:
            pass
        finally:
            sock.close()
    return count


def end_process(code: int) -> NoReturn:
    """End a node's process with ``code`` once the node is wound down (``run_node``),
    skipping the interpreter's teardown of the libraries it imported.

    ROS logging is finalised first, which closes the log file under ``~/.ros/log`` (rclpy's
    SIGINT handler shuts the context down without doing that; the file is otherwise flushed by
    a C++ destructor at exit). Module teardown is skipped: torch's alone takes 0.5 s on every
    exit here.
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

    lock = getattr(rclpy.context, "g_logging_configure_lock", None)
    if lock is None or not hasattr(rclpy.context, "g_logging_ref_count"):
        return
    with lock:
        if rclpy.context.g_logging_ref_count > 0:
            rclpy_implementation.rclpy_logging_fini()
            rclpy.context.g_logging_ref_count = 0
