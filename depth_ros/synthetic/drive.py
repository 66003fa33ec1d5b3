"""Synthetic drives: a camera moving down one generated street, written as a KITTI raw drive."""

from __future__ import annotations

import json
import os
import shutil
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from tqdm import tqdm

from depth_ros import kitti
from depth_ros.geometry import PinholeCamera
from depth_ros.synthetic.pose import CameraPose
from depth_ros.synthetic.render import MAX_DEPTH_M, render_frame
from depth_ros.synthetic.scene import StreetScene

FRAME_PERIOD_S = 0.1
CAMERA_HEIGHT_M = 1.65
# KITTI's rectified colour camera (2011_09_26).
KITTI_CAMERA = PinholeCamera(721.5377, 721.5377, 609.5593, 172.854, 1242, 375)
VIEW_DISTANCE_M = 400.0
PARAMS_FILE = "depth_ros_synthetic.json"
POSES_FILE = "poses.txt"
# Bump when the renderer's output changes, so drives written by an older one are regenerated.
ENGINE_VERSION = 1
CAMERA_INDEX = 2
_STREAM_TRAJECTORY = 5


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
        height = CAMERA_HEIGHT_M + self.bounce_m * np.sin(2 * np.pi * time_s / 0.7)
        return CameraPose.from_euler((self.speed_mps * time_s, lateral, height), yaw, pitch, roll)


@dataclass(frozen=True, eq=False)
class DrivePlan:
    """Everything needed to render a drive: scene, camera, one pose and time per frame."""

    scene: StreetScene
    camera: PinholeCamera
    trajectory: Trajectory
    poses: tuple[CameraPose, ...]
    timestamps: np.ndarray


def _start_time_s(date: str, drive: int) -> float:
    """Early afternoon UTC of ``date`` (KITTI's ``YYYY_MM_DD``), later for later drives."""
    try:
        day = datetime.strptime(date, "%Y_%m_%d").replace(tzinfo=timezone.utc)
    except ValueError as exc:
        raise ValueError(f"date must look like 2011_09_26, got {date!r}") from exc
    return day.timestamp() + 13 * 3600 + 120 * drive


def plan_drive(num_frames: int, seed: int = 0, width: int = 1242, height: int = 375,
               date: str = "2011_09_26", drive: int = 1) -> DrivePlan:
    """The scene, camera, poses and timestamps of a synthetic drive (nothing is rendered)."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    if width < 8 or height < 8:
        raise ValueError(f"image size {width}x{height} is too small")
    trajectory = Trajectory.generate(seed)
    times = np.arange(num_frames) * FRAME_PERIOD_S
    travel = trajectory.speed_mps * times[-1]
    scene = StreetScene.generate(seed, x_min_m=-40.0, x_max_m=travel + VIEW_DISTANCE_M,
                                 ego_lane_clear_until_m=travel + 10.0)
    camera = KITTI_CAMERA if (width, height) == (KITTI_CAMERA.width, KITTI_CAMERA.height) \
        else KITTI_CAMERA.resized(width, height)
    return DrivePlan(scene, camera, trajectory, tuple(trajectory.pose(t) for t in times),
                     _start_time_s(date, drive) + times)


def drive_directory(root: str | os.PathLike, date: str = "2011_09_26", drive: int = 1) -> Path:
    """``<root>/<date>/<date>_drive_<NNNN>_sync``."""
    return Path(root) / date / f"{date}_drive_{drive:04d}_sync"


def _parameters(num_frames: int, seed: int, drive: int, date: str, width: int,
                height: int) -> dict[str, int | str]:
    return {"engine_version": ENGINE_VERSION, "num_frames": num_frames, "seed": seed,
            "drive": drive, "date": date, "width": width, "height": height}


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
    return (len(list((drive_dir / cam / "data").glob("*.png"))) == n
            and len(list((drive_dir / "proj_depth" / "groundtruth" / cam).glob("*.png"))) == n
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


def _render_into(work: Path, plan: DrivePlan, calib: dict, progress: bool) -> None:
    cam = f"image_{CAMERA_INDEX:02d}"
    kitti.write_calib_file(work / "calib_cam_to_cam.txt", calib)
    frames = tqdm(enumerate(plan.poses), total=len(plan.poses), disable=not progress,
                  desc=f"synthetic {work.name.split('.')[1]}", unit="frame")
    for index, pose in frames:
        rgb, depth = render_frame(plan.scene, pose, plan.camera, noise_seed=index)
        name = kitti.frame_name(index) + ".png"
        kitti.write_rgb_png(work / cam / "data" / name, rgb)
        kitti.write_depth_png(work / "proj_depth" / "groundtruth" / cam / name, depth)
    kitti.write_timestamps(work / cam / "timestamps.txt", plan.timestamps)
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
                          drive: int = 1, date: str = "2011_09_26", width: int = 1242,
                          height: int = 375, progress: bool = True) -> Path:
    """Render a synthetic drive and write it in the KITTI raw layout; return its directory.

    Writes ``<root>/<date>/calib_cam_to_cam.txt`` (a copy also goes into the drive directory,
    which ``KittiDrive`` reads first, so drives of other sizes under the same date stay
    right), ``image_02/data/*.png``, ``image_02/timestamps.txt`` (10 Hz),
    ``proj_depth/groundtruth/image_02/*.png`` (exact depth, 0 for sky and beyond 200 m),
    ``poses.txt`` (KITTI odometry format) and ``depth_ros_synthetic.json`` (the parameters).
    The drive is built in a hidden directory beside it and renamed into place when complete;
    a complete drive with the same parameters is returned without rendering anything.
    """
    if seed < 0 or drive < 0:
        raise ValueError(f"seed and drive must be non-negative, got {seed} and {drive}")
    drive_dir = drive_directory(root, date, drive)
    params = _parameters(num_frames, seed, drive, date, width, height)
    plan = plan_drive(num_frames, seed, width, height, date, drive)
    calib = kitti.cam_to_cam_calibration(plan.camera, calib_time=datetime.strptime(
        date, "%Y_%m_%d").strftime("%d-%b-%Y 12:00:00"))
    date_calib = drive_dir.parent / "calib_cam_to_cam.txt"
    if _is_complete(drive_dir, params):
        if not date_calib.is_file():
            kitti.write_calib_file(date_calib, calib)
        return drive_dir

    drive_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(drive_dir)
    work = drive_dir.with_name(_work_name(drive_dir, "partial"))
    work.mkdir()
    try:
        _render_into(work, plan, calib, progress)
        info = dict(params, speed_mps=plan.trajectory.speed_mps, frame_period_s=FRAME_PERIOD_S,
                    max_depth_m=MAX_DEPTH_M, camera_index=CAMERA_INDEX,
                    intrinsics=[plan.camera.fx, plan.camera.fy, plan.camera.cx, plan.camera.cy])
        # Written last: its presence with matching parameters is what marks a drive complete.
        kitti.write_bytes_atomic(work / PARAMS_FILE, json.dumps(info, indent=2).encode())
        kitti.write_calib_file(date_calib, calib)
        _install(work, drive_dir, params)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return drive_dir
