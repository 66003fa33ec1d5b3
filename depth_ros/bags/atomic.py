"""Directories that appear complete or not at all (a rosbag2 bag is a directory).

The directory is built as ``.<name>.partial-<pid>/<name>`` beside the target, its files are
fsynced, and it is renamed into place only when the writer finished. An interrupted or failed
write leaves at most a hidden ``.partial`` directory, which the next write to the same target
removes once its process is gone; never a bag at the target path that looks complete.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from depth_ros.fileio import fsync_directory

_PARTIAL = ".partial-"


def _work_directory(target: Path, pid: int) -> Path:
    return target.parent / f".{target.name}{_PARTIAL}{pid}"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def remove_abandoned(target: Path) -> list[Path]:
    """Delete the work directories of writes to ``target`` whose process has died."""
    removed = []
    for work in target.parent.glob(f".{target.name}{_PARTIAL}*"):
        pid = work.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _process_alive(int(pid)):
            shutil.rmtree(work, ignore_errors=True)
            removed.append(work)
    return removed


def _fsync_tree(directory: Path) -> None:
    for path in directory.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    fsync_directory(directory)


@contextmanager
def atomic_directory(target: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a path (not yet existing) to build a directory at; move it to ``target`` when
    the block ends without an exception.

    An existing ``target`` raises ``FileExistsError`` unless ``overwrite``; with it, the old
    one is replaced only after the new one is complete.
    """
    target = Path(target)
    if (target.exists() or target.is_symlink()) and not overwrite:
        raise FileExistsError(f"{target} exists (use --overwrite to replace it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned(target)
    work = _work_directory(target, os.getpid())
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        built = work / target.name
        yield built
        if not built.is_dir():
            raise FileNotFoundError(f"nothing was written to {built}")
        _fsync_tree(built)
        if target.exists() or target.is_symlink():
            # A directory cannot be renamed over a non-empty one: move the old one aside
            # into the work directory (deleted below) first.
            os.replace(target, work / f"{target.name}.old")
        os.replace(built, target)
        fsync_directory(target.parent)
    finally:
        shutil.rmtree(work, ignore_errors=True)
