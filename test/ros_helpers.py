"""Helpers of the node tests: an in-process rclpy listener/publisher, node processes, and
PointCloud2 messages in the layouts LiDAR drivers publish."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile
from rclpy.time import Time
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

from depth_ros.ros.launching import node_command, stop_process
from depth_ros.ros.qos import make_qos
from depth_ros.share import find_config
from depth_ros.weights import DEFAULT_MONO_MODEL


def stamp_ns(msg) -> int:
    """A message's header stamp in nanoseconds."""
    return Time.from_msg(msg.header.stamp).nanoseconds


class Listener:
    """An in-process rclpy node (own context) collecting what the node under test publishes.

    Args:
        namespace: the namespace of the node under test.
        topics: topic → message type to collect (reliable, depth 10, unless qos says else).
        qos: per-topic QoS overrides.
    """

    def __init__(self, namespace: str, topics: dict[str, type],
                 qos: dict[str, QoSProfile] | None = None) -> None:
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("test_listener", namespace=namespace,
                                      context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.msgs: dict[str, list] = {topic: [] for topic in topics}
        for topic, kind in topics.items():
            profile = (qos or {}).get(topic, make_qos("reliable", 10))
            self.node.create_subscription(kind, topic, self.msgs[topic].append, profile)

    def publisher(self, kind: type, topic: str, reliability: str = "reliable"):
        """A publisher in the listener's node."""
        return self.node.create_publisher(kind, topic, make_qos(reliability, 5))

    def spin_until(self, done: Callable[[], bool], timeout_s: float) -> bool:
        """Spin until done() or the timeout; returns done()."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if done():
                return True
            self.executor.spin_once(timeout_sec=0.05)
        return done()

    def stamped(self, topic: str, stamp: int) -> list:
        """Messages received on topic with the given header stamp (nanoseconds)."""
        return [m for m in self.msgs[topic] if stamp_ns(m) == stamp]

    def close(self) -> None:
        """Destroy the node and its context.

        Close a listener after the node processes it talked to have stopped: over Fast DDS's
        TCP transport, deleting a participant can deadlock while a TCP reader thread blocks
        on a peer that is alive and silent (``depth_ros.ros.fastdds_tcp``). The tests run on
        the shipped profile without TCP; the order keeps them safe under LARGE_DATA too.
        """
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def start_node(executable: str, config: str, namespace: str, log_path: Path,
               **params) -> subprocess.Popen:
    """A depth_ros node as its own process, logging to log_path."""
    cmd = node_command(executable, find_config(config), params=params,
                       remaps={"__ns": namespace})
    return subprocess.Popen(cmd, stdout=log_path.open("w"), stderr=subprocess.STDOUT)


def stop_node(proc: subprocess.Popen, log_path: Path) -> None:
    """Stop a node with SIGINT and check it exited cleanly without a traceback."""
    code = stop_process(proc)
    text = log_path.read_text()
    assert code == 0, text[-3000:]
    assert "Traceback" not in text, text[-3000:]


def cloud_message(columns: dict[str, np.ndarray], header: Header, height: int = 1,
                  point_step: int | None = None) -> PointCloud2:
    """A PointCloud2 of named 1-D columns (their dtypes become the fields, in order).

    ``height`` > 1 makes it organised (the columns are read row-major); ``point_step``
    larger than the packed size adds padding after each point, as some drivers do.
    """
    datatypes = {np.dtype(np.float32): PointField.FLOAT32,
                 np.dtype(np.float64): PointField.FLOAT64,
                 np.dtype(np.uint16): PointField.UINT16, np.dtype(np.uint8): PointField.UINT8}
    names = list(columns)
    packed = np.dtype([(name, np.asarray(columns[name]).dtype.newbyteorder("<"))
                       for name in names])
    step = point_step or packed.itemsize
    layout = np.dtype({"names": names, "formats": [packed.fields[n][0] for n in names],
                       "offsets": [packed.fields[n][1] for n in names], "itemsize": step})
    count = len(columns[names[0]])
    if count % height:
        raise ValueError(f"{count} points do not fill {height} rows")
    points = np.zeros(count, dtype=layout)
    for name in names:
        points[name] = columns[name]
    fields = [PointField(name=n, offset=packed.fields[n][1],
                         datatype=datatypes[np.dtype(columns[n].dtype)], count=1)
              for n in names]
    width = count // height
    return PointCloud2(header=header, height=height, width=width, fields=fields,
                       is_bigendian=False, point_step=step, row_step=step * width,
                       data=points.tobytes(), is_dense=False)


def relative_model(path: Path, scale: float = 2.5, shift: float = 0.05) -> Path:
    """The bundled mono model turned relative: ``scale / depth + shift`` (an affine-invariant
    inverse depth with a scale and shift of its own), metadata output ``relative``."""
    model = onnx.load(DEFAULT_MONO_MODEL)
    graph = model.graph
    (depth,) = graph.output
    graph.initializer.extend([
        onnx.helper.make_tensor("relative_scale", onnx.TensorProto.FLOAT, [], [scale]),
        onnx.helper.make_tensor("relative_shift", onnx.TensorProto.FLOAT, [], [shift])])
    graph.node.extend([
        onnx.helper.make_node("Reciprocal", [depth.name], ["reciprocal"]),
        onnx.helper.make_node("Mul", ["reciprocal", "relative_scale"], ["scaled"]),
        onnx.helper.make_node("Add", ["scaled", "relative_shift"], ["inverse_depth"])])
    inverse = onnx.ValueInfoProto()
    inverse.CopyFrom(depth)
    inverse.name = "inverse_depth"
    graph.output.pop()
    graph.output.append(inverse)
    for prop in model.metadata_props:
        if prop.key == "output":
            prop.value = "relative"
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path
