"""Classical LiDAR depth completion (no learning, no GPU): IP-Basic (Ku et al. 2018) as a
function (``ip_basic``) and as a predictor with ``DepthEstimator``'s interface
(``ClassicalCompletion``): a baseline for every fusion table and a no-GPU fusion mode."""

from depth_ros.completion.classical import (
    CLASSICAL_MODEL_NAME,
    ClassicalCompletion,
    CompletionPrediction,
)
from depth_ros.completion.ip_basic import BLURS, VARIANTS, ip_basic

__all__ = ["BLURS", "CLASSICAL_MODEL_NAME", "VARIANTS", "ClassicalCompletion",
           "CompletionPrediction", "ip_basic"]
