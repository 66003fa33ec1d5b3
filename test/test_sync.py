"""Nearest-stamp image/cloud pairing: newest pair only, unpaired and out-of-order counting,
stray stamps and jumps in time (the fuzz table's bad-stamp rows)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from depth_ros.sensors.sync import NS_PER_S, NearestStampSync


def ns(seconds: float) -> int:
    return int(round(seconds * NS_PER_S))


def test_pairs_by_nearest_stamp_within_slop():
    sync = NearestStampSync(slop_s=0.03)
    assert sync.add_cloud(ns(0.98), "c0") is None
    assert sync.add_cloud(ns(1.01), "c1") is None
    pair = sync.add_image(ns(1.0), "i0")
    assert (pair.image, pair.cloud) == ("i0", "c1")
    assert pair.offset_s == pytest.approx(0.01)
    assert sync.counts.pairs == 1


def test_image_waits_for_its_cloud_and_the_cloud_completes_the_pair():
    sync = NearestStampSync(slop_s=0.05)
    assert sync.add_image(ns(1.0), "i0") is None
    assert sync.pending_images == 1
    pair = sync.add_cloud(ns(1.02), "c0")
    assert (pair.image, pair.cloud, pair.cloud_stamp_ns) == ("i0", "c0", ns(1.02))
    assert sync.pending_images == 0


def test_only_the_newest_pair_is_kept_and_older_waiting_images_count_as_unpaired():
    sync = NearestStampSync(slop_s=0.05)
    for k in range(3):  # a burst of images before the cloud that matches the last one
        assert sync.add_image(ns(1.0 + 0.1 * k), f"i{k}") is None
    pair = sync.add_cloud(ns(1.21), "c")
    assert pair.image == "i2"
    assert sync.counts.unpaired_images == 2
    assert sync.pending_images == 0


def test_a_cloud_serves_several_images_of_a_faster_camera():
    sync = NearestStampSync(slop_s=0.05)
    sync.add_cloud(ns(2.0), "c")
    pairs = [sync.add_image(ns(2.0 + 0.033 * k), f"i{k}") for k in range(3)]
    assert [p.image if p else None for p in pairs] == ["i0", "i1", None]
    assert all(p.cloud == "c" for p in pairs[:2])
    assert sync.counts.unpaired_clouds == 0


def test_streams_far_apart_in_time_count_unpaired_on_both_sides():
    sync = NearestStampSync(slop_s=0.05, max_pending=4)
    offset = 2.0  # the LiDAR stamps 2 s later than the camera: nothing ever pairs
    for k in range(20):
        t = 10.0 + 0.1 * k
        assert sync.add_image(ns(t), k) is None
        assert sync.add_cloud(ns(t + offset), k) is None
    counts = sync.counts
    assert counts.pairs == 0 and counts.time_jumps == 0
    # every image is given up once a cloud newer than its stamp + slop arrives; every cloud
    # still waiting once an image newer than its stamp + slop arrives (all but the last ~20)
    assert counts.unpaired_images == 20
    assert 20 - 4 - 1 <= counts.unpaired_clouds <= 20


def test_out_of_order_and_duplicate_stamps_are_dropped_and_counted():
    sync = NearestStampSync(slop_s=0.02)
    sync.add_cloud(ns(1.0), "c1")
    assert sync.add_image(ns(1.0), "i1").image == "i1"
    assert sync.add_image(ns(0.9), "late") is None  # older than the last image
    assert sync.add_image(ns(1.0), "again") is None  # the same stamp twice
    assert sync.add_cloud(ns(0.95), "late cloud") is None
    assert (sync.counts.out_of_order_images, sync.counts.out_of_order_clouds) == (2, 1)
    sync.add_cloud(ns(1.1), "c2")
    assert sync.add_image(ns(1.1), "i2").cloud == "c2"  # the next good message is served


def test_a_jump_back_in_time_is_followed_once_the_next_message_agrees():
    sync = NearestStampSync(slop_s=0.02)
    sync.add_cloud(ns(100.0), "c")
    assert sync.add_image(ns(100.0), "i") is not None
    # a bag played again from the start: 100 s back. Held aside: a single message this far
    # back could be a stray, so nothing pairs with it yet.
    assert sync.add_image(ns(0.5), "i'") is None
    assert sync.add_cloud(ns(0.51), "c'") is None
    assert sync.counts.out_of_order_images == sync.counts.out_of_order_clouds == 1
    assert sync.counts.time_jumps == 0 and sync.newest_image_ns == ns(100.0)
    # the next cloud agrees with the held one: both streams follow the new time line, and
    # the held frame is served, one message late
    pair = sync.add_cloud(ns(0.6), "c''")
    assert (pair.image, pair.cloud) == ("i'", "c'")
    assert sync.counts.time_jumps == 1 and sync.newest_image_ns == ns(0.5)
    assert sync.add_image(ns(0.6), "i''").cloud == "c''"
    assert sync.counts.stray_images == sync.counts.stray_clouds == 0


def test_waiting_images_are_bounded():
    sync = NearestStampSync(slop_s=0.01, max_pending=3)
    for k in range(10):
        sync.add_image(ns(k * 0.1), k)
    assert sync.pending_images == 3 and sync.counts.unpaired_images == 7
    assert sync.add_cloud(ns(0.9), "c").image == 9


def test_random_interleaving_never_pairs_outside_the_slop_or_backwards():
    rng = np.random.default_rng(0)
    slop = 0.02
    sync = NearestStampSync(slop_s=slop)
    events = [("image", 0.1 * k + rng.normal(0, 0.002)) for k in range(200)]
    events += [("cloud", 0.1 * k + rng.normal(0, 0.015)) for k in range(200)]
    # arrival order: by stamp plus a transport delay, each stream still in order
    events.sort(key=lambda e: e[1] + (0.03 if e[0] == "cloud" else 0.0))
    pairs = []
    for kind, t in events:
        add = sync.add_image if kind == "image" else sync.add_cloud
        if (pair := add(ns(t), t)) is not None:
            pairs.append(pair)
    assert all(abs(p.offset_s) <= slop + 1e-9 for p in pairs)
    stamps = [p.image_stamp_ns for p in pairs]
    assert stamps == sorted(set(stamps))
    counts = sync.counts
    assert counts.pairs == len(pairs) > 100
    # every image is paired, given up, or still waiting
    assert counts.pairs + counts.unpaired_images + sync.pending_images == 200


@pytest.mark.parametrize("kwargs", [{"slop_s": -0.1}, {"slop_s": 0.1, "max_pending": 0},
                                    {"slop_s": 0.1, "max_gap_s": 0.1}])
def test_invalid_settings_are_rejected(kwargs):
    with pytest.raises(ValueError):
        NearestStampSync(**kwargs)


# A 10 Hz camera and LiDAR, frame k stamped T0 + 0.1 k on both, with one bad stamp or a jump
# of the whole stream: the scenarios of the fuzz table (issue 12: a single cloud stamped
# +2 s used to cost 19 good frames, one at +4.9 s 48).
T0 = 1000.0
FRAMES = 60
BAD = 20  # the frame that carries the bad stamp, or the first after a jump


def _stream(cloud_stamp, image_stamp, order: str) -> list[tuple[str, int, int]]:
    """(kind, stamp_ns, frame) events: per frame the cloud then the image, or the other way
    (a LiDAR that arrives late)."""
    events = []
    for k in range(FRAMES):
        cloud, image = ("cloud", ns(cloud_stamp(k)), k), ("image", ns(image_stamp(k)), k)
        events += [cloud, image] if order == "cloud first" else [image, cloud]
    return events


def _lost_frames(events: list[tuple[str, int, int]], **kwargs) -> list[int]:
    """The frames whose image was never served; also checks every pair is one frame's."""
    sync = NearestStampSync(slop_s=0.05, **kwargs)
    served = []
    for kind, stamp, frame in events:
        pair = (sync.add_image if kind == "image" else sync.add_cloud)(stamp, frame)
        if pair is not None:
            assert pair.image == pair.cloud, "paired across frames"
            served.append(pair.image)
    assert served == sorted(set(served)), "a frame served twice or out of order"
    return sorted(set(range(FRAMES)) - set(served))


