"""Synthetic drives: a sensor rig moving down one generated street, written as a KITTI raw drive.

The rig is KITTI's: colour cameras 02 and 03 (0.54 m baseline), the velodyne and the OXTS unit
at their 2011_09_26 extrinsics (``rig.py``), all moving with the trajectory of camera 02. Each
drive has its own intrinsics drawn around KITTI's (``drive_camera``), and the lane traffic
drives: every frame is rendered and swept from the scene at the frame's time.

Camera profiles: ``kitti`` (the default) draws each drive's camera within ±5 % of KITTI's;
``varied`` draws a sensor size (4:3, 16:9 or KITTI-wide), a horizontal field of view from
45° to 100° and a camera height from 1.3 m to 1.9 m, with the velodyne on KITTI's mount above
it. An explicit ``camera`` shows the seed's scene, trajectory and traffic through that camera:
the renderer casts one ray per pixel centre, so two cameras see exactly the same geometry.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from tqdm import tqdm

from depth_ros import kitti
from depth_ros.geometry import PinholeCamera, project_velodyne
from depth_ros.synthetic import oxts, rig
from depth_ros.synthetic.lidar import LidarModel, cast_lidar
from depth_ros.synthetic.pose import CameraPose
from depth_ros.synthetic.procedural import TRAFFIC_SPEED_RANGE_MPS, generate_street
from depth_ros.synthetic.render import MAX_DEPTH_M, render_frame
from depth_ros.synthetic.scene import StreetScene

FRAME_PERIOD_S = 0.1
CAMERA_HEIGHT_M = 1.65
# KITTI's rectified colour camera (2011_09_26).
KITTI_CAMERA = PinholeCamera(721.5377, 721.5377, 609.5593, 172.854, 1242, 375)
# Each drive's camera is drawn around it (at 1242×375, then resized to the drive's size):
# KITTI's raw dates have fx = fy from 707 to 721.5 px, cx 601–610 and cy 172–185; the focal
# range is ±5 % around 2011_09_26's, so models also meet cameras a little off KITTI's.
FOCAL_RANGE_PX = (0.95 * KITTI_CAMERA.fx, 1.05 * KITTI_CAMERA.fx)
PRINCIPAL_X_RANGE_PX = (600.0, 613.0)
PRINCIPAL_Y_RANGE_PX = (169.0, 188.0)
VIEW_DISTANCE_M = 400.0
PARAMS_FILE = "depth_ros_synthetic.json"
POSES_FILE = "poses.txt"
# Bump when the renderer's output changes, so drives written by an older one are regenerated.
ENGINE_VERSION = 4
CAMERA_INDEX = 2
RIGHT_CAMERA_INDEX = 3
# The velodyne's sweep runs from behind the car round to behind it again in one frame period;
# it faces forward (and the cameras fire) half-way through.
SWEEP_PERIOD_S = FRAME_PERIOD_S
# Frames rendered at once by default: two threads get most of the gain (see _render_into).
MAX_RENDER_THREADS = 2
# With motion skew, the sweep is cast from this many poses (11.25° of azimuth, 3 ms each).
SKEW_SECTORS = 32
_STREAM_TRAJECTORY = 5
_STREAM_GEO = 7
_STREAM_INTRINSICS = 9
_STREAM_VARIED_CAMERA = 11
CAMERA_PROFILES = ("kitti", "varied")
# The varied profile's sensors (width, height): 4:3, 16:9 and KITTI-like wide. Each drive
# draws one, a horizontal field of view (fx = fy: square pixels; wide lenses included, as
# rectified), a principal point within ±2 % of the image size of its centre and a camera
# height; the LiDAR keeps KITTI's mount relative to the camera (``rig.py``: 0.08 m above,
# 0.27 m behind), so it rises and falls with it and its scans project as on KITTI.
VARIED_SENSOR_SIZES = ((640, 480), (1024, 768), (1280, 720), (960, 540), (1242, 375))
VARIED_HFOV_RANGE_DEG = (45.0, 100.0)
VARIED_PRINCIPAL_OFFSET = 0.02
VARIED_CAMERA_HEIGHT_RANGE_M = (1.3, 1.9)
# Smallest image side a drive may have: below this nothing in a frame is recognisable.
MIN_IMAGE_SIDE_PX = 8
# Added to the frame index for camera 03's sensor noise, so it never repeats camera 02's.
_RIGHT_NOISE_OFFSET = 1 << 20


@dataclass(frozen=True)
class Trajectory:
    """A smooth drive along the ego lane: constant speed plus slow lateral, yaw, pitch and
    roll wander (amplitudes in metres and radians, periods in seconds)."""

    speed_mps: float = 10.0
    lateral_m: float = 0.0
    lateral_period_s: float = 10.0
    lateral_phase: float = 0.0
    yaw_rad: float = 0.0
    yaw_period_s: float = 4.0
    yaw_phase: float = 0.0
    pitch_rad: float = 0.0
    pitch_period_s: float = 1.3
    roll_rad: float = 0.0
    roll_period_s: float = 1.7
    bounce_m: float = 0.0
    height_m: float = CAMERA_HEIGHT_M

    @classmethod
    def generate(cls, seed: int) -> Trajectory:
        """The trajectory of ``seed``: 8–12 m/s, ≤ 0.3 m lateral and ≤ 0.6° yaw wander."""
        rng = np.random.default_rng([seed, _STREAM_TRAJECTORY])
        return cls(
            speed_mps=float(rng.uniform(8.0, 12.0)),
            lateral_m=float(rng.uniform(0.0, 0.3)),
            lateral_period_s=float(rng.uniform(6.0, 14.0)),
            lateral_phase=float(rng.uniform(0, 2 * np.pi)),
            yaw_rad=float(np.radians(rng.uniform(0.0, 0.6))),
            yaw_period_s=float(rng.uniform(2.0, 5.0)),
            yaw_phase=float(rng.uniform(0, 2 * np.pi)),
            pitch_rad=float(np.radians(rng.uniform(0.0, 0.3))),
            pitch_period_s=float(rng.uniform(0.8, 2.0)),
            roll_rad=float(np.radians(rng.uniform(0.0, 0.2))),
            roll_period_s=float(rng.uniform(1.0, 3.0)),
            bounce_m=float(rng.uniform(0.0, 0.01)),
        )

    def pose(self, time_s: float) -> CameraPose:
        """Camera pose ``time_s`` seconds into the drive (it starts at x = 0)."""
        w_lat = 2 * np.pi / self.lateral_period_s
        lateral = self.lateral_m * np.sin(w_lat * time_s + self.lateral_phase)
        lateral_rate = self.lateral_m * w_lat * np.cos(w_lat * time_s + self.lateral_phase)
        # Heading follows the lateral drift; the wobble on top is steering/suspension.
        yaw = np.arctan2(lateral_rate, self.speed_mps) + self.yaw_rad * np.sin(
            2 * np.pi * time_s / self.yaw_period_s + self.yaw_phase)
        pitch = self.pitch_rad * np.sin(2 * np.pi * time_s / self.pitch_period_s)
        roll = self.roll_rad * np.sin(2 * np.pi * time_s / self.roll_period_s)
        height = self.height_m + self.bounce_m * np.sin(2 * np.pi * time_s / 0.7)
        return CameraPose.from_euler((self.speed_mps * time_s, lateral, height), yaw, pitch, roll)


@dataclass(frozen=True, eq=False)
class DrivePlan:
    """Everything needed to render a drive: scene, camera, one pose and time per frame."""

    scene: StreetScene
    camera: PinholeCamera
    trajectory: Trajectory
    poses: tuple[CameraPose, ...]
    timestamps: np.ndarray

    @property
    def times_s(self) -> np.ndarray:
        """Frame times in seconds into the drive (the trajectory's clock)."""
        # POSIX stamps near 1.3e9 s resolve ~0.2 µs; to the µs they are the planned times.
        return np.round(self.timestamps - self.timestamps[0], 6)

    def scene_at(self, index: int) -> StreetScene:
        """The scene as frame ``index`` sees it: moving cars where they are at its time."""
        return self.scene.at_time(float(self.times_s[index]))


def drive_camera(seed: int, width: int = 1242, height: int = 375) -> PinholeCamera:
    """The rectified camera of ``seed``'s drive, for images of ``width`` × ``height``.

    fx = fy, cx and cy are drawn at KITTI's 1242×375 from ``FOCAL_RANGE_PX``,
    ``PRINCIPAL_X_RANGE_PX`` and ``PRINCIPAL_Y_RANGE_PX`` (the seed's own stream, so no other
    draw shifts them), then scaled to the image size as a resize would.
    """
    rng = np.random.default_rng([seed, _STREAM_INTRINSICS])
    focal = float(rng.uniform(*FOCAL_RANGE_PX))
    full = PinholeCamera(focal, focal, float(rng.uniform(*PRINCIPAL_X_RANGE_PX)),
                         float(rng.uniform(*PRINCIPAL_Y_RANGE_PX)), KITTI_CAMERA.width,
                         KITTI_CAMERA.height)
    return full if (width, height) == (full.width, full.height) else full.resized(width, height)


def _varied_draw(seed: int) -> tuple[PinholeCamera, float]:
    """(camera, camera height in metres) of ``seed``'s drive under the ``varied`` profile."""
    rng = np.random.default_rng([seed, _STREAM_VARIED_CAMERA])
    width, height = VARIED_SENSOR_SIZES[int(rng.integers(len(VARIED_SENSOR_SIZES)))]
    hfov = np.radians(rng.uniform(*VARIED_HFOV_RANGE_DEG))
    focal = float(width / 2 / np.tan(hfov / 2))
    # Pixel centres are at integers: the image centre is ((w - 1) / 2, (h - 1) / 2).
    cx = (width - 1) / 2 + float(rng.uniform(-1, 1)) * VARIED_PRINCIPAL_OFFSET * width
    cy = (height - 1) / 2 + float(rng.uniform(-1, 1)) * VARIED_PRINCIPAL_OFFSET * height
    camera_height = float(rng.uniform(*VARIED_CAMERA_HEIGHT_RANGE_M))
    return PinholeCamera(focal, focal, cx, cy, width, height), camera_height


def varied_drive_camera(seed: int) -> PinholeCamera:
    """The camera of ``seed``'s drive under the ``varied`` profile (its own size and lens)."""
    return _varied_draw(seed)[0]


def drive_camera_height(seed: int, camera_profile: str = "kitti") -> float:
    """Height of ``seed``'s camera above the road in metres (without the trajectory's bounce):
    ``CAMERA_HEIGHT_M`` for the kitti profile, drawn for the varied one."""
    _check_profile(camera_profile)
    return CAMERA_HEIGHT_M if camera_profile == "kitti" else _varied_draw(seed)[1]


def _check_profile(camera_profile: str) -> None:
    if camera_profile not in CAMERA_PROFILES:
        raise ValueError(f"camera_profile must be one of {', '.join(CAMERA_PROFILES)}, "
                         f"got {camera_profile!r}")


def check_camera(camera: PinholeCamera) -> None:
    """Raise ``ValueError`` unless ``camera`` can render a drive: positive finite focal
    lengths, a finite principal point and both image sides at least ``MIN_IMAGE_SIDE_PX``."""
    values = (camera.fx, camera.fy, camera.cx, camera.cy)
    if not all(np.isfinite(v) for v in values):
        raise ValueError(f"camera intrinsics must be finite, got fx, fy, cx, cy = {values}")
    if camera.fx <= 0 or camera.fy <= 0:
        raise ValueError(f"camera focal lengths must be positive, got fx={camera.fx}, "
                         f"fy={camera.fy}")
    if int(camera.width) != camera.width or int(camera.height) != camera.height:
        raise ValueError(f"camera image size must be whole pixels, got "
                         f"{camera.width}x{camera.height}")
    if min(camera.width, camera.height) < MIN_IMAGE_SIDE_PX:
        raise ValueError(f"image size {camera.width}x{camera.height} is too small (each side "
                         f"at least {MIN_IMAGE_SIDE_PX} px)")


def resolve_camera(seed: int, width: int | None = None, height: int | None = None,
                   camera: PinholeCamera | None = None, camera_profile: str = "kitti"
                   ) -> tuple[PinholeCamera, float]:
    """(camera, camera height in metres) of ``seed``'s drive.

    An explicit ``camera`` wins (``width``/``height``, if given, must be its size; the
    profile must be ``kitti``, whose rig height it keeps). The ``kitti`` profile draws
    around KITTI's camera and resizes it to ``width`` × ``height`` (default 1242×375); the
    ``varied`` profile draws the size itself, so ``width``/``height`` must be left out.
    """
    _check_profile(camera_profile)
    if camera is not None:
        if camera_profile != "kitti":
            raise ValueError("give an explicit camera or camera_profile='varied', not both")
        if (width is not None and width != camera.width) or (
                height is not None and height != camera.height):
            raise ValueError(f"width/height {width}x{height} disagree with the camera's "
                             f"{camera.width}x{camera.height}; leave them out")
        check_camera(camera)
        return camera, CAMERA_HEIGHT_M
    if camera_profile == "varied":
        if width is not None or height is not None:
            raise ValueError("the varied camera profile draws each drive's image size; "
                             "leave width/height out")
        return _varied_draw(seed)
    width = KITTI_CAMERA.width if width is None else width
    height = KITTI_CAMERA.height if height is None else height
    if width < MIN_IMAGE_SIDE_PX or height < MIN_IMAGE_SIDE_PX:
        raise ValueError(f"image size {width}x{height} is too small")
    return drive_camera(seed, width, height), CAMERA_HEIGHT_M


def _start_time_s(date: str, drive: int) -> float:
    """Early afternoon UTC of ``date`` (KITTI's ``YYYY_MM_DD``), later for later drives."""
    try:
        day = datetime.strptime(date, "%Y_%m_%d").replace(tzinfo=timezone.utc)
    except ValueError as exc:
        raise ValueError(f"date must look like 2011_09_26, got {date!r}") from exc
    return day.timestamp() + 13 * 3600 + 120 * drive


def plan_drive(num_frames: int, seed: int = 0, width: int | None = None,
               height: int | None = None, date: str = "2011_09_26", drive: int = 1, *,
               camera: PinholeCamera | None = None, camera_profile: str = "kitti"
               ) -> DrivePlan:
    """The scene, camera, poses and timestamps of a synthetic drive (nothing is rendered).

    The camera and its height come from ``resolve_camera``; the scene, trajectory and traffic
    depend on ``seed`` alone, so one seed seen through two cameras shows the same street.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    camera, camera_height = resolve_camera(seed, width, height, camera, camera_profile)
    trajectory = Trajectory.generate(seed)
    if camera_height != trajectory.height_m:
        trajectory = replace(trajectory, height_m=camera_height)
    times = np.arange(num_frames) * FRAME_PERIOD_S
    travel = trajectory.speed_mps * times[-1]
    # Traffic moves: more street at both ends, so oncoming cars keep coming into view ahead
    # and faster ones from behind for the whole drive. Ego-lane cars start beyond where the
    # ego ends and never reverse (procedural._add_lane_cars): it never reaches one.
    reach = TRAFFIC_SPEED_RANGE_MPS[1] * times[-1]
    scene = generate_street(seed, x_min_m=-40.0 - reach,
                            x_max_m=travel + VIEW_DISTANCE_M + reach,
                            ego_lane_clear_until_m=travel + 10.0)
    return DrivePlan(scene, camera, trajectory, tuple(trajectory.pose(t) for t in times),
                     _start_time_s(date, drive) + times)


def drive_directory(root: str | os.PathLike, date: str = "2011_09_26", drive: int = 1) -> Path:
    """``<root>/<date>/<date>_drive_<NNNN>_sync``."""
    return Path(root) / date / f"{date}_drive_{drive:04d}_sync"


def _parameters(num_frames: int, seed: int, drive: int, date: str, width: int,
                height: int, stereo: bool, lidar: bool, azimuth_decimation: int,
                lidar_motion_skew: bool, ideal_lidar: bool = False,
                camera: PinholeCamera | None = None, camera_profile: str = "kitti"
                ) -> dict:
    params = {"engine_version": ENGINE_VERSION, "num_frames": num_frames, "seed": seed,
              "drive": drive, "date": date, "width": width, "height": height, "stereo": stereo,
              "lidar": lidar, "azimuth_decimation": azimuth_decimation,
              "lidar_motion_skew": lidar_motion_skew, "ideal_lidar": ideal_lidar}
    # Only when not the default: a kitti drive's parameters, and so whether an existing drive
    # counts as complete, are what they were before cameras could be chosen.
    if camera_profile != "kitti":
        params["camera_profile"] = camera_profile
    if camera is not None:
        params["camera"] = [float(camera.fx), float(camera.fy), float(camera.cx),
                            float(camera.cy), int(camera.width), int(camera.height)]
    return params


def _frame_dirs(params: dict[str, int | str | bool]) -> list[tuple[str, str]]:
    """(directory inside the drive, file suffix) of every per-frame output of a drive."""
    cams = [CAMERA_INDEX] + ([RIGHT_CAMERA_INDEX] if params.get("stereo") else [])
    dirs = []
    for index in cams:
        cam = f"image_{index:02d}"
        dirs += [(f"{cam}/data", ".png"), (f"proj_depth/groundtruth/{cam}", ".png")]
        if params.get("lidar"):
            dirs.append((f"proj_depth/velodyne_raw/{cam}", ".png"))
    if params.get("lidar"):
        dirs += [("velodyne_points/data", ".bin"), ("oxts/data", ".txt")]
    return dirs


def _is_complete(drive_dir: Path, params: dict[str, int | str]) -> bool:
    """True if ``drive_dir`` holds a finished drive written with exactly ``params``."""
    try:
        stored = json.loads((drive_dir / PARAMS_FILE).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(stored, dict) or any(stored.get(k) != v for k, v in params.items()):
        return False
    n = params["num_frames"]
    cam = f"image_{CAMERA_INDEX:02d}"
    return (all(len(list((drive_dir / sub).glob(f"*{suffix}"))) == n
                for sub, suffix in _frame_dirs(params))
            and (drive_dir / cam / "timestamps.txt").is_file()
            and (drive_dir / "calib_cam_to_cam.txt").is_file())


def _work_name(drive_dir: Path, tag: str) -> str:
    # Hidden (so find_drives skips it) and owned: host and pid say whether its writer lives.
    return f".{drive_dir.name}.{tag}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _remove_abandoned(drive_dir: Path) -> None:
    """Delete this drive's work directories left by dead processes on this host."""
    host = socket.gethostname()
    for path in drive_dir.parent.glob(f".{drive_dir.name}.*-*"):
        tag, _, rest = path.name[len(drive_dir.name) + 2:].partition("-")
        owner, _, pid = rest.rpartition("-")[0].rpartition("-")
        if tag not in ("partial", "old") or owner != host or not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:
            pass  # alive, someone else's


def _pose_lines(poses: tuple[CameraPose, ...]) -> str:
    """Poses in the KITTI odometry format: camera i to camera 0, 3×4 row-major per line."""
    first_inv = np.linalg.inv(poses[0].matrix)
    return "".join(" ".join(f"{v:.9e}" for v in (first_inv @ p.matrix)[:3].ravel()) + "\n"
                   for p in poses)


@dataclass(frozen=True)
class _Outputs:
    """What a drive holds beyond camera 02: camera 03, the velodyne and OXTS."""

    stereo: bool
    lidar: bool
    lidar_model: LidarModel
    motion_skew: bool = False


def _calibrations(plan: DrivePlan, date: str) -> dict[str, dict[str, np.ndarray | str]]:
    """The three KITTI calibration files of a drive, by file name."""
    calib_time = datetime.strptime(date, "%Y_%m_%d").strftime("%d-%b-%Y 12:00:00")
    return {"calib_cam_to_cam.txt": kitti.cam_to_cam_calibration(plan.camera,
                                                                 calib_time=calib_time),
            "calib_velo_to_cam.txt": rig.velo_to_cam_calibration(),
            "calib_imu_to_velo.txt": rig.imu_to_velo_calibration()}


def _geo_reference(seed: int) -> tuple[float, float, float]:
    """(heading of the street, start latitude, start longitude) of ``seed``'s drive."""
    rng = np.random.default_rng([seed, _STREAM_GEO])
    # Within ~2 km of the start point: streets of Karlsruhe, not the Black Forest.
    return (float(rng.uniform(-np.pi, np.pi)), oxts.START_LAT_DEG + rng.uniform(-0.02, 0.02),
            oxts.START_LON_DEG + rng.uniform(-0.03, 0.03))


def oxts_packets_of(plan: DrivePlan) -> np.ndarray:
    """The drive's OXTS packets (N×30), one per frame, for the rig's OXTS unit."""
    heading, lat, lon = _geo_reference(plan.scene.seed)

    def imu_to_world(t: float) -> np.ndarray:
        return rig.sensor_to_world(plan.trajectory.pose(t), CAMERA_INDEX, "imu")

    return oxts.oxts_packets(imu_to_world, plan.times_s, heading, lat, lon)


def _render_one(work: Path, plan: DrivePlan, calibs: dict, outputs: _Outputs,
                index: int) -> None:
    """Render and write every per-frame file of frame ``index``."""
    pose = plan.poses[index]
    # The cameras fire when the velodyne faces forward, at the frame time: both see this.
    scene = plan.scene_at(index)
    name = kitti.frame_name(index)
    cam_calib = calibs["calib_cam_to_cam.txt"]
    cams = [(CAMERA_INDEX, pose, index)]
    if outputs.stereo:
        cams.append((RIGHT_CAMERA_INDEX, rig.camera_pose_of(pose, CAMERA_INDEX,
                                                            RIGHT_CAMERA_INDEX),
                     _RIGHT_NOISE_OFFSET + index))
    for cam_index, cam_pose, noise_seed in cams:
        rgb, depth = render_frame(scene, cam_pose, plan.camera, noise_seed=noise_seed)
        cam = f"image_{cam_index:02d}"
        kitti.write_rgb_png(work / cam / "data" / f"{name}.png", rgb)
        kitti.write_depth_png(work / "proj_depth" / "groundtruth" / cam / f"{name}.png", depth)
    if not outputs.lidar:
        return
    if outputs.motion_skew:
        # One pose and scene time per sector at its firing time: the sweep starts behind the
        # car half a period before the frame time and faces forward at it.
        fractions = (np.arange(SKEW_SECTORS) + 0.5) / SKEW_SECTORS - 0.5
        sector_times = plan.times_s[index] + fractions * SWEEP_PERIOD_S
        velo_to_world = np.stack([
            rig.sensor_to_world(plan.trajectory.pose(t), CAMERA_INDEX, "velo")
            for t in sector_times])
        scan = cast_lidar(plan.scene, velo_to_world, outputs.lidar_model, noise_seed=index,
                          sector_times_s=sector_times)
    else:
        velo_to_world = rig.sensor_to_world(pose, CAMERA_INDEX, "velo")
        scan = cast_lidar(scene, velo_to_world, outputs.lidar_model, noise_seed=index)
    kitti.write_velodyne_bin(work / "velodyne_points" / "data" / f"{name}.bin", scan.points)
    velo_to_cam = rig.velo_to_cam_matrix()
    for cam_index, _, _ in cams:
        sparse = project_velodyne(scan.points, velo_to_cam, cam_calib["R_rect_00"],
                                  cam_calib[f"P_rect_{cam_index:02d}"], plan.camera.width,
                                  plan.camera.height)
        kitti.write_depth_png(work / "proj_depth" / "velodyne_raw" / f"image_{cam_index:02d}"
                              / f"{name}.png", sparse)


def _render_into(work: Path, plan: DrivePlan, calibs: dict, outputs: _Outputs,
                 progress: bool, threads: int) -> None:
    for file_name, calib in calibs.items():
        kitti.write_calib_file(work / file_name, calib)
    # Project the LiDAR through the files as written (7 significant digits), so velodyne_raw
    # is exactly what a reader of this drive's calibration gets from its scans.
    calibs = {file_name: kitti.read_calib_file(work / file_name) for file_name in calibs}
    bar = tqdm(total=len(plan.poses), disable=not progress,
               desc=f"synthetic {work.name.split('.')[1]}", unit="frame")
    # Frames are independent and numpy drops the GIL in the large array operations that
    # dominate a frame, so two threads come close to two processes without their start-up.
    pool = ThreadPoolExecutor(max_workers=max(1, threads))
    try:
        futures = [pool.submit(_render_one, work, plan, calibs, outputs, index)
                   for index in range(len(plan.poses))]
        for future in as_completed(futures):
            future.result()
            bar.update()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    cams = [CAMERA_INDEX] + ([RIGHT_CAMERA_INDEX] if outputs.stereo else [])
    for cam_index in cams:
        kitti.write_timestamps(work / f"image_{cam_index:02d}" / "timestamps.txt",
                               plan.timestamps)
    if outputs.lidar:
        velo = work / "velodyne_points"
        kitti.write_timestamps(velo / "timestamps.txt", plan.timestamps)
        kitti.write_timestamps(velo / "timestamps_start.txt",
                               plan.timestamps - SWEEP_PERIOD_S / 2)
        kitti.write_timestamps(velo / "timestamps_end.txt", plan.timestamps + SWEEP_PERIOD_S / 2)
        packets = oxts_packets_of(plan)
        for index, packet in enumerate(packets):
            kitti.write_text_lines(work / "oxts" / "data" / f"{kitti.frame_name(index)}.txt",
                                   [kitti.format_oxts_packet(packet)])
        kitti.write_timestamps(work / "oxts" / "timestamps.txt", plan.timestamps)
        kitti.write_text_lines(work / "oxts" / "dataformat.txt", [kitti.OXTS_DATAFORMAT])
    kitti.write_bytes_atomic(work / POSES_FILE, _pose_lines(plan.poses).encode())


def _install(work: Path, drive_dir: Path, params: dict[str, int | str]) -> None:
    """Move the finished work directory into place, replacing a stale drive if there is one."""
    try:
        os.rename(work, drive_dir)
        return
    except OSError:
        if _is_complete(drive_dir, params):  # a concurrent run with the same request won
            shutil.rmtree(work, ignore_errors=True)
            return
    old = drive_dir.with_name(_work_name(drive_dir, "old"))
    os.rename(drive_dir, old)
    os.rename(work, drive_dir)
    shutil.rmtree(old, ignore_errors=True)


def write_synthetic_drive(root: str | os.PathLike, num_frames: int = 20, seed: int = 0,
                          drive: int = 1, date: str = "2011_09_26", width: int | None = None,
                          height: int | None = None, progress: bool = True, *,
                          stereo: bool = True, lidar: bool = True, azimuth_decimation: int = 2,
                          lidar_motion_skew: bool = False, ideal_lidar: bool = False,
                          threads: int | None = None, camera: PinholeCamera | None = None,
                          camera_profile: str = "kitti") -> Path:
    """Render a synthetic drive and write it in the KITTI raw layout; return its directory.

    Writes ``<root>/<date>/calib_{cam_to_cam,velo_to_cam,imu_to_velo}.txt`` (copies also go
    into the drive directory, which ``KittiDrive`` reads first, so drives of other sizes under
    the same date stay right), ``image_02/data/*.png``, ``image_02/timestamps.txt`` (10 Hz),
    ``proj_depth/groundtruth/image_02/*.png`` (exact depth, 0 for sky and beyond 200 m),
    ``poses.txt`` (camera 02, KITTI odometry format) and ``depth_ros_synthetic.json`` (the
    parameters). With ``stereo`` the same for camera 03 (0.54 m to the right); with
    ``lidar`` the velodyne's ``velodyne_points/data/*.bin`` and timestamps (``timestamps``,
    ``_start``, ``_end``), its projections ``proj_depth/velodyne_raw/image_0X/*.png`` and the
    OXTS unit's ``oxts/data/*.txt``, ``timestamps.txt`` and ``dataformat.txt``.
    ``azimuth_decimation`` keeps every k-th of the LiDAR's 4000 azimuth steps (default 2:
    KITTI's ~120k points a sweep; 1 for the full 4000). The LiDAR is ``LidarModel.kitti``
    (per-beam calibration error, mixed-pixel returns at depth edges, range dropout, as real
    scans have them); ``ideal_lidar`` casts the ideal sensor instead. By default a
    sweep is taken at the frame time (motion-compensated); ``lidar_motion_skew`` casts it from
    the moving car instead and leaves it uncompensated, as KITTI's raw scans are (points a
    sweep apart, behind the car, disagree by the distance driven in 0.1 s). ``threads``
    frames are rendered at once (default: up to two, as cores allow; the output does not
    depend on it). ``camera`` (explicit intrinsics and size) or ``camera_profile`` (``kitti``,
    the default, at ``width`` × ``height``, default 1242×375; or ``varied``) choose the camera
    (``resolve_camera``); it is written to ``calib_cam_to_cam.txt`` and, with a varied
    profile's camera height, to ``depth_ros_synthetic.json``.
    The cameras and the velodyne see a frame's scene at the frame time, when
    the velodyne faces forward (with motion skew, each of its sectors at its own time).
    The drive is built in a hidden directory beside it and renamed into place when complete;
    a complete drive with the same parameters is returned without rendering anything.
    """
    if seed < 0 or drive < 0:
        raise ValueError(f"seed and drive must be non-negative, got {seed} and {drive}")
    lidar_model = (LidarModel(azimuth_decimation=azimuth_decimation) if ideal_lidar
                   else LidarModel.kitti(azimuth_decimation))
    outputs = _Outputs(stereo, lidar, lidar_model, lidar_motion_skew)
    drive_dir = drive_directory(root, date, drive)
    plan = plan_drive(num_frames, seed, width, height, date, drive, camera=camera,
                      camera_profile=camera_profile)
    params = _parameters(num_frames, seed, drive, date, plan.camera.width, plan.camera.height,
                         stereo, lidar, azimuth_decimation, lidar_motion_skew, ideal_lidar,
                         camera, camera_profile)
    calibs = _calibrations(plan, date)

    def write_date_calibs() -> None:
        for file_name, calib in calibs.items():
            kitti.write_calib_file(drive_dir.parent / file_name, calib)

    if _is_complete(drive_dir, params):
        if not all((drive_dir.parent / name).is_file() for name in calibs):
            write_date_calibs()
        return drive_dir

    drive_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(drive_dir)
    work = drive_dir.with_name(_work_name(drive_dir, "partial"))
    work.mkdir()
    try:
        if threads is None:
            threads = min(MAX_RENDER_THREADS, os.cpu_count() or 1)
        _render_into(work, plan, calibs, outputs, progress, threads)
        info = dict(params, speed_mps=plan.trajectory.speed_mps, frame_period_s=FRAME_PERIOD_S,
                    max_depth_m=MAX_DEPTH_M, camera_index=CAMERA_INDEX,
                    intrinsics=[plan.camera.fx, plan.camera.fy, plan.camera.cx, plan.camera.cy])
        if camera_profile != "kitti":
            info["camera_height_m"] = plan.trajectory.height_m
        # Written last: its presence with matching parameters is what marks a drive complete.
        kitti.write_bytes_atomic(work / PARAMS_FILE, json.dumps(info, indent=2).encode())
        write_date_calibs()
        _install(work, drive_dir, params)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return drive_dir
