"""Every launch file run for real: ``ros2 launch depth_ros ...`` on a colcon install.

The package is built with colcon into a temporary workspace and each launch file started
through the real ``ros2 launch`` (the ROS 2 launch/CLI wheels, see requirements/ and the
README). A real rclpy node in this process then checks the node graph (names, namespace,
every topic as remapped), the live parameters (params file, overrides, use_sim_time), that
depth comes out for a published frame, the environment the nodes got, and that the launch
stops cleanly with SIGINT and leaves no process behind. What a real run cannot check (the
RViz config, arguments declared but never used) is in test_launch_static.py and
test_rviz_config.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from rcl_interfaces.msg import ParameterType
from rcl_interfaces.srv import GetParameters
from rclpy.time import Time
from ros_helpers import Listener, cloud_message
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header

from depth_ros.geometry import PinholeCamera
from depth_ros.kitti import read_velodyne_bin
from depth_ros.ros.conversions import camera_to_camera_info, numpy_to_image
from depth_ros.ros.launching import ros_environment, stop_process

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ROS2 = BIN / "ros2"
COLCON = BIN / "colcon"
WHEELS_HINT = ("make setup installs them into .venv from ../shared/wheels/ros2 (or the folder "
               "named by DEPTH_ROS_ROS2_WHEELS) where that folder exists")


def _missing_launch_tools() -> str | None:
    """Why ``ros2 launch`` on a colcon install cannot run here (None: it can)."""
    for module in ("launch", "launch_ros", "ros2launch", "ros2param"):
        if importlib.util.find_spec(module) is None:
            return f"ROS 2 launch wheels not installed (no module {module!r}): {WHEELS_HINT}"
    for tool in (ROS2, COLCON):
        if not tool.is_file():
            return f"{tool} not found: {WHEELS_HINT}; colcon comes from requirements/ci.txt"
    return None


pytestmark = [pytest.mark.ros, pytest.mark.slow,
              pytest.mark.skipif(_missing_launch_tools() is not None,
                                 reason=str(_missing_launch_tools()))]

LAUNCH_FILES = sorted(p.name for p in (REPO / "launch").glob("*.launch.py"))
STARTED_RE = re.compile(r"\[INFO\] \[(?P<name>[\w.]+)-\d+\]: process started with pid "
                        r"\[(?P<pid>\d+)\]")
# The depth node's INFO line naming its model (logger: <namespace>.mono_depth_node).
MODEL_LINE = re.compile(r"\[INFO\] \[[\d.]+\] \[[\w.]*mono_depth_node\]: model ")
PLAYER_DONE = re.compile(r"\[depth_ros_bag_play-\d+\]: process has finished cleanly")
PROFILE = "{share}/config/fastdds_large_data.xml"
UP_TIMEOUT_S = 90  # model loading under CI load
FX, WIDTH, HEIGHT = 120.0, 160, 64


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict[str, str]:
    """The package colcon-built into a fresh workspace; the environment sourcing it gives."""
    root = tmp_path_factory.mktemp("ws")
    src = root / "src" / "depth_ros"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".venv", ".git", "outputs", "runs", "build", "install", "log", "*.egg-info",
        "__pycache__", ".pytest_cache", ".ruff_cache"))
    install = root / "install"
    result = subprocess.run(
        [str(COLCON), "--log-base", str(root / "log"), "build", "--paths", str(src),
         "--build-base", str(root / "build"), "--install-base", str(install)],
        cwd=root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    prefix = install / "depth_ros"
    (site,) = prefix.glob("lib/python3*/site-packages")
    env = ros_environment()
    # What `. install/setup.sh` sets, plus the venv's share/ (README: the wheels' ament index).
    env["AMENT_PREFIX_PATH"] = os.pathsep.join([str(prefix), sys.prefix])
    env["PYTHONPATH"] = str(site)  # the installed package, not this source tree
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    env["ROS_LOG_DIR"] = str(root / "ros_log")
    env["PYTHONUNBUFFERED"] = "1"
    return {"env": env, "share": str(prefix / "share" / "depth_ros"), "root": str(root)}


class Launch:
    """``ros2 launch depth_ros <file> <args>`` in its own process group, logging to a file."""

    def __init__(self, workspace: dict, launch_file: str, *args: str, log: Path,
                 env: dict[str, str] | None = None) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            [str(ROS2), "launch", "depth_ros", launch_file, *args],
            env=env or workspace["env"], stdout=log.open("w"), stderr=subprocess.STDOUT,
            # Its own group, so that cleanup reaches every node it started; SIGINT is not
            # ignored in it (a shell's `cmd &` would ignore it, see the wheels' README).
            start_new_session=True)

    def text(self) -> str:
        """Everything the launch printed so far."""
        return self.log.read_text()

    def pids(self) -> dict[str, int]:
        """Processes the launch started: name (e.g. mono_depth_node) -> pid."""
        return {m["name"]: int(m["pid"]) for m in STARTED_RE.finditer(self.text())}

    def stop(self) -> int:
        """SIGINT to ``ros2 launch`` alone (it forwards it once to its nodes); its exit code.

        A signal to the whole group would reach each node twice (directly and forwarded).
        Whatever is left of the group afterwards is killed, so that no test leaves a node.
        """
        try:
            return stop_process(self.proc, timeout_s=30)
        finally:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes (its parent, the launch, may not have reaped it yet).
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def _wait_for(done, timeout_s: float, launch: Launch, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if done():
            return
        if launch.proc.poll() is not None:
            break
        time.sleep(0.2)
    assert done(), f"{what}; launch output:\n{launch.text()[-4000:]}"


def _node_topics(listener: Listener, name: str, namespace: str) -> tuple[dict, dict]:
    """(subscribed, published) topic -> type name of a live node, ROS-internal ones left out."""
    node = listener.node
    internal = {"/parameter_events", "/rosout"}

    def table(entries) -> dict[str, str]:
        return {topic: types[0].rsplit("/", 1)[-1] for topic, types in entries
                if topic not in internal}

    return (table(node.get_subscriber_names_and_types_by_node(name, namespace)),
            table(node.get_publisher_names_and_types_by_node(name, namespace)))


def _wait_for_node(listener: Listener, name: str, namespace: str, launch: Launch,
                   subscriptions: int) -> None:
    """Until the node is in the graph with its input subscriptions."""
    def up() -> bool:
        listener.executor.spin_once(timeout_sec=0.05)
        if (name, namespace) not in listener.node.get_node_names_and_namespaces():
            return False
        return len(_node_topics(listener, name, namespace)[0]) >= subscriptions
    try:
        _wait_for(up, UP_TIMEOUT_S, launch, f"{namespace}/{name} did not come up")
    except AssertionError as exc:
        graph = listener.node.get_node_names_and_namespaces()
        seen = (_node_topics(listener, name, namespace) if (name, namespace) in graph
                else "not in the graph")
        raise AssertionError(f"{exc}\nnodes {graph}; {name}'s topics: {seen}") from None


def _parameters(listener: Listener, node: str, names: list[str]) -> dict[str, object]:
    """The live values of a node's parameters, through its get_parameters service."""
    client = listener.node.create_client(GetParameters, f"{node}/get_parameters")
    try:
        assert client.wait_for_service(timeout_sec=20), f"{node}/get_parameters"
        future = client.call_async(GetParameters.Request(names=names))
        assert listener.spin_until(future.done, 20), f"{node}/get_parameters did not answer"
        fields = {ParameterType.PARAMETER_BOOL: "bool_value",
                  ParameterType.PARAMETER_INTEGER: "integer_value",
                  ParameterType.PARAMETER_DOUBLE: "double_value",
                  ParameterType.PARAMETER_STRING: "string_value"}
        return {n: getattr(v, fields[v.type]) if v.type in fields else None
                for n, v in zip(names, future.result().values, strict=True)}
    finally:
        listener.node.destroy_client(client)


