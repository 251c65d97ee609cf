"""Write camera recordings with ground truth as rosbag2 bags (sqlite3 or MCAP), without ROS.

Each frame becomes an ``Image`` (any supported encoding) or ``CompressedImage`` (jpeg/png), its
``CameraInfo`` and, when known, the ground-truth ``PoseArray3D``, all with the frame's stamp as
header stamp and bag time. A camera whose pose over the floor is known gets it as one
``/tf_static`` transform (``ground`` -> the optical frame, latched like a static transform
publisher's), so replay and the node can take depth from the floor. Message definitions are registered in the bag, so ``ros2 bag play``
plays it and :mod:`mp3d_ros.evaluation.replay` reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from mp3d_ros.geometry.camera import Intrinsics
from mp3d_ros.geometry.people import People
from mp3d_ros.messages.conversions import (
    MessageClasses, RigidTransform, make_camera_info, make_header, people_to_pose_array,
)
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
    tf_static: str = "/tf_static"


def tf_static_qos():
    """What a static transform publisher offers: reliable, transient local (a late subscriber
    still gets the transform), keep last 1; written into the bag so ``ros2 bag play`` offers it."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    never = QosTime(sec=2147483647, nsec=4294967295)
    return Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL, never,
               never, QosLiveliness.AUTOMATIC, never, False)


def tf_static_message(store, stamp_ns: int, parent_frame: str, child_frame: str,
                      parent_from_child: RigidTransform):
    """A ``tf2_msgs/TFMessage`` with the one transform ``parent_frame <- child_frame``."""
    types = store.types
    classes = MessageClasses.from_typestore(store)
    q = parent_from_child.quaternion_xyzw()
    t = parent_from_child.translation_m
    transform = types["geometry_msgs/msg/TransformStamped"](
        header=make_header(classes, stamp_ns, parent_frame), child_frame_id=child_frame,
        transform=types["geometry_msgs/msg/Transform"](
            translation=classes.Vector3(x=float(t[0]), y=float(t[1]), z=float(t[2])),
            rotation=types["geometry_msgs/msg/Quaternion"](x=float(q[0]), y=float(q[1]), z=float(q[2]),
                                                          w=float(q[3]))))
    return types["tf2_msgs/msg/TFMessage"](transforms=[transform])


def write_bag(
    path: str | Path,
    frames: Iterable[BagFrame],
    storage: str = "mcap",
    encoding: str = "rgb8",
    frame_id: str = "camera_optical_frame",
    topics: BagTopics = BagTopics(),
    ground_from_camera: RigidTransform | None = None,
    ground_frame: str = "ground",
) -> int:
    """Write ``frames`` to a new bag folder ``path``; returns the number of frames written.

    Args:
        storage: ``mcap`` or ``sqlite3``.
        encoding: an Image encoding (``rgb8``, ``bgr8``, ``mono8``, ``uyvy``, ...) or ``jpeg`` /
            ``png`` for a CompressedImage topic.
        frame_id: optical frame of the camera, in every header.
        ground_from_camera: the (static) camera's pose in ``ground_frame``, whose z = 0 plane is
            the floor; written as ``/tf_static`` at the first frame's stamp when given.
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
        tf_connection = None
        if ground_from_camera is not None:
            tf_connection = writer.add_connection(topics.tf_static, "tf2_msgs/msg/TFMessage", typestore=store,
                                                  offered_qos_profiles=[tf_static_qos()])
        for frame in frames:
            header = make_header(classes, frame.stamp_ns, frame_id)
            if tf_connection is not None and count == 0:
                message = tf_static_message(store, frame.stamp_ns, ground_frame, frame_id, ground_from_camera)
                writer.write(tf_connection, frame.stamp_ns, store.serialize_cdr(message, tf_connection.msgtype))
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
