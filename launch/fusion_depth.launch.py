"""Start fusion_depth_node with its parameter file, a model, extrinsics and remapped topics.

    ros2 launch depth_ros fusion_depth.launch.py image_topic:=/camera/image_raw \
        camera_info_topic:=/camera/camera_info lidar_topic:=/velodyne_points \
        calibration_path:=/data/kitti/2011_09_26/calib_velo_to_cam.txt

Topic arguments may be relative: they then resolve inside ``namespace`` (the defaults are).
``rviz:=true`` needs rviz2; without it the launch refuses with one error before starting
anything, and closing RViz ends the launch.
"""

import os

from ament_index_python.packages import PackageNotFoundError, get_package_prefix
from launch import LaunchContext, LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    GroupAction,
    OpaqueFunction,
    SetEnvironmentVariable,
    Shutdown,
)
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node, PushRosNamespace
from launch_ros.substitutions import FindPackageShare

from depth_ros.transport import transport_environment


def require_rviz(context: LaunchContext) -> list:
    """Refuse ``rviz:=true`` where rviz2 is not installed, before any node starts."""
    try:
        executable = os.path.join(get_package_prefix("rviz2"), "lib", "rviz2", "rviz2")
    except PackageNotFoundError:
        executable = None
    if executable is None or not os.access(executable, os.X_OK):
        raise RuntimeError("rviz:=true, but rviz2 is not installed (no rviz2 package on "
                           "AMENT_PREFIX_PATH): install ros-$ROS_DISTRO-rviz2, or launch "
                           "with rviz:=false")
    return []


def large_message_transport(context: LaunchContext) -> list:
    """The shipped Fast DDS profile for the nodes (docs/transport.md), unless the user
    already chose a profile, FASTDDS_BUILTIN_TRANSPORTS or another RMW."""
    return [SetEnvironmentVariable(name, value)
            for name, value in transport_environment(context.environment).items()]


def generate_launch_description() -> LaunchDescription:
    params_file = LaunchConfiguration("params_file")
    model_path = LaunchConfiguration("model_path")
    backend = LaunchConfiguration("backend")
    namespace = LaunchConfiguration("namespace")
    use_sim_time = LaunchConfiguration("use_sim_time")
    log_level = LaunchConfiguration("log_level")
    rviz = LaunchConfiguration("rviz")
    fixed_frame = LaunchConfiguration("fixed_frame")
    calibration_path = LaunchConfiguration("calibration_path")
    image_topic = LaunchConfiguration("image_topic")
    camera_info_topic = LaunchConfiguration("camera_info_topic")
    lidar_topic = LaunchConfiguration("lidar_topic")
    depth_topic = LaunchConfiguration("depth_topic")
    points_topic = LaunchConfiguration("points_topic")

    return LaunchDescription([
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution(
                [FindPackageShare("depth_ros"), "config", "fusion_depth.yaml"]),
            description="Parameter file of fusion_depth_node"),
        DeclareLaunchArgument("model_path", default_value="",
                              description="ONNX model or .pt checkpoint; empty: bundled model; "
                                          "classical: IP-Basic completion of the LiDAR (no "
                                          "network, no GPU)"),
        DeclareLaunchArgument("backend", default_value="auto",
                              choices=["auto", "tensorrt", "onnxruntime", "torch"],
                              description="auto | tensorrt | onnxruntime | torch"),
        DeclareLaunchArgument("calibration_path", default_value="",
                              description="KITTI calib_velo_to_cam.txt; empty: the "
                                          "lidar_to_camera parameter of params_file, else TF"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of the node (and of relative topics)"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="use /clock (e.g. a bag played with --clock)"),
        DeclareLaunchArgument("log_level", default_value="info",
                              choices=["debug", "info", "warn", "error", "fatal"],
                              description="the node's log level"),
        DeclareLaunchArgument("rviz", default_value="false",
                              description="start RViz2 with config/depth_ros.rviz"),
        DeclareLaunchArgument("fixed_frame", default_value="camera_02_optical_frame",
                              description="RViz fixed frame: the camera's optical frame "
                                          "(depth and points carry the image's frame_id)"),
        DeclareLaunchArgument("image_topic", default_value="camera/image_raw"),
        DeclareLaunchArgument("camera_info_topic", default_value="camera/camera_info"),
        DeclareLaunchArgument("lidar_topic", default_value="lidar/points"),
        DeclareLaunchArgument("depth_topic", default_value="depth_ros/depth"),
        DeclareLaunchArgument("points_topic", default_value="depth_ros/points"),
        OpaqueFunction(function=require_rviz, condition=IfCondition(rviz)),
        # Fast DDS's default transports lose most large images between processes.
        OpaqueFunction(function=large_message_transport),
        GroupAction([
            PushRosNamespace(namespace),
            Node(
                package="depth_ros",
                executable="fusion_depth_node",
                name="fusion_depth_node",
                output="screen",
                parameters=[params_file, {"model_path": model_path, "backend": backend,
                                          "calibration_path": calibration_path,
                                          "use_sim_time": use_sim_time}],
                ros_arguments=["--log-level", log_level],
                remappings=[
                    ("image", image_topic),
                    ("camera_info", camera_info_topic),
                    ("lidar/points", lidar_topic),
                    ("depth", depth_topic),
                    ("depth/camera_info", [depth_topic, "/camera_info"]),
                    ("depth/info", [depth_topic, "/info"]),
                    ("depth/confidence", [depth_topic, "/confidence"]),
                    ("points", points_topic),
                    ("depth/colored", [depth_topic, "/colored"]),
                ],
            ),
            Node(
                package="rviz2",
                executable="rviz2",
                name="rviz2",
                output="screen",
                condition=IfCondition(rviz),
                arguments=["-d", PathJoinSubstitution(
                    [FindPackageShare("depth_ros"), "config", "depth_ros.rviz"]),
                    "-f", fixed_frame],
                parameters=[{"use_sim_time": use_sim_time}],
                # The config names the default topics; these follow the arguments.
                remappings=[
                    ("/camera/image_raw", image_topic),
                    ("/lidar/points", lidar_topic),
                    ("/depth_ros/depth/colored", [depth_topic, "/colored"]),
                    ("/depth_ros/points", points_topic),
                ],
                on_exit=Shutdown(reason="RViz closed"),
            ),
        ]),
    ])
