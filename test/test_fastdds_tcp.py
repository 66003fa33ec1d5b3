"""The Fast DDS TCP exit workaround is opt-in: when it applies (the rule), and that shutting
the process's TCP connections down frees a thread blocked reading one."""

from __future__ import annotations

import socket
import threading

import pytest

from depth_ros.ros.fastdds_tcp import (
    profile_declares_tcp,
    shut_down_tcp_connections,
    uses_fastdds_tcp,
)
from depth_ros.transport import shipped_profile_path

TCP_PROFILE = """<?xml version="1.0" encoding="UTF-8" ?>
<dds xmlns="http://www.eprosima.com">
  <profiles>
    <transport_descriptors>
      <transport_descriptor><transport_id>tcp</transport_id><type>TCPv4</type>
      </transport_descriptor>
    </transport_descriptors>
  </profiles>
</dds>
"""


@pytest.mark.parametrize("environ, expected", [
    ({"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"}, True),
    ({"FASTDDS_BUILTIN_TRANSPORTS": "large_data"}, True),
    ({"FASTDDS_BUILTIN_TRANSPORTS": "SHM"}, False),
    ({"FASTDDS_BUILTIN_TRANSPORTS": "UDPv4"}, False),
    ({}, False),
    ({"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA", "RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"},
     False),
    ({"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA", "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp"},
     True),
])
def test_builtin_transports_rule(environ, expected):
    assert uses_fastdds_tcp(environ) is expected


def test_profiles_rule(tmp_path):
    tcp = tmp_path / "tcp.xml"
    tcp.write_text(TCP_PROFILE)
    broken = tmp_path / "broken.xml"
    broken.write_text("<dds><profiles>")
    shipped = str(shipped_profile_path())
    assert not profile_declares_tcp(shipped)  # shared memory + UDP only
    assert profile_declares_tcp(str(tcp))
    assert not profile_declares_tcp(str(broken))
    assert not profile_declares_tcp(str(tmp_path / "missing.xml"))
    assert not uses_fastdds_tcp({"FASTDDS_DEFAULT_PROFILES_FILE": shipped})
    assert uses_fastdds_tcp({"FASTDDS_DEFAULT_PROFILES_FILE": str(tcp)})
    assert uses_fastdds_tcp({"FASTRTPS_DEFAULT_PROFILES_FILE": str(tcp)})


def test_shutting_tcp_connections_frees_a_blocked_reader():
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    peer, _ = server.accept()
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(client.recv(16)), daemon=True)
    try:
        reader.start()
        reader.join(timeout=0.3)
        assert reader.is_alive()  # the peer is alive and silent: the read blocks
        # Both ends of the connection live in this process; the listener is left alone.
        assert shut_down_tcp_connections() >= 2
        reader.join(timeout=5)
        assert not reader.is_alive() and got == [b""]
        assert server.getsockname()[1] > 0  # still open and listening
    finally:
        for sock in (client, peer, server):
            sock.close()
