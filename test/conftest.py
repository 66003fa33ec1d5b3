"""Shared test set-up: an isolated ROS 2 domain per test session, large-data transport."""

from __future__ import annotations

import faulthandler
import os
from pathlib import Path

import pytest

from depth_ros.transport import USER_CHOICES, transport_environment

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    # Set before any rclpy.init and inherited by the node processes the tests start: a domain
    # of our own so parallel runs on one machine never see each other's topics, and the
    # shipped Fast DDS profile (shared memory + UDP, no TCP) that carries images between
    # processes (depth_ros.transport). A transport chosen in the caller's shell is dropped:
    # participants on different transport set-ups may not discover each other.
    os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
    for name in USER_CHOICES:
        os.environ.pop(name, None)
    os.environ.update(transport_environment(os.environ))


# A test that takes longer than this is hung (the slowest takes ~1 min here): every thread's
# stack is printed and the run ends with an error, instead of waiting for CI's time limit.
# faulthandler's timer runs in C, so it fires even while a native call holds the GIL (a DDS
# deadlock does), which a Python-level timeout cannot.
HUNG_TEST_S = 600


def _stderr_fd(config: pytest.Config) -> int:
    """The file descriptor pytest's faulthandler writes to: stderr, not the test capture."""
    try:
        from _pytest.faulthandler import fault_handler_stderr_fd_key

        return config.stash[fault_handler_stderr_fd_key]
    except (ImportError, KeyError):
        return 2


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    faulthandler.dump_traceback_later(HUNG_TEST_S, exit=True, file=_stderr_fd(item.config))
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope="session")
def repo() -> Path:
    """The repository root."""
    return REPO
