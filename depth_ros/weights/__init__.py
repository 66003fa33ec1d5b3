"""The bundled default models (ONNX + weights-only checkpoint + model card)."""

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent
DEFAULT_MONO_MODEL = WEIGHTS_DIR / "mono_cnn_synthetic.onnx"
# RGB + sparse LiDAR depth completion at the camera's resolution, with a per-pixel confidence
# (fusion_spn), for fusion_depth_node.
DEFAULT_FUSION_MODEL = WEIGHTS_DIR / "fusion_spn_synthetic.onnx"
# The same weights with the reduced inference options (features from a half-size frame,
# propagation as one-channel products, softmax before upsampling): for 2-core CPUs.
FAST_FUSION_MODEL = WEIGHTS_DIR / "fusion_spn_synthetic_fast.onnx"
# The constructor options FAST_FUSION_MODEL was exported with (over the bundled model's own).
FAST_FUSION_OPTIONS = {"feature_scale": 2, "split_propagation": True, "coarse_weights": True}
