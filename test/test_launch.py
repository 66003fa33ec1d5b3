"""Launch files and parameter files checked against the nodes' real names, topics and
parameters (ROS 2 `launch` is not installable from PyPI, so the files are read as syntax)."""

from __future__ import annotations

import ast
from importlib.metadata import distribution
from pathlib import Path

import pytest
import rclpy
import yaml
from rclpy.context import Context

from depth_ros.ros import mono_depth_node

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch" / "mono_depth.launch.py"
INTERNAL_TOPICS = {"/rosout", "/parameter_events"}


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and getattr(n.func, "id", getattr(n.func, "attr", None)) == name]


def _kwargs(call: ast.Call) -> dict[str, ast.expr]:
    return {k.arg: k.value for k in call.keywords}


@pytest.fixture(scope="module")
def launch_tree() -> ast.Module:
    return ast.parse(LAUNCH.read_text(), filename=str(LAUNCH))


@pytest.fixture(scope="module")
def live_node():
    """The real node, constructed with its parameter file, to read its topics."""
    context = Context()
    params = REPO / "config" / "mono_depth.yaml"
    rclpy.init(context=context, args=["--ros-args", "--params-file", str(params)])
    node = mono_depth_node.MonoDepthNode(context=context)
    try:
        yield node
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)


def _topics(node) -> tuple[set[str], set[str]]:
    subs = {s.topic_name.lstrip("/") for s in node.subscriptions} - {"parameter_events"}
    pubs = {p.topic_name for p in node.publishers} - INTERNAL_TOPICS
    return subs, {t.lstrip("/") for t in pubs}


def test_launch_defines_generate_launch_description(launch_tree):
    names = [f.name for f in launch_tree.body if isinstance(f, ast.FunctionDef)]
    assert "generate_launch_description" in names


def test_launch_node_matches_package_executable_and_name(launch_tree):
    (node,) = _calls(launch_tree, "Node")
    kw = _kwargs(node)
    assert ast.literal_eval(kw["package"]) == "depth_ros"
    executable = ast.literal_eval(kw["executable"])
    scripts = {ep.name: ep.value for ep in distribution("depth_ros").entry_points
               if ep.group == "console_scripts"}
    assert scripts[executable] == "depth_ros.ros.mono_depth_node:main"
    assert ast.literal_eval(kw["name"]) == mono_depth_node.NODE_NAME


def test_launch_params_file_default_is_installed_config(launch_tree):
    (declare,) = [c for c in _calls(launch_tree, "DeclareLaunchArgument")
                  if ast.literal_eval(c.args[0]) == "params_file"]
    (join,) = _calls(declare, "PathJoinSubstitution")
    parts = join.args[0].elts
    assert ast.literal_eval(_calls(parts[0], "FindPackageShare")[0].args[0]) == "depth_ros"
    rel = Path(*[ast.literal_eval(p) for p in parts[1:]])
    assert rel == Path("config/mono_depth.yaml")
    assert (REPO / rel).is_file()


def test_every_launch_configuration_is_declared(launch_tree):
    declared = {ast.literal_eval(c.args[0])
                for c in _calls(launch_tree, "DeclareLaunchArgument")}
    used = {ast.literal_eval(c.args[0]) for c in _calls(launch_tree, "LaunchConfiguration")}
    assert used == declared


def test_launch_sets_large_data_transport(launch_tree):
    pairs = {tuple(ast.literal_eval(a) for a in c.args)
             for c in _calls(launch_tree, "SetEnvironmentVariable")}
    assert ("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA") in pairs


def test_parameter_file_matches_declared_parameters():
    data = yaml.safe_load((REPO / "config" / "mono_depth.yaml").read_text())
    assert list(data) == [mono_depth_node.NODE_NAME]
    params = data[mono_depth_node.NODE_NAME]["ros__parameters"]
    assert set(params) == set(mono_depth_node.PARAMETERS)
    for name, default in mono_depth_node.PARAMETERS.items():
        assert type(params[name]) is type(default), name


def test_launch_overrides_and_remaps_name_real_parameters_and_topics(launch_tree, live_node):
    (node,) = _calls(launch_tree, "Node")
    kw = _kwargs(node)
    overrides = [e for e in kw["parameters"].elts if isinstance(e, ast.Dict)]
    keys = {ast.literal_eval(k) for d in overrides for k in d.keys}
    assert keys and all(live_node.has_parameter(k) for k in keys)
    remapped = {ast.literal_eval(pair.elts[0]) for pair in kw["remappings"].elts}
    subs, pubs = _topics(live_node)
    assert subs == {"image", "camera_info"}
    assert pubs == {"depth", "depth/camera_info", "points", "depth/colored"}
    assert remapped == subs | pubs
