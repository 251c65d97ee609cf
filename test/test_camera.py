"""camera.py: projection round trips, agreement with OpenCV, CameraInfo parsing, image transforms."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mp3d_ros.geometry.camera import (
    Intrinsics,
    back_project,
    crop_transform,
    distort_normalized,
    hflip_transform,
    letterbox_transform,
    pad_transform,
    pixel_rays,
    project,
    resize_transform,
    rotate_transform,
    transform_intrinsics,
    transform_points_px,
    undistort_normalized,
)

DISTORTIONS = {
    "none": [],
    "plumb_bob": [-0.28, 0.09, 1e-3, -8e-4, -0.01],
    "rational_polynomial": [0.9, -0.4, 1e-3, 8e-4, 0.05, 1.2, -0.1, 0.2],
    "equidistant": [-0.02, 0.01, -0.004, 5e-4],
}


def random_camera(seed: int, model: str) -> Intrinsics:
    rng = np.random.default_rng(seed)
    width, height = int(rng.integers(320, 1920)), int(rng.integers(240, 1080))
    fx = rng.uniform(0.5, 1.5) * width
    K = np.array(
        [[fx, rng.uniform(-1, 1), width / 2 + rng.uniform(-40, 40)],
         [0, fx * rng.uniform(0.95, 1.05), height / 2 + rng.uniform(-40, 40)],
         [0, 0, 1]]
    )
    D = np.array(DISTORTIONS[model]) * rng.uniform(0.5, 1.0)
    return Intrinsics(K, width, height, model, D)


def points_in_view(seed: int, count: int = 50) -> np.ndarray:
    """Points at 0.5-20 m within about +-35 degrees of the optical axis."""
    rng = np.random.default_rng(seed + 1)
    z = rng.uniform(0.5, 20.0, count)
    xy = rng.uniform(-0.7, 0.7, (count, 2)) * z[:, None]
    return np.column_stack([xy, z])


@pytest.mark.parametrize("model", sorted(DISTORTIONS))
@given(seed=st.integers(0, 2**31 - 1))
def test_back_project_inverts_project(model: str, seed: int) -> None:
    intr = random_camera(seed, model)
    points = points_in_view(seed)
    recovered = back_project(project(points, intr), points[:, 2], intr)
    np.testing.assert_allclose(recovered, points, atol=1e-6)


@pytest.mark.parametrize("model", ["plumb_bob", "rational_polynomial", "equidistant"])
@given(seed=st.integers(0, 2**31 - 1))
def test_project_agrees_with_opencv(model: str, seed: int) -> None:
    intr = random_camera(seed, model)
    intr = Intrinsics(intr.K * [[1, 0, 1], [1, 1, 1], [1, 1, 1]], intr.width, intr.height,
                      model, intr.D)  # OpenCV's pinhole projection has no skew term
    points = points_in_view(seed)
    zero = np.zeros(3)
    if model == "equidistant":
        expected, _ = cv2.fisheye.projectPoints(points.reshape(-1, 1, 3), zero, zero, intr.K, intr.D)
    else:
        expected, _ = cv2.projectPoints(points, zero, zero, intr.K, intr.D)
    np.testing.assert_allclose(project(points, intr), expected.reshape(-1, 2), atol=1e-6)


def test_project_batched_shapes_and_behind_camera() -> None:
    intr = random_camera(0, "plumb_bob")
    points = points_in_view(0, 24).reshape(2, 3, 4, 3)
    uv = project(points, intr)
    assert uv.shape == (2, 3, 4, 2)
    np.testing.assert_allclose(uv.reshape(-1, 2), project(points.reshape(-1, 3), intr))
    assert np.all(np.isnan(project(np.array([[0.1, 0.2, -1.0], [0, 0, 0]]), intr)))


@pytest.mark.parametrize("model", ["plumb_bob", "rational_polynomial", "equidistant"])
def test_undistort_inverts_distort(model: str) -> None:
    xy = np.random.default_rng(3).uniform(-0.6, 0.6, (100, 2))
    D = DISTORTIONS[model]
    np.testing.assert_allclose(undistort_normalized(distort_normalized(xy, model, D), model, D), xy,
                               atol=1e-9)


def transforms(width: int, height: int) -> dict:
    return {
        "resize": resize_transform((width, height), (width // 2 + 3, height // 3 + 7)),
        "crop": crop_transform(17, 5, (width - 40, height - 30)),
        "pad": pad_transform(13, 21, (width + 30, height + 50)),
        "flip": hflip_transform(width, height),
        "rotate": rotate_transform((width / 3, height / 2), 27.0, 0.8, (width, height)),
        "letterbox": letterbox_transform((width, height), (832, 512)),
        "flip+letterbox+rotate": hflip_transform(width, height)
        .then(letterbox_transform((width, height), (416, 256)))
        .then(rotate_transform((200, 120), -40.0, 1.2, (416, 256))),
    }


@pytest.mark.parametrize("model", sorted(DISTORTIONS))
@pytest.mark.parametrize("name", sorted(transforms(10, 10)))
@given(seed=st.integers(0, 2**31 - 1))
def test_transformed_intrinsics_project_to_transformed_pixels(model: str, name: str, seed: int) -> None:
    intr = random_camera(seed, model)
    transform = transforms(intr.width, intr.height)[name]
    points = points_in_view(seed)
    new_intr, Q = transform_intrinsics(intr, transform)
    expected = transform_points_px(project(points, intr), transform)
    np.testing.assert_allclose(project(points @ Q.T, new_intr), expected, atol=1e-6)
    assert new_intr.size == transform.out_size
    assert new_intr.fx > 0 and new_intr.fy > 0
    np.testing.assert_allclose(Q @ Q.T, np.eye(3), atol=1e-12)


def test_flip_twice_is_identity() -> None:
    intr = random_camera(7, "plumb_bob")
    flip = hflip_transform(intr.width, intr.height)
    twice, Q = transform_intrinsics(transform_intrinsics(intr, flip)[0], flip)
    np.testing.assert_allclose(twice.K, intr.K, atol=1e-12)
    np.testing.assert_allclose(twice.D, intr.D)
    np.testing.assert_allclose(flip.then(flip).A, np.eye(3))


def test_letterbox_fits_and_centres() -> None:
    transform = letterbox_transform((640, 480), (832, 512))
    corners = transform_points_px(np.array([[-0.5, -0.5], [639.5, 479.5]]), transform)
    # 640x480 scaled by 512/480 is 683x512, padded by (832 - 683) // 2 = 74 on the left.
    np.testing.assert_allclose(corners, [[74 - 0.5, -0.5], [74 + 683 - 0.5, 511.5]], atol=1e-9)


def test_warp_image_moves_pixels_like_points() -> None:
    from mp3d_ros.geometry.camera import warp_image

    image = np.zeros((60, 80), np.float32)
    image[20, 30] = 1.0
    transform = hflip_transform(80, 60).then(crop_transform(5, 4, (70, 50)))
    warped = warp_image(image, transform, interpolation=cv2.INTER_NEAREST)
    u, v = transform_points_px(np.array([30.0, 20.0]), transform)
    assert warped[int(round(v)), int(round(u))] == 1.0 and warped.sum() == 1.0


def camera_info(**overrides) -> SimpleNamespace:
    fields = dict(
        width=1280, height=960, distortion_model="plumb_bob",
        d=[-0.2, 0.05, 0.001, 0.002, 0.0],
        k=[800.0, 0, 640.5, 0, 810.0, 480.5, 0, 0, 1],
        p=[700.0, 0, 630.0, 0, 0, 705.0, 470.0, 0, 0, 0, 1, 0],
        binning_x=0, binning_y=0,
        roi=SimpleNamespace(x_offset=0, y_offset=0, width=0, height=0, do_rectify=False),
    )
    fields.update(overrides)
    return SimpleNamespace(**fields)


def test_from_camera_info_raw_and_rectified() -> None:
    raw = Intrinsics.from_camera_info(camera_info())
    assert (raw.fx, raw.fy, raw.cx, raw.cy) == (800.0, 810.0, 640.5, 480.5)
    assert raw.distortion_model == "plumb_bob" and raw.size == (1280, 960) and not raw.rectified
    rect = Intrinsics.from_camera_info(camera_info(), rectified=True)
    assert (rect.fx, rect.fy, rect.cx, rect.cy) == (700.0, 705.0, 630.0, 470.0)
    assert rect.distortion_model == "none" and rect.rectified


def test_from_camera_info_binning_and_roi_match_a_cropped_binned_image() -> None:
    """A point's pixel in the full image maps to (u - x_offset) / binning in the reduced image."""
    full = Intrinsics.from_camera_info(camera_info())
    roi = SimpleNamespace(x_offset=100, y_offset=60, width=800, height=600, do_rectify=False)
    reduced = Intrinsics.from_camera_info(camera_info(binning_x=2, binning_y=2, roi=roi))
    assert reduced.size == (400, 300)
    points = points_in_view(5)
    uv_full = project(points, full)
    np.testing.assert_allclose(project(points, reduced), (uv_full - [100, 60]) / 2, atol=1e-9)


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(k=[0.0, 0, 640, 0, 800, 480, 0, 0, 1]), "CameraInfo.k"),
        (dict(k=[800.0, 0, np.nan, 0, 800, 480, 0, 0, 1]), "CameraInfo.k"),
        (dict(k=[0.0] * 9), "CameraInfo.k"),
        (dict(k=[800.0, 0, 640]), "CameraInfo.k"),
        (dict(d=[0.1, np.inf, 0, 0, 0]), "CameraInfo.d"),
        (dict(distortion_model="kannala_brandt_9"), "CameraInfo.distortion_model"),
        (dict(width=0), "CameraInfo.width"),
        (dict(roi=SimpleNamespace(x_offset=1200, y_offset=0, width=200, height=100)), "CameraInfo.roi"),
    ],
)
def test_from_camera_info_rejects_invalid(overrides: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        Intrinsics.from_camera_info(camera_info(**overrides))


def test_rectified_rejects_invalid_p() -> None:
    with pytest.raises(ValueError, match=r"CameraInfo\.p"):
        Intrinsics.from_camera_info(camera_info(p=[-1.0, 0, 0, 0, 0, 700, 0, 0, 0, 0, 1, 0]),
                                    rectified=True)


def test_check_image_size_names_both_sizes() -> None:
    intr = Intrinsics.pinhole(500, 500, 320, 240, 640, 480)
    intr.check_image_size(640, 480)
    with pytest.raises(ValueError, match="1280x720.*640x480"):
        intr.check_image_size(1280, 720)


def test_fisheye_without_coefficients_still_round_trips() -> None:
    """theta_d = theta bends rays even with all-zero coefficients: undistortion must invert it
    (host and device), not return the pixels as they are."""
    import torch

    from mp3d_ros.geometry.camera_torch import CameraBatch
    from mp3d_ros.geometry.camera_torch import pixel_rays as device_rays
    from mp3d_ros.geometry.camera_torch import project as device_project

    intr = Intrinsics(np.array([[500.0, 0, 640], [0, 500, 400], [0, 0, 1]]), 1280, 800, "equidistant",
                      np.zeros(4))
    uv = np.array([[600.0, 400.0], [100.0, 50.0], [1200.0, 700.0]])
    np.testing.assert_allclose(project(pixel_rays(uv, intr), intr), uv, atol=1e-6)
    cameras = CameraBatch.build([letterbox_transform((1280, 800), (1280, 800))], [intr], torch.device("cpu"))
    uv_t = torch.from_numpy(uv)[None]
    np.testing.assert_allclose(device_project(device_rays(uv_t, cameras), cameras)[0].numpy(), uv, atol=1e-6)
