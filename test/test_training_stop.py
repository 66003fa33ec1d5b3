"""Stopping and restarting train.py for real (subprocesses on a tiny run): Ctrl-C and SIGTERM
save a checkpoint and print one line that resumes it, a second Ctrl-C quits at once, a bad
output_dir and a second trainer on the same run are one line each, SIGKILL at chosen and at
random points leaves metrics.jsonl without duplicates and whole-epoch train losses, and under
torchrun a SIGTERM to one rank stops both at the same step."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from test_training import write_tiny_run

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # training/ runs from the repository root; it is not installed
    sys.path.insert(0, str(REPO))

from training.checkpoint import (  # noqa: E402
    checkpoint_step,
    find_latest_checkpoint,
    load_checkpoint,
)

STOP_LINE = re.compile(r"^train\.py: stopped by (SIG\w+) at step (\d+): saved (\S+); "
                       r"resume with: (.+)$")

# Test-only wrapper around train.py: SIGKILL right after the n-th metrics line is written.
KILL_AFTER_RECORD = '''
import os, signal, sys
sys.path.insert(0, {repo!r})
from training import run_log, train

kill_at, calls, record = int(sys.argv[1]), 0, run_log.RunLog.record
def record_then_die(self, line):
    global calls
    record(self, line)
    calls += 1
    if calls == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
run_log.RunLog.record = record_then_die
sys.exit(train.main(sys.argv[2:]))
'''


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/ (2 drives × 4 frames: 4 steps per epoch), val/ (1 × 2) and tiny.yaml."""
    return write_tiny_run(tmp_path_factory.mktemp("tiny_stop"), device="cpu",
                          tensorboard=False)


def _env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))


def _start(argv: list[str], log: Path) -> subprocess.Popen:
    with open(log, "w") as err:  # a file, not a pipe: nobody has to drain it meanwhile
        return subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err,
                                env=_env())


def _train(*args: str) -> list[str]:
    return [sys.executable, "training/train.py", *args]


