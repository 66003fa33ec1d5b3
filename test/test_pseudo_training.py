"""train.py with pseudo-labelled images mixed in: the batches reach the loss, the run resumes
exactly, and a bad pseudo-label directory is a one-line error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from depth_ros.weights import DEFAULT_MONO_MODEL

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # training/ runs from the repository root; it is not installed
    sys.path.insert(0, str(REPO))

import test_training  # noqa: E402

from training import pseudo_label  # noqa: E402
from training.config import load_config  # noqa: E402
from training.trainer import Trainer  # noqa: E402

tiny_run = test_training.tiny_run  # the labelled drives and tiny.yaml of test_training.py


@pytest.fixture(scope="module")
def pseudo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Metric pseudo-labels of three unlabelled drives' images by the bundled ONNX model."""
    base = tmp_path_factory.mktemp("pseudo")
    for drive in (3, 4, 5):
        test_training.write_tiny_drive(base / "images", drive, seed=10 + drive)
    out = base / "labels"
    code = pseudo_label.main(["--teacher", str(DEFAULT_MONO_MODEL), "--images",
                              str(base / "images"), "--out", str(out), "--threads", "1"])
    assert code == 0
    return out


def _trainer(tiny_run: Path, run_dir: Path, pseudo_dir: Path, *overrides: str) -> Trainer:
    config = load_config(tiny_run / "tiny.yaml", [
        f"output_dir={run_dir.parent}", f"name={run_dir.name}", f"pseudo.dirs=[{pseudo_dir}]",
        "tensorboard=false", "checkpoint_every=0", *overrides])
    return Trainer(config, run_dir)


def test_pseudo_batches_reach_the_loss_and_resume_exactly(tiny_run: Path, pseudo_dir: Path,
                                                          tmp_path: Path) -> None:
    whole = _trainer(tiny_run, tmp_path / "whole", pseudo_dir, "max_steps=4",
                     "checkpoint_every=2", "keep_checkpoints=0")
    assert whole.pseudo_set is not None and len(whole.pseudo_set) == 12
    whole.fit()
    # One pseudo loss per step (one micro-batch each), finite and positive.
    assert len(whole._pseudo_losses) == 4
    assert all(0 < v < 10 for v in whole._pseudo_losses), whole._pseudo_losses

    # Resume the same run from its step-2 checkpoint, as after a crash there.
    checkpoint = tmp_path / "whole" / "step_0000002.pt"
    assert checkpoint.is_file(), sorted(p.name for p in (tmp_path / "whole").iterdir())
    resumed = _trainer(tiny_run, tmp_path / "resumed", pseudo_dir, "max_steps=4")
    resumed.resume(checkpoint)
    resumed.fit()
    # The pseudo stream of step k depends on (seed, rank, k) alone: the same batches and
    # perturbations after the resume, so the same weights.
    assert resumed._pseudo_losses == pytest.approx(whole._pseudo_losses[2:], rel=1e-5)
    for name, value in whole.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], value, rtol=1e-5,
                                   atol=1e-6, msg=name)


def test_pseudo_weight_changes_the_update(tiny_run: Path, pseudo_dir: Path,
                                          tmp_path: Path) -> None:
    with_pseudo = _trainer(tiny_run, tmp_path / "a", pseudo_dir, "max_steps=1")
    without = _trainer(tiny_run, tmp_path / "b", pseudo_dir, "max_steps=1", "pseudo.enabled=false")
    assert without.pseudo_set is None
    with_pseudo.fit()
    without.fit()
    differs = [not torch.equal(a, b) for a, b in zip(with_pseudo.model.parameters(),
                                                      without.model.parameters(), strict=True)]
    assert any(differs)


def test_a_missing_pseudo_directory_is_one_line(tiny_run: Path, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "training/train.py", "--config",
                             str(tiny_run / "tiny.yaml"), f"output_dir={tmp_path}",
                             "pseudo.dirs=[/nonexistent/pseudo]"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "pseudo" in errors[0], result.stderr[-2000:]
