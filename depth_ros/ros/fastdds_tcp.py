"""Opt-in workaround for a Fast DDS 3.2 deadlock at exit over its TCP transport.

The bug (upstream eProsima/Fast-DDS, TCP transport): deleting a participant runs
``TCPTransportInterface::clean`` → ``TCPChannelResourceBasic::disconnect``, which waits for a
mutex that a TCP reader thread holds while it blocks reading from a peer that is alive and
silent. Seen here with gdb under CPU load, in a node after Ctrl-C and in test processes; the
call holds the GIL, so no Python timeout can help. Shutting the process's connected TCP
sockets down first makes that read return.

It only concerns processes that use Fast DDS's TCP transport: ``FASTDDS_BUILTIN_TRANSPORTS``
``LARGE_DATA`` (shared memory + UDP discovery + TCP data), or an XML profile that declares a
TCPv4/TCPv6 transport. depth_ros ships a profile without TCP (shared memory + UDP,
``depth_ros.transport``, docs/transport.md) and uses it wherever the user chose nothing, so
``uses_fastdds_tcp`` is False there and nodes exit the plain rclpy way.
"""

from __future__ import annotations

import os
import socket
import xml.etree.ElementTree as ET
from collections.abc import Mapping

from rclpy.node import Node

from depth_ros.transport import (
    BUILTIN_TRANSPORTS_VARIABLE,
    LEGACY_PROFILES_VARIABLE,
    PROFILES_VARIABLE,
    uses_fast_dds,
)

# FASTDDS_BUILTIN_TRANSPORTS values whose data goes over TCP (Fast DDS 2.13+ and 3.x).
TCP_BUILTIN_TRANSPORTS = ("LARGE_DATA",)


def profile_declares_tcp(path: str) -> bool:
    """Whether the Fast DDS XML profile at ``path`` declares a TCP transport (``<type>``
    TCPv4 or TCPv6 of a transport descriptor); an unreadable file declares none."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return False
    for element in root.iter():
        # The profile's namespace (if any) prefixes the tag: compare the local name.
        if element.tag.rsplit("}", 1)[-1] == "type" and (element.text or "").strip().upper() \
                .startswith("TCP"):
            return True
    return False


def uses_fastdds_tcp(environ: Mapping[str, str] | None = None) -> bool:
    """Whether a process with ``environ`` (default ``os.environ``) runs Fast DDS over TCP.

    The rule: the RMW is Fast DDS and either ``FASTDDS_BUILTIN_TRANSPORTS`` is one of
    ``TCP_BUILTIN_TRANSPORTS`` or the profile file Fast DDS reads declares a TCP transport.
    """
    environ = os.environ if environ is None else environ
    if not uses_fast_dds(environ):
        return False
    builtin = environ.get(BUILTIN_TRANSPORTS_VARIABLE, "").strip().upper()
    if builtin in TCP_BUILTIN_TRANSPORTS:
        return True
    profiles = [environ.get(name, "").strip()
                for name in (PROFILES_VARIABLE, LEGACY_PROFILES_VARIABLE)]
    return any(profile_declares_tcp(path) for path in profiles if path)


def release_before_exit(node: Node) -> None:
    """Destroy ``node`` without the deadlock: its own ``finish()`` (stop the worker, log the
    totals), its endpoints (their disposals still go out over the TCP connections), then this
    process's connected TCP sockets are shut down, and only then the rcl node."""
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
    shut_down_tcp_connections()
    Node.destroy_node(node)  # rclpy's own: the subclass's would run finish() again


def shut_down_tcp_connections() -> int:
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
