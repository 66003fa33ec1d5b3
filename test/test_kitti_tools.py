"""An existing KITTI tool reads the data engine's drives unchanged.

pykitti (the raw-data loader most KITTI code builds on) parses the three calibration files, the
timestamps, the OXTS packets, both colour cameras and the velodyne scans of an engine drive
with no option or patch; what it reads must equal what the engine wrote and what our own
readers read.
"""

from __future__ import annotations

import numpy as np
import pykitti  # a test requirement (requirements/ci.txt): no skip, CI must have it
import pytest

from depth_ros import kitti
from depth_ros.kitti import RawDrive
from depth_ros.synthetic import write_synthetic_drive

DATE, DRIVE, FRAMES = "2011_09_26", 7, 3


@pytest.fixture(scope="module")
def drives(tmp_path_factory):
    root = tmp_path_factory.mktemp("kitti_tools")
    path = write_synthetic_drive(root, num_frames=FRAMES, seed=21, drive=DRIVE, date=DATE,
                                 progress=False)
    return pykitti.raw(str(root), DATE, f"{DRIVE:04d}"), RawDrive(path), path


def test_pykitti_finds_every_sensor(drives):
    theirs, _, _ = drives
    assert len(theirs.timestamps) == FRAMES
    for files in (theirs.cam2_files, theirs.cam3_files, theirs.velo_files, theirs.oxts_files):
        assert len(files) == FRAMES


def test_pykitti_images_and_scans_are_the_written_ones(drives):
    theirs, ours, path = drives
    for i in range(FRAMES):
        left, right = (np.asarray(im) for im in theirs.get_rgb(i))
        np.testing.assert_array_equal(left, ours.rgb(i))
        np.testing.assert_array_equal(
            right, kitti.read_rgb_png(path / "image_03" / "data" / f"{kitti.frame_name(i)}.png"))
        np.testing.assert_array_equal(theirs.get_velo(i), ours.velodyne(i))
        assert len(ours.velodyne(i)) > 50_000  # a real sweep, not an empty file


def test_pykitti_calibration_is_ours(drives):
    theirs, ours, _ = drives
    calib = ours.calibration()
    np.testing.assert_allclose(theirs.calib.K_cam2, calib.K, rtol=1e-6)
    # KITTI's stereo baseline from the rectified projections.
    assert theirs.calib.b_rgb == pytest.approx(0.54, abs=2e-3)
    # pykitti's velodyne → camera 02 chain projects points where ours does.
    scan = ours.velodyne(1)
    ahead = scan[scan[:, 0] > 5.0][::97, :3]
    homog = np.c_[ahead, np.ones(len(ahead))]
    cam2 = (theirs.calib.T_cam2_velo @ homog.T)[:3]
    uv_theirs = (theirs.calib.K_cam2 @ cam2)[:2] / cam2[2]
    uvw = calib.velo_to_image() @ homog.T
    np.testing.assert_allclose(uv_theirs, uvw[:2] / uvw[2], atol=1e-3)


def test_pykitti_oxts_poses_follow_the_drive(drives):
    theirs, _, path = drives
    poses = np.array([packet.T_w_imu for packet in theirs.oxts])
    step = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)
    speed = np.array([np.hypot(packet.packet.vf, packet.packet.vl) for packet in theirs.oxts])
    period = np.diff(kitti.read_timestamps(path / "oxts" / "timestamps.txt"))
    # Positions integrated by pykitti from lat/lon/alt agree with the velocities in the
    # packets: the engine's globe placement and its OXTS fields describe one motion.
    np.testing.assert_allclose(step, 0.5 * (speed[1:] + speed[:-1]) * period, rtol=0.03)
    assert np.all(step > 0.1)  # the car moves at a plausible speed
    assert theirs.timestamps[1] > theirs.timestamps[0]
