"""max_people reaches MoveNet's decoder: twelve people in one image are not cut to MoveNet's own 6."""

from __future__ import annotations

import numpy as np
import pytest

from mp3d_ros.geometry.camera import Intrinsics
from mp3d_ros.inference import Estimator
from mp3d_ros.synthetic.scenes import SceneConfig, generate_image

ONE_PERSON = SceneConfig(size=(160, 240), focal_range_px=(200.0, 220.0), people=(1, 1), depth_range_m=(2.5, 3.0),
                         camera_height_m=(1.0, 1.2), pitch_deg=(-5.0, 0.0), roll_deg=(0.0, 0.0))


@pytest.fixture(scope="module")
def crowd() -> tuple[np.ndarray, Intrinsics]:
    """Twelve rendered people side by side, none hiding another: a 2 x 6 mosaic, 960 x 480."""
    tiles = [generate_image(ONE_PERSON, 9, index).image for index in range(12)]
    mosaic = np.concatenate([np.concatenate(tiles[row * 6:(row + 1) * 6], axis=1) for row in range(2)], axis=0)
    return mosaic, Intrinsics.pinhole(500.0, 500.0, 479.5, 239.5, 960, 480)


def test_more_than_movenets_six_people_are_found(crowd, one_torch_thread) -> None:
    image, camera = crowd
    assert len(Estimator(input_size=(512, 384), device="cpu").estimate(image, camera)) > 6


@pytest.mark.parametrize("max_people", [1, 3])
def test_max_people_caps_the_people_reported(crowd, max_people, one_torch_thread) -> None:
    image, camera = crowd
    estimator = Estimator(input_size=(512, 384), device="cpu", max_people=max_people)
    assert len(estimator.estimate(image, camera)) == max_people
