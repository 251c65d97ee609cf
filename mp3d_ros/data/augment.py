"""Training augmentation that keeps 2D, 3D and intrinsics consistent.

Every geometric change (flip, scale, rotation, translation, and the final letterbox to the network
input) is one :class:`~mp3d_ros.geometry.camera.ImageTransform`; :func:`~mp3d_ros.geometry.camera.transform_intrinsics`
gives the camera of the augmented image and the map ``Q`` of camera points into its frame. So after
augmentation ``project(keypoints_cam_m, intrinsics) == keypoints_img_px`` still holds and depth
targets stay metric: a zoom changes the focal length (and with it the focal-normalised depth), never
the 3D joints. A horizontal flip mirrors the world (``Q = diag(-1, 1, 1)``) and swaps left and right
joints. Colour jitter and occluding patches change pixels only; joints under a patch become not
visible.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from mp3d_ros.geometry.camera import (
    ImageTransform,
    Intrinsics,
    hflip_transform,
    letterbox_transform,
    rotate_transform,
    transform_intrinsics,
    transform_points_px,
    warp_image,
)
from mp3d_ros.geometry.skeleton import flip_permutation, get_joint_set

__all__ = ["Sample", "AugmentConfig", "sample_transform", "apply_transform", "augment", "padding_mask"]


@dataclass(frozen=True, eq=False)
class Sample:
    """One training image with its people. P people, J joints of ``joint_set``.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        intrinsics: camera of ``image`` (size (W, H)).
        joint_set: joint set name of the arrays.
        keypoints_cam_m: (P, J, 3) camera-frame joints in metres (NaN where not labelled or 2D-only).
        keypoints_img_px: (P, J, 2) pixels in ``image``.
        keypoints_vis: (P, J) bool, joint visible in the image.
        labelled: (P, J) bool, joint annotated at all.
        has_3d: False for 2D-only datasets (COCO): depth losses are masked for it.
    """

    image: np.ndarray
    intrinsics: Intrinsics
    joint_set: str
    keypoints_cam_m: np.ndarray
    keypoints_img_px: np.ndarray
    keypoints_vis: np.ndarray
    labelled: np.ndarray
    has_3d: bool = True


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random augmentation (defaults follow common bottom-up pose training)."""

    flip_probability: float = 0.5  # horizontal flip with left/right joint swap
    scale_range: tuple[float, float] = (0.75, 1.25)  # zoom about the image centre
    rotation_deg: float = 30.0  # uniform in [-rotation_deg, rotation_deg]
    translation_fraction: float = 0.1  # shift up to this fraction of the output size
    brightness: float = 0.25  # pixel values scaled by 1 + U(-b, b)
    contrast: float = 0.25  # deviation from the mean scaled by 1 + U(-c, c)
    saturation: float = 0.25  # deviation from the grey value scaled by 1 + U(-s, s)
    noise_std: float = 4.0  # Gaussian pixel noise, in 8-bit levels
    occluder_probability: float = 0.3  # chance of each of up to ``max_occluders`` patches
    max_occluders: int = 2
    occluder_size_fraction: tuple[float, float] = (0.05, 0.25)  # patch side / output side


def sample_transform(
    source_size: tuple[int, int], output_size: tuple[int, int], config: AugmentConfig,
    rng: np.random.Generator,
) -> ImageTransform:
    """Random flip, then letterbox to ``output_size``, then rotation, zoom and shift about its centre."""
    transform = letterbox_transform(source_size, output_size)
    if rng.random() < config.flip_probability:
        transform = hflip_transform(*source_size).then(transform)
    centre = (output_size[0] / 2 - 0.5, output_size[1] / 2 - 0.5)
    angle = rng.uniform(-config.rotation_deg, config.rotation_deg)
    scale = rng.uniform(*config.scale_range)
    shift = rng.uniform(-1, 1, 2) * config.translation_fraction * np.asarray(output_size)
    A = rotate_transform(centre, angle, scale, output_size).A.copy()
    A[:2, 2] += shift
    return transform.then(ImageTransform(A, output_size))


