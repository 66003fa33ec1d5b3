"""The import contracts of ``.importlinter`` hold: layers, no rclpy outside the ROS layer, no
cycles. ``lint-imports`` reads the source tree (this checkout first on the path), so a broken
contract fails here with its report."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def lint_imports(*args: str) -> subprocess.CompletedProcess:
    """``lint-imports`` (import-linter, requirements/ci.txt) from the repository root."""
    script = Path(sys.executable).parent / "lint-imports"
    command = [str(script)] if script.exists() else [shutil.which("lint-imports") or ""]
    if not command[0]:
        pytest.fail("lint-imports not found: install requirements/ci.txt (import-linter)")
    # This checkout's packages, not an installed copy, are the ones checked.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.run([*command, "--no-cache", "--no-logo", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_import_contracts_hold() -> None:
    result = lint_imports(str(REPO / ".importlinter"))
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    assert "0 broken" in report and "BROKEN" not in report


def test_a_broken_contract_is_reported(tmp_path: Path) -> None:
    """The checker sees the real imports: contracts that the code breaks on purpose fail."""
    config = tmp_path / "broken.ini"
    config.write_text(
        "[importlinter]\nroot_packages =\n    depth_ros\ninclude_external_packages = True\n\n"
        "[importlinter:contract:upside-down]\nname = geometry above kitti\ntype = layers\n"
        "layers =\n    depth_ros.geometry\n    depth_ros.kitti\n\n"
        "[importlinter:contract:no-rclpy-in-ros]\nname = no rclpy in ros\ntype = forbidden\n"
        "source_modules =\n    depth_ros.ros\nforbidden_modules =\n    rclpy\n")
    result = lint_imports(str(config))
    report = result.stdout + result.stderr
    assert result.returncode == 1, report
    assert "0 kept, 2 broken" in report, report
    assert re.search(r"depth_ros\.kitti(\.\w+)? -> depth_ros\.geometry", report), report
