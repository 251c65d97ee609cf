"""pip install path (no ROS needed). colcon builds the package with CMakeLists.txt instead."""

from pathlib import Path

from setuptools import setup

here = Path(__file__).parent
setup(
    data_files=[
        ("share/mp3d_ros/msg", sorted(str(p.relative_to(here)) for p in (here / "msg").glob("*.msg"))),
        ("share/mp3d_ros/config", sorted(str(p.relative_to(here)) for p in (here / "config").rglob("*.yaml"))),
    ],
)
