"""Conversions between the core types and ROS messages, for rclpy and ``rosbags`` classes alike.

Messages are built with keyword arguments for every field and plain Python scalars (rclpy's generated
setters reject numpy scalars for ``float32``/``uint32``/``bool`` fields), fixed-size ``float64[N]`` as
numpy float64 arrays (accepted by both), and unbounded ``uint8[]`` / ``float64[]`` through
:func:`images.uint8_field` / :func:`images.float64_field` (rclpy rejects numpy arrays there). The
message classes are passed in as a :class:`MessageClasses` bundle: the node builds it from the ROS
packages, tests and replay from :func:`mp3d_ros.messages.typestore.typestore`.

Frames: :class:`People` are in the camera optical frame. The node may move them into a
``target_frame`` with :func:`transform_people` (a :class:`RigidTransform` from tf2); root
covariances are computed in the camera frame, where the depth uncertainty lies along the viewing
ray, and rotated with the people.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping

import numpy as np

from mp3d_ros.geometry.camera import Intrinsics
from mp3d_ros.geometry.people import People
from mp3d_ros.geometry.skeleton import get_joint_set
from mp3d_ros.messages.images import (
    float64_field,
)
from mp3d_ros.tracking.tracker import root_covariance_cam

__all__ = [
    "MessageClasses",
    "RigidTransform",
    "stamp_to_ns",
    "make_time",
    "make_header",
    "camera_info_to_intrinsics",
    "make_camera_info",
    "transform_people",
    "people_root_covariance",
    "people_to_pose_array",
    "pose_array_to_people",
    "make_diagnostic_array",
]

# Lateral (across the viewing ray) uncertainty of a root from its 2D localisation, radians.
ROOT_ANGULAR_SIGMA_RAD = 0.01


@dataclass(frozen=True)
class MessageClasses:
    """The message classes the conversions build (rclpy's generated ones or ``rosbags``')."""

    Time: Any
    Duration: Any
    Header: Any
    Point: Any
    Vector3: Any
    Quaternion: Any
    Pose: Any
    ColorRGBA: Any
    Image: Any
    CompressedImage: Any
    CameraInfo: Any
    RegionOfInterest: Any
    Keypoint3D: Any
    Person3D: Any
    PoseArray3D: Any
    Marker: Any
    MarkerArray: Any
    MeshFile: Any
    DiagnosticArray: Any
    DiagnosticStatus: Any
    KeyValue: Any

    # Full ROS 2 type name of each field, so any lookup (typestore, importer) can fill the bundle.
    TYPE_NAMES = {
        "Time": "builtin_interfaces/msg/Time",
        "Duration": "builtin_interfaces/msg/Duration",
        "Header": "std_msgs/msg/Header",
        "Point": "geometry_msgs/msg/Point",
        "Vector3": "geometry_msgs/msg/Vector3",
        "Quaternion": "geometry_msgs/msg/Quaternion",
        "Pose": "geometry_msgs/msg/Pose",
        "ColorRGBA": "std_msgs/msg/ColorRGBA",
        "Image": "sensor_msgs/msg/Image",
        "CompressedImage": "sensor_msgs/msg/CompressedImage",
        "CameraInfo": "sensor_msgs/msg/CameraInfo",
        "RegionOfInterest": "sensor_msgs/msg/RegionOfInterest",
        "Keypoint3D": "mp3d_ros/msg/Keypoint3D",
        "Person3D": "mp3d_ros/msg/Person3D",
        "PoseArray3D": "mp3d_ros/msg/PoseArray3D",
        "Marker": "visualization_msgs/msg/Marker",
        "MarkerArray": "visualization_msgs/msg/MarkerArray",
        "MeshFile": "visualization_msgs/msg/MeshFile",
        "DiagnosticArray": "diagnostic_msgs/msg/DiagnosticArray",
        "DiagnosticStatus": "diagnostic_msgs/msg/DiagnosticStatus",
        "KeyValue": "diagnostic_msgs/msg/KeyValue",
    }

    @classmethod
    def from_lookup(cls, lookup: Callable[[str], Any]) -> "MessageClasses":
        """Fill every class with ``lookup("pkg/msg/Name")``."""
        return cls(**{field: lookup(name) for field, name in cls.TYPE_NAMES.items()})

    @classmethod
    def from_typestore(cls, store: Any = None) -> "MessageClasses":
        """``rosbags`` classes (default: :func:`mp3d_ros.messages.typestore.typestore`)."""
        if store is None:
            from mp3d_ros.messages.typestore import typestore

            store = typestore()
        return cls.from_lookup(lambda name: store.types[name])


# ----------------------------------------------------------------------------- time and headers


def stamp_to_ns(stamp: Any) -> int:
    """Nanoseconds of a ``builtin_interfaces/Time``."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def make_time(time_cls: Any, stamp_ns: int) -> Any:
    """A ``Time`` (or ``Duration``) message of ``stamp_ns`` nanoseconds (>= 0)."""
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return time_cls(sec=int(sec), nanosec=int(nanosec))


