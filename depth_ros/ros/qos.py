"""QoS profiles from node parameters."""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

_RELIABILITY = {
    "best_effort": ReliabilityPolicy.BEST_EFFORT,
    "reliable": ReliabilityPolicy.RELIABLE,
}


def make_qos(reliability: str, depth: int) -> QoSProfile:
    """Keep-last QoS with the given reliability ('best_effort' or 'reliable') and depth.

    Inputs default to best effort with depth 1 (REP-2003 sensor data, and only the newest
    frame matters); outputs default to reliable, which serves both kinds of subscriber.
    """
    try:
        policy = _RELIABILITY[reliability]
    except KeyError:
        raise ValueError(f"unknown QoS reliability {reliability!r}; "
                         f"expected one of {sorted(_RELIABILITY)}") from None
    if depth < 1:
        raise ValueError(f"QoS depth must be >= 1, got {depth}")
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=policy,
                      durability=DurabilityPolicy.VOLATILE)
