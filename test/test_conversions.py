"""Image / CameraInfo / PoseArray3D / diagnostics conversions with rosbags and rclpy-like classes."""

from __future__ import annotations

import array

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from rclpy_like import RclpyLikeTypes
from scipy.spatial.transform import Rotation

from mp3d_ros.geometry.people import People
from mp3d_ros.geometry.skeleton import get_joint_set
from mp3d_ros.messages.conversions import (
    MessageClasses,
    RigidTransform,
    camera_info_to_intrinsics,
    make_camera_info,
    make_diagnostic_array,
    make_header,
    people_root_covariance,
    people_to_pose_array,
    pose_array_to_people,
    stamp_to_ns,
    transform_people,
)
from mp3d_ros.messages import images
from mp3d_ros.messages.images import (
    SUPPORTED_ENCODINGS,
    UnsupportedEncodingError,
    any_image_to_rgb,
    compressed_image_to_rgb,
    image_to_rgb,
    rgb_to_compressed_image,
    rgb_to_image,
)
from mp3d_ros.messages.typestore import typestore

STORE = typestore()
ROSBAGS = MessageClasses.from_typestore(STORE)
RCLPY_LIKE = MessageClasses.from_lookup(RclpyLikeTypes(STORE).__getitem__)
FLAVOURS = pytest.mark.parametrize("classes", [ROSBAGS, RCLPY_LIKE], ids=["rosbags", "rclpy_like"])
STAMP_NS = 1_700_000_000_123_456_789


