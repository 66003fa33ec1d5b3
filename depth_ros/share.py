"""Files the package ships in ``config/``: from the source tree, else the installed share
directory (colcon, or a pip install's data files)."""

from __future__ import annotations

from pathlib import Path

PACKAGE = "depth_ros"


def find_config(name: str) -> Path:
    """The path of ``config/<name>``; FileNotFoundError naming both places looked in."""
    source = Path(__file__).resolve().parents[1] / "config" / name
    if source.is_file():
        return source
    try:
        from ament_index_python.packages import get_package_share_directory

        installed = Path(get_package_share_directory(PACKAGE)) / "config" / name
    except (ImportError, LookupError) as exc:
        raise FileNotFoundError(f"config file {name} not found at {source} and the {PACKAGE} "
                                f"share directory is not available: {exc}") from exc
    if not installed.is_file():
        raise FileNotFoundError(f"config file {name} not found at {source} or {installed}")
    return installed
