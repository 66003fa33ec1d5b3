"""Nearest-stamp image/cloud pairing: newest pair only, unpaired and out-of-order counting."""

from __future__ import annotations

import numpy as np
import pytest

from depth_ros.ros.sync import NS_PER_S, NearestStampSync


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
    assert counts.pairs == 0 and counts.resets == 0
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


def test_a_jump_back_in_time_resets_instead_of_dropping_everything():
    sync = NearestStampSync(slop_s=0.02, reset_after_s=5.0)
    sync.add_cloud(ns(100.0), "c")
    assert sync.add_image(ns(100.0), "i") is not None
    # a bag played again from the start: 100 s back
    assert sync.add_image(ns(0.5), "i'") is None
    assert sync.counts.resets == 1 and sync.counts.out_of_order_images == 0
    pair = sync.add_cloud(ns(0.51), "c'")
    assert (pair.image, pair.cloud) == ("i'", "c'")


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
                                    {"slop_s": 0.1, "reset_after_s": 0.0}])
def test_invalid_settings_are_rejected(kwargs):
    with pytest.raises(ValueError):
        NearestStampSync(**kwargs)
