"""The DDS transport set-up that carries large images between processes (no ROS imports).

Fast DDS's default transports lose most large images between two processes on one host (see
docs/transport.md for the figures). ``transport_environment`` returns the environment
variables that make every node, player and tool started with them use the transport set-up
this package ships, and nothing where the user has already chosen one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from depth_ros.share import find_config

PROFILE_FILE = "fastdds_large_data.xml"
# Fast DDS 3.x (ROS 2 Kilted and later) reads FASTDDS_DEFAULT_PROFILES_FILE; Fast DDS 2.x
# (Humble, Iron, Jazzy) reads only FASTRTPS_DEFAULT_PROFILES_FILE, which rmw_fastrtps on
# Fast DDS 3 still honours but warns about at every start: set it only where it is needed.
PROFILES_VARIABLE = "FASTDDS_DEFAULT_PROFILES_FILE"
LEGACY_PROFILES_VARIABLE = "FASTRTPS_DEFAULT_PROFILES_FILE"
FAST_DDS_2_DISTROS = ("foxy", "galactic", "humble", "iron", "jazzy")
BUILTIN_TRANSPORTS_VARIABLE = "FASTDDS_BUILTIN_TRANSPORTS"
LARGE_DATA = "LARGE_DATA"
# Variables by which a user has already chosen Fast DDS's transports: any one is respected.
USER_CHOICES = (PROFILES_VARIABLE, LEGACY_PROFILES_VARIABLE, BUILTIN_TRANSPORTS_VARIABLE)


def shipped_profile_path() -> Path:
    """The shipped Fast DDS profile (``config/fastdds_large_data.xml``)."""
    return find_config(PROFILE_FILE)


def uses_fast_dds(environ: Mapping[str, str]) -> bool:
    """Whether processes started with ``environ`` use Fast DDS (the default RMW)."""
    rmw = environ.get("RMW_IMPLEMENTATION", "").strip()
    return not rmw or rmw.startswith("rmw_fastrtps")


def transport_environment(environ: Mapping[str, str] | None = None,
                          profile_path: Path | None = None) -> dict[str, str]:
    """The variables to add to ``environ`` (default: ``os.environ``) for large messages.

    Empty where the user already chose (any of ``USER_CHOICES`` set and not empty) or where
    the RMW is not Fast DDS. Otherwise the profile file variable(s), pointing at
    ``profile_path`` (default: the shipped profile).
    """
    environ = os.environ if environ is None else environ
    if not uses_fast_dds(environ) or any(environ.get(k, "").strip() for k in USER_CHOICES):
        return {}
    path = str(profile_path if profile_path is not None else shipped_profile_path())
    env = {PROFILES_VARIABLE: path}
    if environ.get("ROS_DISTRO", "").strip().lower() in FAST_DDS_2_DISTROS:
        env[LEGACY_PROFILES_VARIABLE] = path
    return env