def make_header(classes: MessageClasses, stamp_ns: int, frame_id: str) -> Any:
    return classes.Header(stamp=make_time(classes.Time, stamp_ns), frame_id=str(frame_id))


# ----------------------------------------------------------------------------- camera


def camera_info_to_intrinsics(msg: Any, rectified: bool) -> Intrinsics:
    """Intrinsics of the stream a CameraInfo describes (``P`` when rectified, else ``K`` + ``D``)."""
    return Intrinsics.from_camera_info(msg, rectified=rectified)


def make_camera_info(
    classes: MessageClasses, header: Any, K: np.ndarray, width: int, height: int,
    distortion_model: str = "plumb_bob", D: Any = (), P: np.ndarray | None = None,
    binning: tuple[int, int] = (0, 0), roi: tuple[int, int, int, int] = (0, 0, 0, 0),
) -> Any:
    """A ``sensor_msgs/CameraInfo``; ``P`` defaults to ``[K | 0]``; ``roi`` is (x, y, w, h)."""
    K = np.asarray(K, dtype=np.float64).reshape(3, 3)
    if P is None:
        P = np.hstack([K, np.zeros((3, 1))])
    x_offset, y_offset, roi_width, roi_height = (int(v) for v in roi)
    return classes.CameraInfo(
        header=header, height=int(height), width=int(width), distortion_model=str(distortion_model),
        d=float64_field(classes.CameraInfo, D), k=K.reshape(9).copy(),
        r=np.eye(3).reshape(9), p=np.asarray(P, dtype=np.float64).reshape(12).copy(),
        binning_x=int(binning[0]), binning_y=int(binning[1]),
        roi=classes.RegionOfInterest(x_offset=x_offset, y_offset=y_offset, height=roi_height,
                                     width=roi_width, do_rectify=False),
    )


# ----------------------------------------------------------------------------- rigid transforms


@dataclass(frozen=True, eq=False)
class RigidTransform:
    """``p_target = rotation @ p_source + translation_m`` (what tf2's lookup_transform returns)."""

    rotation: np.ndarray  # (3, 3)
    translation_m: np.ndarray  # (3,)

    @classmethod
    def identity(cls) -> "RigidTransform":
        return cls(np.eye(3), np.zeros(3))

    @classmethod
    def from_quaternion(cls, xyzw: Any, translation_m: Any) -> "RigidTransform":
        q = np.asarray(xyzw, dtype=np.float64).reshape(4)
        norm = np.linalg.norm(q)
        if not np.isfinite(norm) or norm < 1e-9:
            raise ValueError(f"quaternion {q.tolist()} is not a rotation (norm {norm})")
        x, y, z, w = q / norm
        rotation = np.array([
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ])
        return cls(rotation, np.asarray(translation_m, dtype=np.float64).reshape(3))

    @classmethod
    def from_msg(cls, transform: Any) -> "RigidTransform":
        """From a ``geometry_msgs/Transform`` (the ``.transform`` of a TransformStamped)."""
        r, t = transform.rotation, transform.translation
        return cls.from_quaternion([r.x, r.y, r.z, r.w], [t.x, t.y, t.z])

    def quaternion_xyzw(self) -> np.ndarray:
        """(4,) the rotation as a unit quaternion ``[x, y, z, w]`` (geometry_msgs order)."""
        from scipy.spatial.transform import Rotation

        return Rotation.from_matrix(self.rotation).as_quat()

    def apply(self, points_m: np.ndarray) -> np.ndarray:
        """Transform ``(*, 3)`` points."""
        return np.asarray(points_m, dtype=np.float64) @ self.rotation.T + self.translation_m

    def rotate_covariance(self, cov: np.ndarray) -> np.ndarray:
        """``R C R^T`` for ``(*, 3, 3)`` covariances."""
        return self.rotation @ np.asarray(cov, dtype=np.float64) @ self.rotation.T


