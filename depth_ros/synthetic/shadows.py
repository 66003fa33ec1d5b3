"""Cast shadows: which surface points see the sun, traced with Intel Embree (``embreex``).

Every box becomes 12 triangles of one Embree BVH, built once per ``StreetScene`` object (a
scene at another time, with moved boxes, is another object and gets its own). A surface point
is in shadow when a ray from it toward the sun hits any triangle. Embree's any-hit query
(``OCCLUDED``) answers ~0.5 M such rays against a few thousand triangles in tens of
milliseconds on two cores, where a numpy slab test would cost rays × boxes work per frame.

Shadows are hard-edged: the sun's 0.5° disc would blur an edge 20 m from its caster by
~0.2 m, below a pixel's footprint for all but the nearest shadows.

Where ``embreex`` has no wheel (Linux aarch64, so Jetson), the same query runs as a numpy slab
test over the boxes near each group of rays: the same shadows (to float rounding), seconds
instead of tens of milliseconds per frame.
"""

from __future__ import annotations

import threading
import weakref

import numpy as np

from depth_ros.synthetic.scene import StreetScene

try:
    from embreex import rtcore_scene
    from embreex.mesh_construction import TriangleMesh
except ImportError:  # no wheel for this platform: the numpy path below
    rtcore_scene = None

# How far shadow rays start off their surface, along its normal: float32 hit points 200 m
# away are good to ~0.02 mm, so this clears the surface itself yet misses no real occluder.
SURFACE_OFFSET_M = 0.005

# Rays are grouped by the cell of their origin (metres on the ground) for the numpy path.
_CELL_M = 8.0

# Corner k of a box takes the upper bound on axis a where bit a of k is set.
_CORNER_BITS = ((np.arange(8)[:, None] >> np.arange(3)[None, :]) & 1).astype(bool)
# Two triangles per face (x−, x+, y−, y+, z−, z+), as corner indices around each quad.
_BOX_TRIANGLES = np.array([[0, 4, 6], [0, 6, 2], [1, 3, 7], [1, 7, 5],
                           [0, 1, 5], [0, 5, 4], [2, 6, 7], [2, 7, 3],
                           [0, 2, 3], [0, 3, 1], [4, 5, 7], [4, 7, 6]])


def box_triangles(box_min: np.ndarray, box_max: np.ndarray) -> np.ndarray:
    """The surfaces of N axis-aligned boxes as 12·N triangles (12N × 3 vertices × xyz,
    float32), box by box."""
    lo = np.asarray(box_min, np.float64).reshape(-1, 1, 3)
    hi = np.asarray(box_max, np.float64).reshape(-1, 1, 3)
    corners = np.where(_CORNER_BITS[None], hi, lo)  # N×8×3
    return corners[:, _BOX_TRIANGLES].reshape(-1, 3, 3).astype(np.float32)


