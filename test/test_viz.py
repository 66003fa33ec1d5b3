"""Pictures: colourised depth and bird's-eye views."""

from __future__ import annotations

import numpy as np
import pytest

from depth_ros.viz import birds_eye_view, colorize_depth, ratio_overlay, stack_panels


def test_colorize_depth_near_red_far_blue_invalid_black():
    depth = np.array([[1.0, 80.0, np.nan, 0.0]], np.float32)
    rgb = colorize_depth(depth, 1.0, 80.0)
    assert rgb.shape == (1, 4, 3) and rgb.dtype == np.uint8
    near, far = rgb[0, 0].astype(int), rgb[0, 1].astype(int)
    assert near[0] > near[2] and far[2] > far[0]
    assert rgb[0, 2].tolist() == [0, 0, 0] and rgb[0, 3].tolist() == [0, 0, 0]


def test_colorize_depth_auto_range_and_all_invalid():
    depth = np.linspace(2, 50, 100, dtype=np.float32).reshape(10, 10)
    assert len(np.unique(colorize_depth(depth).reshape(-1, 3), axis=0)) > 20
    assert not colorize_depth(np.full((3, 3), np.nan)).any()


def test_birds_eye_view_places_points():
    points = np.array([[0.0, 0.0, 10.0], [5.0, -2.0, 30.0], [np.nan, 0, 1], [0, 0, -5]])
    bev = birds_eye_view(points, metres_per_px=0.5)
    assert bev.shape == (120, 80, 3)
    # (x=0, z=10) is at column 40, row 119 - 20; (x=5, z=30) at column 50, row 59.
    assert bev[99, 40].any() and bev[59, 50].any()
    assert not bev[110, 10].any()


def test_stack_panels_resizes_to_first_width():
    panel = stack_panels([np.zeros((10, 40, 3), np.uint8), np.zeros((10, 20, 3), np.uint8)])
    assert panel.shape == (30, 40, 3)


def test_ratio_overlay_colours_too_far_red_too_near_blue_right_white():
    rgb = np.full((6, 8, 3), 100, np.uint8)
    reference = np.zeros((6, 8), np.float32)
    reference[1, 1], reference[1, 4], reference[4, 1], reference[4, 4] = 10, 10, 10, 10
    depth = np.full((6, 8), 10.0, np.float32)
    depth[1, 4] = 20.0   # too far: log2 = 1, saturates
    depth[4, 1] = 5.0    # too near
    depth[4, 4] = 11.0   # a little far: pink
    out = ratio_overlay(rgb, depth, reference, max_log2=0.5, dot_px=1)
    assert out[1, 1].tolist() == [255, 255, 255]
    assert out[1, 4].tolist() == [255, 0, 0] and out[4, 1].tolist() == [0, 0, 255]
    assert out[4, 4, 0] == 255 and 0 < out[4, 4, 2] < 255
    assert out[0, 0].tolist() == [45, 45, 45]  # no reference: the dimmed image
    depth[2, 2] = 20.0  # where the dot at (1, 1) grows to: compared with the depth there
    grown = ratio_overlay(rgb, depth, reference, dot_px=2)
    assert grown[2, 2].tolist() == [255, 0, 0] and grown[1, 1].tolist() == [255, 255, 255]
    assert grown[3, 3].tolist() == [45, 45, 45]
    with pytest.raises(ValueError, match="same size"):
        ratio_overlay(rgb, depth[:5], reference)