def transform_people(people: People, transform: RigidTransform) -> People:
    """``people`` with keypoints, velocities and velocity covariances moved by ``transform``.

    Pixel coordinates stay those of the source image.
    """
    return replace(
        people,
        keypoints_m=transform.apply(people.keypoints_m),
        velocity_mps=np.asarray(people.velocity_mps, dtype=np.float64) @ transform.rotation.T,
        velocity_cov=transform.rotate_covariance(people.velocity_cov),
    )


def people_root_covariance(people_cam: People) -> np.ndarray:
    """(P, 3, 3) root covariances (m^2) of people in the camera optical frame."""
    return root_covariance_cam(people_cam.root_m, people_cam.root_sigma_m, ROOT_ANGULAR_SIGMA_RAD)


# ----------------------------------------------------------------------------- poses


def people_to_pose_array(
    people: People, header: Any, classes: MessageClasses, root_cov_m2: np.ndarray | None = None
) -> Any:
    """``mp3d_ros/PoseArray3D`` of ``people`` in ``header``'s frame.

    ``root_cov_m2`` ((P, 3, 3), m^2) defaults to :func:`people_root_covariance` (people in the camera
    optical frame); pass the rotated covariances when the people were transformed.
    """
    if root_cov_m2 is None:
        root_cov_m2 = people_root_covariance(people)
    joint_set = people.joint_set
    keypoints = np.asarray(people.keypoints_m, dtype=np.float64).tolist()
    uv = np.asarray(people.uv_px, dtype=np.float64).tolist()
    confidence = np.clip(np.asarray(people.confidence, dtype=np.float64), 0.0, 1.0).tolist()
    seen = (~np.asarray(people.inferred, dtype=bool)).tolist()
    persons = []
    for i in range(len(people)):
        root = keypoints[i][joint_set.root]
        velocity = np.asarray(people.velocity_mps[i], dtype=np.float64).tolist()
        persons.append(classes.Person3D(
            track_id=int(people.track_id[i]),
            track_age=int(people.track_age[i]),
            score=float(people.score[i]),
            root=classes.Point(x=root[0], y=root[1], z=root[2]),
            root_covariance=np.asarray(root_cov_m2[i], dtype=np.float64).reshape(9).copy(),
            velocity=classes.Vector3(x=velocity[0], y=velocity[1], z=velocity[2]),
            velocity_covariance=np.asarray(people.velocity_cov[i], dtype=np.float64).reshape(9).copy(),
            depth_cues=int(people.depth_cues[i]),
            height_m=float(people.height_m[i]),
            height_sigma_m=float(people.height_sigma_m[i]),
            keypoints=[
                classes.Keypoint3D(
                    position=classes.Point(x=p[0], y=p[1], z=p[2]), u=uv[i][j][0], v=uv[i][j][1],
                    confidence=confidence[i][j], seen=seen[i][j],
                )
                for j, p in enumerate(keypoints[i])
            ],
        ))
    return classes.PoseArray3D(
        header=make_header(classes, stamp_to_ns(header.stamp), header.frame_id),
        skeleton=joint_set.name, joint_names=list(joint_set.joints), people=persons,
    )


