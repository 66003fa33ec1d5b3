"""Rate-limited warnings keyed by problem."""

from __future__ import annotations

from depth_ros.ros.rate_limit import RateLimitedWarner


def test_one_line_per_key_per_period_with_suppressed_count():
    now = [0.0]
    logged: list[str] = []
    warner = RateLimitedWarner(logged.append, period_s=5.0, clock=lambda: now[0])
    assert warner.warn("a", "problem a")
    assert warner.warn("b", "problem b")  # another problem is not hidden by the first
    for _ in range(3):
        assert not warner.warn("a", "problem a")
    now[0] = 5.5
    assert warner.warn("a", "problem a")
    assert logged == ["problem a", "problem b", "problem a (3 similar warnings suppressed)"]
    assert warner.counts == {"a": 5, "b": 1}
