"""What a real run of the launch files cannot check, read from the sources.

test_launch.py starts every launch file with ``ros2 launch`` and checks the live graph,
parameters and depth. It cannot see an argument that is declared but reaches nothing, a key
of a parameter file that the node silently ignores, or a node module whose declared topic
tables drift from the topics its code creates; those are checked here without ROS 2 launch.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import rclpy
import yaml
from launch_files import PACKAGE, REPO, launch_files, node_interface, parse_launch
from rclpy.context import Context

from depth_ros.weights import DEFAULT_MONO_MODEL

LAUNCH_FILES = launch_files()
# Node modules checked against a live node, with the class to construct.
LIVE_NODES = {"mono_depth_node": "MonoDepthNode", "fusion_depth_node": "FusionDepthNode"}
# Parameters rclpy declares on every node.
BUILTIN_PARAMETERS = {"use_sim_time", "start_type_description_service"}


def unused_arguments(path: Path) -> list[str]:
    """Arguments declared but never used, and used but never declared."""
    launch = parse_launch(path)
    used, declared = launch.used_arguments(), set(launch.arguments)
    return ([f"argument {a!r} declared but never used" for a in sorted(declared - used)]
            + [f"argument {a!r} used but not declared" for a in sorted(used - declared)])


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_every_argument_is_declared_and_used(path):
    assert unused_arguments(path) == []


def test_argument_check_catches_a_dead_and_an_undeclared_argument(tmp_path):
    path = tmp_path / "broken.launch.py"
    path.write_text('''
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PASSED = ("passed",)


def generate_launch_description():
    image_topic = LaunchConfiguration("image_topic")
    unused = LaunchConfiguration("unused")
    return LaunchDescription([
        DeclareLaunchArgument("image_topic", default_value="camera/image_raw"),
        DeclareLaunchArgument("unused", default_value="x"),
        DeclareLaunchArgument("passed", default_value="x"),
        IncludeLaunchDescription("x.launch.py", launch_arguments=[
            (n, LaunchConfiguration(n)) for n in PASSED]),
        Node(package="depth_ros", executable="mono_depth_node",
             remappings=[("image", image_topic), ("depth", LaunchConfiguration("typo"))]),
    ])
''')
    assert unused_arguments(path) == ["argument 'unused' declared but never used",
                                      "argument 'typo' used but not declared"]


def _params_file_problems(params_file: Path, executable: str) -> list[str]:
    interface = node_interface(executable)
    table = interface.parameters
    data = yaml.safe_load(params_file.read_text())
    if list(data) != [interface.node_name]:
        return [f"{params_file.name}: top-level keys {list(data)}, expected "
                f"[{interface.node_name!r}]"]
    params = data[interface.node_name]["ros__parameters"]
    problems = [f"{params_file.name}: {n!r} is not a parameter of {executable}"
                for n in sorted(set(params) - set(table))]
    problems += [f"{params_file.name}: {n!r} is missing" for n in sorted(set(table) - set(params))]
    problems += [f"{params_file.name}: {n!r} is {params[n]!r}, not a "
                 f"{type(table[n]).__name__}" for n in sorted(set(params) & set(table))
                 if type(params[n]) is not type(table[n])]
    return problems


@pytest.mark.parametrize("executable", sorted(LIVE_NODES))
def test_parameter_file_names_every_parameter_with_its_type(executable):
    # rclpy ignores a key of a parameter file that the node does not declare: a typo there
    # would pass a real run silently.
    params_file = REPO / "config" / f"{executable.removesuffix('_node')}.yaml"
    assert _params_file_problems(params_file, executable) == []


def test_parameter_file_check_catches_typos_and_types(tmp_path):
    broken = tmp_path / "mono_depth.yaml"
    data = yaml.safe_load((REPO / "config" / "mono_depth.yaml").read_text())
    params = data["mono_depth_node"]["ros__parameters"]
    params["max_depth"] = params.pop("max_depth_m")
    params["num_threads"] = "two"
    broken.write_text(yaml.safe_dump(data))
    assert _params_file_problems(broken, "mono_depth_node") == [
        "mono_depth.yaml: 'max_depth' is not a parameter of mono_depth_node",
        "mono_depth.yaml: 'max_depth_m' is missing",
        "mono_depth.yaml: 'num_threads' is 'two', not a int"]


# The bag player publishes whatever topics the bag holds: it has no fixed topic table.
NODE_EXECUTABLES = sorted({n.executable for p in LAUNCH_FILES for n in parse_launch(p).nodes
                           if n.package == PACKAGE} - {"depth_ros_bag_play"} | set(LIVE_NODES))


@pytest.mark.parametrize("executable", NODE_EXECUTABLES)
def test_declared_topic_tables_match_the_source(executable):
    interface = node_interface(executable)
    for declared, created in ((interface.declared_subscribed, interface.subscribed),
                              (interface.declared_published, interface.published)):
        if declared is not None:
            assert sorted(declared) == sorted(created), (interface.module, declared, created)
    if executable in LIVE_NODES:
        assert interface.declared_subscribed is not None, "a depth node declares its inputs"
        assert interface.declared_published is not None, "a depth node declares its outputs"


@pytest.mark.parametrize("executable", sorted(LIVE_NODES))
def test_live_node_has_the_declared_topics_and_parameters(executable):
    interface = node_interface(executable)
    module = __import__(interface.module, fromlist=[LIVE_NODES[executable]])
    params = REPO / "config" / f"{executable.removesuffix('_node')}.yaml"
    context = Context()
    # The bundled mono model: cheap to load, and a fusion node serves it too (without LiDAR).
    rclpy.init(context=context, args=["--ros-args", "--params-file", str(params),
                                      "-p", f"model_path:={DEFAULT_MONO_MODEL}"])
    try:
        node = getattr(module, LIVE_NODES[executable])(context=context)
        try:
            subs = {s.topic_name: s.msg_type.__name__ for s in node.subscriptions}
            pubs = {p.topic_name: p.msg_type.__name__ for p in node.publishers}
            declared = set(node._parameters) - BUILTIN_PARAMETERS
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
    subs.pop("/parameter_events", None)
    for topic in ("/rosout", "/parameter_events"):
        pubs.pop(topic, None)

    def absolute(table: dict[str, str]) -> dict[str, str]:
        return {(t if t.startswith("/") else f"/{t}"): kind for t, kind in table.items()}

    assert subs == absolute(interface.subscribed)
    assert pubs == absolute(interface.published)
    assert declared == set(interface.parameters)
