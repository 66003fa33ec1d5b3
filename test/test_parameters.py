"""Node parameters: the one-table validation (ROS-free), its declaration on real rclpy nodes
(an integer accepted for a number, everything else one line), and the descriptors a live node
reports through its describe/set parameter services, as ``ros2 param describe/set`` does."""

from __future__ import annotations

import math
import sys
import threading
from pathlib import Path

import pytest
import yaml

from depth_ros.ros.parameters import (
    ParameterError,
    ParamSpec,
    check_value,
    check_values,
    defaults,
    format_value,
    table,
)

REPO = Path(__file__).resolve().parents[1]

NUMBER = ParamSpec("max_depth_m", 0.0, "range", minimum=0.0, maximum=1000.0)
POSITIVE = ParamSpec("rate_hz", 10.0, "rate", minimum=0.0, above_minimum=True, maximum=100.0)
INTEGER = ParamSpec("num_threads", 0, "threads", minimum=0, maximum=64)
SWITCH = ParamSpec("publish_points", True, "points")
CHOICE = ParamSpec("depth_encoding", "32FC1", "encoding", choices=("32FC1", "16UC1"))
MATRIX = ParamSpec("lidar_to_camera", [1.0] * 16, "4x4", length=16)


@pytest.mark.parametrize(("spec", "given", "expected"), [
    (NUMBER, 80, 80.0),  # the YAML slip: an integer for a number
    (NUMBER, 80.5, 80.5),
    (NUMBER, 0, 0.0),
    (NUMBER, 1000, 1000.0),
    (POSITIVE, 0.001, 0.001),
    (INTEGER, 64, 64),
    (SWITCH, False, False),
    (CHOICE, "16UC1", "16UC1"),
    (MATRIX, list(range(16)), [float(v) for v in range(16)]),  # integer list -> floats
])
def test_accepted_values_and_their_types(spec, given, expected):
    value = check_value(spec, given)
    assert value == expected and type(value) is type(expected)
    if isinstance(value, list):
        assert all(type(v) is float for v in value)


@pytest.mark.parametrize(("spec", "given", "shown", "allowed"), [
    (NUMBER, "abc", "'abc'", "a number from 0 to 1000"),
    (NUMBER, -1.0, "-1.0", "a number from 0 to 1000"),
    (NUMBER, 1000.5, "1000.5", "a number from 0 to 1000"),
    (NUMBER, math.nan, "nan", "a number"),
    (NUMBER, math.inf, "inf", "a number"),
    (NUMBER, True, "true", "a number"),  # a truth value is not a number here
    (POSITIVE, 0.0, "0.0", "a number > 0 and <= 100"),
    (INTEGER, "abc", "'abc'", "an integer from 0 to 64"),
    (INTEGER, -3, "-3", "an integer from 0 to 64"),
    (INTEGER, 2.0, "2.0", "an integer"),  # never rounded silently
    (INTEGER, False, "false", "an integer"),
    (SWITCH, "maybe", "'maybe'", "true or false"),
    (SWITCH, 1, "1", "true or false"),
    (CHOICE, "16UC3", "'16UC3'", "one of 32FC1, 16UC1"),
    (CHOICE, 16, "16", "one of 32FC1, 16UC1"),
    (MATRIX, [1, 2, 3], "[1, 2, 3]", "a list of 16 numbers"),
    (MATRIX, "eye", "'eye'", "a list of 16 numbers"),
    (MATRIX, [True] * 16, "[true", "a list of 16 numbers"),
    (MATRIX, [math.nan] * 16, "[nan", "a list of 16 numbers"),
])
def test_refused_values_get_one_line_naming_parameter_value_and_what_is_allowed(
        spec, given, shown, allowed):
    with pytest.raises(ParameterError) as info:
        check_value(spec, given)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"parameter {spec.name}: {shown}")
    assert allowed in message
    assert isinstance(info.value, ValueError)  # old `except ValueError` callers still catch it


def test_wrong_list_length_says_how_many_were_given():
    with pytest.raises(ParameterError, match=r"\(3 numbers\); it takes a list of 16 numbers"):
        check_value(MATRIX, [1.0, 2.0, 3.0])


def test_a_table_refuses_a_bad_default_and_a_name_given_twice():
    with pytest.raises(ParameterError, match="num_threads"):
        ParamSpec("num_threads", -1, "threads", minimum=0)
    with pytest.raises(ValueError, match="declared twice: num_threads"):
        table((INTEGER,), (INTEGER,))


def test_format_value_writes_yaml():
    assert [format_value(v) for v in (True, "a", 1.5, 3, [1, 2.0])] == [
        "true", "'a'", "1.5", "3", "[1, 2.0]"]


def _node_tables() -> dict[str, tuple[ParamSpec, ...]]:
    from depth_ros.ros import depth_eval_node, drive_publisher, fusion_depth_node, mono_depth_node

    return {module.NODE_NAME: module.PARAMETER_SPECS for module in (
        mono_depth_node, fusion_depth_node, depth_eval_node, drive_publisher)}


