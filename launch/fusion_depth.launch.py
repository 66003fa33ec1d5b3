"""Start fusion_depth_node with its parameter file, a model, extrinsics and remapped topics.

    ros2 launch depth_ros fusion_depth.launch.py image_topic:=/camera/image_raw \
        camera_info_topic:=/camera/camera_info lidar_topic:=/velodyne_points \
        calibration_path:=/data/kitti/2011_09_26/calib_velo_to_cam.txt
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
                              description="ONNX model or .pt checkpoint; empty: bundled model"),
        DeclareLaunchArgument("backend", default_value="auto",
                              description="auto | tensorrt | onnxruntime | torch"),
        DeclareLaunchArgument("calibration_path", default_value="",
                              description="KITTI calib_velo_to_cam.txt; empty: the "
                                          "lidar_to_camera parameter of params_file"),
        DeclareLaunchArgument("image_topic", default_value="/camera/image_raw"),
        DeclareLaunchArgument("camera_info_topic", default_value="/camera/camera_info"),
        DeclareLaunchArgument("lidar_topic", default_value="/lidar/points"),
        DeclareLaunchArgument("depth_topic", default_value="/depth_ros/depth"),
        DeclareLaunchArgument("points_topic", default_value="/depth_ros/points"),
        # Fast DDS drops most large messages between processes with its default transports.
        SetEnvironmentVariable("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA"),
        Node(
            package="depth_ros",
            executable="fusion_depth_node",
            name="fusion_depth_node",
            output="screen",
            parameters=[params_file, {"model_path": model_path, "backend": backend,
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
    ])