def smooth_rgb(height: int = 24, width: int = 32, seed: int = 0) -> np.ndarray:
    """Random colours constant over horizontal pixel pairs (so 4:2:2 chroma loses nothing)."""
    rng = np.random.default_rng(seed)
    pairs = rng.integers(0, 256, (height, width // 2, 3), dtype=np.uint8)
    return np.repeat(pairs, 2, axis=1)


def header(classes: MessageClasses, frame_id: str = "camera_optical"):
    return make_header(classes, STAMP_NS, frame_id)


def cdr_round_trip(msg, name: str):
    return STORE.deserialize_cdr(STORE.serialize_cdr(msg, name), name)


# ----------------------------------------------------------------------------- raw images


@FLAVOURS
@pytest.mark.parametrize("encoding", SUPPORTED_ENCODINGS)
@pytest.mark.parametrize("padding", [0, 5])
def test_every_encoding_round_trips(classes, encoding: str, padding: int) -> None:
    rgb = smooth_rgb()
    msg = rgb_to_image(rgb, encoding, header(classes), classes.Image, row_padding_bytes=padding)
    if classes is RCLPY_LIKE:
        assert isinstance(msg.data, array.array)
    else:
        msg = cdr_round_trip(msg, "sensor_msgs/msg/Image")
    assert msg.step == rgb.shape[1] * {3: 3, 4: 4, 1: 1, 2: 2}[_bpp(encoding)] + padding
    out = image_to_rgb(msg)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    if encoding == "mono8":
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        np.testing.assert_array_equal(out, np.repeat(gray[..., None], 3, axis=2))
    elif encoding in ("yuv422", "uyvy", "yuv422_yuy2", "yuyv"):
        assert np.abs(out.astype(int) - rgb).max() <= 3  # BT.601 limited range, 8-bit rounding
    else:
        np.testing.assert_array_equal(out, rgb)


def _bpp(encoding: str) -> int:
    return {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}.get(encoding, 2)


def test_byte_order_of_each_encoding_is_decoded_from_hand_made_bytes() -> None:
    def image(encoding: str, width: int, data: list[int]):
        return ROSBAGS.Image(header=header(ROSBAGS), height=1, width=width, encoding=encoding,
                             is_bigendian=0, step=len(data), data=np.array(data, dtype=np.uint8))

    red, blue = [255, 0, 0], [0, 0, 255]
    assert image_to_rgb(image("rgb8", 2, red + blue))[0].tolist() == [red, blue]
    assert image_to_rgb(image("bgr8", 2, blue + red))[0].tolist() == [red, blue]
    assert image_to_rgb(image("rgba8", 1, red + [7]))[0].tolist() == [red]
    assert image_to_rgb(image("bgra8", 1, blue + [7]))[0].tolist() == [red]
    assert image_to_rgb(image("mono8", 2, [10, 200]))[0].tolist() == [[10] * 3, [200] * 3]
    # Pure red in BT.601 limited range: Y 81, Cb 90, Cr 240; two red pixels.
    for encoding, data in [("uyvy", [90, 81, 240, 81]), ("yuv422", [90, 81, 240, 81]),
                           ("yuyv", [81, 90, 81, 240]), ("yuv422_yuy2", [81, 90, 81, 240])]:
        out = image_to_rgb(image(encoding, 2, data))[0]
        assert np.abs(out.astype(int) - [red, red]).max() <= 3, (encoding, out)


def test_big_endian_flag_does_not_change_8_bit_encodings() -> None:
    rgb = smooth_rgb()
    msg = rgb_to_image(rgb, "bgr8", header(ROSBAGS), ROSBAGS.Image)
    msg.is_bigendian = 1
    np.testing.assert_array_equal(image_to_rgb(msg), rgb)


@pytest.mark.parametrize("encoding", ["mono16", "16UC1", "32FC1", "bayer_rggb8", "rgb16", "nv12", "jpeg"])
def test_unsupported_encodings_are_refused_by_name(encoding: str) -> None:
    msg = ROSBAGS.Image(header=header(ROSBAGS), height=2, width=2, encoding=encoding, is_bigendian=0,
                        step=4, data=np.zeros(8, dtype=np.uint8))
    with pytest.raises(UnsupportedEncodingError, match=encoding):
        image_to_rgb(msg)


@pytest.mark.parametrize("height, width, step, size, match", [
    (0, 4, 12, 0, "empty"), (3, 0, 0, 0, "empty"), (2, 4, 10, 24, "step"), (2, 4, 12, 20, "data has 20"),
])
def test_malformed_images_are_refused(height, width, step, size, match) -> None:
    msg = ROSBAGS.Image(header=header(ROSBAGS), height=height, width=width, encoding="rgb8",
                        is_bigendian=0, step=step, data=np.zeros(size, dtype=np.uint8))
    with pytest.raises(ValueError, match=match):
        image_to_rgb(msg)


def test_odd_width_yuv_is_refused() -> None:
    msg = ROSBAGS.Image(header=header(ROSBAGS), height=1, width=3, encoding="uyvy", is_bigendian=0,
                        step=6, data=np.zeros(6, dtype=np.uint8))
    with pytest.raises(ValueError, match="even"):
        image_to_rgb(msg)


def test_builders_validate_their_input() -> None:
    with pytest.raises(ValueError, match="uint8"):
        rgb_to_image(np.zeros((4, 4, 3), np.float32), "rgb8", header(ROSBAGS), ROSBAGS.Image)
    with pytest.raises(UnsupportedEncodingError, match="mono16"):
        rgb_to_image(np.zeros((4, 4, 3), np.uint8), "mono16", header(ROSBAGS), ROSBAGS.Image)


# ----------------------------------------------------------------------------- compressed images


@FLAVOURS
def test_png_is_lossless_and_jpeg_is_close(classes) -> None:
    rgb = cv2.resize(smooth_rgb(4, 4, seed=1), (64, 48), interpolation=cv2.INTER_LINEAR)
    png = rgb_to_compressed_image(rgb, header(classes), classes.CompressedImage, "png")
    jpeg = rgb_to_compressed_image(rgb, header(classes), classes.CompressedImage, "jpeg", 95)
    assert png.format == "rgb8; png compressed bgr8"
    np.testing.assert_array_equal(compressed_image_to_rgb(png), rgb)
    assert np.abs(any_image_to_rgb(jpeg).astype(int) - rgb).mean() < 3.0


@pytest.mark.parametrize("codec", ["png", "jpeg"])
def test_decoding_straight_to_rgb_equals_decoding_to_bgr_and_converting(codec, monkeypatch) -> None:
    rgb = cv2.resize(smooth_rgb(4, 4, seed=2), (64, 48), interpolation=cv2.INTER_LINEAR)
    message = rgb_to_compressed_image(rgb, header(ROSBAGS), ROSBAGS.CompressedImage, codec, 90)
    direct = compressed_image_to_rgb(message)
    monkeypatch.setattr(images, "_IMREAD_RGB", None)  # OpenCV before 4.10 (ROS's system OpenCV)
    np.testing.assert_array_equal(compressed_image_to_rgb(message), direct)


def test_compressed_format_is_sniffed_when_empty_and_refused_when_foreign() -> None:
    rgb = smooth_rgb()
    png = rgb_to_compressed_image(rgb, header(ROSBAGS), ROSBAGS.CompressedImage, "png")
    png.format = ""
    np.testing.assert_array_equal(compressed_image_to_rgb(png), rgb)
    for fmt in ("16UC1; compressedDepth png", "theora"):
        png.format = fmt
        with pytest.raises(UnsupportedEncodingError, match=fmt.split(";")[0]):
            compressed_image_to_rgb(png)
    png.format, png.data = "jpeg", np.zeros(0, np.uint8)
    with pytest.raises(ValueError, match="empty"):
        compressed_image_to_rgb(png)
    png.data = np.frombuffer(b"\xff\xd8 not really a jpeg", np.uint8).copy()
    with pytest.raises(ValueError, match="decoded"):
        compressed_image_to_rgb(png)


# ----------------------------------------------------------------------------- camera info


@FLAVOURS
@pytest.mark.parametrize("rectified", [False, True])
def test_camera_info_gives_live_intrinsics_with_binning_and_roi(classes, rectified: bool) -> None:
    K = np.array([[600.0, 0.0, 320.0], [0.0, 610.0, 240.0], [0.0, 0.0, 1.0]])
    P = np.array([[580.0, 0.0, 330.0, 0.0], [0.0, 590.0, 235.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    D = [-0.2, 0.05, 0.001, -0.001, 0.0]
    msg = make_camera_info(classes, header(classes), K, 640, 480, "plumb_bob", D, P,
                           binning=(2, 2), roi=(100, 40, 400, 300))
    if classes is ROSBAGS:
        msg = cdr_round_trip(msg, "sensor_msgs/msg/CameraInfo")
    intr = camera_info_to_intrinsics(msg, rectified=rectified)
    base = P[:, :3] if rectified else K
    assert (intr.width, intr.height) == (200, 150)
    np.testing.assert_allclose(intr.K[0], [base[0, 0] / 2, 0.0, (base[0, 2] - 100) / 2])
    np.testing.assert_allclose(intr.K[1], [0.0, base[1, 1] / 2, (base[1, 2] - 40) / 2])
    assert intr.distortion_model == ("none" if rectified else "plumb_bob")


def test_uncalibrated_camera_info_is_refused() -> None:
    msg = make_camera_info(ROSBAGS, header(ROSBAGS), np.zeros((3, 3)), 640, 480)
    with pytest.raises(ValueError, match="not calibrated"):
        camera_info_to_intrinsics(msg, rectified=False)


# ----------------------------------------------------------------------------- poses


def random_people(seed: int, count: int = 3, skeleton: str = "mupots_17") -> People:
    rng = np.random.default_rng(seed)
    joints = get_joint_set(skeleton).num_joints
    roots = np.column_stack([rng.uniform(-2, 2, count), rng.uniform(-0.5, 0.5, count),
                             rng.uniform(2, 10, count)])
    keypoints = roots[:, None, :] + rng.normal(0, 0.3, (count, joints, 3))
    keypoints[:, get_joint_set(skeleton).root] = roots
    velocity_cov = rng.uniform(0.01, 0.2, (count, 3))[:, :, None] * np.eye(3)
    return People(
        skeleton, uv_px=rng.uniform(0, 640, (count, joints, 2)), keypoints_m=keypoints,
        confidence=rng.uniform(0, 1, (count, joints)), inferred=rng.random((count, joints)) < 0.3,
        score=np.sort(rng.uniform(0.3, 1, count))[::-1], root_sigma_m=rng.uniform(0.05, 0.8, count),
        track_id=np.arange(1, count + 1) * 7, track_age=np.arange(count) + 30,
        velocity_mps=rng.normal(0, 1, (count, 3)), velocity_cov=velocity_cov,
    )


def assert_people_close(a: People, b: People) -> None:
    assert a.skeleton == b.skeleton
    np.testing.assert_allclose(a.keypoints_m, b.keypoints_m, atol=1e-12)
    np.testing.assert_allclose(a.uv_px, b.uv_px, atol=1e-3)  # float32 in the message
    np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-6)
    np.testing.assert_array_equal(a.inferred, b.inferred)
    np.testing.assert_allclose(a.score, b.score, atol=1e-6)
    np.testing.assert_allclose(a.root_sigma_m, b.root_sigma_m, rtol=1e-9)
    np.testing.assert_array_equal(a.track_id, b.track_id)
    np.testing.assert_array_equal(a.track_age, b.track_age)
    np.testing.assert_allclose(a.velocity_mps, b.velocity_mps, atol=1e-12)
    np.testing.assert_allclose(a.velocity_cov, b.velocity_cov, atol=1e-12)


@FLAVOURS
@pytest.mark.parametrize("skeleton", ["mupots_17", "muco_21"])
def test_people_round_trip_through_pose_array(classes, skeleton: str) -> None:
    people = random_people(0, skeleton=skeleton)
    msg = people_to_pose_array(people, header(classes), classes)
    assert msg.header.frame_id == "camera_optical" and stamp_to_ns(msg.header.stamp) == STAMP_NS
    assert msg.skeleton == skeleton and len(msg.joint_names) == get_joint_set(skeleton).num_joints
    person = msg.people[0]
    assert person.root.z == people.root_m[0, 2] and person.track_id == 7
    assert [k.seen for k in person.keypoints] == (~people.inferred[0]).tolist()
    if classes is ROSBAGS:
        msg = cdr_round_trip(msg, "mp3d_ros/msg/PoseArray3D")
    assert_people_close(pose_array_to_people(msg), people)


@given(seed=st.integers(0, 10_000), count=st.integers(0, 4))
def test_pose_array_round_trip_property(seed: int, count: int) -> None:
    people = random_people(seed, count)
    back = pose_array_to_people(cdr_round_trip(people_to_pose_array(people, header(ROSBAGS), ROSBAGS),
                                               "mp3d_ros/msg/PoseArray3D"))
    assert_people_close(back, people)


def test_root_covariance_in_the_message_lies_along_the_viewing_ray() -> None:
    people = random_people(1)
    msg = people_to_pose_array(people, header(ROSBAGS), ROSBAGS)
    for i, person in enumerate(msg.people):
        cov = np.asarray(person.root_covariance).reshape(3, 3)
        eigenvalues, eigenvectors = np.linalg.eigh(cov)
        ray = people.root_m[i] / np.linalg.norm(people.root_m[i])
        assert abs(eigenvectors[:, -1] @ ray) > 0.99
        np.testing.assert_allclose(np.sqrt(eigenvalues[-1]) * people.root_m[i, 2] / np.linalg.norm(
            people.root_m[i]), people.root_sigma_m[i], rtol=0.02)


def test_pose_array_with_foreign_joint_names_is_refused() -> None:
    msg = people_to_pose_array(random_people(2), header(ROSBAGS), ROSBAGS)
    msg.joint_names = list(reversed(msg.joint_names))
    with pytest.raises(ValueError, match="joint_names"):
        pose_array_to_people(msg)


@given(quaternion=st.lists(st.floats(-1, 1), min_size=4, max_size=4).filter(
    lambda q: np.linalg.norm(q) > 0.1), translation=st.lists(st.floats(-5, 5), min_size=3, max_size=3))
def test_rigid_transform_matches_scipy_and_inverts(quaternion, translation) -> None:
    transform = RigidTransform.from_quaternion(quaternion, translation)
    np.testing.assert_allclose(transform.rotation, Rotation.from_quat(quaternion).as_matrix(), atol=1e-12)
    points = np.random.default_rng(0).normal(size=(5, 3))
    inverse = RigidTransform(transform.rotation.T, -transform.rotation.T @ transform.translation_m)
    np.testing.assert_allclose(inverse.apply(transform.apply(points)), points, atol=1e-9)


def test_transform_people_moves_positions_velocities_and_covariances() -> None:
    people = random_people(3)
    transform = RigidTransform.from_quaternion(Rotation.from_euler("xyz", [0.3, -1.0, 2.0]).as_quat(),
                                               [1.0, -2.0, 0.5])
    moved = transform_people(people, transform)
    np.testing.assert_allclose(moved.keypoints_m[1, 4], transform.rotation @ people.keypoints_m[1, 4]
                               + transform.translation_m)
    np.testing.assert_allclose(moved.velocity_mps[2], transform.rotation @ people.velocity_mps[2])
    np.testing.assert_allclose(moved.velocity_cov[0], transform.rotation @ people.velocity_cov[0]
                               @ transform.rotation.T)
    np.testing.assert_array_equal(moved.uv_px, people.uv_px)
    cov = transform.rotate_covariance(people_root_covariance(people))
    msg = people_to_pose_array(moved, header(ROSBAGS, "odom"), ROSBAGS, cov)
    np.testing.assert_allclose(np.asarray(msg.people[1].root_covariance).reshape(3, 3), cov[1])
    assert msg.header.frame_id == "odom"


def test_zero_quaternion_is_refused() -> None:
    with pytest.raises(ValueError, match="quaternion"):
        RigidTransform.from_quaternion([0, 0, 0, 0], [0, 0, 0])


# ----------------------------------------------------------------------------- diagnostics


@FLAVOURS
def test_diagnostic_array_uses_each_flavours_level_type(classes) -> None:
    msg = make_diagnostic_array(classes, header(classes, ""), "mp3d_ros: pose_node", "WARN", "2 errors",
                                "camera_optical", {"frame_rate_hz": "14.8", "backend": "torch"})
    status = msg.status[0]
    assert status.level == (b"\x01" if classes is RCLPY_LIKE else 1)
    assert [(v.key, v.value) for v in status.values] == [("frame_rate_hz", "14.8"), ("backend", "torch")]
    if classes is ROSBAGS:
        assert cdr_round_trip(msg, "diagnostic_msgs/msg/DiagnosticArray").status[0].message == "2 errors"
    with pytest.raises(ValueError, match="level"):
        make_diagnostic_array(classes, header(classes), "x", "FATAL", "", "", {})