def _header(stamp_ns: int, frame_id: str = "camera_02_optical_frame") -> Header:
    return Header(stamp=Time(nanoseconds=stamp_ns).to_msg(), frame_id=frame_id)


def _serve(listener: Listener, publish, depth_topic: str, tries: int = 8) -> int:
    """Publish a frame (fresh stamp each try) until depth with its stamp arrives; the stamp."""
    for attempt in range(tries):
        stamp = 1_000_000_000_000 + attempt * 100_000_000
        publish(stamp)
        if listener.spin_until(lambda s=stamp: listener.stamped(depth_topic, s), 5.0):
            return stamp
    raise AssertionError(f"no depth on {depth_topic} after {tries} frames")


def _frame(stamp: int) -> tuple[Image, CameraInfo]:
    rng = np.random.default_rng(stamp % 1000)
    rgb = rng.integers(0, 255, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    camera = PinholeCamera(fx=FX, fy=FX, cx=WIDTH / 2, cy=HEIGHT / 2, width=WIDTH,
                           height=HEIGHT)
    return numpy_to_image(rgb, "rgb8", _header(stamp)), camera_to_camera_info(
        camera, _header(stamp))


def test_mono_launch_graph_parameters_and_depth(workspace, tmp_path):
    ns = "/lt_mono"
    launch = Launch(workspace, "mono_depth.launch.py", "namespace:=lt_mono",
                    "image_topic:=/lt_cam/image",  # absolute: stays outside the namespace
                    "camera_info_topic:=lt_cam/info",  # relative: inside it
                    "backend:=onnxruntime", "use_sim_time:=true", "log_level:=warn",
                    log=tmp_path / "launch.log")
    listener = Listener(ns, {"depth_ros/depth": Image})
    try:
        _wait_for_node(listener, "mono_depth_node", ns, launch, subscriptions=3)
        subscribed, published = _node_topics(listener, "mono_depth_node", ns)
        # use_sim_time:=true: the node follows /clock.
        assert subscribed == {"/lt_cam/image": "Image", f"{ns}/lt_cam/info": "CameraInfo",
                              "/clock": "Clock"}
        assert published == {f"{ns}/depth_ros/{t}": kind for t, kind in (
            ("depth", "Image"), ("depth/camera_info", "CameraInfo"), ("depth/info", "String"),
            ("depth/confidence", "Image"), ("points", "PointCloud2"),
            ("depth/colored", "Image"))} | {
            "/diagnostics": "DiagnosticArray"}
        params = _parameters(listener, f"{ns}/mono_depth_node",
                             ["backend", "model_path", "use_sim_time", "input_reliability",
                              "depth_encoding"])
        # Overrides from the arguments, the rest from the installed config/mono_depth.yaml.
        assert params == {"backend": "onnxruntime", "model_path": "", "use_sim_time": True,
                          "input_reliability": "best_effort", "depth_encoding": "32FC1"}

        image_pub = listener.node.create_publisher(Image, "/lt_cam/image", 5)
        info_pub = listener.node.create_publisher(CameraInfo, "lt_cam/info", 5)

        def publish(stamp: int) -> None:
            image, info = _frame(stamp)
            info_pub.publish(info)
            image_pub.publish(image)

        stamp = _serve(listener, publish, "depth_ros/depth")
        (depth,) = listener.stamped("depth_ros/depth", stamp)
        assert (depth.encoding, depth.width, depth.height) == ("32FC1", WIDTH, HEIGHT)
        assert depth.header.frame_id == "camera_02_optical_frame"

        node_pid = launch.pids()["mono_depth_node"]
        # The transport this process chose (conftest: the source tree's profile) is kept.
        environ = _environ(node_pid)
        chosen = os.environ["FASTDDS_DEFAULT_PROFILES_FILE"]
        assert environ["FASTDDS_DEFAULT_PROFILES_FILE"] == chosen
        assert "FASTDDS_BUILTIN_TRANSPORTS" not in environ
        assert launch.stop() == 0, launch.text()[-4000:]
        assert not _alive(node_pid), "the node outlived its launch"
    finally:
        launch.stop()
        listener.close()
    text = launch.text()
    assert "Traceback" not in text, text[-4000:]
    assert "process has finished cleanly" in text, text[-4000:]
    # log_level:=warn: the node's INFO start-up lines are not printed.
    assert not MODEL_LINE.search(text), text[-4000:]


@pytest.fixture(scope="module")
def drive_and_bag(tmp_path_factory) -> tuple[Path, Path]:
    """A small synthetic KITTI drive and its bag (kitti_to_bag)."""
    from depth_ros.bags.kitti_to_bag import ConversionOptions, convert_drive
    from depth_ros.synthetic import write_synthetic_drive

    root = tmp_path_factory.mktemp("replay")
    drive = write_synthetic_drive(root / "drive", num_frames=4, seed=3, width=WIDTH,
                                  height=HEIGHT, progress=False, azimuth_decimation=8)
    bag = convert_drive(drive, root / "bag", ConversionOptions(progress=False)).output
    return drive, bag


def test_fusion_launch_pairs_lidar_and_publishes_depth(workspace, drive_and_bag, tmp_path):
    drive, _ = drive_and_bag
    from depth_ros.kitti import KittiDrive

    kitti = KittiDrive(drive)
    calibration = kitti.calib_path("calib_velo_to_cam.txt")
    ns = "/lt_fusion"
    launch = Launch(workspace, "fusion_depth.launch.py", "namespace:=lt_fusion",
                    f"calibration_path:={calibration}", "lidar_topic:=velodyne_points",
                    log=tmp_path / "launch.log")
    listener = Listener(ns, {"depth_ros/depth": Image})
    try:
        _wait_for_node(listener, "fusion_depth_node", ns, launch, subscriptions=3)
        subscribed, _ = _node_topics(listener, "fusion_depth_node", ns)
        assert subscribed == {f"{ns}/camera/image_raw": "Image",
                              f"{ns}/camera/camera_info": "CameraInfo",
                              f"{ns}/velodyne_points": "PointCloud2"}
        params = _parameters(listener, f"{ns}/fusion_depth_node",
                             ["calibration_path", "backend", "use_sim_time"])
        assert params == {"calibration_path": str(calibration), "backend": "auto",
                          "use_sim_time": False}
        pubs = {topic: listener.node.create_publisher(kind, topic, 5) for topic, kind in (
            ("camera/image_raw", Image), ("camera/camera_info", CameraInfo),
            ("velodyne_points", PointCloud2))}
        scan = read_velodyne_bin(kitti.path / "velodyne_points" / "data"
                                 / f"{kitti.frames[0]}.bin")
        camera = kitti.camera_model()

        def publish(stamp: int) -> None:
            x, y, z, intensity = (scan[:, i] for i in range(4))
            pubs["velodyne_points"].publish(cloud_message(
                {"x": x, "y": y, "z": z, "intensity": intensity}, _header(stamp, "velo_link")))
            pubs["camera/camera_info"].publish(camera_to_camera_info(camera, _header(stamp)))
            pubs["camera/image_raw"].publish(numpy_to_image(kitti.rgb(0), "rgb8",
                                                            _header(stamp)))

        stamp = _serve(listener, publish, "depth_ros/depth")
        (depth,) = listener.stamped("depth_ros/depth", stamp)
        assert (depth.width, depth.height) == (camera.width, camera.height)
        node_pid = launch.pids()["fusion_depth_node"]
        assert launch.stop() == 0, launch.text()[-4000:]
        assert not _alive(node_pid), "the node outlived its launch"
    finally:
        launch.stop()
        listener.close()
    assert "Traceback" not in launch.text(), launch.text()[-4000:]


def test_kitti_replay_plays_the_bag_through_the_included_mono_launch(
        workspace, drive_and_bag, tmp_path):
    from rosbags.highlevel import AnyReader

    _, bag = drive_and_bag
    with AnyReader([bag]) as reader:
        conns = [c for c in reader.connections if c.topic == "/kitti/camera2/image_raw"]
        stamps = sorted(reader.deserialize(raw, c.msgtype).header.stamp.sec * 10**9
                        + reader.deserialize(raw, c.msgtype).header.stamp.nanosec
                        for c, _, raw in reader.messages(connections=conns))
    assert len(stamps) == 4
    ns = "/lt_replay"
    report = tmp_path / "eval.json"
    launch = Launch(workspace, "kitti_replay.launch.py", f"bag:={bag}", "namespace:=lt_replay",
                    "delay:=0.5", "rate:=0.5", "evaluate:=true", f"eval_report:={report}",
                    log=tmp_path / "launch.log")
    listener = Listener(ns, {"depth_ros/depth": Image})
    try:
        _wait_for_node(listener, "mono_depth_node", ns, launch, subscriptions=2)
        subscribed, _ = _node_topics(listener, "mono_depth_node", ns)
        assert subscribed == {"/kitti/camera2/image_raw": "Image",
                              "/kitti/camera2/camera_info": "CameraInfo"}
        _wait_for_node(listener, "depth_eval_node", ns, launch, subscriptions=3)
        eval_subscribed, _ = _node_topics(listener, "depth_eval_node", ns)
        assert {f"{ns}/depth_ros/depth", "/kitti/camera2/depth_groundtruth"} <= set(
            eval_subscribed)
        got = lambda: {int(Time.from_msg(m.header.stamp).nanoseconds)  # noqa: E731
                       for m in listener.msgs["depth_ros/depth"]}
        listener.spin_until(lambda: got() >= set(stamps), 60)
        # The player starts once the node's two inputs matched; at half rate the node keeps
        # up with every frame.
        assert got() == set(stamps), (sorted(got()), stamps, launch.text()[-4000:])
        pids = launch.pids()
        assert {"mono_depth_node", "depth_ros_bag_play", "depth_eval_node"} <= set(pids)
        # The player ends by itself at the end of the bag; the nodes keep running.
        _wait_for(lambda: PLAYER_DONE.search(launch.text()), 30, launch, "player still up")
        assert _alive(pids["mono_depth_node"]) and _alive(pids["depth_eval_node"])
        assert launch.stop() == 0, launch.text()[-4000:]
        assert not any(_alive(pid) for pid in pids.values()), "a node outlived its launch"
    finally:
        launch.stop()
        listener.close()
    text = launch.text()
    assert "Traceback" not in text, text[-4000:]
    assert "[lt_replay.depth_ros_bag_play]: published 36 messages" in text, text  # namespaced
    # wait_for_subscribers:=auto with evaluate:=true: image, camera_info and ground truth.
    assert "[lt_replay.depth_ros_bag_play]: waiting for 3 subscription(s)" in text, text
    assert MODEL_LINE.search(text), text  # log_level's default (info) shows INFO lines
    # The player waited for the evaluator's subscription too, so every ground-truth frame
    # reached it: scored, or unpaired where its depth came before the evaluator matched the
    # depth node (discovery between those two is not the player's to wait for).
    scores = json.loads(report.read_text())
    assert scores["frames"] + scores["unmatched"]["groundtruth"] == 4, scores


@pytest.mark.parametrize("launch_file", LAUNCH_FILES)
def test_rviz_without_rviz2_refuses_before_starting_anything(workspace, tmp_path, launch_file):
    args = ["rviz:=true"] + (["bag:=/nonexistent"] if launch_file.startswith("kitti") else [])
    launch = Launch(workspace, launch_file, *args, log=tmp_path / "launch.log")
    try:
        launch.proc.wait(timeout=60)
    finally:
        launch.stop()
    text = launch.text()
    assert launch.proc.returncode == 1, text
    errors = [line for line in text.splitlines() if "rviz2 is not installed" in line]
    assert len(errors) == 1, text
    assert "process started" not in text, text
    assert "Traceback" not in text, text


FAKE_RVIZ = """#!{python}
import json, os, pathlib, sys, time
pathlib.Path({record!r}).write_text(json.dumps([sys.argv[1:], os.environ.get(
    "FASTDDS_DEFAULT_PROFILES_FILE")]))
while not pathlib.Path({quit!r}).exists():
    time.sleep(0.1)
"""


def test_rviz_gets_config_fixed_frame_and_remaps_and_closing_it_ends_the_launch(
        workspace, tmp_path):
    # An rviz2 package of our own on AMENT_PREFIX_PATH: records how it was started, exits
    # when told (as a user closing the window).
    fake = tmp_path / "fake_rviz"
    (fake / "share/ament_index/resource_index/packages").mkdir(parents=True)
    (fake / "share/ament_index/resource_index/packages/rviz2").write_text("")
    executable = fake / "lib/rviz2/rviz2"
    executable.parent.mkdir(parents=True)
    record, quit_file = tmp_path / "rviz_args", tmp_path / "rviz_quit"
    executable.write_text(FAKE_RVIZ.format(python=sys.executable, record=str(record),
                                           quit=str(quit_file)))
    executable.chmod(0o755)
    env = dict(workspace["env"])
    env["AMENT_PREFIX_PATH"] += os.pathsep + str(fake)
    # The user's own profile (a copy of ours, so this process still talks to the node): the
    # launch keeps it.
    own_profile = tmp_path / "my_profile.xml"
    own_profile.write_bytes(Path(PROFILE.format(**workspace)).read_bytes())
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(own_profile)
    ns = "/lt_rviz"
    launch = Launch(workspace, "mono_depth.launch.py", "rviz:=true", "namespace:=lt_rviz",
                    "fixed_frame:=base_link", "image_topic:=/front/image", env=env,
                    log=tmp_path / "launch.log")
    listener = Listener(ns, {})
    try:
        _wait_for_node(listener, "mono_depth_node", ns, launch, subscriptions=2)
        _wait_for(record.exists, 30, launch, "rviz2 was not started")
        argv, transports = json.loads(record.read_text())
        config = f"{workspace['share']}/config/depth_ros.rviz"
        assert argv[:4] == ["-d", config, "-f", "base_link"], argv
        assert Path(config).is_file(), "setup.py installs config/depth_ros.rviz"
        ros_args = argv[argv.index("--ros-args"):]
        for rule in ("/camera/image_raw:=/front/image",
                     "/depth_ros/depth/colored:=depth_ros/depth/colored",
                     "/depth_ros/points:=depth_ros/points", "__node:=rviz2", "__ns:=/lt_rviz"):
            assert rule in ros_args, (rule, ros_args)
        assert transports == str(own_profile)  # the user's choice reaches RViz too
        node_pid = launch.pids()["mono_depth_node"]
        quit_file.write_text("")  # RViz closed: everything comes down
        launch.proc.wait(timeout=60)
        assert not _alive(node_pid), "the depth node outlived RViz's launch"
    finally:
        launch.stop()
        listener.close()
    assert "process[rviz2-2] was required: shutting down" in launch.text(), launch.text()


def test_shipped_transport_profile_where_none_was_chosen(workspace, tmp_path):
    env = dict(workspace["env"])
    for name in ("FASTDDS_BUILTIN_TRANSPORTS", "FASTDDS_DEFAULT_PROFILES_FILE"):
        env.pop(name, None)  # nothing chosen: the launch applies the installed profile
    launch = Launch(workspace, "mono_depth.launch.py", "namespace:=lt_profile", env=env,
                    log=tmp_path / "launch.log")
    profile = PROFILE.format(**workspace)
    try:
        _wait_for(lambda: "mono_depth_node" in launch.pids(), 60, launch, "no node started")
        environ = _environ(launch.pids()["mono_depth_node"])
        assert environ["FASTDDS_DEFAULT_PROFILES_FILE"] == profile
        assert "FASTDDS_BUILTIN_TRANSPORTS" not in environ
        # Another process on the installed profile finds the node.
        probe = {**env, "FASTDDS_DEFAULT_PROFILES_FILE": profile}
        found = ""
        deadline = time.monotonic() + 60
        while "/lt_profile/mono_depth_node" not in found and time.monotonic() < deadline:
            found = subprocess.run([str(ROS2), "node", "list", "--no-daemon"], env=probe,
                                   capture_output=True, text=True, timeout=60).stdout
        assert "/lt_profile/mono_depth_node" in found, (found, launch.text())
    finally:
        launch.stop()


def test_user_transport_choice_is_kept(workspace, tmp_path):
    # Only the environment matters here: the node is checked, not its traffic.
    env = dict(workspace["env"])
    env["FASTDDS_BUILTIN_TRANSPORTS"] = "UDPv4"
    env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    launch = Launch(workspace, "mono_depth.launch.py", "namespace:=lt_env", env=env,
                    log=tmp_path / "launch.log")
    try:
        _wait_for(lambda: "mono_depth_node" in launch.pids(), 60, launch, "no node started")
        environ = _environ(launch.pids()["mono_depth_node"])
        assert environ["FASTDDS_BUILTIN_TRANSPORTS"] == "UDPv4"
        assert "FASTDDS_DEFAULT_PROFILES_FILE" not in environ  # not both (docs/transport.md)
    finally:
        launch.stop()


@pytest.mark.parametrize("launch_file", LAUNCH_FILES)
def test_arguments_a_ros_user_expects(workspace, launch_file):
    result = subprocess.run([str(ROS2), "launch", "depth_ros", launch_file, "--show-args"],
                            env=workspace["env"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    # "    'name':\n        description\n        (default: ...)"
    blocks = re.split(r"\n\s+'", "\n" + result.stdout)
    arguments = {b.split("'", 1)[0]: b for b in blocks[1:]}
    assert {"namespace", "use_sim_time", "log_level", "rviz", "fixed_frame", "backend",
            "model_path", "image_topic", "depth_topic"} <= set(arguments), result.stdout
    for backend in ("auto", "tensorrt", "onnxruntime", "torch"):
        assert backend in arguments["backend"], arguments["backend"]