def _on_time(k: int) -> float:
    return T0 + 0.1 * k


def _stray(offset_s: float) -> Callable[[int], float]:
    return lambda k: _on_time(k) + (offset_s if k == BAD else 0.0)


def _jump(offset_s: float) -> Callable[[int], float]:
    return lambda k: _on_time(k) + (offset_s if k >= BAD else 0.0)


STRAYS = {  # name: (cloud stamps, image stamps)
    "cloud +2 s": (_stray(2.0), _on_time),
    "cloud +4.9 s": (_stray(4.9), _on_time),
    "cloud +0.3 s": (_stray(0.3), _on_time),
    "cloud +30 s": (_stray(30.0), _on_time),
    "cloud -0.55 s (late)": (_stray(-0.55), _on_time),
    "cloud -100 s": (_stray(-100.0), _on_time),
    "cloud stamp 0": (lambda k: 0.0 if k == BAD else _on_time(k), _on_time),
    "image +2 s": (_on_time, _stray(2.0)),
    "image +4.9 s": (_on_time, _stray(4.9)),
    "image -0.55 s (late)": (_on_time, _stray(-0.55)),
    "image and cloud +4.9 s": (_stray(4.9), _stray(4.9)),
}
JUMPS = {
    "bag loop: both 100 s back": (_jump(-100.0), _jump(-100.0)),
    "short bag loop: both 2 s back": (_jump(-2.0), _jump(-2.0)),
    "clock reset: both 1000 s ahead": (_jump(1000.0), _jump(1000.0)),
    "driver restart: both 3 s ahead": (_jump(3.0), _jump(3.0)),
}


