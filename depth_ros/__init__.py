"""depth_ros: monocular and camera+LiDAR depth estimation for ROS 2."""

__version__ = "0.1.0"
