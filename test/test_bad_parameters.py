"""Every bad parameter, on the command line (``-p``) and in a parameter file, stops the real
node process with exit code 1 and exactly one FATAL line naming the parameter and the value:
no traceback, and before the model loads (so each row costs about a second).

Rows: (executable, parameter, value as YAML, words the line must hold). The same table runs in
both forms; the integer-for-a-number rows run as good starts (``ros2 param`` sees a float).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from depth_ros.ros.launching import node_command, ros_environment

pytestmark = [pytest.mark.ros]

BAD = [
    # (executable, parameter, YAML value, words of what is allowed)
    ("mono_depth_node", "num_threads", "abc", "an integer from 0 to 1024"),
    ("mono_depth_node", "num_threads", "-3", "an integer from 0 to 1024"),
    ("mono_depth_node", "num_threads", "2.5", "an integer"),
    ("mono_depth_node", "input_width", "-5", "an integer from 0 to 16384"),
    ("mono_depth_node", "publish_points", "maybe", "true or false"),
    ("mono_depth_node", "publish_points", "1", "true or false"),
    ("mono_depth_node", "max_depth_m", "abc", "a number from 0 to 1000"),
    ("mono_depth_node", "max_depth_m", ".nan", "a number from 0 to 1000"),
    ("mono_depth_node", "min_depth_m", "-1.0", "a number from 0 to 1000"),
    ("mono_depth_node", "warn_period_s", "-1.0", "a number from 0 to 3600"),
    ("mono_depth_node", "diagnostics_period_s", "0", "a number > 0"),
    ("mono_depth_node", "depth_encoding", "16UC3", "one of 32FC1, 16UC1"),
    ("mono_depth_node", "colored_range", "rainbow", "one of fixed, auto"),
    ("mono_depth_node", "points_decimation", "0", "an integer from 1 to 64"),
    ("mono_depth_node", "input_reliability", "sometimes", "one of best_effort, reliable"),
    ("mono_depth_node", "output_depth", "0", "an integer from 1 to 1000"),
    ("mono_depth_node", "backend", "tensorflow", "one of auto, tensorrt, onnxruntime, torch"),
    ("mono_depth_node", "model_path", "[1, 2]", "a file path"),
    ("fusion_depth_node", "lidar_to_camera", "[1, 2, 3]", "16 numbers"),
    ("fusion_depth_node", "lidar_to_camera", "[1.0, 0.0]", "16 numbers"),
    ("fusion_depth_node", "calibration_camera", "7", "an integer from 0 to 3"),
    ("fusion_depth_node", "sync_slop_s", "-0.1", "a number from 0 to 10"),
    ("fusion_depth_node", "lidar_timeout_s", "soon", "a number from 0 to 3600"),
    ("fusion_depth_node", "num_threads", "abc", "an integer from 0 to 1024"),
    ("depth_eval_node", "crop", "kitti", "'garg' or 'eigen'"),
    ("depth_eval_node", "slop_s", "-1.0", "a number from 0 to 10"),
    ("depth_eval_node", "qos_depth", "0", "an integer from 1 to 1000"),
    ("depth_eval_node", "max_depth_m", "0", "a number > 0"),
    ("kitti_drive_publisher", "rate_hz", "0", "a number > 0"),
    ("kitti_drive_publisher", "stamp_source", "later", "one of now, drive"),
    ("kitti_drive_publisher", "camera", "2.0", "an integer from 0 to 3"),
]


def _shown(value: str) -> str:
    """How the FATAL line writes a YAML value."""
    known = {"abc": "'abc'", "maybe": "'maybe'", "16UC3": "'16UC3'", "rainbow": "'rainbow'",
             "sometimes": "'sometimes'", "tensorflow": "'tensorflow'", "kitti": "'kitti'",
             "later": "'later'", "soon": "'soon'", ".nan": "nan", "1": "1", "0": "0"}
    return known.get(value, value)


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          env=ros_environment())


def _assert_one_fatal_line(result: subprocess.CompletedProcess, *words: str) -> str:
    output = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode == 1, output
    assert "Traceback" not in result.stdout + result.stderr, output
    assert len(output) == 1 and output[0].startswith("[FATAL]"), output
    for word in words:
        assert word in output[0], (word, output[0])
    return output[0]


def _params_file(tmp_path: Path, executable: str, values: dict[str, str]) -> Path:
    path = tmp_path / "params.yaml"
    lines = [f"{executable}:", "  ros__parameters:"]
    lines += [f"    {name}: {value}" for name, value in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def _required(executable: str, tmp_path: Path) -> dict[str, str]:
    """Good values a node needs besides the bad one (the drive publisher's drive)."""
    if executable == "kitti_drive_publisher":
        return {"drive_path": str(tmp_path)}
    if executable == "depth_eval_node":
        return {"report_path": str(tmp_path / "r.json")}
    return {}


@pytest.mark.parametrize("form", ["-p", "params-file"])
@pytest.mark.parametrize(("executable", "name", "value", "allowed"), BAD,
                         ids=[f"{e}-{n}={v}" for e, n, v, _ in BAD])
def test_bad_parameter_is_one_fatal_line(tmp_path, form, executable, name, value, allowed):
    values = {**_required(executable, tmp_path), name: value}
    if form == "-p":
        cmd = node_command(executable)
        for key, text in values.items():
            cmd += ["-p", f"{key}:={text}"]
    else:
        cmd = node_command(executable, _params_file(tmp_path, executable, values))
    line = _assert_one_fatal_line(_run(cmd), f"parameter {name}: {_shown(value)} is not "
                                  "allowed", allowed)
    assert f"[{executable}]" in line


@pytest.mark.parametrize(("params", "words"), [
    ({"input_width": "640"}, ["input_width and input_height", "give both"]),
    ({"min_depth_m": "50.0", "max_depth_m": "10"}, ["min_depth_m must be below max_depth_m"]),
])
def test_parameters_that_do_not_go_together_are_one_line(params, words):
    cmd = node_command("mono_depth_node")
    for key, text in params.items():
        cmd += ["-p", f"{key}:={text}"]
    _assert_one_fatal_line(_run(cmd), *words)


def test_a_list_mixing_integers_and_floats_is_one_fatal_line_after_rcls_own(tmp_path):
    """rcl refuses ``[1, 0.5]`` while parsing the arguments (no node code runs): its own ERROR
    line comes first, then ours says what to write."""
    matrix = "[1, 0, 0, 0.5, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]"
    cmd = node_command("fusion_depth_node",
                       _params_file(tmp_path, "fusion_depth_node", {"lidar_to_camera": matrix}))
    result = _run(cmd)
    output = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode == 1 and "Traceback" not in result.stderr, output
    fatal = [line for line in output if line.startswith("[FATAL]")]
    assert len(fatal) == 1 and len(output) <= 2, output
    assert str(tmp_path / "params.yaml") in fatal[0] and "1.0, not 1" in fatal[0]
    assert "/project/src" not in fatal[0]  # rcl's C source locations are dropped


@pytest.mark.parametrize("form", ["-p", "params-file"])
def test_an_integer_for_a_number_is_accepted(tmp_path, form):
    """``max_depth_m: 80``: every parameter passes and the node goes on to load its model
    (missing here, so it stops there: test_parameters.py checks the value, 80.0, in-process).
    """
    values = {"max_depth_m": "80", "min_depth_m": "1", "depth_encoding": "16UC1",
              "model_path": str(tmp_path / "missing.onnx")}
    if form == "-p":
        cmd = node_command("mono_depth_node")
        for key, text in values.items():
            cmd += ["-p", f"{key}:={text}"]
    else:
        cmd = node_command("mono_depth_node", _params_file(tmp_path, "mono_depth_node", values))
    # The model is missing: the node gets past every parameter and stops at the model.
    _assert_one_fatal_line(_run(cmd), "model file not found", str(tmp_path / "missing.onnx"))


def test_backend_that_cannot_run_here_is_one_fatal_line():
    pytest.importorskip("onnxruntime")
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("TensorRT is installed here")
    cmd = [*node_command("mono_depth_node"), "-p", "backend:=tensorrt"]
    _assert_one_fatal_line(_run(cmd), "parameter backend: 'tensorrt' cannot run here",
                           "tensorrt")


@pytest.mark.parametrize(("name", "content", "backend", "words"), [
    ("random.onnx", bytes(range(256)) * 8, "auto", "is not an ONNX model"),
    ("random.onnx", bytes(range(256)) * 8, "onnxruntime", "is not an ONNX model"),
    ("random.onnx", bytes(range(256)) * 8, "tensorrt", "is not an ONNX model"),
    ("empty.onnx", b"", "auto", "holds no ONNX graph"),
    ("text.pt", b"hello, I am a text file\n", "torch", "not a PyTorch checkpoint"),
    ("empty.pt", b"", "torch", "the file is empty"),
])
def test_broken_model_file_is_one_line_naming_the_file_and_the_problem(tmp_path, name, content,
                                                                       backend, words):
    path = tmp_path / name
    path.write_bytes(content)
    cmd = [*node_command("mono_depth_node"), "-p", f"model_path:={path}",
           "-p", f"backend:={backend}"]
    line = _assert_one_fatal_line(_run(cmd), str(path), words)
    assert "101" not in line.split(str(path))[-1]  # not torch's bare pickle opcode


def test_a_checkpoint_of_something_else_names_what_it_lacks(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    cmd = [*node_command("mono_depth_node"), "-p", f"model_path:={path}",
           "-p", "backend:=torch"]
    _assert_one_fatal_line(_run(cmd), str(path), "not a depth_ros checkpoint",
                           "state_dict, metadata")


@pytest.mark.parametrize("backend", ["onnxruntime", "auto"])
def test_missing_onnxruntime_is_one_fatal_line(backend):
    """As after ``rosdep install`` without the pip key: onnxruntime does not import."""
    import sys

    script = ("import sys; sys.modules['onnxruntime'] = None\n"
              "from depth_ros.ros.mono_depth_node import main\n"
              f"sys.exit(main(['--ros-args', '-p', 'backend:={backend}']))\n")
    if backend == "auto":  # torch would step in: take it away too
        script = "import sys; sys.modules['torch'] = None\n" + script
    result = _run([sys.executable, "-c", script])
    _assert_one_fatal_line(result, f"parameter backend: '{backend}' cannot run here",
                           "onnxruntime is not installed")


_FAILING_SPIN = """
import sys, rclpy
from rclpy.node import Node
from depth_ros.ros import entry
def spin(node):
    if sys.argv[1] == "after_shutdown":
        rclpy.shutdown()  # what Ctrl-C does to the context before KeyboardInterrupt arrives
    raise entry.RCLError("failed to initialize wait set: the given context is not valid")
entry.rclpy.spin = spin
sys.exit(entry.run_node(lambda: Node("spin_stop"), "spin_stop", None))
"""


@pytest.mark.parametrize("when, code", [("after_shutdown", 0), ("while_up", 1)])
def test_a_spin_cut_short_by_ctrl_c_is_a_stop_and_any_other_failure_an_error(when, code):
    """Ctrl-C shuts the context down at once; a spin between two waits then fails to build its
    wait set before KeyboardInterrupt arrives (seen once in CI: a node exited 1 with a
    traceback). That is a clean stop; the same failure with the context up is an error."""
    run = subprocess.run([sys.executable, "-c", _FAILING_SPIN, when], capture_output=True,
                         text=True, timeout=120, env=ros_environment())
    assert run.returncode == code, run.stderr[-2000:]
    assert ("the given context is not valid" in run.stderr) == (code != 0)