class ShadowCaster:
    """An Embree BVH over a set of boxes that tells which surface points see the sun.

    Args:
        box_min: N×3 lower corners of the boxes (world metres).
        box_max: N×3 upper corners.
        use_embree: trace with Embree (default: whenever ``embreex`` is installed); False
            runs the numpy slab test.
    """

    def __init__(self, box_min: np.ndarray, box_max: np.ndarray,
                 use_embree: bool | None = None) -> None:
        self.box_min = np.array(box_min, np.float64).reshape(-1, 3)
        self.box_max = np.array(box_max, np.float64).reshape(-1, 3)
        if use_embree and rtcore_scene is None:
            raise ImportError("use_embree=True needs the embreex package")
        self.use_embree = rtcore_scene is not None if use_embree is None else use_embree
        self._scene = None
        if len(self.box_min) and self.use_embree:
            self._scene = rtcore_scene.EmbreeScene()
            TriangleMesh(self._scene, box_triangles(self.box_min, self.box_max))
            # Embree builds the BVH on the first query; do it now, under the caller's lock,
            # rather than in whichever render thread happens to ask first.
            self._scene.run(np.zeros((1, 3), np.float32), np.float32([[0, 0, 1]]),
                            query="OCCLUDED")

    @property
    def num_triangles(self) -> int:
        """Triangles in the BVH (12 per box)."""
        return 12 * len(self.box_min)

    def holds(self, box_min: np.ndarray, box_max: np.ndarray) -> bool:
        """Whether this caster was built from exactly these boxes."""
        return (np.shape(box_min) == self.box_min.shape
                and np.array_equal(box_min, self.box_min)
                and np.array_equal(box_max, self.box_max))

    def occluded(self, origins: np.ndarray, direction: np.ndarray) -> np.ndarray:
        """Whether each ray ``origins[i] + s · direction`` (s > 0) hits a box (N bool)."""
        origins = np.ascontiguousarray(origins, np.float32).reshape(-1, 3)
        if not len(self.box_min) or not len(origins):
            return np.zeros(len(origins), bool)
        direction = np.ascontiguousarray(direction, np.float32).reshape(1, 3)
        if self._scene is None:
            return self._occluded_numpy(origins, direction[0].astype(np.float64))
        # embreex's OCCLUDED answers 0 for a blocked ray and −1 for a free one.
        return self._scene.run(origins, direction, query="OCCLUDED") == 0

    def _occluded_numpy(self, origins: np.ndarray, direction: np.ndarray) -> np.ndarray:
        """The any-hit query as slab tests, each group of rays against the boxes its rays
        can reach: those overlapping the group's origins swept along the ray up to the
        height of the tallest box (or 500 m for a low sun)."""
        out = np.zeros(len(origins), bool)
        o = origins.astype(np.float64)
        top = float(self.box_max[:, 2].max())
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / direction
            reach = (top - o[:, 2]) / direction[2] if direction[2] > 1e-6 else np.full(
                len(o), 500.0)
        reach = np.clip(np.nan_to_num(reach, nan=0.0), 0.0, 500.0)
        cells = np.floor(o[:, :2] / _CELL_M).astype(np.int64)
        _, group = np.unique(cells, axis=0, return_inverse=True)
        order = np.argsort(group.ravel(), kind="stable")
        bounds = np.flatnonzero(np.diff(group.ravel()[order])) + 1
        for idx in np.split(order, bounds):
            start, end = o[idx], o[idx] + reach[idx, None] * direction
            lo = np.minimum(start.min(0), end.min(0))
            hi = np.maximum(start.max(0), end.max(0))
            near = np.flatnonzero(np.all((self.box_max >= lo) & (self.box_min <= hi), axis=1))
            hit = np.zeros(len(idx), bool)
            for b in near:
                with np.errstate(invalid="ignore"):  # 0 · inf for rays parallel to a slab
                    t1 = (self.box_min[b] - start) * inv
                    t2 = (self.box_max[b] - start) * inv
                t_near = np.nanmax(np.minimum(t1, t2), axis=1)
                t_far = np.nanmin(np.maximum(t1, t2), axis=1)
                hit |= (t_far >= np.maximum(t_near, 0.0)) & (t_far > 0)
            out[idx] = hit
        return out

    def sun_visibility(self, points: np.ndarray, normal_axis: np.ndarray,
                       normal_sign: np.ndarray, sun_direction: np.ndarray) -> np.ndarray:
        """1 where the sun lights each surface point, 0 where a box shadows it or its face is
        turned away from the sun (N float32).

        Args:
            points: N×3 world points on box faces or the ground.
            normal_axis: N ints, the axis (0/1/2 = x/y/z) of each point's face normal.
            normal_sign: N ±1, the outward normal's sign along that axis.
            sun_direction: the direction toward the sun (any length).
        """
        sun = np.asarray(sun_direction, np.float32).reshape(3)
        axis = np.asarray(normal_axis, np.intp)
        sign = np.asarray(normal_sign, np.float32)
        visible = (sign * sun[axis] > 0).astype(np.float32)
        lit = np.flatnonzero(visible)
        if not len(self.box_min) or not len(lit):
            return visible
        origins = np.asarray(points, np.float32)[lit]
        origins[np.arange(len(lit)), axis[lit]] += np.float32(SURFACE_OFFSET_M) * sign[lit]
        visible[lit[self.occluded(origins, sun)]] = 0
        return visible


_CASTERS: weakref.WeakKeyDictionary[StreetScene, ShadowCaster] = weakref.WeakKeyDictionary()
_CASTERS_LOCK = threading.Lock()


def shadow_caster(scene: StreetScene) -> ShadowCaster:
    """The ``ShadowCaster`` of ``scene``'s boxes, built on first use and kept while the scene
    object lives (drives render frames from several threads, so building is locked)."""
    with _CASTERS_LOCK:
        caster = _CASTERS.get(scene)
        # A scene's arrays are writable, so check that they still hold what was built.
        if caster is None or not caster.holds(scene.box_min, scene.box_max):
            caster = ShadowCaster(scene.box_min, scene.box_max)
            _CASTERS[scene] = caster
    return caster


def sun_visibility(scene: StreetScene, points: np.ndarray, normal_axis: np.ndarray,
                   normal_sign: np.ndarray) -> np.ndarray:
    """``ShadowCaster.sun_visibility`` of ``scene``'s boxes under its own sun (N float32)."""
    return shadow_caster(scene).sun_visibility(points, normal_axis, normal_sign,
                                               scene.lighting.sun_direction)
