"""Nearest-stamp pairing of camera images with LiDAR clouds, newest pair only (ROS-free).

message_filters is not available from PyPI, and its ApproximateTime policy waits for a later
message to rule out a better match; a depth node wants the lowest latency and only the
newest pair, so this one pairs as soon as a partner within the slop is there and lets older
pending inputs go (counted).

Rules, with stamps in nanoseconds and each stream arriving in stamp order:

* An image pairs with the buffered cloud nearest to it in stamp if that is within
  ``slop_s``; otherwise it waits for a cloud. A cloud pairs with the newest waiting image
  within ``slop_s``. A cloud may serve several images (a camera faster than the LiDAR),
  an image is used once.
* When an image is paired, every older waiting image is given up (counted unpaired): only
  the newest pair matters. A waiting image is also given up once a cloud newer than its
  stamp + slop has arrived (no later cloud can match it), and a cloud that never served an
  image once an image newer than its stamp + slop has arrived.
* An image or cloud not newer than the newest one of its stream (so never older than the
  last pair) is out of order: dropped and counted. A stamp that goes back by more than
  ``reset_after_s`` behind its stream's newest (a bag played again, a simulator restarted)
  resets the state instead, so that the new time line is served.

Not thread-safe: call it from one thread (a node's executor callbacks).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class StampedPair:
    """An image and the cloud paired with it, with both stamps in nanoseconds."""

    image: Any
    cloud: Any
    image_stamp_ns: int
    cloud_stamp_ns: int

    @property
    def offset_s(self) -> float:
        """Cloud stamp minus image stamp, seconds."""
        return (self.cloud_stamp_ns - self.image_stamp_ns) / NS_PER_S


@dataclass
class _Entry:
    stamp_ns: int
    item: Any
    used: bool = False


@dataclass
class SyncCounts:
    """What the synchroniser has seen and given up, since it was made."""

    images: int = 0
    clouds: int = 0
    pairs: int = 0
    unpaired_images: int = 0
    unpaired_clouds: int = 0
    out_of_order_images: int = 0
    out_of_order_clouds: int = 0
    resets: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counts by name."""
        return dict(self.__dict__)


@dataclass
class NearestStampSync:
    """Pairs images with clouds by nearest stamp within ``slop_s``; see the module docstring.

    Args:
        slop_s: the largest |image stamp - cloud stamp| of a pair, seconds.
        max_pending: most images (and most clouds) kept waiting; older ones are given up.
        reset_after_s: a stamp this far behind the newest of its stream resets the state.
    """

    slop_s: float
    max_pending: int = 8
    reset_after_s: float = 5.0
    counts: SyncCounts = field(default_factory=SyncCounts, init=False)

    def __post_init__(self) -> None:
        if not self.slop_s >= 0:
            raise ValueError(f"slop_s must be >= 0, got {self.slop_s}")
        if self.max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {self.max_pending}")
        if not self.reset_after_s > 0:
            raise ValueError(f"reset_after_s must be > 0, got {self.reset_after_s}")
        self._slop_ns = int(round(self.slop_s * NS_PER_S))
        self._reset_ns = int(round(self.reset_after_s * NS_PER_S))
        self._images: deque[_Entry] = deque()
        self._clouds: deque[_Entry] = deque()
        self._newest_image_ns: int | None = None
        self._newest_cloud_ns: int | None = None

    @property
    def pending_images(self) -> int:
        """Images waiting for a cloud."""
        return len(self._images)

    def reset(self) -> None:
        """Forget every waiting input and stamp (a jump back in time); nothing is counted."""
        self._images.clear()
        self._clouds.clear()
        self._newest_image_ns = self._newest_cloud_ns = None

    def _jumped_back(self, stamp_ns: int, newest_ns: int | None) -> None:
        # Per stream: a LiDAR stamped on another clock must not reset the camera's side.
        if newest_ns is not None and newest_ns - stamp_ns > self._reset_ns:
            self.counts.resets += 1
            self.reset()

    def add_image(self, stamp_ns: int, item: Any) -> StampedPair | None:
        """Offer an image; returns the pair it completes, if any."""
        self.counts.images += 1
        self._jumped_back(stamp_ns, self._newest_image_ns)
        if self._newest_image_ns is not None and stamp_ns <= self._newest_image_ns:
            self.counts.out_of_order_images += 1
            return None
        self._newest_image_ns = stamp_ns
        self._expire_clouds()
        best = min(self._clouds, key=lambda c: abs(c.stamp_ns - stamp_ns), default=None)
        if best is not None and abs(best.stamp_ns - stamp_ns) <= self._slop_ns:
            return self._pair(_Entry(stamp_ns, item), best)
        self._images.append(_Entry(stamp_ns, item))
        while len(self._images) > self.max_pending:
            self._images.popleft()
            self.counts.unpaired_images += 1
        return None

    def add_cloud(self, stamp_ns: int, item: Any) -> StampedPair | None:
        """Offer a cloud; returns the pair it completes with the newest waiting image, if any."""
        self.counts.clouds += 1
        self._jumped_back(stamp_ns, self._newest_cloud_ns)
        if self._newest_cloud_ns is not None and stamp_ns <= self._newest_cloud_ns:
            self.counts.out_of_order_clouds += 1
            return None
        self._newest_cloud_ns = stamp_ns
        cloud = _Entry(stamp_ns, item)
        self._clouds.append(cloud)
        while len(self._clouds) > self.max_pending:
            self._drop_cloud()
        self._expire_images()
        for image in reversed(self._images):
            if abs(image.stamp_ns - stamp_ns) <= self._slop_ns:
                self._images.remove(image)
                return self._pair(image, cloud)
        return None

    def _pair(self, image: _Entry, cloud: _Entry) -> StampedPair:
        # Only the newest pair matters: waiting images older than this one are given up.
        while self._images and self._images[0].stamp_ns < image.stamp_ns:
            self._images.popleft()
            self.counts.unpaired_images += 1
        cloud.used = True
        self.counts.pairs += 1
        return StampedPair(image.item, cloud.item, image.stamp_ns, cloud.stamp_ns)

    def _drop_cloud(self) -> None:
        if not self._clouds.popleft().used:
            self.counts.unpaired_clouds += 1

    def _expire_clouds(self) -> None:
        # Images come in stamp order: a cloud older than the newest image by more than the
        # slop can serve no later image.
        while self._clouds and self._clouds[0].stamp_ns + self._slop_ns < self._newest_image_ns:
            self._drop_cloud()

    def _expire_images(self) -> None:
        while self._images and self._images[0].stamp_ns + self._slop_ns < self._newest_cloud_ns:
            self._images.popleft()
            self.counts.unpaired_images += 1
