"""The ament_python package: colcon build installs what ros2 run / ros2 launch look for."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from importlib.metadata import distribution
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_package_xml_is_format_3_ament_python():
    root = ET.parse(REPO / "package.xml").getroot()
    assert root.tag == "package" and root.get("format") == "3"
    assert root.findtext("name") == "depth_ros"
    assert root.find("export/build_type").text == "ament_python"
    deps = {e.text for e in root.iter("exec_depend")}
    assert {"rclpy", "sensor_msgs", "std_msgs", "launch_ros"} <= deps


def test_console_scripts_point_at_real_functions():
    scripts = {ep.name: ep for ep in distribution("depth_ros").entry_points
               if ep.group == "console_scripts"}
    assert {"mono_depth_node", "kitti_drive_publisher", "make_synthetic_drive"} <= set(scripts)
    for ep in scripts.values():
        assert callable(ep.load()), ep


@pytest.mark.slow
def test_colcon_build_installs_executables_launch_and_config(tmp_path):
    colcon = Path(sys.executable).parent / "colcon"
    if not colcon.exists():
        colcon = shutil.which("colcon")
    assert colcon, "colcon is part of the dev requirements (requirements/ci.txt)"
    # Build from a copy so that nothing colcon or setuptools writes lands in the work tree.
    src = tmp_path / "src" / "depth_ros"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".venv", ".git", "outputs", "runs", "build", "install", "log", "*.egg-info",
        "__pycache__", ".pytest_cache", ".ruff_cache"))
    install = tmp_path / "install"
    result = subprocess.run(
        [str(colcon), "--log-base", str(tmp_path / "log"), "build", "--paths", str(src),
         "--build-base", str(tmp_path / "build"), "--install-base", str(install)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    prefix = install / "depth_ros"
    for rel in ["lib/depth_ros/mono_depth_node", "lib/depth_ros/kitti_drive_publisher",
                "share/depth_ros/launch/mono_depth.launch.py",
                "share/depth_ros/config/mono_depth.yaml",
                "share/depth_ros/config/train/mono_synthetic.yaml",
                "share/depth_ros/package.xml",
                "share/ament_index/resource_index/packages/depth_ros"]:
        assert (prefix / rel).is_file(), rel
    assert os.access(prefix / "lib/depth_ros/mono_depth_node", os.X_OK)
    site = next(prefix.glob("lib/python3*/site-packages"))
    assert (site / "depth_ros/weights/mono_cnn_synthetic.onnx").is_file()
    # The installed package imports from the install space and finds its bundled model.
    probe = subprocess.run(
        [sys.executable, "-c", "import depth_ros.weights as w, depth_ros.ros.mono_depth_node;"
         "print(w.DEFAULT_MONO_MODEL)"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(site)}, capture_output=True,
        text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip().startswith(str(site))
    # The training scripts run as documented from a checkout, importing the installed
    # `training` package (no sys.path edits in them).
    assert (site / "training/data/sources.py").is_file()
    for script in ("train", "evaluate", "export", "pseudo_label"):
        run = subprocess.run([sys.executable, f"training/{script}.py", "--help"], cwd=REPO,
                             env={**os.environ, "PYTHONPATH": str(site)}, capture_output=True,
                             text=True, timeout=120)
        assert run.returncode == 0 and "usage:" in run.stdout, (script, run.stderr)
