"""Replay a KITTI bag (from kitti_to_bag) through the mono or fusion depth node.

    ros2 launch depth_ros kitti_replay.launch.py bag:=drive_0001_bag
    ros2 launch depth_ros kitti_replay.launch.py bag:=drive_0001_bag mode:=fusion \
        calibration_path:=/data/kitti/2011_09_26/calib_velo_to_cam.txt rviz:=true \
        evaluate:=true eval_report:=/tmp/drive_0001_eval.json

The depth node comes from mono_depth.launch.py or fusion_depth.launch.py (included, with the
same arguments). The bag is played by the package's ``depth_ros_bag_play`` node
(``player:=depth_ros``, works without rosbag2) or by ``ros2 bag play`` (``player:=ros2``,
needs rosbag2 and its MCAP plugin), ``delay`` seconds after the node starts so that no frame
goes to a node still loading its model (ours also waits for the node's subscriptions to
match: a new participant's first messages are otherwise lost to discovery). The inputs are
the bag's topics (absolute: a bag is not namespaced); the outputs default to relative names,
inside ``namespace``. With ``use_sim_time:=true`` our player also publishes /clock. With
``evaluate:=true``, depth_eval_node scores the depth against the bag's ground truth and
writes ``eval_report`` at the end of the bag (``idle_timeout_s``) and at shutdown.
"""

from launch import LaunchContext, LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    ExecuteProcess,
    GroupAction,
    IncludeLaunchDescription,
    OpaqueFunction,
    SetEnvironmentVariable,
    TimerAction,
)
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node, PushRosNamespace
from launch_ros.substitutions import FindPackageShare

from depth_ros.transport import transport_environment

# Arguments handed unchanged to the included mono/fusion launch file.
SHARED_ARGUMENTS = ("model_path", "backend", "namespace", "use_sim_time", "log_level", "rviz",
                    "fixed_frame", "image_topic", "camera_info_topic", "depth_topic",
                    "points_topic")


def large_message_transport(context: LaunchContext) -> list:
    """The shipped Fast DDS profile for the player, the nodes and RViz (docs/transport.md),
    unless the user already chose a profile, FASTDDS_BUILTIN_TRANSPORTS or another RMW."""
    return [SetEnvironmentVariable(name, value)
            for name, value in transport_environment(context.environment).items()]


