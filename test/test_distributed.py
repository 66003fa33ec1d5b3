"""Multi-process training and fault tolerance: the sharded sampler, a real two-process DDP
run (gloo on CPU, launched by torchrun), an interrupted run that resumes to the same weights,
and a process killed while writing a checkpoint."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_training import write_tiny_run
from torch.utils.data import DistributedSampler

from training.checkpoint import (
    find_latest_checkpoint,
    link_checkpoint,
    load_checkpoint,
    prune_step_checkpoints,
    save_checkpoint,
    step_checkpoint_name,
)
from training.config import load_config
from training.data.sampler import EpochSampler
from training.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]

# Test-only wrappers around train.py, run as the worker script (never part of the product).
DDP_WORKER = '''
import hashlib, json, os, sys
from pathlib import Path
sys.path.insert(0, {repo!r})
from training import train, trainer
from training.data.sources import DepthDataset

out, rank, seen = Path(sys.argv[1]), int(os.environ["RANK"]), []
getitem = DepthDataset.__getitem__
def logged_getitem(self, index):
    if self.augment is not None:  # the training set
        seen.append(index)
    return getitem(self, index)
DepthDataset.__getitem__ = logged_getitem

def digest(module):
    h = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        h.update(key.encode() + value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()

fit = trainer.Trainer.fit
def reported_fit(self):
    result = fit(self)
    (out / f"rank{{rank}}.json").write_text(json.dumps({{
        "world_size": self.dist.world_size, "seen": seen, "step": self.step,
        "eval": digest(self.eval_model), "train": digest(self.model)}}))
    return result
trainer.Trainer.fit = reported_fit
sys.exit(train.main(sys.argv[2:]))
'''

KILLED_WORKER = '''
import os, signal, sys
sys.path.insert(0, {repo!r})
import torch
from training import train

calls, kill_at, save = 0, int(sys.argv[1]), torch.save
def save_then_die(obj, f, *args, **kwargs):
    global calls
    calls += 1
    if calls == kill_at:  # half-way through writing: the zip's end never comes
        f.write(b"PK\\x03\\x04 half a checkpoint")
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return save(obj, f, *args, **kwargs)
torch.save = save_then_die
sys.exit(train.main(sys.argv[2:]))
'''


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/ (2 drives × 4 frames), val/ (1 × 2) and tiny.yaml (writing under runs/)."""
    return write_tiny_run(tmp_path_factory.mktemp("tiny_dist"), device="cpu",
                          checkpoint_every=1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _digest(state_dict: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for key, value in sorted(state_dict.items()):
        h.update(key.encode() + value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# Sampler and checkpoint files -------------------------------------------------------------

@pytest.mark.parametrize(("size", "replicas", "epoch"), [(10, 1, 0), (10, 2, 3), (10, 3, 1),
                                                         (7, 4, 2), (2, 3, 0)])
def test_epoch_sampler_shards_like_distributed_sampler(size: int, replicas: int,
                                                       epoch: int) -> None:
    for rank in range(replicas):
        reference = DistributedSampler(range(size), num_replicas=replicas, rank=rank,
                                       shuffle=True, seed=5)
        reference.set_epoch(epoch)
        ours = EpochSampler(size, seed=5, rank=rank, num_replicas=replicas)
        ours.set_epoch(epoch)
        assert list(ours) == list(reference) and len(ours) == len(reference)
        ours.set_epoch(epoch, start=1)
        assert list(ours) == list(reference)[1:] and len(ours) == len(reference) - 1


def test_latest_checkpoint_skips_temporaries_and_unreadable_files(tmp_path: Path) -> None:
    def payload(step: int) -> dict:
        return {"state_dict": {"w": torch.full((2,), float(step))}, "metadata": {},
                "step": step}

    assert find_latest_checkpoint(tmp_path) is None
    for step in (1, 2, 3):
        save_checkpoint(payload(step), tmp_path / step_checkpoint_name(step))
    link_checkpoint(tmp_path / step_checkpoint_name(3), tmp_path / "last.pt")
    (tmp_path / ".step_0000004.pt.123.tmp").write_bytes(b"PK\x03\x04 torn")  # interrupted
    (tmp_path / step_checkpoint_name(5)).write_bytes(b"PK\x03\x04 torn")  # corrupted
    assert find_latest_checkpoint(tmp_path) == tmp_path / "last.pt"
    (tmp_path / "last.pt").unlink()
    assert find_latest_checkpoint(tmp_path) == tmp_path / step_checkpoint_name(3)
    prune_step_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.glob("step_*.pt")) == [
        step_checkpoint_name(3), step_checkpoint_name(5)]
    assert load_checkpoint(find_latest_checkpoint(tmp_path))["step"] == 3


# Resuming ---------------------------------------------------------------------------------

class PreemptedError(Exception):
    """Stands for the job being stopped right after a checkpoint."""


@pytest.mark.parametrize("overrides", [
    [],
    ["batch_size=1", "optim.accumulate_steps=2", "optim.ema_decay=0.5",
     "optim.backbone_lr_factor=0.1", "optim.schedule=poly"],
], ids=["plain", "accumulate-ema-backbone-poly"])
def test_interrupted_run_resumes_to_the_same_weights(tiny_data: Path, tmp_path: Path,
                                                     overrides: list[str]) -> None:
    # 4 steps per epoch: the interruption at step 3 is mid-epoch, the end (6) in epoch 1.
    args = [f"output_dir={tmp_path}", "max_steps=6", "checkpoint_every=3",
            "tensorboard=false", *overrides]
    config = load_config(tiny_data / "tiny.yaml", args)
    straight = Trainer(config, tmp_path / "straight")
    straight.fit()

    interrupted = Trainer(config, tmp_path / "halves")
    save = interrupted.save

    def save_then_stop(names, val_metrics=None):
        path = save(names, val_metrics)
        if interrupted.step == 3:
            raise PreemptedError
        return path

    interrupted.save = save_then_stop
    with pytest.raises(PreemptedError):
        interrupted.fit()
    resumed = Trainer(config, tmp_path / "halves")
    resumed.resume(find_latest_checkpoint(tmp_path / "halves"))
    assert resumed.step == 3
    resumed.fit()
    assert resumed.step == straight.step == 6
    for ours, reference in ((resumed.model, straight.model),
                            (resumed.eval_model, straight.eval_model)):
        for (name, a), (_, b) in zip(ours.state_dict().items(),
                                     reference.state_dict().items(), strict=True):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)
    for key in ("abs_rel", "rmse", "a1"):
        assert resumed.last_val[key] == pytest.approx(straight.last_val[key], rel=1e-5)


def test_killed_while_saving_leaves_a_loadable_newest_checkpoint(tiny_data: Path,
                                                                  tmp_path: Path) -> None:
    (tmp_path / "killed.py").write_text(KILLED_WORKER.format(repo=str(REPO)))
    args = ["--config", str(tiny_data / "tiny.yaml"), f"output_dir={tmp_path}", "max_steps=4",
            "tensorboard=false"]
    # One torch.save per step (checkpoint_every=1): the third is cut short by SIGKILL.
    killed = subprocess.run([sys.executable, str(tmp_path / "killed.py"), "3", *args],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    run_dir = tmp_path / "tiny"
    assert [p.name for p in run_dir.glob(".step_0000003.pt.*.tmp")], "no torn write to test"
    (run_dir / step_checkpoint_name(9)).write_bytes(b"not a checkpoint")
    latest = find_latest_checkpoint(run_dir)
    assert latest is not None and load_checkpoint(latest)["step"] == 2

    resumed = subprocess.run([sys.executable, "training/train.py", *args, "--resume", "auto"],
                             cwd=REPO, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "at step 2" in resumed.stderr
    assert load_checkpoint(run_dir / "last.pt")["step"] == 4
    assert not list(run_dir.glob(".*.tmp"))


# Two processes ----------------------------------------------------------------------------

def _torchrun(tmp_path: Path, config: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if sys.platform.startswith("linux"):
        env["GLOO_SOCKET_IFNAME"] = "lo"  # one machine: never depend on the hostname
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
         str(tmp_path / "ddp_worker.py"), str(tmp_path), "--config", str(config), *args],
        cwd=REPO, capture_output=True, text=True, timeout=180, env=env)


def test_two_process_ddp_run_and_resume(tiny_data: Path, tmp_path: Path) -> None:
    (tmp_path / "ddp_worker.py").write_text(DDP_WORKER.format(repo=str(REPO)))
    # Per rank 4 of the 8 frames, 2 per step in micro-batches of 1: 2 steps per epoch.
    args = [f"output_dir={tmp_path}", "batch_size=1", "optim.accumulate_steps=2",
            "optim.ema_decay=0.5", "keep_checkpoints=2"]
    first = _torchrun(tmp_path, tiny_data / "tiny.yaml", *args, "max_steps=4")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in reports] == [2, 2]
    # Each epoch splits the 8 frames between the ranks, in a new order.
    for epoch in (0, 1):
        shards = [set(r["seen"][4 * epoch:4 * epoch + 4]) for r in reports]
        assert shards[0].isdisjoint(shards[1]) and shards[0] | shards[1] == set(range(8))
    assert reports[0]["seen"][:4] != reports[0]["seen"][4:]
    # One model: the ranks agree with each other and with what rank 0 saved.
    run_dir = tmp_path / "tiny"
    saved = load_checkpoint(run_dir / "last.pt")
    assert saved["step"] == 4 and len(saved["rng_states"]) == 2
    assert reports[0]["eval"] == reports[1]["eval"] == _digest(saved["state_dict"])
    assert reports[0]["train"] == reports[1]["train"] == _digest(saved["train_state_dict"])
    # Rank 0 alone wrote: one metrics line per epoch, one TensorBoard file, two step files.
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 2
    assert len(list((run_dir / "tensorboard").glob("events.*"))) == 1
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    assert {"train/loss", "train/lr", "val/abs_rel"} <= set(events.Tags()["scalars"])
    (panel,) = events.Images("val/rgb_prediction_groundtruth")[-1:]
    assert panel.step == 4 and (panel.width, panel.height) == (128, 3 * 64)
    assert sorted(p.name for p in run_dir.glob("step_*.pt")) == [
        step_checkpoint_name(3), step_checkpoint_name(4)]

    second = _torchrun(tmp_path, tiny_data / "tiny.yaml", *args, "max_steps=6",
                       "--resume", "auto")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    output = second.stdout + second.stderr
    assert output.count("resumed from") == 1 and "at step 4" in output
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    saved = load_checkpoint(run_dir / "last.pt")
    assert saved["step"] == 6 and reports[0]["step"] == reports[1]["step"] == 6
    assert reports[0]["eval"] == reports[1]["eval"] == _digest(saved["state_dict"])
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 3
    assert len(list((run_dir / "tensorboard").glob("events.*"))) == 2