def _wait_for(condition: Callable[[], bool], proc: subprocess.Popen, what: str,
              timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the trainer exited ({proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _saved_beyond(path: Path, step: int) -> Callable[[], bool]:
    return lambda: path.is_file() and (checkpoint_step(path) or -1) > step


def _metric_steps(run_dir: Path) -> list[int]:
    return [json.loads(line)["step"]
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _finish(proc: subprocess.Popen, log: Path) -> tuple[int, list[str]]:
    code = proc.wait(timeout=90)
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]
    return code, [line for line in text.splitlines() if line.startswith("train.py:")]


def _resume_argv(command: str) -> list[str]:
    argv = shlex.split(command)
    assert argv[0] in ("python", sys.executable) and argv[1] == "training/train.py"
    return [sys.executable, *argv[1:]]


# Ctrl-C and SIGTERM -------------------------------------------------------------------------

def test_sigint_then_sigterm_save_and_the_printed_command_resumes(tiny: Path,
                                                                  tmp_path: Path) -> None:
    run_dir = tmp_path / "tiny"
    proc = _start(_train("--config", str(tiny / "tiny.yaml"), f"output_dir={tmp_path}",
                         "max_steps=100000"), tmp_path / "first.log")
    _wait_for(_saved_beyond(run_dir / "last.pt", 0), proc, "the first checkpoint")
    proc.send_signal(signal.SIGINT)
    code, lines = _finish(proc, tmp_path / "first.log")
    assert code == 128 + signal.SIGINT
    # The acknowledgement, then the one line that says what was saved and how to go on.
    assert len(lines) == 2 and "SIGINT received" in lines[0], lines
    match = STOP_LINE.match(lines[1])
    assert match, lines[1]
    assert match[1] == "SIGINT" and match[3] == str(run_dir / "last.pt")
    step = int(match[2])
    assert load_checkpoint(run_dir / "last.pt")["step"] == step
    assert not list(run_dir.glob(".*.tmp"))
    argv = _resume_argv(match[4])
    assert argv[-2:] == ["--resume", str(run_dir / "last.pt")]

    second = _start(argv, tmp_path / "second.log")
    _wait_for(_saved_beyond(run_dir / "last.pt", step), second, "a checkpoint after resuming")
    second.send_signal(signal.SIGTERM)
    code, lines = _finish(second, tmp_path / "second.log")
    assert code == 128 + signal.SIGTERM
    assert f"resumed from {run_dir / 'last.pt'} at step {step}" in (
        tmp_path / "second.log").read_text()
    match = STOP_LINE.match(lines[-1])
    assert match and match[1] == "SIGTERM" and int(match[2]) > step, lines
    assert load_checkpoint(run_dir / "last.pt")["step"] == int(match[2])
    steps = _metric_steps(run_dir)
    assert steps == sorted(set(steps)) and steps[-1] <= int(match[2])


def test_second_sigint_quits_at_once_and_keeps_a_complete_checkpoint(tiny: Path,
                                                                     tmp_path: Path) -> None:
    run_dir, log = tmp_path / "tiny", tmp_path / "train.log"
    # A larger input: steps long enough (~0.3 s) for the second Ctrl-C to land in one.
    proc = _start(_train("--config", str(tiny / "tiny.yaml"), f"output_dir={tmp_path}",
                         "max_steps=100000", "data.input_height=192", "data.input_width=512"),
                  log)
    _wait_for(_saved_beyond(run_dir / "last.pt", 0), proc, "the first checkpoint")
    proc.send_signal(signal.SIGINT)
    _wait_for(lambda: "SIGINT received" in log.read_text(), proc, "the acknowledgement")
    proc.send_signal(signal.SIGINT)
    code, lines = _finish(proc, log)
    assert code == 128 + signal.SIGINT
    assert len(lines) == 2 and lines[1].startswith("train.py: second SIGINT: quit without "
                                                   "saving; resume from the newest complete "
                                                   "checkpoint with: "), lines
    assert lines[1].endswith("--resume auto")
    latest = find_latest_checkpoint(run_dir)
    assert latest is not None and load_checkpoint(latest)["step"] >= 1


@pytest.mark.parametrize("delay_s", [0.3, 2.5])
def test_a_signal_before_the_first_step_is_one_line_and_leaves_nothing(
        tiny: Path, tmp_path: Path, delay_s: float) -> None:
    log = tmp_path / "train.log"
    proc = _start(_train("--config", str(tiny / "tiny.yaml"), f"output_dir={tmp_path / 'out'}",
                         "max_steps=100000"), log)
    time.sleep(delay_s)  # importing torch, or building the data
    if (tmp_path / "out" / "tiny" / "last.pt").exists():
        proc.kill()
        pytest.skip("training had started already: this machine is faster than assumed")
    proc.send_signal(signal.SIGINT)
    code, lines = _finish(proc, log)
    if lines and lines[0].startswith("train.py: SIGINT received: saving"):
        pytest.skip("training had started already: this machine is faster than assumed")
    assert code == 128 + signal.SIGINT
    assert len(lines) == 1 and re.fullmatch(
        r"train\.py: interrupted by SIGINT (while starting|before training started): "
        r"nothing saved", lines[0]), lines
    assert not (tmp_path / "out").exists()


# Bad run directories -----------------------------------------------------------------------

@pytest.mark.parametrize("where", ["parent_is_a_file", "run_dir_is_a_file"])
def test_output_dir_that_cannot_be_a_directory_is_one_line(tiny: Path, tmp_path: Path,
                                                           where: str) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    args = ([f"output_dir={blocker}/run"] if where == "parent_is_a_file"
            else [f"output_dir={tmp_path}", "name=a_file"])
    started = time.monotonic()
    result = subprocess.run(_train("--config", str(tiny / "tiny.yaml"), *args), cwd=REPO,
                            capture_output=True, text=True, timeout=120, env=_env())
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"train.py: error: output_dir: cannot create the run directory "
        f"{blocker / 'run' / 'tiny' if where == 'parent_is_a_file' else blocker}: "
        f"{blocker} is a "
        "file, not a directory"], result.stderr[-2000:]
    assert blocker.read_text() == "not a directory"
    assert time.monotonic() - started < 60


def test_a_second_trainer_on_the_same_run_refuses_and_the_first_goes_on(tiny: Path,
                                                                        tmp_path: Path) -> None:
    run_dir = tmp_path / "tiny"
    args = ["--config", str(tiny / "tiny.yaml"), f"output_dir={tmp_path}", "max_steps=100000"]
    first = _start(_train(*args), tmp_path / "first.log")
    _wait_for(_saved_beyond(run_dir / "last.pt", 0), first, "the first checkpoint")
    second = subprocess.run(_train(*args, "--resume"), cwd=REPO, capture_output=True,
                            text=True, timeout=120, env=_env())
    assert second.returncode == 2
    assert second.stderr.splitlines() == [
        f"train.py: error: the run directory {run_dir} is in use by another trainer "
        f"(pid {first.pid}): wait for it to finish or stop it, or choose another name= or "
        "output_dir="], second.stderr[-2000:]
    # The first trainer did not notice: it still trains and saves.
    step = checkpoint_step(run_dir / "last.pt")
    _wait_for(_saved_beyond(run_dir / "last.pt", step), first, "a later checkpoint")
    first.send_signal(signal.SIGTERM)
    code, lines = _finish(first, tmp_path / "first.log")
    assert code == 128 + signal.SIGTERM and STOP_LINE.match(lines[-1]), lines


# SIGKILL and resume ----------------------------------------------------------------------

def test_sigkill_at_chosen_and_random_points_then_resume(tiny: Path, tmp_path: Path) -> None:
    (tmp_path / "kill_after_record.py").write_text(KILL_AFTER_RECORD.format(repo=str(REPO)))
    # 4 steps per epoch, 3 epochs; checkpoints every 3 steps and at each epoch's end.
    common = ["--config", str(tiny / "tiny.yaml"), "max_steps=12", "checkpoint_every=3"]
    reference = subprocess.run(_train(*common, f"output_dir={tmp_path / 'straight'}",
                                      "tensorboard=true"),
                               cwd=REPO, capture_output=True, text=True, timeout=120, env=_env())
    assert reference.returncode == 0, reference.stderr[-2000:]
    straight_dir = tmp_path / "straight" / "tiny"
    expected = [json.loads(line) for line in
                (straight_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in expected] == [4, 8, 12]
    # The reference's epoch losses are the means of its logged per-step losses.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(straight_dir / "tensorboard"))
    events.Reload()
    per_step = {e.step: e.value for e in events.Scalars("train/loss")}
    assert sorted(per_step) == list(range(1, 13))
    for record in expected:
        epoch_steps = range(record["step"] - 3, record["step"] + 1)
        assert record["train_loss"] == pytest.approx(
            np.mean([per_step[s] for s in epoch_steps]), abs=1e-5)

    run_dir = tmp_path / "tiny"
    args = [*common, f"output_dir={tmp_path}", "--resume", "auto"]
    killer = [sys.executable, str(tmp_path / "kill_after_record.py")]
    # 1: right after the first metrics line (step 4), before that epoch's checkpoint.
    killed = subprocess.run([*killer, "1", *args], cwd=REPO, capture_output=True, text=True,
                            timeout=120, env=_env())
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert _metric_steps(run_dir) == [4]
    assert checkpoint_step(find_latest_checkpoint(run_dir)) == 3  # the case that duplicated
    # 2 and 3: at seeded random moments after the resumed run starts training.
    rng = np.random.default_rng(12)
    for k in range(2):
        log = tmp_path / f"random{k}.log"
        proc = _start(_train(*args), log)
        _wait_for(lambda log=log: "resumed from" in log.read_text(), proc, "resuming")
        time.sleep(float(rng.uniform(0.0, 0.3)))
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
    # 4: right after the next metrics line this process writes.
    killed = subprocess.run([*killer, "1", *args], cwd=REPO, capture_output=True, text=True,
                            timeout=120, env=_env())
    assert killed.returncode in (0, -signal.SIGKILL), killed.stderr[-2000:]
    final = subprocess.run(_train(*args), cwd=REPO, capture_output=True, text=True,
                           timeout=120, env=_env())
    assert final.returncode == 0, final.stderr[-2000:]
    assert load_checkpoint(run_dir / "last.pt")["step"] == 12
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    # Every step once, in order, and each epoch's loss over all its steps: the same numbers
    # as the run that was never killed (resuming is exact).
    assert [r["step"] for r in records] == [4, 8, 12]
    for ours, reference_record in zip(records, expected, strict=True):
        assert ours["train_loss"] == pytest.approx(reference_record["train_loss"], abs=2e-5)
        assert ours["val"]["abs_rel"] == pytest.approx(reference_record["val"]["abs_rel"],
                                                       rel=1e-4)


# Two processes under torchrun ---------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker_pids(launcher: int) -> dict[int, int]:
    """rank -> pid of the launcher's worker processes (Linux /proc)."""
    ranks = {}
    children = Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split()
    for pid in map(int, children):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        env = dict(item.split(b"=", 1) for item in environ if b"=" in item)
        if b"RANK" in env:
            ranks[int(env[b"RANK"])] = pid
    return ranks


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_to_one_ddp_rank_stops_both_at_one_step(tiny: Path, tmp_path: Path) -> None:
    env = dict(_env(), GLOO_SOCKET_IFNAME="lo")
    run_dir = tmp_path / "tiny"

    def torchrun(*args: str) -> list[str]:
        return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
                "training/train.py", "--config", str(tiny / "tiny.yaml"),
                f"output_dir={tmp_path}", "batch_size=1", *args]

    with open(tmp_path / "ddp.log", "w") as err:
        proc = subprocess.Popen(torchrun("max_steps=100000"), cwd=REPO,
                                stdout=err, stderr=err,
                                env=env)
    _wait_for(_saved_beyond(run_dir / "last.pt", 0), proc, "the first checkpoint", 120)
    ranks = _worker_pids(proc.pid)
    assert sorted(ranks) == [0, 1]
    os.kill(ranks[1], signal.SIGTERM)  # rank 0 gets no signal: it must follow rank 1
    assert proc.wait(timeout=90) != 0
    text = (tmp_path / "ddp.log").read_text()
    stops = [line for line in text.splitlines() if line.startswith("train.py: stopped")]
    assert len(stops) == 1, text[-3000:]
    match = STOP_LINE.match(stops[0])
    assert match and match[1] == "SIGTERM", stops
    assert match[4].startswith("torchrun --nproc_per_node 2 training/train.py --config")
    step = int(match[2])
    saved = load_checkpoint(run_dir / "last.pt")
    assert saved["step"] == step and len(saved["rng_states"]) == 2
    assert text.count("exitcode  : 143") == 2  # both ranks: the stop's code, none killed

    resumed = subprocess.run(torchrun(f"max_steps={step + 2}", "--resume", "auto"), cwd=REPO,
                             capture_output=True, text=True, timeout=180, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"at step {step}" in resumed.stderr
    assert load_checkpoint(run_dir / "last.pt")["step"] == step + 2


# The pieces, in process ----------------------------------------------------------------------

def test_run_lock_is_exclusive_and_a_run_that_never_started_leaves_nothing(
        tmp_path: Path) -> None:
    from training.run_lock import LOCK_NAME, RunDirError, RunLock

    run_dir = tmp_path / "out" / "run"
    with RunLock(run_dir) as lock:
        assert lock.held and (run_dir / LOCK_NAME).read_text() == f"{os.getpid()}\n"
        # flock is per open file: a second claim, even from this process, is refused.
        with pytest.raises(RunDirError, match=rf"in use by another trainer \(pid {os.getpid()}"):
            RunLock(run_dir).acquire()
    assert not (tmp_path / "out").exists()  # created for nothing: removed again
    with RunLock(run_dir):
        (run_dir / "config.yaml").write_text("name: run\n")
    assert sorted(p.name for p in run_dir.iterdir()) == [LOCK_NAME, "config.yaml"]
    with RunLock(run_dir):  # free again once released
        pass


def test_metrics_past_the_checkpoint_and_torn_lines_are_dropped(tmp_path: Path) -> None:
    from training.run_log import drop_records_after

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 4, "train_loss": 1.0}\n{"step": 8, "train_loss": 0.5}\n'
                    '{"step": 12, "train_loss": 0.25}\n{"step": 16, "tra')
    assert drop_records_after(path, 8) == 2
    assert path.read_text() == '{"step": 4, "train_loss": 1.0}\n{"step": 8, "train_loss": 0.5}\n'
    assert drop_records_after(path, 8) == 0 and drop_records_after(tmp_path / "none", 3) == 0
