"""Message classes without ROS: our ``msg/*.msg`` plus the standard ROS 2 types, via ``rosbags``.

Tests and replay build, serialise (CDR) and read messages with these classes; the conversion code in
``mp3d_ros/ros/`` builds messages with keyword arguments for every field, so it works the same with
these classes and with rclpy's generated ones.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path

__all__ = ["MESSAGE_NAMES", "find_msg_dir", "message_definitions", "typestore"]

MESSAGE_NAMES = ("Keypoint3D", "Person3D", "PoseArray3D")


def find_msg_dir() -> Path:
    """Folder holding our ``.msg`` files: the source checkout's ``msg/`` or an installed
    ``share/mp3d_ros/msg`` (pip's data files and colcon's install use the same layout)."""
    package_dir = Path(__file__).resolve().parent
    candidates = [
        package_dir.parent / "msg",
        Path(sys.prefix) / "share" / "mp3d_ros" / "msg",
        package_dir.parents[3] / "share" / "mp3d_ros" / "msg" if len(package_dir.parents) > 3 else None,
    ]
    for candidate in candidates:
        if candidate is not None and all((candidate / f"{n}.msg").is_file() for n in MESSAGE_NAMES):
            return candidate
    raise FileNotFoundError(
        "mp3d_ros message definitions not found; looked in "
        + ", ".join(str(c) for c in candidates if c is not None)
    )


def message_definitions() -> dict[str, str]:
    """``{"mp3d_ros/msg/Name": text}`` for each of our message files."""
    folder = find_msg_dir()
    return {f"mp3d_ros/msg/{n}": (folder / f"{n}.msg").read_text() for n in MESSAGE_NAMES}


@lru_cache(maxsize=None)
def typestore(distribution: str = "ROS2_JAZZY"):
    """A ``rosbags`` Typestore with the ROS 2 ``distribution``'s standard types and ours registered.

    The store is cached per distribution and must be treated as read-only.
    """
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(getattr(Stores, distribution))
    types = {}
    for name, text in message_definitions().items():
        types.update(get_types_from_msg(text, name))
    store.register(types)
    return store
