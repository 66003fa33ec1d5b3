"""Nearest-stamp pairing of camera images with LiDAR clouds, newest pair only (ROS-free).

message_filters is not available from PyPI, and its ApproximateTime policy waits for a later
message to rule out a better match; a depth node wants the lowest latency and only the
newest pair, so this one pairs as soon as a partner within the slop is there and lets older
pending inputs go (counted).

Pairing, with stamps in nanoseconds:

* An image pairs with the buffered cloud nearest to it in stamp if that is within
  ``slop_s``; otherwise it waits for a cloud. A cloud pairs with the newest waiting image
  within ``slop_s``. A cloud may serve several images (a camera faster than the LiDAR),
  an image is used once.
* When an image is paired, every older waiting image is given up (counted unpaired): only
  the newest pair matters. A waiting image is also given up once a cloud newer than its
  stamp + slop has arrived (no later cloud can match it), and a cloud that never served an
  image once an image newer than its stamp + slop has arrived.

Time lines. Each stream (images, clouds) has a time line: the newest stamp it accepted. A
message is on it when it is newer than its stream's newest stamp and at most ``max_gap_s``
ahead of the newest stamp of either stream (the other stream vouches for a gap in this one:
a camera that dropped frames for 3 s while the LiDAR went on is back on time at once). A
message off its time line (behind it, a duplicate, or too far ahead) is *held aside*, one per
stream, and moves nothing: one stray stamp, say a cloud stamped 5 s in the future, can cost
at most its own frame. The next message of that stream decides:

* on the time line: the held message was a stray and is dropped (counted);
* off the time line too (not a duplicate of its newest stamp), newer than the held one and
  within ``max_gap_s`` of it: the stream really jumped (a bag played again, a clock reset, a
  driver restarted). The stream starts afresh from the held message (its unused waiting
  inputs counted unpaired), and so does the other stream if it holds a message that agrees
  with the new time (both sensors jumped together);
* otherwise it replaces the held message (which is dropped).

A stray within ``max_gap_s`` ahead is accepted, but taken back (counted stray) as soon as the
next message of its stream lands between it and the one before, unless an input of the
other stream agreed with it.

A held message pairs with nothing until its time line is confirmed, so output stamps only go
back at a confirmed jump and an out-of-order image never produces depth. Nothing is lost at a
jump either: once confirmed, the held messages are paired like any other (one message late).

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


@dataclass(eq=False)  # compared by identity: items may be numpy arrays
class _Entry:
    stamp_ns: int
    item: Any
    used: bool = False


@dataclass
class _Stream:
    """One input stream: its waiting inputs, its time line and the message held aside."""

    kind: str  # "image" | "cloud"
    pending: deque = field(default_factory=deque)
    newest_ns: int | None = None
    previous_ns: int | None = None  # the time line before the newest message
    last: _Entry | None = None  # the newest message accepted
    held: _Entry | None = None


@dataclass
class SyncCounts:
    """What the synchroniser has seen and given up, since it was made.

    ``out_of_order_*`` and ``ahead_*`` count messages held aside (behind their time line, or
    more than ``max_gap_s`` ahead of it); ``stray_*`` those of them dropped because the next
    message went on with the old time line; ``time_jumps`` the jumps followed.
    """

    images: int = 0
    clouds: int = 0
    pairs: int = 0
    unpaired_images: int = 0
    unpaired_clouds: int = 0
    out_of_order_images: int = 0
    out_of_order_clouds: int = 0
    ahead_images: int = 0
    ahead_clouds: int = 0
    stray_images: int = 0
    stray_clouds: int = 0
    time_jumps: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counts by name."""
        return dict(self.__dict__)


