"""Starting nodes as their own processes, for the demo, tools and tests (no ros2 CLI needed)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from depth_ros.transport import transport_environment


def ros_environment(domain_id: int | None = None) -> dict[str, str]:
    """A copy of os.environ set up for large messages between local processes.

    Fast DDS's default transports lose most large images between processes: unless the user
    chose a transport, the shipped profile is added (``depth_ros.transport``; figures in
    docs/transport.md).
    """
    env = dict(os.environ)
    env.update(transport_environment(env))
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(domain_id)
    return env


def node_command(executable: str, params_file: Path | None = None,
                 params: dict[str, object] | None = None,
                 remaps: dict[str, str] | None = None) -> list[str]:
    """Command line of a depth_ros console script with --ros-args.

    The console script next to this interpreter is used when installed; otherwise the module
    runs with ``python -m``.
    """
    script = Path(sys.executable).parent / executable
    if script.is_file():
        cmd = [str(script)]
    elif shutil.which(executable):
        cmd = [shutil.which(executable)]
    else:
        module = {"mono_depth_node": "depth_ros.ros.mono_depth_node",
                  "fusion_depth_node": "depth_ros.ros.fusion_depth_node",
                  "depth_eval_node": "depth_ros.ros.depth_eval_node",
                  "depth_ros_bag_play": "depth_ros.ros.bag_play",
                  "kitti_drive_publisher": "depth_ros.ros.drive_publisher"}[executable]
        cmd = [sys.executable, "-m", module]
    cmd.append("--ros-args")
    if params_file is not None:
        cmd += ["--params-file", str(params_file)]
    for key, value in (params or {}).items():
        if isinstance(value, bool):
            value = str(value).lower()
        elif value == "":
            value = "''"  # YAML for the empty string; a bare `name:=` does not parse
        cmd += ["-p", f"{key}:={value}"]
    for src, dst in (remaps or {}).items():
        cmd += ["-r", f"{src}:={dst}"]
    return cmd


def stop_process(proc: subprocess.Popen, timeout_s: float = 10.0) -> int:
    """SIGINT (a node's clean shutdown), then SIGKILL if it does not exit in time.

    Before the kill, SIGUSR1 asks a depth_ros node to print its threads' stacks to its log,
    so that a hang at shutdown can be diagnosed.
    """
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            if hasattr(signal, "SIGUSR1"):
                proc.send_signal(signal.SIGUSR1)
                try:
                    proc.wait(timeout=1.0)
                except subprocess.TimeoutExpired:
                    pass
            proc.kill()
            proc.wait()
    return proc.returncode
