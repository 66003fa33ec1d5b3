"""One trainer per run directory: the run directory is created (or found) and locked before any
data is read, so that a wrong ``output_dir`` or a second trainer on the same run is one line
at start-up, not a traceback or two processes overwriting each other's checkpoints.

The lock is ``fcntl.flock`` on ``<run dir>/.train.lock``: the kernel releases it when the
process ends, however it ends (SIGKILL included), so it is never stale. The file holds the
owner's pid, for the message a second trainer prints. POSIX only: where ``fcntl`` does not
exist (Windows) runs are not locked.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

from training.config import ConfigError

LOCK_NAME = ".train.lock"


class RunDirError(ConfigError):
    """The run directory cannot be created or written, or another trainer holds it."""


def _non_directory_ancestor(path: Path) -> Path | None:
    for parent in [path, *path.parents]:
        if parent.exists() or parent.is_symlink():
            return None if parent.is_dir() else parent
    return None


class RunLock:
    """The exclusive claim of one process on a run directory (``with RunLock(d): ...``)."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._fd: int | None = None
        self._fork_hook_registered = False
        self._created: list[Path] = []  # directories acquire() made, deepest first

    @property
    def held(self) -> bool:
        """Whether this process holds the lock."""
        return self._fd is not None

    def acquire(self) -> RunLock:
        """Create the run directory if needed and lock it; ``RunDirError`` (one line) when
        that is impossible or another process holds it."""
        missing = [d for d in [self.run_dir, *self.run_dir.parents] if not d.exists()]
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            blocker = _non_directory_ancestor(self.run_dir)
            why = (f"{blocker} is a file, not a directory" if blocker is not None
                   else exc.strerror or str(exc))
            raise RunDirError(f"output_dir: cannot create the run directory {self.run_dir}: "
                              f"{why}") from exc
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise RunDirError(f"output_dir: cannot write in the run directory {self.run_dir}: "
                              f"{exc.strerror or exc}") from exc
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                owner = os.pread(fd, 32, 0).decode(errors="replace").strip()
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise RunDirError(f"output_dir: cannot lock {self.path}: "
                                      f"{exc.strerror or exc}") from exc
                who = f" (pid {owner})" if owner.isdigit() else ""
                raise RunDirError(
                    f"the run directory {self.run_dir} is in use by another trainer{who}: "
                    "wait for it to finish or stop it, or choose another name= or "
                    "output_dir=") from exc
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:  # a full disk: the run could not write its checkpoints either
            os.close(fd)
            raise RunDirError(f"output_dir: cannot write in the run directory {self.run_dir}: "
                              f"{exc.strerror or exc}") from exc
        self._fd = fd
        self._created = missing
        if not self._fork_hook_registered:
            # A forked child (a DataLoader worker) shares the locked file; closing its copy
            # keeps the lock's life the trainer's own, and leaves the parent's lock held.
            os.register_at_fork(after_in_child=self._close_in_child)
            self._fork_hook_registered = True
        return self

    def _close_in_child(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def release(self) -> None:
        """Unlock. A run directory this lock created and nothing else wrote to (the run failed
        before it started) goes again, so a mistyped command leaves no trace; otherwise the
        lock file stays (removing it would race with a trainer about to lock it)."""
        if self._fd is None:
            return
        try:
            leftover = [p.name for p in self.run_dir.iterdir()]
        except OSError:
            leftover = None
        if self._created and leftover == [LOCK_NAME]:
            # Unlinked while still locked: another trainer opening it now gets a new file.
            self.path.unlink(missing_ok=True)
            for directory in self._created:
                try:
                    directory.rmdir()
                except OSError:  # something else appeared in it meanwhile: keep it
                    break
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()
