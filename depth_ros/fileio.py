"""Atomic file writes shared by every writer: dataset files, checkpoints, TensorRT engines.

A reader (or a process that restarts after a crash) sees either the old file or the whole new
one, never a part: the data goes to a temporary file beside the target (the writer's pid in
its name, so two processes never collide), which is renamed over it. ``durable=True`` also
fsyncs the file and then its directory, so the rename survives a power cut; that costs a disk
flush per file, worth it for checkpoints and engines, not for thousands of dataset PNGs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def temporary_path(path: str | os.PathLike) -> Path:
    """The temporary file a write of ``path`` goes through (hidden, the writer's pid in it)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def fsync_directory(directory: str | os.PathLike) -> None:
    """Make a rename in ``directory`` durable (the directory entry reaches the disk)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], object],
                 durable: bool = True) -> Path:
    """Create ``path`` through ``write(file)``: all or nothing. Any failure on the way,
    interruptions included, removes the temporary file and leaves the old ``path`` as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_directory(path.parent)
    return path


def write_bytes_atomic(path: str | os.PathLike, data: bytes, durable: bool = True) -> Path:
    """``write_atomic`` of a bytes object."""
    return write_atomic(path, lambda f: f.write(data), durable)
