"""Start mono_depth_node with its parameter file, a model and remapped camera topics.

    ros2 launch depth_ros mono_depth.launch.py image_topic:=/camera/image_raw \
        camera_info_topic:=/camera/camera_info model_path:=/path/to/model.onnx
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    params_file = LaunchConfiguration("params_file")
    model_path = LaunchConfiguration("model_path")
    backend = LaunchConfiguration("backend")
    image_topic = LaunchConfiguration("image_topic")
    camera_info_topic = LaunchConfiguration("camera_info_topic")
    depth_topic = LaunchConfiguration("depth_topic")
    points_topic = LaunchConfiguration("points_topic")

    return LaunchDescription([
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution(
                [FindPackageShare("depth_ros"), "config", "mono_depth.yaml"]),
            description="Parameter file of mono_depth_node"),
        DeclareLaunchArgument("model_path", default_value="",
                              description="ONNX model or .pt checkpoint; empty: bundled model"),
        DeclareLaunchArgument("backend", default_value="auto",
                              description="auto | onnxruntime | torch"),
        DeclareLaunchArgument("image_topic", default_value="/camera/image_raw"),
        DeclareLaunchArgument("camera_info_topic", default_value="/camera/camera_info"),
        DeclareLaunchArgument("depth_topic", default_value="/depth_ros/depth"),
        DeclareLaunchArgument("points_topic", default_value="/depth_ros/points"),
        # Fast DDS drops most large messages between processes with its default transports.
        SetEnvironmentVariable("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA"),
        Node(
            package="depth_ros",
            executable="mono_depth_node",
            name="mono_depth_node",
            output="screen",
            parameters=[params_file, {"model_path": model_path, "backend": backend}],
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
    ])
