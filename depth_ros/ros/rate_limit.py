"""Rate-limited, per-problem warnings: a flood of bad messages costs one log line per period."""

from __future__ import annotations

import time
from collections.abc import Callable


class RateLimitedWarner:
    """Logs at most one warning per problem key per period and counts what it held back.

    rclpy's ``throttle_duration_sec`` throttles per call site, so two different problems seen
    from the same callback would hide each other; keying by problem keeps each one visible.
    """

    def __init__(self, log: Callable[[str], object], period_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = log
        self._period_s = period_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self.counts: dict[str, int] = {}

    def warn(self, key: str, text: str) -> bool:
        """Count the problem; log it unless the same key was logged within the period."""
        self.counts[key] = self.counts.get(key, 0) + 1
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._period_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        held = self._suppressed.pop(key, 0)
        suffix = f" ({held} similar warnings suppressed)" if held else ""
        self._last[key] = now
        self._log(text + suffix)
        return True
