"""config/depth_ros.rviz: a valid RViz2 config whose classes RViz ships, whose fixed frame is
the camera frame the KITTI replay stamps, and whose topics are ones the launched nodes
subscribe or publish, with the display's message type and a QoS that can match."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from launch_files import REPO, launch_files, node_interface, parse_launch, remaps

from depth_ros.bags.topics import camera_frame
from depth_ros.ros import drive_publisher

RVIZ = REPO / "config" / "depth_ros.rviz"
# Class names as rviz_common and rviz_default_plugins register them (Humble to Kilted).
KNOWN_CLASSES = {
    "panel": {f"rviz_common/{n}" for n in ("Displays", "Selection", "Tool Properties", "Views",
                                           "Time")},
    "display": {f"rviz_default_plugins/{n}" for n in (
        "AccelStamped", "Axes", "Camera", "DepthCloud", "Effort", "FluidPressure", "Grid",
        "GridCells", "Illuminance", "Image", "InteractiveMarkers", "LaserScan", "Map",
        "Marker", "MarkerArray", "Odometry", "Path", "PointCloud", "PointCloud2",
        "PointStamped", "Polygon", "Pose", "PoseArray", "PoseWithCovariance", "Range",
        "RelativeHumidity", "RobotModel", "TF", "Temperature", "TwistStamped",
        "Wrench")} | {"rviz_common/Group"},
    "tool": {f"rviz_default_plugins/{n}" for n in (
        "Interact", "MoveCamera", "Select", "FocusCamera", "Measure", "SetInitialPose",
        "SetGoal", "PublishPoint")},
    "view": {f"rviz_default_plugins/{n}" for n in (
        "Orbit", "XYOrbit", "ThirdPersonFollower", "TopDownOrtho", "FPS")},
    "transformation": {"rviz_default_plugins/TF"},
}
# The message type each topic display subscribes to.
DISPLAY_TYPES = {"rviz_default_plugins/Image": "Image",
                 "rviz_default_plugins/Camera": "Image",
                 "rviz_default_plugins/PointCloud2": "PointCloud2"}
LAUNCH_FILES = launch_files()


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load(RVIZ.read_text())


def displays(config: dict) -> list[dict]:
    """Every display, groups flattened."""
    found, todo = [], list(config["Visualization Manager"]["Displays"])
    while todo:
        display = todo.pop(0)
        found.append(display)
        todo += display.get("Displays", [])
    return found


def topic_displays(config: dict) -> list[tuple[str, str, dict]]:
    """(class, topic, topic properties) of every display that subscribes to a topic."""
    found = []
    for display in displays(config):
        topic = display.get("Topic")
        if topic is not None:
            found.append((display["Class"], topic["Value"], topic))
    return found


def test_parses_with_the_sections_rviz_writes(config):
    assert {"Panels", "Visualization Manager", "Window Geometry"} <= set(config)
    manager = config["Visualization Manager"]
    assert {"Displays", "Global Options", "Tools", "Views"} <= set(manager)
    assert manager["Views"]["Current"]["Target Frame"] == "<Fixed Frame>"


def test_every_class_is_one_rviz_ships(config):
    manager = config["Visualization Manager"]
    used = {"panel": [p["Class"] for p in config["Panels"]],
            "display": [d["Class"] for d in displays(config)],
            "tool": [t["Class"] for t in manager["Tools"]],
            "view": [manager["Views"]["Current"]["Class"]],
            "transformation": [manager["Transformation"]["Current"]["Class"]]}
    for kind, classes in used.items():
        unknown = set(classes) - KNOWN_CLASSES[kind]
        assert not unknown, f"unknown {kind} class(es) {sorted(unknown)}"


def test_fixed_frame_is_the_replayed_camera_frame(config):
    fixed = config["Visualization Manager"]["Global Options"]["Fixed Frame"]
    # kitti_drive_publisher (live replay) and kitti_to_bag (bags) stamp camera 2 this way;
    # depth and points carry the image's header, so they need no transform to show.
    assert fixed == drive_publisher.PARAMETERS["frame_id"] == camera_frame(2)
    # The launch files pass their fixed_frame argument to rviz2 (-f), by default this one.
    for path in LAUNCH_FILES:
        launch = parse_launch(path)
        assert launch.resolve(launch.arguments["fixed_frame"]) == fixed, path.name


def test_shows_camera_colourised_depth_and_rgb_points(config):
    by_topic = {topic: (cls, display) for cls, topic, display in topic_displays(config)}
    points = [d for d in displays(config) if d["Class"] == "rviz_default_plugins/PointCloud2"
              and d["Topic"]["Value"] == "/depth_ros/points"]
    assert len(points) == 1 and points[0]["Color Transformer"] == "RGB8"
    assert points[0]["Enabled"] is True
    assert by_topic["/depth_ros/depth/colored"][0] == "rviz_default_plugins/Image"
    assert by_topic["/camera/image_raw"][0] == "rviz_default_plugins/Image"
    names = [d["Name"] for d in displays(config)]
    assert len(names) == len(set(names)), "display names must be unique (RViz keys panels by them)"


def _launched_topics(path: Path) -> dict[str, tuple[str, str, bool]]:
    """Resolved topic -> (executable, node's own topic, whether the node publishes it)."""
    table = {}
    for remap in remaps(path):
        interface = node_interface(remap.executable)
        table[remap.target] = (remap.executable, remap.topic, remap.topic in interface.published)
    return table


def _rviz_remaps(path: Path) -> dict[str, str] | None:
    """The remappings of the launch file's rviz2 node (None without one)."""
    launch = parse_launch(path)
    nodes = [n for n in launch.nodes if n.package == "rviz2"]
    if not nodes:
        return None
    (node,) = nodes
    return {topic: launch.resolve(target) for topic, target in node.remappings}


def _topic_problems(config: dict, launched: dict[str, tuple[str, str, bool]],
                    rename: dict[str, str]) -> list[str]:
    problems = []
    for cls, topic, properties in topic_displays(config):
        if cls not in DISPLAY_TYPES:
            problems.append(f"{cls} on {topic}: no message type known for this display")
            continue
        topic = rename.get(topic, topic)
        if topic not in launched:
            problems.append(f"{topic} is not a topic any launched node subscribes or publishes")
            continue
        executable, own, published = launched[topic]
        kind = node_interface(executable).message_type(own)
        if kind != DISPLAY_TYPES[cls]:
            problems.append(f"{topic} carries {kind}, {cls} shows {DISPLAY_TYPES[cls]}")
        if not published and properties["Reliability Policy"] != "Best Effort":
            # An input comes from a sensor driver, best effort by REP 2003; a reliable
            # subscription would match none of its messages.
            problems.append(f"{topic} is a node input: RViz must subscribe best effort")
    return problems


RVIZ_LAUNCH_FILES = [p for p in LAUNCH_FILES if _rviz_remaps(p) is not None]


def test_every_launch_path_with_rviz_is_checked():
    # kitti_replay starts RViz through the mono or fusion launch file it includes.
    assert [p.name for p in RVIZ_LAUNCH_FILES] == ["fusion_depth.launch.py",
                                                   "mono_depth.launch.py"]


@pytest.mark.parametrize("path", RVIZ_LAUNCH_FILES, ids=lambda p: p.name)
def test_topics_as_a_launch_file_starts_rviz(config, path):
    rename = _rviz_remaps(path)
    config_topics = {topic for _, topic, _ in topic_displays(config)}
    assert set(rename) <= config_topics, "rviz2 remaps a topic the config does not show"
    launched = _launched_topics(path)
    problems = _topic_problems(config, launched, rename)
    if "lidar/points" not in {own for _, own, _ in launched.values()}:
        # Camera only: the config's LiDAR display stays empty.
        problems.remove("/lidar/points is not a topic any launched node subscribes or "
                        "publishes")
    assert problems == []
    assert len(launched) >= 7  # each of the node's topics, remapped


def test_topic_check_catches_wrong_topics_and_types(config):
    broken = yaml.safe_load(RVIZ.read_text())
    image, points = [d for d in displays(broken)
                     if d.get("Topic", {}).get("Value") in ("/camera/image_raw",
                                                           "/depth_ros/points")]
    image["Topic"]["Reliability Policy"] = "Reliable"
    # an Image topic under a cloud display
    points["Topic"]["Value"] = "/depth_ros/depth/colored"
    mono = REPO / "launch" / "mono_depth.launch.py"
    problems = "\n".join(_topic_problems(broken, _launched_topics(mono), _rviz_remaps(mono)))
    assert "camera/image_raw is a node input" in problems
    assert "depth_ros/depth/colored carries Image" in problems
    assert "/lidar/points is not a topic" in problems  # mono has no LiDAR input
