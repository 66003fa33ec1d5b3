"""A TF tree read from recorded transforms, queried offline (ROS-free).

What ``tf2_ros.Buffer`` answers for a bag, without ROS: ``/tf_static`` links hold at every
time, ``/tf`` links are interpolated at the asked stamp (translation linearly, rotation by
slerp, as tf2 does) and may be extrapolated a little past their first or last stamp
(``max_extrapolation_ns``; tf2 allows none, but a camera's first frame is often stamped a few
milliseconds before the odometry's first message). Each frame has one parent (the newest
link naming it as a child wins the parent, as in tf2).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np


class TransformTreeError(LookupError):
    """No transform between two frames (at that time); the message says which link is
    missing."""


def interpolate_transform(a: np.ndarray, b: np.ndarray, fraction: float) -> np.ndarray:
    """The rigid transform ``fraction`` of the way from ``a`` to ``b`` (4×4; fraction may be
    a little outside [0, 1] to extrapolate): translation linear, rotation along the shortest
    arc (slerp: ``R_a · exp(fraction · log(R_aᵀ R_b))``)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    rvec, _ = cv2.Rodrigues(a[:3, :3].T @ b[:3, :3])
    step, _ = cv2.Rodrigues(rvec * fraction)
    out = np.eye(4)
    out[:3, :3] = a[:3, :3] @ step
    out[:3, 3] = a[:3, 3] + fraction * (b[:3, 3] - a[:3, 3])
    return out


@dataclass
class _Link:
    parent: str
    static: bool
    stamps_ns: list[int] = field(default_factory=list)
    matrices: list[np.ndarray] = field(default_factory=list)


@dataclass
class TransformTree:
    """Transforms by (parent, child), each mapping child coordinates into the parent's."""

    max_extrapolation_ns: int = 50_000_000
    _links: dict[str, _Link] = field(default_factory=dict, init=False)
    _sorted: bool = field(default=True, init=False)

    def add(self, parent: str, child: str, matrix: np.ndarray, stamp_ns: int = 0,
            static: bool = False) -> None:
        """Record a link (a static one replaces the child's link; a dynamic one adds a
        sample)."""
        link = self._links.get(child)
        if link is None or link.parent != parent or link.static != static or static:
            link = self._links[child] = _Link(parent, static)
        link.stamps_ns.append(int(stamp_ns))
        link.matrices.append(np.asarray(matrix, dtype=np.float64))
        self._sorted = False

    @property
    def frames(self) -> set[str]:
        """Every frame named by a link."""
        return set(self._links) | {link.parent for link in self._links.values()}

    def static_links(self) -> list[tuple[str, str, np.ndarray]]:
        """(parent, child, 4×4) of every /tf_static link."""
        return [(link.parent, child, link.matrices[-1]) for child, link in self._links.items()
                if link.static]

    def has_dynamic_link(self, frame: str) -> bool:
        """Whether the chain from ``frame`` up to its root has a /tf (moving) link."""
        return any(not self._links[f].static for f in self._chain(frame))

    def root(self, frame: str) -> str:
        """The top of ``frame``'s chain."""
        chain = self._chain(frame)
        return self._links[chain[-1]].parent if chain else frame

    def _chain(self, frame: str) -> list[str]:
        """The frames from ``frame`` up to (not including) the root, each with a link."""
        chain, seen = [], {frame}
        while frame in self._links:
            chain.append(frame)
            frame = self._links[frame].parent
            if frame in seen:
                raise TransformTreeError(f"TF has a loop through {frame!r}")
            seen.add(frame)
        return chain

    def _sort(self) -> None:
        for link in self._links.values():
            order = np.argsort(link.stamps_ns, kind="stable")
            link.stamps_ns = [link.stamps_ns[i] for i in order]
            link.matrices = [link.matrices[i] for i in order]
        self._sorted = True

    def _link_at(self, child: str, stamp_ns: int | None) -> np.ndarray:
        link = self._links[child]
        if link.static:
            return link.matrices[-1]
        if stamp_ns is None:
            return link.matrices[-1]
        stamps = link.stamps_ns
        if len(stamps) == 1:
            if abs(stamp_ns - stamps[0]) <= self.max_extrapolation_ns:
                return link.matrices[0]
        elif stamps[0] - self.max_extrapolation_ns <= stamp_ns <= (
                stamps[-1] + self.max_extrapolation_ns):
            i = int(np.clip(np.searchsorted(stamps, stamp_ns), 1, len(stamps) - 1))
            t0, t1 = stamps[i - 1], stamps[i]
            fraction = (stamp_ns - t0) / (t1 - t0) if t1 != t0 else 0.0
            return interpolate_transform(link.matrices[i - 1], link.matrices[i], fraction)
        raise TransformTreeError(
            f"{link.parent!r} -> {child!r} is known from {stamps[0] / 1e9:.3f} s to "
            f"{stamps[-1] / 1e9:.3f} s, not at {stamp_ns / 1e9:.3f} s")

    def lookup(self, target: str, source: str, stamp_ns: int | None = None,
               static_only: bool = False) -> np.ndarray:
        """The 4×4 mapping ``source`` coordinates into ``target`` at ``stamp_ns`` (None: the
        newest of each link); ``static_only`` uses /tf_static links alone."""
        if target == source:
            return np.eye(4)
        if not self._sorted:
            self._sort()
        up_source, up_target = self._chain(source), self._chain(target)
        # The two chains meet at the lowest common ancestor; above it their links cancel.
        ancestors_source = [source] + [self._links[f].parent for f in up_source]
        ancestors_target = [target] + [self._links[f].parent for f in up_target]
        common = next((f for f in ancestors_source if f in set(ancestors_target)), None)
        if common is None:
            raise TransformTreeError(f"no TF chain between {source!r} and {target!r} (their "
                                     f"roots are {self.root(source)!r} and "
                                     f"{self.root(target)!r})")

        def to_common(chain: list[str]) -> np.ndarray:
            out = np.eye(4)
            for frame in chain:
                if frame == common:
                    break
                if static_only and not self._links[frame].static:
                    raise TransformTreeError(f"{self._links[frame].parent!r} -> {frame!r} "
                                             "is on /tf, not /tf_static")
                out = self._link_at(frame, stamp_ns) @ out
            return out

        return np.linalg.inv(to_common(up_target)) @ to_common(up_source)
