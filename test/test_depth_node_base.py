"""The depth nodes' shared helpers without a ROS graph: decimated clouds, the newest-only
mailbox."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from std_msgs.msg import Header

from depth_ros.geometry import PinholeCamera
from depth_ros.inference.processor import decimated_intrinsics
from depth_ros.ros.conversions import depth_to_pointcloud2, pointcloud2_to_array
from depth_ros.ros.depth_node_base import NewestSlot


@pytest.mark.parametrize("step", [2, 3, 4])
def test_decimated_cloud_is_every_step_th_point_of_the_full_cloud(step):
    camera = PinholeCamera(fx=721.5, fy=720.0, cx=609.6, cy=172.9, width=1242, height=375)
    rng = np.random.default_rng(step)
    depth = rng.uniform(1.0, 80.0, (camera.height, camera.width)).astype(np.float32)
    depth[rng.random(depth.shape) < 0.1] = np.nan
    header = Header(frame_id="cam")
    full = pointcloud2_to_array(depth_to_pointcloud2(depth, camera.K, header), ("x", "y", "z"))
    full = full.reshape(camera.height, camera.width, 3)[::step, ::step]
    small_depth = np.ascontiguousarray(depth[::step, ::step])
    cloud = depth_to_pointcloud2(small_depth, decimated_intrinsics(camera.K, step), header)
    assert (cloud.height, cloud.width) == small_depth.shape
    points = pointcloud2_to_array(cloud, ("x", "y", "z")).reshape(*small_depth.shape, 3)
    np.testing.assert_allclose(points, full, rtol=2e-6, atol=1e-5, equal_nan=True)
    assert np.isnan(points[np.isnan(small_depth)]).all()


def test_newest_slot_keeps_the_newest_and_counts_the_rest():
    slot = NewestSlot()
    assert slot.put(1) is False
    assert slot.put(2) is True and slot.put(3) is True
    assert slot.take() == 3 and slot.dropped == 2
    taken = []
    consumer = threading.Thread(target=lambda: taken.append(slot.take()))
    consumer.start()
    slot.close()
    consumer.join(timeout=5)
    assert taken == [None]
