"""augment.py: augmented 3D joints projected with the augmented camera land on the augmented 2D."""

from __future__ import annotations

import numpy as np
import pytest

from mp3d_ros.data.augment import (
    AugmentConfig,
    Sample,
    apply_transform,
    augment,
    padding_mask,
    sample_transform,
)
from mp3d_ros.geometry.camera import Intrinsics, project
from mp3d_ros.geometry.skeleton import MUCO_21


def random_sample(seed: int, model: str = "plumb_bob") -> Sample:
    rng = np.random.default_rng(seed)
    width, height = int(rng.integers(400, 900)), int(rng.integers(300, 700))
    D = {"none": [], "plumb_bob": [-0.2, 0.05, 1e-3, -2e-3, 0.0],
         "equidistant": [0.01, -0.01, 0.002, 0.0]}[model]
    intr = Intrinsics(np.array([[0.9 * width, 0, width / 2 + 7], [0, 0.9 * width, height / 2 - 5],
                                [0, 0, 1]]), width, height, model, D)
    people = rng.uniform([-1.5, -0.8, 3.0], [1.5, 0.8, 8.0], (3, 1, 3)) + rng.normal(
        0, 0.3, (3, MUCO_21.num_joints, 3))
    uv = project(people, intr)
    image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    labelled = np.ones(uv.shape[:2], bool)
    return Sample(image, intr, MUCO_21.name, people, uv, labelled.copy(), labelled)


@pytest.mark.parametrize("model", ["none", "plumb_bob", "equidistant"])
@pytest.mark.parametrize("seed", range(6))
def test_augmented_3d_projects_to_augmented_2d(model: str, seed: int) -> None:
    sample = random_sample(seed, model)
    out = augment(sample, (416, 256), AugmentConfig(flip_probability=0.5),
                  np.random.default_rng(seed))
    assert out.image.shape == (256, 416, 3) and out.intrinsics.size == (416, 256)
    np.testing.assert_allclose(project(out.keypoints_cam_m, out.intrinsics), out.keypoints_img_px,
                               atol=1e-6)
    # Depth never changes (zoom changes focal length, not distance); bone lengths neither.
    np.testing.assert_allclose(np.sort(out.keypoints_cam_m[..., 2].ravel()),
                               np.sort(sample.keypoints_cam_m[..., 2].ravel()), atol=1e-12)


def test_flip_swaps_left_and_right_and_mirrors_the_world() -> None:
    sample = random_sample(1, "none")
    config = AugmentConfig(flip_probability=1.0, scale_range=(1, 1), rotation_deg=0,
                           translation_fraction=0)
    out = apply_transform(sample, sample_transform(sample.intrinsics.size, sample.intrinsics.size,
                                                   config, np.random.default_rng(0)))
    left, right = MUCO_21.index("left_wrist"), MUCO_21.index("right_wrist")
    np.testing.assert_allclose(out.keypoints_cam_m[:, left, 0], -sample.keypoints_cam_m[:, right, 0])
    np.testing.assert_allclose(out.keypoints_cam_m[:, left, 1:], sample.keypoints_cam_m[:, right, 1:])


def test_image_content_moves_with_the_joints() -> None:
    sample = random_sample(2, "plumb_bob")
    image = np.zeros_like(sample.image)
    u, v = np.round(sample.keypoints_img_px[0, MUCO_21.root]).astype(int)
    image[v - 2:v + 3, u - 2:u + 3] = 255  # a bright 5x5 square on the first pelvis
    sample = Sample(image, sample.intrinsics, sample.joint_set, sample.keypoints_cam_m,
                    np.array(sample.keypoints_img_px), sample.keypoints_vis, sample.labelled)
    sample.keypoints_img_px[0, MUCO_21.root] = (u, v)
    transform = sample_transform(sample.intrinsics.size, (416, 256), AugmentConfig(),
                                 np.random.default_rng(4))
    out = apply_transform(sample, transform)
    ys, xs = np.nonzero(out.image[..., 0] > 127)
    assert out.keypoints_vis[0, MUCO_21.root], "the seed must keep the marked pelvis in view"
    root = out.keypoints_img_px[0, MUCO_21.root]
    assert abs(xs.mean() - root[0]) < 1.0 and abs(ys.mean() - root[1]) < 1.0


def test_out_of_image_joints_become_hidden() -> None:
    sample = random_sample(3, "none")
    config = AugmentConfig(scale_range=(3.0, 3.0), occluder_probability=0.0)
    out = augment(sample, (416, 256), config, np.random.default_rng(1))
    u, v = out.keypoints_img_px[..., 0], out.keypoints_img_px[..., 1]
    outside = (u < -0.5) | (u >= 415.5) | (v < -0.5) | (v >= 255.5)
    assert outside.any() and not out.keypoints_vis[outside].any()
    assert out.keypoints_vis[~outside].all()


def test_occluded_joints_are_hidden_under_changed_pixels() -> None:
    from mp3d_ros.data.augment import add_occluders

    sample = random_sample(4, "none")
    sample = Sample(np.full_like(sample.image, 7), *list(sample.__dict__.values())[1:])
    config = AugmentConfig(occluder_probability=1.0, max_occluders=1,
                           occluder_size_fraction=(0.6, 0.7))
    out = add_occluders(sample, config, np.random.default_rng(0))
    hidden = sample.keypoints_vis & ~out.keypoints_vis
    assert hidden.any()
    for u, v in np.round(sample.keypoints_img_px[hidden]).astype(int):
        if 0 <= u < sample.image.shape[1] and 0 <= v < sample.image.shape[0]:
            assert (out.image[v, u] != 7).any()
    changed = (out.image != 7).any(-1)
    for u, v in np.round(sample.keypoints_img_px[out.keypoints_vis]).astype(int):
        if 0 <= u < sample.image.shape[1] and 0 <= v < sample.image.shape[0]:
            assert not changed[v, u]


def test_padding_is_the_given_colour_after_the_colour_jitter() -> None:
    """The estimator pads its letterbox with the normalisation's mean; training pads the same,
    whatever brightness, contrast and noise the content gets."""
    sample = random_sample(3, "none")
    pad = (123.675, 116.28, 103.53)
    config = AugmentConfig(rotation_deg=20.0, occluder_probability=0.0, noise_std=6.0)
    out = augment(sample, (416, 256), config, np.random.default_rng(3), pad_rgb=pad)
    mask = padding_mask(sample.intrinsics.size, sample_transform(sample.intrinsics.size, (416, 256), config,
                                                                 np.random.default_rng(3)))
    assert 0.05 < mask.mean() < 0.95  # a letterboxed, rotated image has padding and content
    np.testing.assert_array_equal(out.image[mask], np.broadcast_to([124, 116, 104], (mask.sum(), 3)))
    assert out.image[~mask].std() > 20  # the content is the (random) image, not padding
