"""Write camera recordings with ground truth as rosbag2 bags (sqlite3 or MCAP), without ROS.

Each frame becomes an ``Image`` (any supported encoding) or ``CompressedImage`` (jpeg/png), its
``CameraInfo`` and, when known, the ground-truth ``PoseArray3D``, all with the frame's stamp as
header stamp and bag time. Message definitions are registered in the bag, so ``ros2 bag play``
plays it and :mod:`mp3d_ros.evaluation.replay` reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from mp3d_ros.geometry.camera import Intrinsics
from mp3d_ros.geometry.people import People
from mp3d_ros.messages.conversions import MessageClasses, make_camera_info, make_header, people_to_pose_array
from mp3d_ros.messages.images import rgb_to_compressed_image, rgb_to_image
from mp3d_ros.messages.typestore import typestore

__all__ = ["BagFrame", "BagTopics", "write_bag"]

COMPRESSED_FORMATS = ("jpeg", "png")


@dataclass(frozen=True, eq=False)
class BagFrame:
    """One camera frame: stamp (ns), RGB image, the camera's intrinsics, and ground truth people."""

    stamp_ns: int
    image_rgb: np.ndarray
    intrinsics: Intrinsics
    ground_truth: People | None = None


@dataclass(frozen=True)
class BagTopics:
    """Topic names written by :func:`write_bag`."""

    image: str = "/camera/image_raw"
    compressed_image: str = "/camera/image_raw/compressed"
    camera_info: str = "/camera/camera_info"
    ground_truth: str = "/ground_truth/poses"


def write_bag(
    path: str | Path,
    frames: Iterable[BagFrame],
    storage: str = "mcap",
    encoding: str = "rgb8",
    frame_id: str = "camera_optical_frame",
    topics: BagTopics = BagTopics(),
) -> int:
    """Write ``frames`` to a new bag folder ``path``; returns the number of frames written.

    Args:
        storage: ``mcap`` or ``sqlite3``.
        encoding: an Image encoding (``rgb8``, ``bgr8``, ``mono8``, ``uyvy``, ...) or ``jpeg`` /
            ``png`` for a CompressedImage topic.
        frame_id: optical frame of the camera, in every header.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer

    if storage not in ("mcap", "sqlite3"):
        raise ValueError(f"storage must be mcap or sqlite3, got {storage!r}")
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"bag {path} already exists")
    store = typestore()
    classes = MessageClasses.from_typestore(store)
    compressed = encoding in COMPRESSED_FORMATS
    image_type = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    count = 0
    with Writer(path, version=8, storage_plugin=plugin) as writer:
        image_connection = writer.add_connection(
            topics.compressed_image if compressed else topics.image, image_type, typestore=store)
        info_connection = writer.add_connection(topics.camera_info, "sensor_msgs/msg/CameraInfo",
                                                typestore=store)
        truth_connection = writer.add_connection(topics.ground_truth, "mp3d_ros/msg/PoseArray3D",
                                                 typestore=store)
        for frame in frames:
            header = make_header(classes, frame.stamp_ns, frame_id)
            if compressed:
                image = rgb_to_compressed_image(frame.image_rgb, header, classes.CompressedImage,
                                                fmt=encoding)
            else:
                image = rgb_to_image(frame.image_rgb, encoding, header, classes.Image)
            intr = frame.intrinsics
            info = make_camera_info(classes, header, intr.K, intr.width, intr.height,
                                    distortion_model=_ros_model(intr), D=intr.D)
            messages = [(info_connection, info), (image_connection, image)]
            if frame.ground_truth is not None:
                messages.append((truth_connection,
                                 people_to_pose_array(frame.ground_truth, header, classes)))
            for connection, message in messages:
                writer.write(connection, frame.stamp_ns,
                             store.serialize_cdr(message, connection.msgtype))
            count += 1
    return count


def _ros_model(intr: Intrinsics) -> str:
    """CameraInfo's name of the distortion model (plumb_bob with zero D for an ideal camera)."""
    return "plumb_bob" if intr.distortion_model == "none" else intr.distortion_model