@pytest.mark.parametrize("config", ["mono_depth.yaml", "fusion_depth.yaml",
                                    "kitti_drive_publisher.yaml"])
def test_shipped_parameter_files_pass_the_tables(config):
    tables = _node_tables()
    for node, section in yaml.safe_load((REPO / "config" / config).read_text()).items():
        values = section["ros__parameters"]
        assert set(values) <= {spec.name for spec in tables[node]}
        # The shipped files hold the defaults, typed as the table types them.
        assert check_values(tables[node], values) == defaults(tables[node])


def test_every_node_parameter_has_a_description_and_a_read_only_flag_that_matches():
    from depth_ros.ros.parameters import descriptor

    for specs in _node_tables().values():
        for spec in specs:
            desc = descriptor(spec)
            assert desc.description and desc.additional_constraints, spec.name
            assert desc.read_only is (not spec.live), spec.name
            if spec.kind in ("integer", "number"):
                ranges = desc.integer_range or desc.floating_point_range
                assert len(ranges) == 1 and ranges[0].from_value == spec.minimum
                assert ranges[0].to_value == spec.maximum, spec.name


def test_rate_limited_warner_counts_every_warning_from_two_threads():
    from depth_ros.ros.rate_limit import RateLimitedWarner

    logged: list[str] = []
    warner = RateLimitedWarner(logged.append, period_s=3600.0)
    per_thread = 50000  # unlocked, about one run in three lost counts here
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: races show up
    try:
        threads = [threading.Thread(target=lambda: [warner.warn("bad", "x")
                                                    for _ in range(per_thread)])
                   for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(old)
    assert warner.counts == {"bad": 2 * per_thread}
    assert logged == ["x"]  # one line per period, whichever thread came first
    warner.period_s = 0.0
    assert warner.warn("bad", "y") and logged[-1] == f"y ({2 * per_thread - 1} similar " \
        "warnings suppressed)"


# Real rclpy nodes (in this process; no model is loaded except by the live-node test).
ros = pytest.mark.ros


@pytest.fixture
def context():
    rclpy = pytest.importorskip("rclpy")
    from rclpy.context import Context

    ctx = Context()
    rclpy.init(context=ctx, args=[])
    yield ctx
    rclpy.shutdown(context=ctx)


def _bare_node(context, overrides: dict[str, object]):
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    return Node("param_test", context=context,
                parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])


@ros
def test_declaring_accepts_an_integer_for_a_number_and_types_it_as_a_double(context):
    from rclpy.parameter import Parameter

    from depth_ros.ros.parameters import declare_parameters

    node = _bare_node(context, {"max_depth_m": 80, "lidar_to_camera": list(range(16)),
                                "num_threads": 4})
    try:
        values = declare_parameters(node, (NUMBER, MATRIX, INTEGER, SWITCH))
        assert values == {"max_depth_m": 80.0, "lidar_to_camera": [float(v) for v in range(16)],
                          "num_threads": 4, "publish_points": True}
        param = node.get_parameter("max_depth_m")
        assert param.type_ == Parameter.Type.DOUBLE and param.value == 80.0
        assert node.get_parameter("lidar_to_camera").type_ == Parameter.Type.DOUBLE_ARRAY
        desc = node.describe_parameter("max_depth_m")
        assert desc.read_only and desc.floating_point_range[0].to_value == 1000.0
    finally:
        node.destroy_node()


@ros
@pytest.mark.parametrize(("spec", "given", "words"), [
    (NUMBER, "abc", "parameter max_depth_m: 'abc' is not allowed"),
    (NUMBER, -5.0, "parameter max_depth_m: -5.0 is not allowed"),  # rclpy's range refusal
    (INTEGER, -3, "parameter num_threads: -3 is not allowed"),
    (SWITCH, "maybe", "parameter publish_points: 'maybe' is not allowed"),
    (MATRIX, [1, 2, 3], "parameter lidar_to_camera: [1, 2, 3] is not allowed"),
    (CHOICE, "16UC3", "parameter depth_encoding: '16UC3' is not allowed"),  # passes rclpy
])
def test_declaring_refuses_with_the_tables_line(context, spec, given, words):
    from depth_ros.ros.parameters import declare_parameters

    node = _bare_node(context, {spec.name: given})
    try:
        with pytest.raises(ParameterError) as info:
            declare_parameters(node, (spec,))
        assert str(info.value).startswith(words)
    finally:
        node.destroy_node()