def pose_array_to_people(msg: Any) -> People:
    """:class:`People` of a ``PoseArray3D`` published in the camera optical frame.

    ``root_sigma_m`` is recovered from the root covariance as the depth standard deviation
    ``sqrt(u^T C u) * z / |P|`` (``u`` the unit viewing ray), the inverse of
    :func:`people_root_covariance`.

    Raises:
        ValueError: unknown skeleton, joint names that differ from it, or a wrong keypoint count.
    """
    joint_set = get_joint_set(str(msg.skeleton))
    if list(msg.joint_names) != list(joint_set.joints):
        raise ValueError(
            f"PoseArray3D.joint_names {list(msg.joint_names)} do not match skeleton {joint_set.name} "
            f"{list(joint_set.joints)}")
    count, joints = len(msg.people), joint_set.num_joints
    keypoints, uv = np.zeros((count, joints, 3)), np.zeros((count, joints, 2))
    confidence, inferred = np.zeros((count, joints)), np.zeros((count, joints), dtype=bool)
    score, sigma = np.zeros(count), np.zeros(count)
    track_id, track_age = np.zeros(count, dtype=np.int64), np.zeros(count, dtype=np.int64)
    velocity, velocity_cov = np.zeros((count, 3)), np.zeros((count, 3, 3))
    depth_cues, height, height_sigma = np.zeros(count, dtype=np.uint8), np.zeros(count), np.zeros(count)
    for i, person in enumerate(msg.people):
        if len(person.keypoints) != joints:
            raise ValueError(
                f"PoseArray3D person {i} has {len(person.keypoints)} keypoints, skeleton "
                f"{joint_set.name} has {joints}")
        for j, kp in enumerate(person.keypoints):
            keypoints[i, j] = (kp.position.x, kp.position.y, kp.position.z)
            uv[i, j] = (kp.u, kp.v)
            confidence[i, j] = kp.confidence
            inferred[i, j] = not kp.seen
        score[i], track_id[i], track_age[i] = person.score, person.track_id, person.track_age
        velocity[i] = (person.velocity.x, person.velocity.y, person.velocity.z)
        velocity_cov[i] = np.asarray(person.velocity_covariance, dtype=np.float64).reshape(3, 3)
        # Bags recorded before Person3D had these fields decode without them: 0 means unknown.
        depth_cues[i] = getattr(person, "depth_cues", 0)
        height[i], height_sigma[i] = getattr(person, "height_m", 0.0), getattr(person, "height_sigma_m", 0.0)
        root = keypoints[i, joint_set.root]
        cov = np.asarray(person.root_covariance, dtype=np.float64).reshape(3, 3)
        range_m = np.linalg.norm(root)
        if range_m > 0 and root[2] > 0:
            unit = root / range_m
            sigma[i] = np.sqrt(max(unit @ cov @ unit, 0.0)) * root[2] / range_m
    return People(
        joint_set.name, uv_px=uv, keypoints_m=keypoints, confidence=confidence, inferred=inferred,
        score=score, root_sigma_m=sigma, track_id=track_id, track_age=track_age,
        velocity_mps=velocity, velocity_cov=velocity_cov, depth_cues=depth_cues, height_m=height,
        height_sigma_m=height_sigma,
    )


# ----------------------------------------------------------------------------- diagnostics

_LEVEL_NAMES = ("OK", "WARN", "ERROR", "STALE")


def make_diagnostic_array(
    classes: MessageClasses, header: Any, name: str, level: str, message: str, hardware_id: str,
    values: Mapping[str, str],
) -> Any:
    """A ``diagnostic_msgs/DiagnosticArray`` with one status.

    ``level`` is ``"OK"``, ``"WARN"``, ``"ERROR"`` or ``"STALE"``; the value comes from the class's own
    constant, since rclpy types the ``byte`` field as ``bytes`` and rosbags as ``int``.
    """
    if level not in _LEVEL_NAMES:
        raise ValueError(f"diagnostic level {level!r} is not one of {_LEVEL_NAMES}")
    status = classes.DiagnosticStatus(
        level=getattr(classes.DiagnosticStatus, level), name=str(name), message=str(message),
        hardware_id=str(hardware_id),
        values=[classes.KeyValue(key=str(k), value=str(v)) for k, v in values.items()],
    )
    return classes.DiagnosticArray(header=header, status=[status])
