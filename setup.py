"""pip install path (no ROS needed). colcon builds the package with CMakeLists.txt instead.

Message definitions, configs and models are installed as data files under
``<prefix>/share/mp3d_ros/`` (the layout colcon's install uses too), where
:mod:`mp3d_ros.resources` finds them.
"""

from collections import defaultdict
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent


def share_files(*folders: str) -> list[tuple[str, list[str]]]:
    """(install folder, files) pairs mirroring ``folders`` under share/mp3d_ros."""
    grouped = defaultdict(list)
    for folder in folders:
        for path in sorted((HERE / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.name != ".gitkeep":
                relative = path.relative_to(HERE)
                grouped[str(Path("share/mp3d_ros") / relative.parent)].append(str(relative))
    return sorted(grouped.items())


setup(data_files=share_files("msg", "config", "models", "launch"))
