"""Install the ament_python package ``cotracker3_ros`` (the ROS 2 node, its offline tools in
``cotracker3_ros.tools``, and the pure-PyTorch core). ``benchmarks/``, ``test/`` and ``training/`` are not
installed: they run from a checkout.

Built by colcon (``scripts/install.sh`` or ``colcon build``); the interfaces live in their own
ament_cmake package under ``msg/`` (``cotracker3_msgs``), because ament_python packages cannot
generate messages.
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE_NAME = "cotracker3_ros"

setup(
    name=PACKAGE_NAME,
    version="0.1.0",
    packages=find_packages(
        include=["cotracker3_core", "cotracker3_core.*", "cotracker3_ros", "cotracker3_ros.*"]
    ),
    # The shipped weights (name "lite") travel inside the package so they resolve from an install too.
    package_data={"cotracker3_core": ["weights/*.pt"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE_NAME}"]),
        (f"share/{PACKAGE_NAME}", ["package.xml"]),
        (f"share/{PACKAGE_NAME}/launch", sorted(glob("launch/*.py"))),
        (f"share/{PACKAGE_NAME}/config", sorted(glob("config/*.yaml") + glob("config/*.rviz"))),
    ],
    # torch is deliberately absent: an unpinned torch requirement pulls the multi-GB CUDA build.
    # scripts/install.sh pins it (torch==2.13.0). OpenCV is absent too: ROS users get it from their
    # distribution (python3-opencv), which pip does not see, so listing it would break the entry
    # points there.
    install_requires=["setuptools", "numpy", "PyYAML"],
    zip_safe=False,
    maintainer="cotracker3_ros developers",
    maintainer_email="dev@example.com",
    description="Online point tracking on a ROS 2 camera stream with CoTracker3.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "tracker_node = cotracker3_ros.lifecycle:main",  # signal handlers before torch loads
            "cotracker3-bag-eval = cotracker3_ros.tools.bag_eval:main",
            "cotracker3-replay-eval = cotracker3_ros.tools.replay_eval:main",
            "cotracker3-tapvid-to-bag = cotracker3_ros.tools.tapvid_to_bag:main",
        ],
    },
)