@ros
def test_params_file_integer_for_a_number(context, tmp_path):
    """``max_depth_m: 80`` in a parameter file, read by rcl as a real run reads it."""
    import rclpy
    from rclpy.context import Context
    from rclpy.node import Node

    from depth_ros.ros.mono_depth_node import NODE_NAME, PARAMETER_SPECS
    from depth_ros.ros.parameters import declare_parameters

    params = tmp_path / "p.yaml"
    params.write_text(f"{NODE_NAME}:\n  ros__parameters:\n    max_depth_m: 80\n"
                      "    min_depth_m: 1\n    num_threads: 2\n")
    ctx = Context()
    rclpy.init(context=ctx, args=["--ros-args", "--params-file", str(params)])
    try:
        node = Node(NODE_NAME, context=ctx)
        values = declare_parameters(node, PARAMETER_SPECS)
        assert (values["max_depth_m"], values["min_depth_m"], values["num_threads"]) == (
            80.0, 1.0, 2)
        assert type(node.get_parameter("min_depth_m").value) is float
        node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)


def _call(executor, client, request):
    future = client.call_async(request)
    executor.spin_until_future_complete(future, timeout_sec=30)
    assert future.done(), "parameter service did not answer"
    return future.result()


@ros
def test_live_node_describes_its_parameters_and_applies_only_live_ones(context):
    """What ``ros2 param describe`` and ``ros2 param set`` see, through the node's services."""
    from rcl_interfaces.msg import Parameter as ParameterMsg
    from rcl_interfaces.msg import ParameterType
    from rcl_interfaces.srv import DescribeParameters, SetParameters
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    from depth_ros.ros.mono_depth_node import MonoDepthNode
    from depth_ros.weights import DEFAULT_MONO_MODEL

    node = MonoDepthNode(context=context, parameter_overrides=[
        Parameter("model_path", value=str(DEFAULT_MONO_MODEL)),
        Parameter("max_depth_m", value=60)])
    client_node = Node("param_client", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(client_node)
    try:
        describe = client_node.create_client(DescribeParameters,
                                             "/mono_depth_node/describe_parameters")
        setter = client_node.create_client(SetParameters, "/mono_depth_node/set_parameters")
        assert describe.wait_for_service(timeout_sec=30) and setter.wait_for_service(30)
        names = ["max_depth_m", "num_threads", "publish_colored", "depth_encoding"]
        found = {d.name: d for d in _call(executor, describe,
                                          DescribeParameters.Request(names=names)).descriptors}
        assert found["max_depth_m"].type == ParameterType.PARAMETER_DOUBLE
        assert found["max_depth_m"].read_only
        assert (found["max_depth_m"].floating_point_range[0].from_value,
                found["max_depth_m"].floating_point_range[0].to_value) == (0.0, 1000.0)
        assert "metres" in found["max_depth_m"].description
        assert found["num_threads"].type == ParameterType.PARAMETER_INTEGER
        assert (found["num_threads"].integer_range[0].from_value,
                found["num_threads"].integer_range[0].to_value) == (0, 1024)
        assert not found["publish_colored"].read_only
        assert "one of 32FC1, 16UC1" in found["depth_encoding"].additional_constraints
        assert node.processor.options.max_depth_m == 60.0

        def set_one(name, value):
            msg = ParameterMsg(name=name, value=Parameter(name, value=value)
                               .get_parameter_value())
            return _call(executor, setter, SetParameters.Request(parameters=[msg])).results[0]

        assert set_one("publish_colored", False).successful
        assert node.param("publish_colored") is False
        options = node.processor.options
        assert set_one("colored_range", "auto").successful
        assert node.processor.options.colored_range == "auto"
        refused = set_one("colored_range", "rainbow")
        assert not refused.successful and "one of fixed, auto" in refused.reason
        assert node.processor.options.colored_range == "auto"
        # Live policy reaches the frame processor (one new options object each time).
        assert set_one("points_decimation", 4).successful
        assert set_one("min_confidence", 0.4).successful
        assert (node.processor.options.points_decimation,
                node.processor.options.min_confidence) == (4, 0.4)
        assert not set_one("min_confidence", 1.5).successful
        assert node.processor.options.min_confidence == 0.4
        assert node.processor.options is not options and options.colored_range == "fixed"
        refused = set_one("max_depth_m", 50.0)
        assert not refused.successful and "read-only" in refused.reason
        assert not set_one("points_decimation", 0).successful
        assert set_one("warn_period_s", 0.5).successful and node.warner.period_s == 0.5
        if hasattr(node, "add_pre_set_parameters_callback"):  # Iron and later
            assert set_one("warn_period_s", 2).successful and node.warner.period_s == 2.0
    finally:
        executor.shutdown()
        client_node.destroy_node()
        node.destroy_node()


def test_unknown_parameters_are_named_with_the_nearest_known_one():
    from depth_ros.ros.parameters import unknown_parameter_warnings

    assert unknown_parameter_warnings(["max_depth", "use_sim_time", "zzz"],
                                      ["max_depth_m", "min_depth_m", "use_sim_time"]) == [
        "parameter max_depth is not a parameter of this node, ignored (did you mean "
        "max_depth_m?)",
        "parameter zzz is not a parameter of this node, ignored"]
