"""Mono depth for any camera: the same engine scene, seen from the same pose by a KITTI camera
(1242×375, fx 721.5), a VGA camera (640×480, fx 500) and the KITTI frame downscaled 2×
(621×188, fx 360.75), must give the same metric depth on the pixels both see (issue 15).

Pixels are matched through the rendered ground truth: each pixel of one camera is lifted to
3-D with its true depth and projected into the other (same pose, so the depth is the same
there too). The bound is the issue's; the bundled model meets it once it is trained for the
canonical camera (``resize_policy: canonical``), which the strict xfail below tracks.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from depth_ros.geometry import PinholeCamera
from depth_ros.inference import DepthEstimator
from depth_ros.synthetic.drive import plan_drive
from depth_ros.synthetic.render import render_frame
from depth_ros.weights import DEFAULT_MONO_MODEL

pytestmark = pytest.mark.slow  # renders nine engine frames

# The model under test: the bundled mono model.
MODEL_PATH = DEFAULT_MONO_MODEL
# Median relative difference of metric depth between two cameras on the pixels both see.
CONSISTENCY_BOUND = 0.05
# Engine scenes (the test split's seeds start at 2000: none of these was trained on).
SEEDS = (2000, 2001, 2002)
KITTI = PinholeCamera(721.5, 721.5, 609.6, 172.9, 1242, 375)
VGA = PinholeCamera(500.0, 500.0, 319.5, 239.5, 640, 480)
KITTI_HALF = KITTI.resized(621, 188)
# Measured with the bundled fixed-policy model (v2), onnxruntime, seeds 2000-2002: the median
# relative difference to the KITTI camera's depth.
FIXED_POLICY_FIGURES = {"vga": 1.26, "kitti_half": 0.004}


def render_views(seed: int) -> dict[str, tuple[PinholeCamera, np.ndarray, np.ndarray]]:
    """name -> (camera, RGB, true depth) of one scene from one pose: KITTI and VGA rendered,
    the half-size frame downscaled from the KITTI render (as a user would resize)."""
    plan = plan_drive(1, seed=seed)
    scene, pose = plan.scene_at(0), plan.poses[0]
    views = {}
    for name, camera in (("kitti", KITTI), ("vga", VGA)):
        rgb, depth = render_frame(scene, pose, camera, noise_seed=0)
        views[name] = (camera, rgb, depth)
    rgb, depth = views["kitti"][1:]
    size = (KITTI_HALF.width, KITTI_HALF.height)
    views["kitti_half"] = (KITTI_HALF, cv2.resize(rgb, size, interpolation=cv2.INTER_AREA),
                           render_frame(scene, pose, KITTI_HALF, noise_seed=0)[1])
    return views


def matched_pixels(source: PinholeCamera, source_depth: np.ndarray, target: PinholeCamera,
                   target_depth: np.ndarray, max_depth_m: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices of source pixels and of the target pixels that see the same surface
    point: lifted with the true depth, projected (same pose), nearest pixel, kept where both
    true depths agree within 1 % (no depth edge between) and lie inside the model's range."""
    v, u = np.mgrid[0:source.height, 0:source.width]
    z = source_depth
    x = (u - source.cx) / source.fx * z
    y = (v - source.cy) / source.fy * z
    with np.errstate(invalid="ignore", divide="ignore"):
        tu = np.rint(target.fx * x / z + target.cx)
        tv = np.rint(target.fy * y / z + target.cy)
    inside = (np.isfinite(z) & (z <= max_depth_m) & (tu >= 0) & (tu < target.width)
              & (tv >= 0) & (tv < target.height))
    src = np.flatnonzero(inside)
    tgt = (tv[inside] * target.width + tu[inside]).astype(np.int64)
    agree = np.abs(target_depth.ravel()[tgt] - z.ravel()[src]) <= 0.01 * z.ravel()[src]
    return src[agree], tgt[agree]


def consistency(estimator: DepthEstimator, seeds: tuple[int, ...] = SEEDS
                ) -> dict[str, float]:
    """Median relative difference |d_cam − d_kitti| / d_kitti over matched pixels of every
    seed, for ``vga`` and ``kitti_half``; and each camera's AbsRel against the truth."""
    diffs: dict[str, list[np.ndarray]] = {"vga": [], "kitti_half": []}
    errors: dict[str, list[np.ndarray]] = {"kitti": [], "vga": [], "kitti_half": []}
    max_depth = estimator.metadata.max_depth_m
    for seed in seeds:
        views = render_views(seed)
        preds = {name: estimator.predict(rgb, fx=camera.fx)
                 for name, (camera, rgb, _) in views.items()}
        for name, (_, _, truth) in views.items():
            good = np.isfinite(truth) & (truth <= max_depth) & np.isfinite(preds[name])
            errors[name].append(np.abs(preds[name][good] - truth[good]) / truth[good])
        kitti_camera, _, kitti_truth = views["kitti"]
        for name in diffs:
            camera, _, truth = views[name]
            src, tgt = matched_pixels(camera, truth, kitti_camera, kitti_truth, max_depth)
            mine, ref = preds[name].ravel()[src], preds["kitti"].ravel()[tgt]
            diffs[name].append(np.abs(mine - ref) / ref)
    out = {name: float(np.median(np.concatenate(d))) for name, d in diffs.items()}
    out.update({f"abs_rel_{name}": float(np.mean(np.concatenate(e)))
                for name, e in errors.items()})
    return out


def test_matching_pixels_through_the_truth_is_exact() -> None:
    """The matching itself: matched pixels' true depths agree far inside the 5 % bound (the
    nearest pixel is up to half a pixel off: 0.2 % median on the road) and the overlap is a
    good part of each frame."""
    views = render_views(SEEDS[0])
    kitti_camera, _, kitti_truth = views["kitti"]
    for name in ("vga", "kitti_half"):
        camera, _, truth = views[name]
        src, tgt = matched_pixels(camera, truth, kitti_camera, kitti_truth, 80.0)
        a, b = truth.ravel()[src], kitti_truth.ravel()[tgt]
        assert np.median(np.abs(a - b) / b) < 0.005
        assert len(src) > 0.2 * np.isfinite(truth).sum()


@pytest.fixture(scope="module")
def bundled_estimator() -> DepthEstimator:
    if not MODEL_PATH.is_file():
        pytest.skip(f"{MODEL_PATH} is not here")
    return DepthEstimator(MODEL_PATH, backend="onnxruntime", num_threads=2)


def test_the_same_scene_gives_the_same_depth_through_any_camera(
        bundled_estimator: DepthEstimator, request: pytest.FixtureRequest) -> None:
    """The issue's bound for the bundled model. A ``fixed`` model squeezes the VGA frame
    into its KITTI-shaped input and misses it by ``FIXED_POLICY_FIGURES``: a strict xfail
    until the canonical model is bundled (it then turns into the plain assertion)."""
    if bundled_estimator.resize_policy == "fixed":
        request.applymarker(pytest.mark.xfail(
            strict=True, reason=f"the bundled model has the fixed resize policy (measured: "
                                f"{FIXED_POLICY_FIGURES})"))
    figures = consistency(bundled_estimator)
    assert figures["vga"] <= CONSISTENCY_BOUND, figures
    assert figures["kitti_half"] <= CONSISTENCY_BOUND, figures
