"""Rate-limited, per-problem warnings: a flood of bad messages costs one log line per period."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimitedWarner:
    """Logs at most one warning per problem key per period and counts what it held back.

    rclpy's ``throttle_duration_sec`` throttles per call site, so two different problems seen
    from the same callback would hide each other; keying by problem keeps each one visible.
    Thread-safe: a node warns from its subscription callbacks and its inference worker at
    once, and reads ``counts`` from its diagnostics timer.
    """

    def __init__(self, log: Callable[[str], object], period_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = log
        self._period_s = float(period_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._counts: dict[str, int] = {}

    @property
    def period_s(self) -> float:
        """Seconds between two lines of the same problem."""
        return self._period_s

    @period_s.setter
    def period_s(self, value: float) -> None:
        with self._lock:
            self._period_s = float(value)

    @property
    def counts(self) -> dict[str, int]:
        """How often each problem was seen (logged or not): a copy."""
        with self._lock:
            return dict(self._counts)

    def warn(self, key: str, text: str) -> bool:
        """Count the problem; log it unless the same key was logged within the period."""
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1
            now = self._clock()
            last = self._last.get(key)
            if last is not None and now - last < self._period_s:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False
            held = self._suppressed.pop(key, 0)
            self._last[key] = now
        # Logged outside the lock: a slow log sink must not stall the other thread's count.
        suffix = f" ({held} similar warnings suppressed)" if held else ""
        self._log(text + suffix)
        return True
