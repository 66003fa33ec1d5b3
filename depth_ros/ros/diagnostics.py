"""Run-time statistics of a depth node and their ``diagnostic_msgs/DiagnosticArray`` form.

``NodeStats`` is ROS-free and thread-safe (subscriber callbacks and the inference worker
feed it, a timer reads it): totals per event kind, rates and latency percentiles over a
sliding window. ``assess`` turns a ``DepthReport`` into a level and a message, and
``diagnostic_array`` into the message published on ``/diagnostics``. Only message classes
are imported here, never rclpy.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from std_msgs.msg import Header

LEVEL_OK = 0
LEVEL_WARN = 1
LEVEL_ERROR = 2
PERCENTILES = (50.0, 90.0, 99.0)


class NodeStats:
    """Event totals, and event rates and latencies over the last ``window_s`` seconds.

    Event kinds are free strings (``image``, ``cloud``, ``published``, ``dropped``,
    ``unpaired_image``, ...); ``published`` events carry a latency and the inference time
    spent on that frame.
    """

    def __init__(self, window_s: float = 5.0, clock: Callable[[], float] = time.monotonic,
                 max_events: int = 10_000) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self.window_s = float(window_s)
        self._clock = clock
        self._max_events = max_events
        self._started = clock()
        self._lock = threading.Lock()
        self._totals: dict[str, int] = {}
        self._times: dict[str, deque[float]] = {}
        self._last: dict[str, float] = {}
        # (time, latency, inference time) of each published frame, seconds
        self._latencies: deque[tuple[float, float, float]] = deque(maxlen=max_events)

    def add(self, kind: str, count: int = 1) -> None:
        """Record ``count`` events of a kind now."""
        if count <= 0:
            return
        now = self._clock()
        with self._lock:
            self._totals[kind] = self._totals.get(kind, 0) + count
            times = self._times.setdefault(kind, deque(maxlen=self._max_events))
            times.extend([now] * min(count, self._max_events))
            self._last[kind] = now

    def add_output(self, latency_s: float, inference_s: float = float("nan")) -> None:
        """Record one published frame: its latency (input complete → published) and the part
        of it spent in inference (the model with its pre- and post-processing)."""
        self.add("published")
        with self._lock:
            self._latencies.append((self._clock(), float(latency_s), float(inference_s)))

    def total(self, kind: str) -> int:
        """Events of a kind since the start."""
        with self._lock:
            return self._totals.get(kind, 0)

    def totals(self) -> dict[str, int]:
        """All totals by kind."""
        with self._lock:
            return dict(self._totals)

    def _trim(self, now: float) -> None:
        cutoff = now - self.window_s
        for times in self._times.values():
            while times and times[0] < cutoff:
                times.popleft()
        while self._latencies and self._latencies[0][0] < cutoff:
            self._latencies.popleft()

    def in_window(self, kind: str) -> int:
        """Events of a kind within the window."""
        with self._lock:
            self._trim(self._clock())
            return len(self._times.get(kind, ()))

    def rate_hz(self, kind: str) -> float:
        """Events per second over the window (over the time since the start while that is
        shorter, so a young node does not read low)."""
        now = self._clock()
        with self._lock:
            self._trim(now)
            count = len(self._times.get(kind, ()))
        span = min(self.window_s, now - self._started)
        return count / span if span > 0 else 0.0

    def seconds_since(self, kind: str) -> float | None:
        """Seconds since the last event of a kind; None if there was none."""
        with self._lock:
            last = self._last.get(kind)
        return None if last is None else self._clock() - last

    def latency_ms(self, percentiles: tuple[float, ...] = PERCENTILES) -> tuple[float, ...]:
        """Latency percentiles in milliseconds over the window (NaN without outputs)."""
        return self._percentiles_ms(1, percentiles)

    def inference_ms(self, percentiles: tuple[float, ...] = PERCENTILES) -> tuple[float, ...]:
        """Percentiles of the inference time in milliseconds over the window (NaN without
        outputs that recorded one)."""
        return self._percentiles_ms(2, percentiles)

    def _percentiles_ms(self, column: int, percentiles: tuple[float, ...]) -> tuple[float, ...]:
        with self._lock:
            self._trim(self._clock())
            values = np.array([entry[column] for entry in self._latencies], dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size == 0:
            return tuple(float("nan") for _ in percentiles)
        return tuple(float(v) for v in np.percentile(values * 1e3, percentiles))


@dataclass
class DepthReport:
    """One diagnostics snapshot of a depth node; see ``report_values`` for the published form."""

    backend: str
    model: str
    output_kind: str  # metric | relative_inverse_depth | unknown (nothing published yet)
    input_rate_hz: float
    output_rate_hz: float
    latency_ms: tuple[float, float, float]
    frames_received: int
    frames_published: int
    frames_dropped: int
    dropped_in_window: int = 0
    received_in_window: int = 0
    seconds_since_input: float | None = None
    lidar: bool = False  # a node with a LiDAR input
    cloud_rate_hz: float = 0.0
    unpaired_images: int = 0
    unpaired_clouds: int = 0
    bad_inputs: Mapping[str, int] = field(default_factory=dict)
    fit: Mapping[str, float | int | bool] | None = None
    inference_ms: tuple[float, float, float] = (float("nan"),) * 3


def assess(report: DepthReport, stale_after_s: float = 3.0,
           max_drop_fraction: float = 0.5) -> tuple[int, str]:
    """The level (OK or WARN) of a report and a one-line message saying why."""
    problems = []
    if report.seconds_since_input is None:
        problems.append("no input yet")
    elif report.seconds_since_input > stale_after_s:
        problems.append(f"no input for {report.seconds_since_input:.1f} s")
    if report.received_in_window and (report.dropped_in_window
                                      > max_drop_fraction * report.received_in_window):
        share = report.dropped_in_window / report.received_in_window
        problems.append(f"dropping {100 * share:.0f} % of frames (inference slower than input)")
    if report.output_kind == "relative_inverse_depth":
        problems.append("relative depth, not metric (no LiDAR to scale it)")
    if report.fit is not None and not report.fit.get("ok", True):
        problems.append("scale-and-shift fit to the LiDAR failed")
    if problems:
        return LEVEL_WARN, "; ".join(problems)
    return LEVEL_OK, f"publishing at {report.output_rate_hz:.1f} Hz"


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return "nan" if np.isnan(value) else f"{value:.4g}"
    return str(value)


def report_values(report: DepthReport) -> dict[str, str]:
    """The report as the key/value strings of a DiagnosticStatus."""
    p50, p90, p99 = report.latency_ms
    values: dict[str, object] = {
        "backend": report.backend,
        "model": report.model,
        "output kind": report.output_kind,
        "input rate Hz": report.input_rate_hz,
        "output rate Hz": report.output_rate_hz,
        "latency p50 ms": p50,
        "latency p90 ms": p90,
        "latency p99 ms": p99,
        "inference p50 ms": report.inference_ms[0],
        "inference p90 ms": report.inference_ms[1],
        "frames received": report.frames_received,
        "frames published": report.frames_published,
        "frames dropped": report.frames_dropped,
    }
    if report.lidar:
        values["cloud rate Hz"] = report.cloud_rate_hz
        values["unpaired images"] = report.unpaired_images
        values["unpaired clouds"] = report.unpaired_clouds
    values["bad inputs"] = sum(report.bad_inputs.values())
    for kind, count in sorted(report.bad_inputs.items()):
        values[f"bad input: {kind}"] = count
    if report.fit is not None:
        for key in ("scale", "shift", "inlier_fraction", "rms_relative_residual", "points",
                    "ok"):
            if key in report.fit:
                values[f"fit {key.replace('_', ' ')}"] = report.fit[key]
    return {key: _fmt(value) for key, value in values.items()}


def diagnostic_array(report: DepthReport, name: str, hardware_id: str, stamp: Time,
                     stale_after_s: float = 3.0) -> DiagnosticArray:
    """A DiagnosticArray holding the node's one status, named ``name``."""
    level, message = assess(report, stale_after_s)
    status = DiagnosticStatus(
        level=bytes([level]), name=name, message=message, hardware_id=hardware_id,
        values=[KeyValue(key=k, value=v) for k, v in report_values(report).items()])
    return DiagnosticArray(header=Header(stamp=stamp), status=[status])
