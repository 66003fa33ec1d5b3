"""Replay a KITTI bag (from kitti_to_bag) through the mono or fusion depth node.

    ros2 launch depth_ros kitti_replay.launch.py bag:=drive_0001_bag
    ros2 launch depth_ros kitti_replay.launch.py bag:=drive_0001_bag mode:=fusion \
        calibration_path:=/data/kitti/2011_09_26/calib_velo_to_cam.txt rviz:=true \
        evaluate:=true eval_report:=/tmp/drive_0001_eval.json

The bag is played by ``depth_ros_bag_play`` (``player:=depth_ros``, works on pip installs) or
by ``ros2 bag play`` (``player:=ros2``, needs rosbag2 and its MCAP plugin), ``delay`` seconds
after the node starts so that no frame goes to a node still loading its model (ours also
waits for the node's subscriptions to match: a new participant's first messages are otherwise
lost to discovery). The node's
inputs are remapped from the bag's topics, its outputs to /depth_ros/...; with
``evaluate:=true``, depth_eval_node scores the depth against the bag's ground truth and writes
``eval_report`` at the end of the bag (``idle_timeout_s``) and at shutdown.
"""

from launch import LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    ExecuteProcess,
    SetEnvironmentVariable,
    TimerAction,
)
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    bag = LaunchConfiguration("bag")
    mode = LaunchConfiguration("mode")
    player = LaunchConfiguration("player")
    rate = LaunchConfiguration("rate")
    delay = LaunchConfiguration("delay")
    wait_for_subscribers = LaunchConfiguration("wait_for_subscribers")
    rviz = LaunchConfiguration("rviz")
    evaluate = LaunchConfiguration("evaluate")
    eval_report = LaunchConfiguration("eval_report")
    mono_params_file = LaunchConfiguration("mono_params_file")
    fusion_params_file = LaunchConfiguration("fusion_params_file")
    model_path = LaunchConfiguration("model_path")
    backend = LaunchConfiguration("backend")
    calibration_path = LaunchConfiguration("calibration_path")
    image_topic = LaunchConfiguration("image_topic")
    camera_info_topic = LaunchConfiguration("camera_info_topic")
    lidar_topic = LaunchConfiguration("lidar_topic")
    groundtruth_topic = LaunchConfiguration("groundtruth_topic")
    depth_topic = LaunchConfiguration("depth_topic")
    points_topic = LaunchConfiguration("points_topic")

    mono = IfCondition(PythonExpression(["'", mode, "' == 'mono'"]))
    fusion = IfCondition(PythonExpression(["'", mode, "' == 'fusion'"]))
    our_player = IfCondition(PythonExpression(["'", player, "' == 'depth_ros'"]))
    ros2_player = IfCondition(PythonExpression(["'", player, "' == 'ros2'"]))

    return LaunchDescription([
        DeclareLaunchArgument("bag", description="bag directory written by kitti_to_bag"),
        DeclareLaunchArgument("mode", default_value="mono", choices=["mono", "fusion"],
                              description="mono: camera only; fusion: camera + LiDAR"),
        DeclareLaunchArgument("player", default_value="depth_ros",
                              choices=["depth_ros", "ros2"],
                              description="depth_ros: depth_ros_bag_play (pip installs); "
                                          "ros2: ros2 bag play"),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback speed"),
        DeclareLaunchArgument("delay", default_value="3.0",
                              description="seconds between starting the node and the bag"),
        DeclareLaunchArgument("wait_for_subscribers", default_value="2",
                              description="depth_ros player: start once this many "
                                          "subscriptions matched (the node's image and "
                                          "camera_info)"),
        DeclareLaunchArgument("rviz", default_value="false", description="start RViz2"),
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
                              description="auto | onnxruntime | torch"),
        DeclareLaunchArgument("calibration_path", default_value="",
                              description="fusion: the drive's calib_velo_to_cam.txt"),
        DeclareLaunchArgument("image_topic", default_value="/kitti/camera2/image_raw"),
        DeclareLaunchArgument("camera_info_topic", default_value="/kitti/camera2/camera_info"),
        DeclareLaunchArgument("lidar_topic", default_value="/kitti/velo/pointcloud"),
        DeclareLaunchArgument("groundtruth_topic",
                              default_value="/kitti/camera2/depth_groundtruth"),
        DeclareLaunchArgument("depth_topic", default_value="/depth_ros/depth"),
        DeclareLaunchArgument("points_topic", default_value="/depth_ros/points"),
        # Fast DDS drops most large messages between processes with its default transports.
        SetEnvironmentVariable("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA"),
        Node(
            package="depth_ros",
            executable="mono_depth_node",
            name="mono_depth_node",
            output="screen",
            condition=mono,
            parameters=[mono_params_file, {"model_path": model_path, "backend": backend}],
            remappings=[
                ("image", image_topic),
                ("camera_info", camera_info_topic),
                ("depth", depth_topic),
                ("depth/camera_info", [depth_topic, "/camera_info"]),
                ("depth/info", [depth_topic, "/info"]),
                ("points", points_topic),
                ("depth/colored", [depth_topic, "/colored"]),
            ],
        ),
        Node(
            package="depth_ros",
            executable="fusion_depth_node",
            name="fusion_depth_node",
            output="screen",
            condition=fusion,
            parameters=[fusion_params_file, {"model_path": model_path, "backend": backend,
                                             "calibration_path": calibration_path}],
            remappings=[
                ("image", image_topic),
                ("camera_info", camera_info_topic),
                ("lidar/points", lidar_topic),
                ("depth", depth_topic),
                ("depth/camera_info", [depth_topic, "/camera_info"]),
                ("depth/info", [depth_topic, "/info"]),
                ("points", points_topic),
                ("depth/colored", [depth_topic, "/colored"]),
            ],
        ),
        Node(
            package="depth_ros",
            executable="depth_eval_node",
            name="depth_eval_node",
            output="screen",
            condition=IfCondition(evaluate),
            parameters=[{"report_path": eval_report}],
            remappings=[
                ("depth", depth_topic),
                ("groundtruth/depth", groundtruth_topic),
            ],
        ),
        Node(
            package="rviz2",
            executable="rviz2",
            name="rviz2",
            output="screen",
            condition=IfCondition(rviz),
            arguments=["-d", PathJoinSubstitution(
                [FindPackageShare("depth_ros"), "config", "depth_ros.rviz"])],
            # The shipped config shows a live camera's topics; here they come from the bag.
            remappings=[
                ("/camera/image_raw", image_topic),
                ("/lidar/points", lidar_topic),
            ],
        ),
        TimerAction(period=delay, actions=[
            ExecuteProcess(
                cmd=["depth_ros_bag_play", bag, "--rate", rate, "--wait-for-subscribers",
                     wait_for_subscribers, "--no-progress"],
                output="screen",
                condition=our_player,
            ),
            ExecuteProcess(
                cmd=["ros2", "bag", "play", bag, "--rate", rate],
                output="screen",
                condition=ros2_player,
            ),
        ]),
    ])