@pytest.mark.parametrize("order", ["cloud first", "image first"])
@pytest.mark.parametrize("name", list(STRAYS))
def test_one_stray_stamp_costs_at_most_its_own_frame(name, order):
    cloud_stamp, image_stamp = STRAYS[name]
    lost = _lost_frames(_stream(cloud_stamp, image_stamp, order))
    assert set(lost) <= {BAD}, lost


@pytest.mark.parametrize("order", ["cloud first", "image first"])
@pytest.mark.parametrize("name", list(JUMPS))
def test_a_stream_that_really_jumps_is_followed_within_one_frame(name, order):
    cloud_stamp, image_stamp = JUMPS[name]
    # one frame may go (issue 12); none does: the held frame is paired once confirmed
    assert _lost_frames(_stream(cloud_stamp, image_stamp, order)) == []


def test_a_stray_cloud_is_counted_and_the_old_time_line_kept():
    sync = NearestStampSync(slop_s=0.05)
    for k in range(3):
        sync.add_cloud(ns(_on_time(k)), k)
        sync.add_image(ns(_on_time(k)), k)
    assert sync.add_cloud(ns(_on_time(3) + 4.9), "stray") is None
    assert sync.newest_cloud_ns == ns(_on_time(2))  # held aside: nothing moved
    assert sync.counts.ahead_clouds == 1 and sync.counts.stray_clouds == 0
    assert sync.add_image(ns(_on_time(3)), 3) is None  # its own cloud was the stray
    sync.add_cloud(ns(_on_time(4)), 4)
    assert sync.counts.stray_clouds == 1 and sync.counts.time_jumps == 0
    assert sync.add_image(ns(_on_time(4)), 4).cloud == 4
    assert sync.counts.unpaired_images == 1  # frame 3


def test_a_late_image_never_pairs_with_a_cloud_of_the_old_time_line():
    sync = NearestStampSync(slop_s=0.05)
    sync.add_cloud(ns(1.0), "c1")
    sync.add_cloud(ns(1.1), "c2")  # a LiDAR ahead of the camera
    assert sync.add_image(ns(1.1), "i2").cloud == "c2"
    assert sync.add_image(ns(1.0), "late") is None  # c1 is still there: no depth for it
    assert sync.add_image(ns(1.0), "late copy") is None  # a copy confirms no jump
    assert sync.counts.time_jumps == 0 and sync.counts.out_of_order_images == 2


@pytest.mark.parametrize("silent", ["image", "cloud"])
def test_one_sensor_back_after_a_dropout_is_on_time_at_once(silent):
    """A sensor silent for 3 s while the other went on: its next stamp is 3 s ahead of its
    own, but the other stream vouches for it, so nothing is held and nothing lost."""
    sync = NearestStampSync(slop_s=0.05)
    served = []
    for k in range(60):
        quiet = 20 <= k < 50
        if not (quiet and silent == "cloud"):
            sync.add_cloud(ns(_on_time(k)), k)
        if not (quiet and silent == "image"):
            if (pair := sync.add_image(ns(_on_time(k)), k)) is not None:
                served.append(pair.image)
    # (images without a cloud are never paired: the node serves them alone after
    # lidar_timeout_s)
    assert served == [k for k in range(60) if not 20 <= k < 50]
    assert sync.counts.ahead_images + sync.counts.ahead_clouds == 0


def test_slow_sensors_within_max_gap_pair_every_frame():
    sync = NearestStampSync(slop_s=0.05, max_gap_s=1.0)
    pairs = 0
    for k in range(10):  # 2 Hz
        sync.add_cloud(ns(10 + 0.5 * k), k)
        pairs += sync.add_image(ns(10 + 0.5 * k), k) is not None
    assert pairs == 10 and sync.counts.ahead_images + sync.counts.ahead_clouds == 0
