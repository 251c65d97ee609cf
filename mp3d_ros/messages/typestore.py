"""Message classes without ROS: our ``msg/*.msg`` plus the standard ROS 2 types, via ``rosbags``.

Tests and replay build, serialise (CDR) and read messages with these classes; the conversion code in
``mp3d_ros/ros/`` builds messages with keyword arguments for every field, so it works the same with
these classes and with rclpy's generated ones.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from mp3d_ros.resources import share_candidates

__all__ = ["MESSAGE_NAMES", "find_msg_dir", "message_definitions", "typestore"]

MESSAGE_NAMES = ("Keypoint3D", "Person3D", "PoseArray3D")


def find_msg_dir() -> Path:
    """Folder holding our ``.msg`` files (source checkout or installed ``share/mp3d_ros/msg``)."""
    for candidate in share_candidates("msg"):
        if all((candidate / f"{n}.msg").is_file() for n in MESSAGE_NAMES):
            return candidate
    raise FileNotFoundError(
        "mp3d_ros message definitions not found; looked in "
        + ", ".join(str(c) for c in share_candidates("msg"))
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