@dataclass
class NearestStampSync:
    """Pairs images with clouds by nearest stamp within ``slop_s``; see the module docstring.

    Args:
        slop_s: the largest |image stamp - cloud stamp| of a pair, seconds.
        max_pending: most images (and most clouds) kept waiting; older ones are given up.
        max_gap_s: the largest step forward of a stream's stamps that is taken as the same
            time line (longer than the slowest sensor's period); a larger step, or any step
            back, needs the next message of that stream to agree before it is followed.
    """

    slop_s: float
    max_pending: int = 8
    max_gap_s: float = 1.0
    counts: SyncCounts = field(default_factory=SyncCounts, init=False)

    def __post_init__(self) -> None:
        if not self.slop_s >= 0:
            raise ValueError(f"slop_s must be >= 0, got {self.slop_s}")
        if self.max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {self.max_pending}")
        if not self.max_gap_s > self.slop_s:
            raise ValueError(f"max_gap_s must be > slop_s ({self.slop_s:g}), got "
                             f"{self.max_gap_s}")
        self._slop_ns = int(round(self.slop_s * NS_PER_S))
        self._gap_ns = int(round(self.max_gap_s * NS_PER_S))
        self._images = _Stream("image")
        self._clouds = _Stream("cloud")

    @property
    def pending_images(self) -> int:
        """Images waiting for a cloud."""
        return len(self._images.pending)

    @property
    def newest_image_ns(self) -> int | None:
        """The image time line: the newest image stamp accepted (None before the first)."""
        return self._images.newest_ns

    @property
    def newest_cloud_ns(self) -> int | None:
        """The cloud time line: the newest cloud stamp accepted (None before the first)."""
        return self._clouds.newest_ns

    def reset(self) -> None:
        """Forget every waiting and held input and both time lines; nothing is counted."""
        for stream in (self._images, self._clouds):
            stream.pending.clear()
            stream.newest_ns = stream.previous_ns = stream.last = stream.held = None

    def add_image(self, stamp_ns: int, item: Any) -> StampedPair | None:
        """Offer an image; returns the pair it completes, if any."""
        self.counts.images += 1
        return self._offer(self._images, _Entry(int(stamp_ns), item))

    def add_cloud(self, stamp_ns: int, item: Any) -> StampedPair | None:
        """Offer a cloud; returns the pair it completes with the newest waiting image, if any."""
        self.counts.clouds += 1
        return self._offer(self._clouds, _Entry(int(stamp_ns), item))

    # Time lines.
    def _other(self, stream: _Stream) -> _Stream:
        return self._clouds if stream is self._images else self._images

    def _on_time_line(self, stream: _Stream, stamp_ns: int) -> bool:
        if stream.newest_ns is None:
            return True
        if stamp_ns <= stream.newest_ns:
            return False
        other = self._other(stream).newest_ns
        newest = stream.newest_ns if other is None else max(stream.newest_ns, other)
        return stamp_ns <= newest + self._gap_ns

    def _offer(self, stream: _Stream, entry: _Entry) -> StampedPair | None:
        self._take_back_stray(stream, entry.stamp_ns)
        if self._on_time_line(stream, entry.stamp_ns):
            pairs = []
            held = stream.held
            if held is not None:
                stream.held = None
                if held.stamp_ns < entry.stamp_ns and self._on_time_line(stream, held.stamp_ns):
                    # Early rather than stray: the other stream has since vouched for it.
                    pairs.append(self._accept(stream, held))
                else:
                    self._count(stream, "stray")
            pairs.append(self._accept(stream, entry))
            return self._newest(pairs)
        held = stream.held
        # A duplicate of the newest stamp confirms nothing (a late message and then a copy).
        if (held is not None and entry.stamp_ns != stream.newest_ns
                and held.stamp_ns < entry.stamp_ns <= held.stamp_ns + self._gap_ns):
            return self._follow_jump(stream, entry)
        if held is not None:
            self._count(stream, "stray")
        self._count(stream, "out_of_order" if stream.newest_ns is not None
                    and entry.stamp_ns <= stream.newest_ns else "ahead")
        stream.held = entry
        return None

    def _take_back_stray(self, stream: _Stream, stamp_ns: int) -> None:
        """A stamp between the last two of its stream shows the newest one was a stray
        within max_gap_s (say 0.3 s ahead) that no partner used: take it back."""
        last = stream.last
        if (last is None or last.used or stream.previous_ns is None
                or not stream.previous_ns < stamp_ns < last.stamp_ns):
            return
        if any(e is last for e in stream.pending):
            stream.pending.remove(last)
        self._count(stream, "stray")
        stream.newest_ns, stream.previous_ns, stream.last = stream.previous_ns, None, None

    def _follow_jump(self, stream: _Stream, entry: _Entry) -> StampedPair | None:
        """Two messages in a row agree on a new time: start the stream afresh from them."""
        self.counts.time_jumps += 1
        held, stream.held = stream.held, None
        self._restart(stream)
        pairs = [self._accept(stream, held), self._accept(stream, entry)]
        other = self._other(stream)
        if other.held is not None and abs(other.held.stamp_ns - entry.stamp_ns) <= self._gap_ns:
            # Both sensors jumped together: the other's held message is its new time line.
            other_held, other.held = other.held, None
            self._restart(other)
            pairs.append(self._accept(other, other_held))
        return self._newest(pairs)

    def _restart(self, stream: _Stream) -> None:
        for entry in stream.pending:
            if not entry.used:
                self._count(stream, "unpaired")
        stream.pending.clear()
        stream.newest_ns = stream.previous_ns = stream.last = None

    def _newest(self, pairs: list[StampedPair | None]) -> StampedPair | None:
        """The newest of the pairs one call made; older ones are given up (only the newest
        pair matters), their images counted unpaired."""
        made = sorted((p for p in pairs if p is not None), key=lambda p: p.image_stamp_ns)
        for _ in made[:-1]:
            self.counts.pairs -= 1
            self.counts.unpaired_images += 1
        return made[-1] if made else None

    def _count(self, stream: _Stream, what: str) -> None:
        name = f"{what}_{stream.kind}s"
        setattr(self.counts, name, getattr(self.counts, name) + 1)

    # Pairing on the time line.
    def _accept(self, stream: _Stream, entry: _Entry) -> StampedPair | None:
        stream.previous_ns, stream.newest_ns, stream.last = (stream.newest_ns, entry.stamp_ns,
                                                             entry)
        if stream is self._images:
            return self._accept_image(entry)
        return self._accept_cloud(entry)

    def _accept_image(self, image: _Entry) -> StampedPair | None:
        self._expire_clouds()
        clouds = self._clouds.pending
        best = min(clouds, key=lambda c: abs(c.stamp_ns - image.stamp_ns), default=None)
        if best is not None and abs(best.stamp_ns - image.stamp_ns) <= self._slop_ns:
            return self._pair(image, best)
        images = self._images.pending
        images.append(image)
        while len(images) > self.max_pending:
            images.popleft()
            self.counts.unpaired_images += 1
        return None

    def _accept_cloud(self, cloud: _Entry) -> StampedPair | None:
        clouds = self._clouds.pending
        clouds.append(cloud)
        while len(clouds) > self.max_pending:
            self._drop_cloud()
        self._expire_images()
        for image in reversed(self._images.pending):
            if abs(image.stamp_ns - cloud.stamp_ns) <= self._slop_ns:
                self._images.pending.remove(image)
                return self._pair(image, cloud)
        return None

    def _pair(self, image: _Entry, cloud: _Entry) -> StampedPair:
        # Only the newest pair matters: waiting images older than this one are given up.
        images = self._images.pending
        while images and images[0].stamp_ns < image.stamp_ns:
            images.popleft()
            self.counts.unpaired_images += 1
        return self._make_pair(image, cloud)

    def _make_pair(self, image: _Entry, cloud: _Entry) -> StampedPair:
        image.used = cloud.used = True
        self.counts.pairs += 1
        return StampedPair(image.item, cloud.item, image.stamp_ns, cloud.stamp_ns)

    def _drop_cloud(self) -> None:
        if not self._clouds.pending.popleft().used:
            self.counts.unpaired_clouds += 1

    def _expire_clouds(self) -> None:
        # Images come in stamp order on their time line: a cloud older than the newest image
        # by more than the slop can serve no later image.
        newest = self._images.newest_ns
        clouds = self._clouds.pending
        while clouds and clouds[0].stamp_ns + self._slop_ns < newest:
            self._drop_cloud()

    def _expire_images(self) -> None:
        newest = self._clouds.newest_ns
        images = self._images.pending
        while images and images[0].stamp_ns + self._slop_ns < newest:
            images.popleft()
            self.counts.unpaired_images += 1
