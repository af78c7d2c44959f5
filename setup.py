"""ament_python package: installs with colcon in a ROS 2 workspace, or with pip in a venv.

In a venv, ``pip install '.[ros]'`` also brings the ROS 2 Kilted wheels, pinned so that
Jazzy and Kilted wheels cannot mix. Use ``pip install .``, not ``-e``: editable installs
drop ``data_files`` (the ament index marker, launch/ and config/).
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "mosaico_bridge"

# ROS 2 Kilted from PyPI wheels: exact pins (the index also has Jazzy wheels of other versions).
ROS_KILTED = [
    "ros-rclpy==9.1.2",
    "ros-rmw-fastrtps-cpp==9.3.3",
    "ros-rcl-lifecycle==10.1.3",
    "ros-lifecycle-msgs==2.3.0",
    "ros-std-msgs==5.5.1",
    "ros-sensor-msgs==5.5.1",
    "ros-geometry-msgs==5.5.1",
    "ros-nav-msgs==5.5.1",
    "ros-diagnostic-msgs==5.5.1",
    "ros-std-srvs==5.5.1",
]

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*", "bench"]),
    package_data={PACKAGE: ["py.typed"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
    ],
    python_requires=">=3.10",
    install_requires=[
        "setuptools",
        "pyarrow>=22,<27",
        "numpy>=2,<2.5",
        "rosbags>=0.11.9,<0.12",
        "rich>=13",
        "PyYAML>=6",
        "datafusion>=45",
    ],
    extras_require={
        "ros": ROS_KILTED,
        "test": [
            "pytest>=8",
            "pytest-timeout>=2",
            "hypothesis>=6.100",
            "mypy>=1.10",
            "ruff>=0.6",
            "typer>=0.12",
            "mosaicolabs==0.7.0",
            "cryptography>=42",
            "colcon-core>=0.19",
            "colcon-ros>=0.5",
            "colcon-python-setup-py>=0.2.9",
        ],
    },
    zip_safe=False,
    maintainer="mosaico_bridge developers",
    maintainer_email="dev@mosaico-bridge.invalid",
    description="ROS 2 topics and bags into Mosaico sequences over Arrow Flight",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "bag_import = mosaico_bridge.cli.bag_import:main",
            "mosaico_server = mosaico_bridge.cli.server:main",
            "bridge_node = mosaico_bridge.node:main",
            "spool_upload = mosaico_bridge.cli.spool_upload:main",
            "mosaico_query = mosaico_bridge.cli.query:main",
        ],
    },
)
