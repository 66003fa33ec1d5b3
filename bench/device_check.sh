#!/usr/bin/env bash
# GPU check (issue 14): the bundled models through the torch backend in fp32 and fp16 at
# 1216x352, Depth Anything V2 ViT-S (random weights) at 518x518, and training steps per second,
# in one table. Needs PyTorch and a CUDA GPU; no TensorRT, onnxruntime-gpu or network.
# Without a CUDA device it says so (--cpu times the same code on the CPU; --tiny: small sizes).
#   bash bench/device_check.sh [--cpu] [--tiny] [--warmup N] [--iterations N]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
if [[ -x "$root/.venv/bin/python" && -z "${PYTHON:-}" ]]; then
  python="$root/.venv/bin/python"
fi
cd "$root"
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" exec "$python" bench/device_check.py "$@"
