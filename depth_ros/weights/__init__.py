"""The bundled default models (ONNX + weights-only checkpoint + model card)."""

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent
DEFAULT_MONO_MODEL = WEIGHTS_DIR / "mono_cnn_synthetic.onnx"
# RGB + sparse LiDAR depth completion at the camera's resolution, with a per-pixel confidence
# (fusion_spn), for fusion_depth_node.
DEFAULT_FUSION_MODEL = WEIGHTS_DIR / "fusion_spn_synthetic.onnx"
# The reduced option (features from a half-size frame, propagation as one-channel products,
# softmax before upsampling): for 2-core CPUs. Since stage 7 its own weights, the bundled
# ones fine-tuned at that feature scale only (fusion_spn_synthetic_fast.pt beside it).
FAST_FUSION_MODEL = WEIGHTS_DIR / "fusion_spn_synthetic_fast.onnx"
# The constructor options FAST_FUSION_MODEL was exported with (over the bundled model's own).
FAST_FUSION_OPTIONS = {"feature_scale": 2, "split_propagation": True, "coarse_weights": True}
# ...and the feature scales its weights were fine-tuned at.
FAST_FUSION_TRAINING = {"train_feature_scales": [2]}
