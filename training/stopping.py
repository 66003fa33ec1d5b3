"""Stopping a training run cleanly: SIGINT (Ctrl-C) and SIGTERM (a scheduler's pre-emption)
ask the trainer to save a checkpoint at the next step boundary and exit.

The handler only records the signal; the trainer looks at it between optimiser steps, where
the model, the optimiser and the data order are consistent, and (under ``torchrun``) all ranks
agree on it in one collective, so no rank is left waiting in another's all-reduce. Before
training starts there is nothing to save: a signal then interrupts at once (``Interrupted``).
A second Ctrl-C while the checkpoint is on its way quits without saving; checkpoints are
written atomically, so the newest complete one stays usable.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A stop signal arrived before the first training step: nothing to save.

    A ``KeyboardInterrupt``, so that ``except Exception`` blocks on the way let it through.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def signal_name(signum: int) -> str:
    """``SIGINT``, ``SIGTERM``, ..."""
    return signal.Signals(signum).name


def exit_code(signum: int) -> int:
    """The shell's convention for a process ended by ``signum`` (130 for SIGINT, 143 for
    SIGTERM): a stopped run is not a finished one, to whatever started it."""
    return 128 + int(signum)


def _say(line: str) -> None:
    # os.write, not print: the handler may run while the main thread is inside a write to
    # sys.stderr (the progress bar), and a buffered stream refuses that re-entrant call. The
    # bar leaves its line open: start a new one.
    os.write(sys.stderr.fileno(), f"\n{line}\n".encode())


def ignore_stop_signals() -> None:
    """In a helper process (a DataLoader worker): ignore SIGINT and SIGTERM, which a terminal
    or a scheduler sends to the whole process group; the trainer stops its workers itself."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


class StopSignals:
    """SIGINT and SIGTERM as a request to stop at the next step boundary.

    Args:
        verbose: acknowledge the first signal and announce a forced quit on stderr (rank 0).
        launcher_forwards: the process runs under a launcher (``torchrun``) that forwards the
            signal it receives to its workers, which then see Ctrl-C twice (from the terminal
            and from the launcher): repeated signals are then one request, and the launcher's
            own deadline (SIGKILL after 30 s by default) is the way out.
        quit_hint: what the forced-quit line tells the user to run to resume.
    """

    def __init__(self, verbose: bool = True, launcher_forwards: bool = False,
                 quit_hint: str = "") -> None:
        self.verbose = verbose
        self.launcher_forwards = launcher_forwards
        self.quit_hint = quit_hint
        self.signum = 0  # the first stop signal received, 0: none
        self.armed = False
        self._previous: dict[int, Any] = {}
        self._fork_hook_registered = False

    @property
    def requested(self) -> bool:
        """Whether a stop signal has arrived."""
        return self.signum != 0

    def install(self) -> StopSignals:
        """Take over SIGINT and SIGTERM in this process (main thread only); forked children
        (DataLoader workers) ignore both: the trainer decides when they stop."""
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        if not self._fork_hook_registered:
            os.register_at_fork(after_in_child=self._in_child)
            self._fork_hook_registered = True
        return self

    def restore(self) -> None:
        """Give SIGINT and SIGTERM back to the handlers they had before ``install``."""
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def arm(self) -> None:
        """Training has started: from now on a signal is a request, seen at the next step
        boundary, rather than an interruption."""
        self.armed = True

    def _in_child(self) -> None:
        if self._previous:  # installed in the parent at fork time
            ignore_stop_signals()
            self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if not self.requested:
            self.signum = signum
            if not self.armed:
                raise Interrupted(signum)
            if self.verbose:
                again = (" (Ctrl-C again: quit at once without saving)"
                         if signum == signal.SIGINT and not self.launcher_forwards else "")
                _say(f"train.py: {signal_name(signum)} received: saving a checkpoint at the "
                     f"end of this step, then stopping{again}")
            return
        if signum == signal.SIGINT and not self.launcher_forwards:
            if self.verbose:
                _say(f"train.py: second SIGINT: quit without saving; {self.quit_hint}")
            # At once: no unwinding through collectives or loader shutdown. A checkpoint write
            # cut short leaves only a temporary file, which the next run removes.
            os._exit(exit_code(signal.SIGINT))
        # A repeated SIGTERM, or a signal the launcher forwarded: already stopping.