def generate_launch_description() -> LaunchDescription:
    bag = LaunchConfiguration("bag")
    mode = LaunchConfiguration("mode")
    player = LaunchConfiguration("player")
    rate = LaunchConfiguration("rate")
    delay = LaunchConfiguration("delay")
    wait_for_subscribers = LaunchConfiguration("wait_for_subscribers")
    evaluate = LaunchConfiguration("evaluate")
    eval_report = LaunchConfiguration("eval_report")
    mono_params_file = LaunchConfiguration("mono_params_file")
    fusion_params_file = LaunchConfiguration("fusion_params_file")
    calibration_path = LaunchConfiguration("calibration_path")
    namespace = LaunchConfiguration("namespace")
    use_sim_time = LaunchConfiguration("use_sim_time")
    lidar_topic = LaunchConfiguration("lidar_topic")
    groundtruth_topic = LaunchConfiguration("groundtruth_topic")
    depth_topic = LaunchConfiguration("depth_topic")

    shared = [(name, LaunchConfiguration(name)) for name in SHARED_ARGUMENTS]
    launch_dir = PathJoinSubstitution([FindPackageShare("depth_ros"), "launch"])
    # A message sent before its subscriber matched is lost: wait for every input that
    # must see the whole bag.
    subscribers = PythonExpression([
        "str(2 + ('", mode, "' == 'fusion') + ('", evaluate, "'.lower() in ('true', '1'))) "
        "if '", wait_for_subscribers, "' == 'auto' else '", wait_for_subscribers, "'"])
    # Our player publishes /clock exactly when the node runs on it.
    clock_hz = PythonExpression(["100.0 if '", use_sim_time, "'.lower() in ('true', '1') "
                                 "else 0.0"])

    return LaunchDescription([
        DeclareLaunchArgument("bag", description="bag directory written by kitti_to_bag"),
        DeclareLaunchArgument("mode", default_value="mono", choices=["mono", "fusion"],
                              description="mono: camera only; fusion: camera + LiDAR"),
        DeclareLaunchArgument("player", default_value="depth_ros",
                              choices=["depth_ros", "ros2"],
                              description="depth_ros: the depth_ros_bag_play node; "
                                          "ros2: ros2 bag play"),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback speed"),
        DeclareLaunchArgument("delay", default_value="3.0",
                              description="seconds between starting the node and the bag"),
        DeclareLaunchArgument("wait_for_subscribers", default_value="auto",
                              description="depth_ros player: start once this many "
                                          "subscriptions to the bag's topics matched; auto: "
                                          "the node's inputs (2 mono, 3 fusion) plus the "
                                          "evaluator's ground truth"),
        DeclareLaunchArgument("evaluate", default_value="false",
                              description="score depth against the bag's ground truth"),
        DeclareLaunchArgument("eval_report", default_value="depth_eval.json",
                              description="depth_eval_node's JSON report (PNG beside it)"),
        DeclareLaunchArgument(
            "mono_params_file",
            default_value=PathJoinSubstitution(
                [FindPackageShare("depth_ros"), "config", "mono_depth.yaml"]),
            description="Parameter file of mono_depth_node"),
        DeclareLaunchArgument(
            "fusion_params_file",
            default_value=PathJoinSubstitution(
                [FindPackageShare("depth_ros"), "config", "fusion_depth.yaml"]),
            description="Parameter file of fusion_depth_node"),
        DeclareLaunchArgument("model_path", default_value="",
                              description="ONNX model or .pt checkpoint; empty: bundled model"),
        DeclareLaunchArgument("backend", default_value="auto",
                              choices=["auto", "tensorrt", "onnxruntime", "torch"],
                              description="auto | tensorrt | onnxruntime | torch"),
        DeclareLaunchArgument("calibration_path", default_value="",
                              description="fusion: the drive's calib_velo_to_cam.txt"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of the nodes (and of relative topics)"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="nodes run on the bag's time (/clock from our "
                                          "player)"),
        DeclareLaunchArgument("log_level", default_value="info",
                              choices=["debug", "info", "warn", "error", "fatal"],
                              description="the depth node's log level"),
        DeclareLaunchArgument("rviz", default_value="false", description="start RViz2"),
        DeclareLaunchArgument("fixed_frame", default_value="camera_02_optical_frame",
                              description="RViz fixed frame (kitti_to_bag stamps camera 2 "
                                          "images with camera_02_optical_frame)"),
        DeclareLaunchArgument("image_topic", default_value="/kitti/camera2/image_raw"),
        DeclareLaunchArgument("camera_info_topic", default_value="/kitti/camera2/camera_info"),
        DeclareLaunchArgument("lidar_topic", default_value="/kitti/velo/pointcloud"),
        DeclareLaunchArgument("groundtruth_topic",
                              default_value="/kitti/camera2/depth_groundtruth"),
        DeclareLaunchArgument("depth_topic", default_value="depth_ros/depth"),
        DeclareLaunchArgument("points_topic", default_value="depth_ros/points"),
        # Both ends of every image topic need it: the player as much as the node.
        OpaqueFunction(function=large_message_transport),
        # Before any node: with rviz:=true and no rviz2, the included file refuses first.
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(
                PathJoinSubstitution([launch_dir, "mono_depth.launch.py"])),
            launch_arguments=[*shared, ("params_file", mono_params_file)],
            condition=IfCondition(PythonExpression(["'", mode, "' == 'mono'"]))),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(
                PathJoinSubstitution([launch_dir, "fusion_depth.launch.py"])),
            launch_arguments=[*shared, ("params_file", fusion_params_file),
                              ("lidar_topic", lidar_topic),
                              ("calibration_path", calibration_path)],
            condition=IfCondition(PythonExpression(["'", mode, "' == 'fusion'"]))),
        GroupAction([
            PushRosNamespace(namespace),
            Node(
                package="depth_ros",
                executable="depth_eval_node",
                name="depth_eval_node",
                output="screen",
                condition=IfCondition(evaluate),
                parameters=[{"report_path": eval_report, "use_sim_time": use_sim_time}],
                remappings=[
                    ("depth", depth_topic),
                    ("groundtruth/depth", groundtruth_topic),
                ],
            ),
        ]),
        # The timer has a namespace group of its own: its actions run when it fires, after the
        # group above has closed its scope.
        TimerAction(period=delay, actions=[GroupAction([
            PushRosNamespace(namespace),
            # A node of this package: colcon installs it in lib/depth_ros, not on PATH.
            Node(
                package="depth_ros",
                executable="depth_ros_bag_play",
                name="depth_ros_bag_play",
                output="screen",
                condition=IfCondition(PythonExpression(["'", player, "' == 'depth_ros'"])),
                arguments=[bag, "--rate", rate, "--wait-for-subscribers", subscribers,
                           "--clock", clock_hz, "--no-progress"],
            ),
            ExecuteProcess(
                cmd=["ros2", "bag", "play", bag, "--rate", rate],
                output="screen",
                condition=IfCondition(PythonExpression(["'", player, "' == 'ros2'"])),
            ),
        ])]),
    ])
