"""bench/device_check.sh: one table of GPU timings; on a machine without CUDA it says so, and
``--cpu --tiny`` runs the same code on the CPU (this test)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "device_check.sh"


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          env=env, timeout=900, check=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_without_cuda_it_says_so_and_exits_0() -> None:
    result = run()
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines() == [
        "no CUDA device: nothing to time (bench/device_check.sh --cpu times the same code on "
        "the CPU)"]


def test_tiny_run_prints_one_table_of_every_check() -> None:
    result = run("--cpu", "--tiny")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("what"))
    rows = lines[header + 1:]
    names = [row.split("  ")[0] for row in rows]
    # Each bundled model in two precisions (the fusion model in both options), Depth Anything
    # V2 ViT-S in two, and training steps.
    assert sum(n.startswith("mono_cnn_synthetic") for n in names) == 2
    assert sum(n.startswith("fusion_spn_synthetic") for n in names) == 4
    assert sum(n.startswith("depth_anything_v2 vits") for n in names) == 2
    assert any(n.startswith("train fusion_spn") for n in names)
    for row in rows:
        ms = float(row.split()[-3])
        assert ms > 0
        assert row.endswith(("frames/s", "steps/s"))
