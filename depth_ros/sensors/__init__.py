"""Camera and LiDAR together, without ROS: nearest-stamp pairing of two streams
(``sync``), LiDAR-to-camera extrinsics and projection into a sparse depth image
(``extrinsics``), and the LiDAR-to-camera transform read from a TF buffer (``tf_lookup``).

The fusion node uses them on live messages; training and the bag tools use the same code on
recorded frames.
"""
