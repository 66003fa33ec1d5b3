"""Every launch file checked against the real package: executables, node names, parameters,
parameter files, remapped topics, launch arguments, installed files and the environment.

ROS 2 ``launch`` is not installable from PyPI, so the files are read as syntax
(test/launch_files.py) with every argument at its default. The checks run over every
``launch/*.launch.py``: a launch file added later is covered without editing this file, and
one that names an executable, parameter or topic this package does not have fails. Each check
returns the problems it found; ``test_checks_catch_a_broken_launch_file`` shows that each one
does find them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import rclpy
import yaml
from launch_files import (
    PACKAGE,
    REPO,
    SHARE,
    TOPIC_RE,
    NodeAction,
    UnresolvableError,
    console_scripts,
    installed_as,
    launch_files,
    node_interface,
    parse_launch,
    share_path,
)
from rclpy.context import Context

from depth_ros.weights import DEFAULT_MONO_MODEL

LAUNCH_FILES = launch_files()
# Nodes of other packages a launch file may start: (package, executable).
EXTERNAL_NODES = {("rviz2", "rviz2")}
# Programs of other packages an ExecuteProcess may run.
EXTERNAL_PROGRAMS = {"ros2"}
# Node modules whose topics are also checked on a live node, with the class to construct.
LIVE_NODES = {"mono_depth_node": "MonoDepthNode", "fusion_depth_node": "FusionDepthNode"}
# Parameters rclpy declares on every node.
BUILTIN_PARAMETERS = {"use_sim_time", "start_type_description_service"}


def _ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def _package_nodes(path: Path) -> list[NodeAction]:
    return [n for n in parse_launch(path).nodes if n.package == PACKAGE]


def _yaml_value(text: str) -> object:
    """A launch-substituted parameter value as launch_ros types it (YAML; empty -> '')."""
    value = yaml.safe_load(text)
    return "" if value is None else value


# The checks: each returns a list of problems (empty when the file is right).


def check_arguments(path: Path) -> list[str]:
    """Every declared argument is used, every used one declared, every default resolves."""
    launch = parse_launch(path)
    used, declared = launch.used_arguments(), set(launch.arguments)
    problems = [f"argument {a!r} declared but never used" for a in sorted(declared - used)]
    problems += [f"argument {a!r} used but not declared" for a in sorted(used - declared)]
    for name, default in launch.arguments.items():
        try:
            if default is not None:
                launch.resolve(default)
        except UnresolvableError as exc:
            problems.append(f"default of {name!r}: {exc}")
    return problems


def check_executables(path: Path) -> list[str]:
    """Nodes are console scripts of setup.py (or known external nodes) with the right name."""
    problems = []
    scripts = console_scripts()
    for node in parse_launch(path).nodes:
        where = f"line {node.lineno}"
        if node.package != PACKAGE:
            if (node.package, node.executable) not in EXTERNAL_NODES:
                problems.append(f"{where}: unknown node {node.package}/{node.executable}")
            continue
        if node.executable not in scripts:
            problems.append(f"{where}: {node.executable!r} is not a console script of setup.py")
            continue
        interface = node_interface(node.executable)
        if node.name is not None and node.name != interface.node_name:
            problems.append(f"{where}: name {node.name!r}, but {interface.module} names its "
                            f"node {interface.node_name!r}")
    for cmd in parse_launch(path).commands:
        program = parse_launch(path).resolve(cmd[0])
        if program not in scripts and program not in EXTERNAL_PROGRAMS:
            problems.append(f"ExecuteProcess runs {program!r}: not a console script of "
                            f"setup.py nor one of {sorted(EXTERNAL_PROGRAMS)}")
    return problems


def check_remappings(path: Path) -> list[str]:
    """Remapped names are the node's topics, all of them, onto absolute topic names."""
    launch = parse_launch(path)
    problems = []
    for node in _package_nodes(path):
        if node.executable not in console_scripts():
            continue  # check_executables reports it
        interface = node_interface(node.executable)
        topics = {*interface.subscribed, *interface.published}
        remapped = [topic for topic, _ in node.remappings]
        where = f"line {node.lineno} ({node.executable})"
        problems += [f"{where}: remaps {t!r} twice" for t in sorted(set(remapped))
                     if remapped.count(t) > 1]
        problems += [f"{where}: remaps {t!r}, which the node neither subscribes nor "
                     f"publishes ({sorted(topics)})" for t in sorted(set(remapped) - topics)]
        # Every relative topic is placed by the launch file, so none lands by accident in
        # whatever namespace the node runs in.
        problems += [f"{where}: topic {t!r} is not remapped"
                     for t in sorted(interface.relative_topics() - set(remapped))]
        for topic, target in node.remappings:
            resolved = launch.resolve(target)
            if not (resolved.startswith("/") and TOPIC_RE.match(resolved)):
                problems.append(f"{where}: {topic} -> {resolved!r} is not an absolute topic")
    return problems


