"""mono_depth_node: camera Image + CameraInfo in; depth, its CameraInfo, an organised
PointCloud2, colourised depth, ``depth/info`` and ``/diagnostics`` out.

Everything but the inputs lives in ``depth_node_base``: the newest-frame-only inference
worker, range clipping, 32FC1/16UC1, points and colours, diagnostics. A metric model's depth
is rescaled to the running camera's focal length; a relative model's affine-invariant
inverse depth is published as it is (there is no LiDAR here to make it metric) and
``depth/info`` says so.
"""

from __future__ import annotations

import sys
import time

from sensor_msgs.msg import Image

from depth_ros.ros.depth_node_base import (
    BASE_PARAMETER_SPECS,
    BASE_PUBLISHED_TOPICS,
    DepthJob,
    DepthNodeBase,
)
from depth_ros.ros.entry import run_node
from depth_ros.ros.parameters import ParameterError, ParamSpec, defaults
from depth_ros.weights import DEFAULT_MONO_MODEL

NODE_NAME = "mono_depth_node"

# Every parameter, declared with descriptors from this table; config/mono_depth.yaml and the
# launch files are checked against PARAMETERS (the defaults) by the tests.
PARAMETER_SPECS: tuple[ParamSpec, ...] = BASE_PARAMETER_SPECS
PARAMETERS: dict[str, object] = defaults(PARAMETER_SPECS)

SUBSCRIBED_TOPICS: tuple[str, ...] = ("image", "camera_info")
PUBLISHED_TOPICS: tuple[str, ...] = BASE_PUBLISHED_TOPICS


class MonoDepthNode(DepthNodeBase):
    """Monocular depth node; see the module docstring."""

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, PARAMETER_SPECS, DEFAULT_MONO_MODEL, **kwargs)

    def setup_inputs(self) -> None:
        """Subscribe to ``image``."""
        if self.processor.classical:
            raise ParameterError("parameter model_path: 'classical' completes LiDAR and this "
                                 "node has none; run fusion_depth_node for it")
        if self.estimator.metadata.kind == "fusion":
            self.get_logger().warning("a fusion model on mono_depth_node runs without LiDAR "
                                      "(empty sparse input); fusion_depth_node feeds it LiDAR")
        self.create_subscription(Image, "image", self._on_image, self.input_qos)

    @property
    def frames_received(self) -> int:
        """Images received since the start."""
        return self.stats.total("image")

    @property
    def frames_published(self) -> int:
        """Depth images published since the start."""
        return self.stats.total("published")

    def _on_image(self, msg: Image) -> None:
        self.stats.add("image")
        self.submit(DepthJob(msg, self.latest_camera_info(), time.monotonic()))


def main(args: list[str] | None = None) -> int:
    """Console-script entry point: ``mono_depth_node --ros-args --params-file ...``."""
    return run_node(MonoDepthNode, NODE_NAME, args, (ValueError,))


if __name__ == "__main__":
    sys.exit(main())
