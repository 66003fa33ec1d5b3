"""ament_python package definition for depth_ros (also installable with pip)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "depth_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    # training/ is installed too, so that `python training/train.py` (and evaluate, export,
    # pseudo_label) import it as a package without editing sys.path.
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*", "training", "training.*"]),
    package_data={PACKAGE: ["weights/*.onnx", "weights/*.pt", "weights/*.md"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config",
         glob("config/*.yaml") + glob("config/*.rviz") + glob("config/*.xml")),
        (f"share/{PACKAGE}/config/train", glob("config/train/*.yaml")),
    ],
    python_requires=">=3.10",
    install_requires=[
        "setuptools",
        "numpy>=1.22",
        "opencv-python-headless>=4.5",
        # The synthetic engine traces cast shadows with Embree where embreex has wheels; on
        # Linux aarch64 (Jetson) it falls back to numpy (depth_ros/synthetic/shadows.py).
        "embreex>=4; platform_machine == 'x86_64' or platform_machine == 'AMD64' "
        "or sys_platform == 'darwin'",
        "onnxruntime>=1.16",
        "PyYAML>=5.4",
        "tqdm>=4.60",
        # kitti_to_bag and depth_ros_bag_play are console scripts of every install;
        # 0.11 reads bare .mcap/.db3 files (depth_ros_bag_play).
        "rosbags>=0.11",
    ],
    extras_require={
        "torch": ["torch>=2.1,<3"],
        "train": ["torch>=2.1,<3", "onnx>=1.15", "onnxscript>=0.1", "h5py>=3",
                  "tensorboard>=2.10"],
    },
    zip_safe=True,
    maintainer="depth_ros developers",
    maintainer_email="depth-ros@users.noreply.github.com",
    description="Monocular and camera+LiDAR depth estimation for ROS 2.",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            f"mono_depth_node = {PACKAGE}.ros.mono_depth_node:main",
            f"fusion_depth_node = {PACKAGE}.ros.fusion_depth_node:main",
            f"kitti_drive_publisher = {PACKAGE}.ros.drive_publisher:main",
            f"make_synthetic_drive = {PACKAGE}.synthetic.cli:main",
            f"depth_ros_demo = {PACKAGE}.demo:main",
            f"kitti_to_bag = {PACKAGE}.bags.kitti_to_bag:main",
            f"depth_ros_bag_play = {PACKAGE}.ros.bag_play:main",
            f"depth_eval_node = {PACKAGE}.ros.depth_eval_node:main",
        ],
    },
)
