"""rosbag2 for depth_ros: KITTI drives to bags (``kitti_to_bag``), bags back onto a ROS 2
graph without the ros2 CLI (``depth_ros_bag_play``).

Writing needs only ``rosbags`` (the ``bags`` extra), not rclpy; playing needs rclpy. The
converter is ``depth_ros.bags.kitti_to_bag.convert_drive``.
"""

from depth_ros.bags.topics import BagTopics, camera_frame

__all__ = ["BagTopics", "camera_frame"]
