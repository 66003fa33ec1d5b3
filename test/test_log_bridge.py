"""The core's Python logging reaches a node's ROS logger (``depth_ros.ros.log_bridge``)."""

from __future__ import annotations

import logging

import pytest

from depth_ros.ros.log_bridge import CORE_LOGGER, RosLogHandler, forward_core_logs


class RecordingRosLogger:
    """The methods of an rclpy logger, recording what they are given."""

    def __init__(self, fail: bool = False) -> None:
        self.lines: list[tuple[str, str]] = []
        self.fail = fail

    def _record(self, level: str, text: str) -> None:
        if self.fail:
            raise RuntimeError("publisher's context is invalid")
        self.lines.append((level, text))

    def debug(self, text: str) -> None:
        self._record("debug", text)

    def info(self, text: str) -> None:
        self._record("info", text)

    def warning(self, text: str) -> None:
        self._record("warning", text)

    def error(self, text: str) -> None:
        self._record("error", text)


@pytest.fixture
def core_logger(monkeypatch: pytest.MonkeyPatch):
    core = logging.getLogger(CORE_LOGGER)
    level, handlers = core.level, list(core.handlers)
    # launch_testing's pytest plugin makes loggers created after it non-propagating
    # (launch.logging.LaunchLogger); a node's process has no such plugin.
    for name in ("depth_ros.inference", "depth_ros.inference.tensorrt", "elsewhere"):
        monkeypatch.setattr(logging.getLogger(name), "propagate", True)
    yield core
    core.setLevel(level)
    core.handlers[:] = handlers


def test_core_records_reach_the_ros_logger_by_level(core_logger: logging.Logger) -> None:
    ros = RecordingRosLogger()
    forward_core_logs(ros)
    log = logging.getLogger("depth_ros.inference.tensorrt")
    log.debug("tactic 3")
    log.info("no cached TensorRT fp16 engine: building one now, expect %s", "minutes")
    log.warning("TensorRT: %s", "weights are subnormal")
    log.error("engine build failed")
    assert ros.lines == [("info", "no cached TensorRT fp16 engine: building one now, expect "
                                  "minutes"),
                         ("warning", "TensorRT: weights are subnormal"),
                         ("error", "engine build failed")]
    logging.getLogger("elsewhere").warning("not ours")
    assert len(ros.lines) == 3


def test_a_second_node_replaces_the_handler_and_a_dead_logger_is_ignored(
        core_logger: logging.Logger) -> None:
    first, second = RecordingRosLogger(fail=True), RecordingRosLogger()
    forward_core_logs(first)
    logging.getLogger("depth_ros.inference").warning("while shutting down")  # no exception
    forward_core_logs(second)
    logging.getLogger("depth_ros.inference").info("backend auto: onnxruntime")
    assert sum(isinstance(h, RosLogHandler) for h in core_logger.handlers) == 1
    assert second.lines == [("info", "backend auto: onnxruntime")] and first.lines == []
