"""Node statistics (rates, latency percentiles over a sliding window) and their
DiagnosticArray form."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from builtin_interfaces.msg import Time

from depth_ros.ros.diagnostics import (
    LEVEL_OK,
    LEVEL_WARN,
    DepthReport,
    NodeStats,
    assess,
    diagnostic_array,
    report_values,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rates_and_latencies_follow_a_sliding_window():
    clock = FakeClock()
    stats = NodeStats(window_s=5.0, clock=clock)
    # 10 s at 20 Hz in, 10 Hz out with random latencies
    latencies = np.random.default_rng(0).uniform(0.005, 0.050, 100)
    inference = latencies * np.random.default_rng(1).uniform(0.3, 0.9, 100)
    recorded = []
    for k in range(200):
        clock.now += 0.05
        stats.add("image")
        if k % 2:
            stats.add_output(latencies[k // 2], inference[k // 2])
            recorded.append((clock.now, latencies[k // 2], inference[k // 2]))
    assert stats.rate_hz("image") == pytest.approx(20.0, abs=0.3)
    assert stats.rate_hz("published") == pytest.approx(10.0, abs=0.3)
    assert stats.total("image") == 200 and stats.total("published") == 100
    in_window = [lat * 1e3 for t, lat, _ in recorded if t >= clock.now - 5.0]
    assert 49 <= len(in_window) <= 51
    np.testing.assert_allclose(stats.latency_ms(), np.percentile(in_window, [50, 90, 99]))
    inference_in_window = [inf * 1e3 for t, _, inf in recorded if t >= clock.now - 5.0]
    np.testing.assert_allclose(stats.inference_ms(),
                               np.percentile(inference_in_window, [50, 90, 99]))
    assert stats.inference_ms()[0] < stats.latency_ms()[0]
    assert stats.latency_ms() != pytest.approx(np.percentile(latencies * 1e3, [50, 90, 99]))
    clock.now += 6.0  # nothing for longer than the window
    assert stats.rate_hz("image") == 0.0 and stats.in_window("image") == 0
    assert all(np.isnan(stats.latency_ms())) and all(np.isnan(stats.inference_ms()))
    assert stats.seconds_since("image") == pytest.approx(6.0)
    assert stats.seconds_since("cloud") is None


def test_a_young_node_does_not_read_a_low_rate():
    clock = FakeClock()
    stats = NodeStats(window_s=10.0, clock=clock)
    for _ in range(10):
        clock.now += 0.1
        stats.add("image")
    assert stats.rate_hz("image") == pytest.approx(10.0)  # over 1 s, not over 10


def test_outputs_without_an_inference_time_leave_it_out():
    clock = FakeClock()
    stats = NodeStats(window_s=5.0, clock=clock)
    stats.add_output(0.020)
    stats.add_output(0.030, 0.010)
    assert stats.inference_ms((50.0,)) == pytest.approx((10.0,))
    assert stats.latency_ms((50.0,)) == pytest.approx((25.0,))


def test_counts_from_several_threads_are_all_kept():
    stats = NodeStats(window_s=60.0)

    def feed() -> None:
        for _ in range(2000):
            stats.add("image")
            stats.add_output(0.001)

    threads = [threading.Thread(target=feed) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stats.total("image") == 8000 and stats.total("published") == 8000


def _report(**changes) -> DepthReport:
    values = dict(backend="onnxruntime", model="m.onnx", output_kind="metric",
                  input_rate_hz=10.0, output_rate_hz=9.8, latency_ms=(20.0, 30.0, 41.0),
                  frames_received=100, frames_published=98, frames_dropped=2,
                  dropped_in_window=1, received_in_window=50, seconds_since_input=0.1)
    values.update(changes)
    return DepthReport(**values)


@pytest.mark.parametrize("changes, level, words", [
    ({}, LEVEL_OK, "publishing at 9.8 Hz"),
    ({"seconds_since_input": None}, LEVEL_WARN, "no input yet"),
    ({"seconds_since_input": 12.0}, LEVEL_WARN, "no input for 12.0 s"),
    ({"dropped_in_window": 40}, LEVEL_WARN, "dropping 80 % of frames"),
    ({"output_kind": "relative_inverse_depth"}, LEVEL_WARN, "relative depth, not metric"),
    ({"fit": {"scale": 1.0, "shift": 0.0, "inlier_fraction": 0.1, "ok": False}}, LEVEL_WARN,
     "fit to the LiDAR failed"),
])
def test_assess_names_the_problem(changes, level, words):
    got_level, message = assess(_report(**changes), stale_after_s=3.0)
    assert got_level == level and words in message


def test_diagnostic_array_carries_every_value():
    report = _report(lidar=True, cloud_rate_hz=9.9, unpaired_images=3, unpaired_clouds=1,
                     inference_ms=(12.5, 14.0, 19.0),
                     bad_inputs={"bad_cloud": 2, "size_mismatch": 1},
                     fit={"scale": 0.5, "shift": 0.01, "inlier_fraction": 0.93,
                          "points": 4000, "ok": True})
    msg = diagnostic_array(report, "fusion_depth_node: depth", "onnxruntime",
                           Time(sec=5, nanosec=7))
    (status,) = msg.status
    assert status.name == "fusion_depth_node: depth" and status.hardware_id == "onnxruntime"
    assert status.level == bytes([LEVEL_OK]) and msg.header.stamp.sec == 5
    values = {kv.key: kv.value for kv in status.values}
    assert values == report_values(report)
    expected = {"backend": "onnxruntime", "model": "m.onnx", "output kind": "metric",
                "input rate Hz": "10", "output rate Hz": "9.8", "latency p50 ms": "20",
                "latency p90 ms": "30", "latency p99 ms": "41", "inference p50 ms": "12.5",
                "inference p90 ms": "14", "frames received": "100",
                "frames published": "98", "frames dropped": "2", "cloud rate Hz": "9.9",
                "unpaired images": "3", "unpaired clouds": "1", "bad inputs": "3",
                "bad input: bad_cloud": "2", "bad input: size_mismatch": "1",
                "fit scale": "0.5", "fit shift": "0.01", "fit inlier fraction": "0.93",
                "fit points": "4000", "fit ok": "True"}
    assert values == expected


def test_mono_report_has_no_pairing_values():
    values = report_values(_report())
    assert "unpaired images" not in values and "fit scale" not in values
    assert values["latency p99 ms"] == "41"
