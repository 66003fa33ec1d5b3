"""QoS profiles from node parameters."""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

_RELIABILITY = {
    "best_effort": ReliabilityPolicy.BEST_EFFORT,
    "reliable": ReliabilityPolicy.RELIABLE,
}
_DURABILITY = {
    "volatile": DurabilityPolicy.VOLATILE,
    "transient_local": DurabilityPolicy.TRANSIENT_LOCAL,
}


def make_qos(reliability: str, depth: int, durability: str = "volatile") -> QoSProfile:
    """Keep-last QoS with the given reliability ('best_effort' or 'reliable'), depth and
    durability ('volatile' or 'transient_local').

    Inputs default to best effort with depth 1 (REP-2003 sensor data, and only the newest
    frame matters); outputs default to reliable, which serves both kinds of subscriber.
    """
    try:
        policy = _RELIABILITY[reliability]
    except KeyError:
        raise ValueError(f"unknown QoS reliability {reliability!r}; "
                         f"expected one of {sorted(_RELIABILITY)}") from None
    try:
        lasting = _DURABILITY[durability]
    except KeyError:
        raise ValueError(f"unknown QoS durability {durability!r}; "
                         f"expected one of {sorted(_DURABILITY)}") from None
    if depth < 1:
        raise ValueError(f"QoS depth must be >= 1, got {depth}")
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=policy,
                      durability=lasting)


def latched_qos() -> QoSProfile:
    """Reliable, transient-local, depth 1: a late subscriber still gets the last message
    (ROS 1's latched topics), for state that changes rarely such as ``depth/info``."""
    return make_qos("reliable", 1, "transient_local")
