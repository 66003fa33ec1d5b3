"""The bundled default models (ONNX + weights-only checkpoint + model card)."""

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent
DEFAULT_MONO_MODEL = WEIGHTS_DIR / "mono_cnn_synthetic.onnx"