def _check_params_file(params_file: Path, node_name: str | None,
                       table: dict[str, object]) -> list[str]:
    if not params_file.is_file():
        return [f"parameter file {params_file} does not exist"]
    data = yaml.safe_load(params_file.read_text())
    if list(data) != [node_name]:
        return [f"{params_file.name}: top-level keys {list(data)}, expected [{node_name!r}]"]
    params = data[node_name]["ros__parameters"]
    problems = [f"{params_file.name}: {n!r} is not a parameter of {node_name}"
                for n in sorted(set(params) - set(table))]
    problems += [f"{params_file.name}: {n!r} is missing" for n in sorted(set(table) - set(params))]
    problems += [f"{params_file.name}: {n!r} is {params[n]!r}, not a "
                 f"{type(table[n]).__name__}" for n in sorted(set(params) & set(table))
                 if type(params[n]) is not type(table[n])]
    return problems


def check_parameters(path: Path) -> list[str]:
    """Overrides and parameter files name the node's parameters, with the right types."""
    launch = parse_launch(path)
    problems = []
    for node in _package_nodes(path):
        if not node.parameters or node.executable not in console_scripts():
            continue
        interface = node_interface(node.executable)
        table = interface.parameters
        where = f"line {node.lineno} ({node.executable})"
        if table is None:
            problems.append(f"{where}: {interface.module} has no PARAMETERS table")
            continue
        for element in node.parameters:
            if not isinstance(element, ast.Dict):
                problems += _check_params_file(share_path(launch.resolve(element)),
                                               interface.node_name, table)
                continue
            for key, value in zip(element.keys, element.values, strict=True):
                name = ast.literal_eval(key)
                if name not in table:
                    problems.append(f"{where}: {name!r} is not a parameter of the node")
                    continue
                # A Python literal keeps its type; a substitution is typed from its text.
                typed = (value.value if isinstance(value, ast.Constant)
                         else _yaml_value(launch.resolve(value)))
                if type(typed) is not type(table[name]):
                    problems.append(f"{where}: {name} = {typed!r} by default, not a "
                                    f"{type(table[name]).__name__}")
    return problems


def check_package_files(path: Path) -> list[str]:
    """Files of the package it names (parameters, RViz config, includes) exist and install."""
    launch = parse_launch(path)
    referenced = [launch.resolve(e) for n in launch.nodes for e in (*n.parameters, *n.arguments)
                  if not isinstance(e, ast.Dict)]
    referenced += [launch.resolve(i.source) for i in launch.includes]
    problems = []
    for resolved in referenced:
        if not resolved.startswith("<share:"):
            continue  # a command-line flag such as "-d"
        relative = share_path(resolved).relative_to(REPO)
        if not (REPO / relative).is_file():
            problems.append(f"names {relative}, which does not exist")
        elif installed_as(relative) != f"share/{PACKAGE}/{relative.as_posix()}":
            problems.append(f"setup.py data_files do not install {relative}")
    for include in launch.includes:
        child_path = share_path(launch.resolve(include.source))
        if child_path.is_file():
            child = parse_launch(child_path)
            problems += [f"passes {a!r} to {child_path.name}, which does not declare it"
                         for a in sorted(set(include.launch_arguments) - set(child.arguments))]
    return problems


def check_environment(path: Path) -> list[str]:
    """A launch file starting package nodes sets the transport large messages need."""
    env = parse_launch(path).environment
    if _package_nodes(path) and env.get("FASTDDS_BUILTIN_TRANSPORTS") != "LARGE_DATA":
        return ["FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA is not set"]
    return []


