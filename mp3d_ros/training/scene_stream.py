"""Synthetic scenes drawn and rendered inside the training run: fresh images at GPU speed.

A ``scenes`` dataset (``datasets[].kind: scenes``) is an endless stream: batch slot position ``n``
is image ``n`` of the recipe's scene stream (:func:`mp3d_ros.synthetic.scenes.prepare_image`), so
no image repeats and a resumed run draws exactly the images the uninterrupted one would have.
The work is split where each part is cheap:

- loader workers (CPU) sample each scene and its ground truth (:func:`letterboxed_scene`) and
  send its person tables (:meth:`~mp3d_ros.model.codec.targets.TargetGenerator.tables`);
- the training process renders the batch's scenes on its device in one call
  (:func:`render_scene_images`, :func:`mp3d_ros.synthetic.render.render_batch`) and draws their
  target maps there, so images and maps never pass through JPEG, the disk or the loader's queues.

Each scene is drawn at one of the recipe's image sizes and then seen the way the estimator sees a
camera image: letterboxed into the network input. Instead of rendering the source image and
resizing it, the camera itself is moved into the letterbox (``K' = A K``, the lens unchanged) and
rendered at the input size; pixels outside the letterboxed content are the padding (the
normalisation's mean, 0 after normalising, as at inference).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from mp3d_ros.config import load_config
from mp3d_ros.geometry.camera import (
    letterbox_layout,
    letterbox_transform,
    transform_intrinsics,
    transform_points_px,
)
from mp3d_ros.geometry.skeleton import MUCO_21, convert_flags, convert_joints, get_joint_set
from mp3d_ros.model.codec.targets import SceneAnnotation
from mp3d_ros.synthetic.raycast import ray_grid
from mp3d_ros.synthetic.render import Scene, render_batch
from mp3d_ros.synthetic.scenes import (
    SceneConfig,
    SynthRecipe,
    mocap_takes,
    prepare_image,
)

__all__ = [
    "RenderJob",
    "SceneStream",
    "letterboxed_scene",
    "load_scene_stream",
    "render_scene_images",
    "scene_stream_seed",
]


@dataclass(frozen=True)
class SceneStream:
    """One ``scenes`` dataset: the recipe's scene settings, the stream's seed and the poses.

    Attributes:
        name: ``scenes (<recipe file>)``, for messages and logs.
        scene: the recipe's :class:`SceneConfig` (its ``size`` is the source image size, letterboxed
            into the network input).
        seed: seed of the image stream (:func:`scene_stream_seed`).
        mocap_dir: folder of BVH takes the people perform; None = the procedural poses.
    """

    name: str
    scene: SceneConfig
    seed: int
    mocap_dir: str | None

    kind = "scenes"
    size = None  # endless: no epochs, every position is a new image


@dataclass(frozen=True, eq=False)
class RenderJob:
    """A scene to render at the network input and the part of it that shows the camera image.

    Attributes:
        scene: the render scene, its camera moved into the letterbox.
        content_px: ``(left, top, right, bottom)`` of the letterboxed image, pixels (exclusive
            right and bottom); outside it is padding.
    """

    scene: Scene
    content_px: tuple[int, int, int, int]


def scene_stream_seed(recipe_seed: int, training_seed: int) -> int:
    """The stream's seed from the recipe's and the run's seeds: runs with other seeds see other
    images, and no stream equals a split that ``mp3d-synth`` writes with the recipe's seed alone."""
    return int(np.random.SeedSequence([recipe_seed, training_seed, 0x5CE7E5]).generate_state(1)[0])


def load_scene_stream(recipe_path: str | Path, mocap_dir: str, training_seed: int) -> SceneStream:
    """The :class:`SceneStream` of a recipe file (``config/synth/*.yaml``).

    Raises:
        ValueError: the recipe is missing or bad, or ``mocap_dir`` is not a folder (naming them).
    """
    path = Path(recipe_path)
    if not path.is_file():
        raise ValueError(f"scenes dataset: recipe file {path} does not exist")
    recipe = load_config(SynthRecipe, path)
    if mocap_dir and not Path(mocap_dir).is_dir():
        raise ValueError(f"scenes dataset {path}: mocap folder {mocap_dir} does not exist")
    return SceneStream(f"scenes ({path.name})", recipe.scene,
                       scene_stream_seed(recipe.seed, training_seed), mocap_dir or None)


def letterboxed_scene(stream: SceneStream, position: int, input_size: tuple[int, int],
                      joint_set: str) -> tuple[RenderJob, SceneAnnotation]:
    """Image ``position`` of the stream, letterboxed into ``input_size``: what to render and the
    targets' annotation (joints in ``joint_set``; every joint is labelled in 2D and 3D, visible
    where the scene's camera sees it)."""
    frame = prepare_image(stream.scene, stream.seed, position, mocap_takes(stream.mocap_dir,
                                                                           stream.scene.fps))
    source = frame.truth.intrinsics
    transform = letterbox_transform(source.size, input_size)
    intrinsics, _ = transform_intrinsics(source, transform)  # Q is the identity for resize + pad
    (width, height), (left, top) = letterbox_layout(source.size, input_size)
    scene = replace(frame.scene, intrinsics=intrinsics, ray_grid=ray_grid(intrinsics))
    muco, target = MUCO_21, get_joint_set(joint_set)
    truth = frame.truth
    uv, labelled = convert_joints(transform_points_px(truth.keypoints_img_px, transform), muco, target)
    xyz, _ = convert_joints(truth.keypoints_cam_m, muco, target)
    annotation = SceneAnnotation(
        uv_px=uv, labelled=labelled, visible=convert_flags(truth.visible, muco, target),
        K=intrinsics.K, image_size=tuple(input_size), xyz_m=xyz, labelled_3d=labelled,
        distortion_model=intrinsics.distortion_model, distortion=intrinsics.D,
    )
    return RenderJob(scene, (left, top, left + width, top + height)), annotation


def render_scene_images(jobs: list[RenderJob], device: torch.device, pad_rgb: tuple[float, float, float]
                        ) -> torch.Tensor:
    """(B, H, W, 3) uint8 images of the jobs on ``device``, padded outside their content with
    ``pad_rgb`` (0-255; the normalisation's mean, so the padding is 0 after it, as at inference)."""
    images = render_batch([job.scene for job in jobs], device).image
    height, width = images.shape[1:3]
    rows = torch.arange(height, device=device)[None, :, None]
    cols = torch.arange(width, device=device)[None, None, :]
    box = torch.tensor([job.content_px for job in jobs], device=device)[:, :, None, None]
    inside = (cols >= box[:, 0]) & (cols < box[:, 2]) & (rows >= box[:, 1]) & (rows < box[:, 3])
    pad = torch.tensor(pad_rgb, device=device).round().clamp(0, 255).to(torch.uint8)
    return torch.where(inside[..., None], images, pad)
