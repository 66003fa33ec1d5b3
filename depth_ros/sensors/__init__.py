"""Camera and LiDAR together, without ROS: nearest-stamp pairing of two streams
(``sync``), LiDAR-to-camera extrinsics and projection into a sparse depth image
(``extrinsics``), the LiDAR-to-camera transform read from a TF buffer (``tf_lookup``), a TF
tree of recorded transforms queried offline (``tf_tree``), and Image / CameraInfo /
PointCloud2 messages decoded to numpy (``decode``: any object with the message's fields, rclpy's
or a bag's).

The fusion node uses them on live messages; training and the bag tools use the same code on
recorded frames.
"""