def check_rviz_nodes(path: Path) -> list[str]:
    """An RViz node loads the package's RViz config."""
    launch = parse_launch(path)
    problems = []
    for node in launch.nodes:
        if node.package == "rviz2":
            arguments = [launch.resolve(a) for a in node.arguments]
            if "-d" not in arguments:
                problems.append(f"line {node.lineno}: rviz2 without -d <config>")
            else:
                config = arguments[arguments.index("-d") + 1]
                if config != f"{SHARE}/config/depth_ros.rviz":
                    problems.append(f"line {node.lineno}: rviz2 loads {config}, not the "
                                    "package's config/depth_ros.rviz")
    return problems


CHECKS = [check_arguments, check_executables, check_remappings, check_parameters,
          check_package_files, check_environment, check_rviz_nodes]


def test_launch_files_exist():
    names = set(_ids(LAUNCH_FILES))
    assert {"mono_depth.launch.py", "fusion_depth.launch.py"} <= names, names


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=_ids(LAUNCH_FILES))
def test_defines_generate_launch_description_with_actions(path):
    launch = parse_launch(path)
    functions = [f.name for f in launch.tree.body if isinstance(f, ast.FunctionDef)]
    assert "generate_launch_description" in functions
    assert launch.nodes or launch.includes, f"{path.name} starts nothing"


@pytest.mark.parametrize("check", CHECKS, ids=[c.__name__ for c in CHECKS])
@pytest.mark.parametrize("path", LAUNCH_FILES, ids=_ids(LAUNCH_FILES))
def test_launch_file(path, check):
    assert check(path) == []


BROKEN_LAUNCH = '''
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    image_topic = LaunchConfiguration("image_topic")
    unused = LaunchConfiguration("unused")
    return LaunchDescription([
        DeclareLaunchArgument("image_topic", default_value="/camera/image_raw"),
        DeclareLaunchArgument("unused", default_value="x"),
        Node(package="depth_ros", executable="mono_depth_node", name="wrong_name",
             parameters=[PathJoinSubstitution([FindPackageShare("depth_ros"), "config",
                                               "fusion_depth.yaml"]),
                         {"model_path": 3, "no_such_parameter": "x"}],
             remappings=[("image", image_topic), ("imgae", "/typo"), ("depth", "no/slash")]),
        Node(package="depth_ros", executable="no_such_node"),
        Node(package="somebody_else", executable="their_node"),
        Node(package="rviz2", executable="rviz2", arguments=["/tmp/other.rviz"]),
        Node(package="rviz2", executable="rviz2", arguments=["-d", "/tmp/other.rviz"]),
    ])
'''


def test_checks_catch_a_broken_launch_file(tmp_path):
    path = tmp_path / "broken.launch.py"
    path.write_text(BROKEN_LAUNCH)
    found = {check.__name__: "\n".join(check(path)) for check in CHECKS}
    expected = {
        "check_arguments": ["'unused' declared but never used"],
        "check_executables": ["name 'wrong_name'", "'no_such_node' is not a console script",
                              "unknown node somebody_else/their_node"],
        "check_remappings": ["remaps 'imgae'", "'no/slash' is not an absolute topic",
                             "'camera_info' is not remapped", "'points' is not remapped"],
        "check_parameters": ["top-level keys ['fusion_depth_node']",
                             "'no_such_parameter' is not a parameter",
                             "model_path = 3 by default, not a str"],
        "check_environment": ["LARGE_DATA is not set"],
        "check_rviz_nodes": ["rviz2 without -d", "rviz2 loads /tmp/other.rviz"],
    }
    for check, texts in expected.items():
        for text in texts:
            assert text in found[check], (check, text, found[check])
    assert found["check_package_files"] == ""  # config/fusion_depth.yaml exists and installs


def test_unknown_package_file_is_reported(tmp_path):
    path = tmp_path / "missing.launch.py"
    path.write_text(BROKEN_LAUNCH.replace('"fusion_depth.yaml"', '"nope.yaml"'))
    assert check_package_files(path) == ["names config/nope.yaml, which does not exist"]


NODE_EXECUTABLES = sorted({n.executable for p in LAUNCH_FILES for n in _package_nodes(p)}
                          | set(LIVE_NODES))


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
