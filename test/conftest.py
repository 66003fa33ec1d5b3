"""Shared test set-up: an isolated ROS 2 domain per test session, large-data transport."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    # Set before any rclpy.init and inherited by the node processes the tests start: a domain
    # of our own so parallel runs on one machine never see each other's topics, and the
    # transport that carries images between processes. (ROS_AUTOMATIC_DISCOVERY_RANGE=
    # LOCALHOST is left out on purpose: it undoes LARGE_DATA and most images are lost.)
    os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
    os.environ["FASTDDS_BUILTIN_TRANSPORTS"] = "LARGE_DATA"


@pytest.fixture(scope="session")
def repo() -> Path:
    """The repository root."""
    return REPO