def apply_transform(sample: Sample, transform: ImageTransform,
                    pad_rgb: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> Sample:
    """Warp the image (``pad_rgb`` where no source pixel lands) and move joints and intrinsics
    consistently; out-of-image joints become hidden."""
    intrinsics, Q = transform_intrinsics(sample.intrinsics, transform)
    keypoints_cam_m = sample.keypoints_cam_m @ Q.T
    keypoints_img_px = transform_points_px(sample.keypoints_img_px, transform)
    visible, labelled = sample.keypoints_vis, sample.labelled
    if np.linalg.det(Q) < 0:  # mirrored: the left arm is now on the right
        perm = flip_permutation(get_joint_set(sample.joint_set))
        keypoints_cam_m, keypoints_img_px = keypoints_cam_m[:, perm], keypoints_img_px[:, perm]
        visible, labelled = visible[:, perm], labelled[:, perm]
    width, height = transform.out_size
    inside = (
        (keypoints_img_px[..., 0] >= -0.5) & (keypoints_img_px[..., 0] < width - 0.5)
        & (keypoints_img_px[..., 1] >= -0.5) & (keypoints_img_px[..., 1] < height - 0.5)
    )
    return replace(
        sample,
        image=warp_image(sample.image, transform, border_value=tuple(float(v) for v in pad_rgb)),
        intrinsics=intrinsics,
        keypoints_cam_m=keypoints_cam_m,
        keypoints_img_px=keypoints_img_px,
        keypoints_vis=visible & inside,
        labelled=labelled,
    )


def jitter_colour(image: np.ndarray, config: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast, saturation and noise on a (H, W, 3) uint8 RGB image."""
    pixels = image.astype(np.float32)
    pixels *= 1 + rng.uniform(-config.brightness, config.brightness)
    mean = pixels.mean()
    pixels = mean + (pixels - mean) * (1 + rng.uniform(-config.contrast, config.contrast))
    grey = cv2.cvtColor(np.clip(pixels, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)
    grey = grey.astype(np.float32)[..., None]
    pixels = grey + (pixels - grey) * (1 + rng.uniform(-config.saturation, config.saturation))
    pixels += rng.normal(0, config.noise_std, pixels.shape).astype(np.float32)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def add_occluders(sample: Sample, config: AugmentConfig, rng: np.random.Generator) -> Sample:
    """Paste random noise patches; joints under a patch are no longer visible."""
    image, visible = sample.image.copy(), sample.keypoints_vis.copy()
    height, width = image.shape[:2]
    for _ in range(config.max_occluders):
        if rng.random() >= config.occluder_probability:
            continue
        side_w = int(rng.uniform(*config.occluder_size_fraction) * width)
        side_h = int(rng.uniform(*config.occluder_size_fraction) * height)
        x0, y0 = int(rng.integers(0, width - side_w + 1)), int(rng.integers(0, height - side_h + 1))
        colour = rng.integers(0, 256, 3)
        noise = rng.integers(-40, 41, (side_h, side_w, 3))
        image[y0:y0 + side_h, x0:x0 + side_w] = np.clip(colour + noise, 0, 255).astype(np.uint8)
        u, v = sample.keypoints_img_px[..., 0], sample.keypoints_img_px[..., 1]
        covered = (u >= x0 - 0.5) & (u < x0 + side_w - 0.5) & (v >= y0 - 0.5) & (v < y0 + side_h - 0.5)
        visible &= ~covered
    return replace(sample, image=image, keypoints_vis=visible)


def padding_mask(source_size: tuple[int, int], transform: ImageTransform) -> np.ndarray:
    """(H, W) bool of the output pixels no source pixel lands on (the letterbox's and the
    rotation's padding), as bilinear warping sees them."""
    width, height = source_size
    content = warp_image(np.full((height, width), 255, dtype=np.uint8), transform, border_value=0)
    return content < 128


def augment(
    sample: Sample, output_size: tuple[int, int], config: AugmentConfig, rng: np.random.Generator,
    pad_rgb: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> Sample:
    """The full training augmentation: geometry (one resample), colour, then occluders.

    The padding is ``pad_rgb`` after the colour jitter, as the estimator pads its letterbox (the
    input normalisation's mean): the network never learns a border colour it will not see.
    """
    transform = sample_transform(sample.intrinsics.size, output_size, config, rng)
    moved = apply_transform(sample, transform, pad_rgb)
    image = jitter_colour(moved.image, config, rng)
    image[padding_mask(sample.intrinsics.size, transform)] = np.clip(np.rint(pad_rgb), 0, 255).astype(np.uint8)
    return add_occluders(replace(moved, image=image), config, rng)
