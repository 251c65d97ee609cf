"""Calibrations no camera has (a focal length of 1e-9 or 1e12 px, a principal point at 1e9 px) are
refused with a ValueError naming the field, as non-finite ones are; real lenses still pass."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from mp3d_ros.geometry.camera import Intrinsics, field_of_view_deg


def camera_info(k: list[float], model: str = "plumb_bob") -> SimpleNamespace:
    return SimpleNamespace(
        width=640, height=480, distortion_model=model, d=[0.0] * 5, k=k, p=[0.0] * 12,
        binning_x=0, binning_y=0,
        roi=SimpleNamespace(x_offset=0, y_offset=0, width=0, height=0, do_rectify=False))


@pytest.mark.parametrize("fx, fy, cx, cy, message", [
    (1e-9, 500.0, 320.0, 240.0, r"K: fx=1e-09 px gives a field of view of 180 deg across 640 px"),
    (1e12, 500.0, 320.0, 240.0, r"K: fx=1e\+12 px gives a field of view of 3\.67e-08 deg"),
    (500.0, 1e12, 320.0, 240.0, r"K: fy=1e\+12 px"),
    (500.0, 500.0, 1e9, 240.0, r"K: cx=1e\+09 px is far outside the 640x480 image"),
    (500.0, 500.0, 320.0, -1e6, r"K: cy=-1e\+06 px is far outside the 640x480 image"),
])
def test_implausible_pinhole_is_refused_naming_the_field(fx, fy, cx, cy, message) -> None:
    with pytest.raises(ValueError, match=message):
        Intrinsics.pinhole(fx, fy, cx, cy, 640, 480)


def test_camera_info_names_its_own_field() -> None:
    with pytest.raises(ValueError, match=r"CameraInfo\.k: fx=1e-09 px gives a field of view"):
        Intrinsics.from_camera_info(camera_info([1e-9, 0, 320, 0, 500, 240, 0, 0, 1]))
    with pytest.raises(ValueError, match=r"CameraInfo\.k: cx=1e\+09 px is far outside"):
        Intrinsics.from_camera_info(camera_info([500, 0, 1e9, 0, 500, 240, 0, 0, 1]))


def test_real_lenses_pass() -> None:
    Intrinsics.pinhole(90.0, 90.0, 320.0, 240.0, 640, 480)  # 148 deg wide angle
    Intrinsics.pinhole(30000.0, 30000.0, 320.0, 240.0, 640, 480)  # 1.2 deg telephoto
    Intrinsics.pinhole(500.0, 500.0, -200.0, 700.0, 640, 480)  # principal point outside (a crop)
    fisheye = Intrinsics(np.array([[180.0, 0, 320], [0, 180.0, 240], [0, 0, 1]]), 640, 480,
                         "equidistant", np.zeros(4))  # 204 deg across the width
    assert field_of_view_deg(fisheye.fx, 640, "equidistant") == pytest.approx(203.7, abs=0.1)
    with pytest.raises(ValueError, match=r"K: fx=1 px gives a field of view of 180 deg"):
        Intrinsics.pinhole(1.0, 180.0, 320.0, 240.0, 640, 480)
