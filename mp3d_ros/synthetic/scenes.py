"""Synthetic multi-person scenes with exact 3D ground truth: cameras, people, sequences, dataset.

World frame: metres, Y up, ground plane ``y = 0``; the camera stands at ``(0, h, 0)`` and, before
pitch and roll, looks along +Z (world +X is then on the image's left). ``R_cam_world`` takes world
vectors into the optical frame (x right, y down, z forward):
``R = Rz(-roll) Rx(-pitch) diag(-1, -1, 1)`` (pitch > 0 looks up, roll > 0 turns the image
clockwise).

A scene is a *plan*: a camera, an environment and people, each person a shape, an appearance and
a motion (a fixed pose; keyframed joint angles in place; a walk along a smooth curved path; or a
motion-capture take played in time with its own root motion). A single image is the plan at
t = 0; a sequence renders the plan at ``k / fps``. People enter and leave the view; track ids
(1, 2, ...) are stable through a sequence; a frame annotates the people with at least one joint
inside the image.

Every image or sequence draws from ``np.random.default_rng([seed, index])`` alone, and rendering
runs single-threaded, so the output is the same for any number of workers.

A frame is made in two steps: :func:`prepare_image` / :func:`prepare_sequence` sample the scene and
compute its whole ground truth on the CPU (float64; the slow part of a distorted camera's rays
too), then :func:`render_frames` renders a batch of prepared frames on any device. ``mp3d-synth
--batch`` runs the first step in worker processes and the second in batches on a GPU: its
annotations are the CPU path's, byte for byte.
"""

from __future__ import annotations

import collections
import functools
import itertools
import multiprocessing
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from mp3d_ros.geometry.camera import Intrinsics, distort_normalized, pixel_rays, project
from mp3d_ros.geometry.skeleton import MUCO_21
from mp3d_ros.synthetic import body as bodies
from mp3d_ros.synthetic.bvh import MocapTake
from mp3d_ros.synthetic.motion import Person, Walk, ground_point, sample_motion
from mp3d_ros.synthetic.raycast import joint_visibility, ray_grid
from mp3d_ros.synthetic.render import (
    Appearance,
    Environment,
    Scene,
    render_batch,
    sample_appearance,
    sample_environment,
)

__all__ = [
    "SceneConfig",
    "SynthRecipe",
    "SyntheticFrame",
    "PreparedFrame",
    "IMAGE_SIZES",
    "camera_rotation",
    "sample_camera",
    "generate_image",
    "prepare_image",
    "prepare_sequence",
    "render_frames",
    "generate_sequence",
    "bbox_from_primitives",
    "frame_records",
    "mocap_takes",
    "write_dataset",
    "ANNOTATION_FILE",
]

# Landscape and portrait sizes (width, height) drawn when SceneConfig.size is None.
IMAGE_SIZES = ((832, 512), (640, 480), (960, 540), (768, 432), (512, 832), (480, 640), (540, 960))
_BASE_STAMP_NS = 1_700_000_000 * 10**9


@dataclass(frozen=True)
class SceneConfig:
    """What scenes to draw. Ranges are (min, max), uniform unless said otherwise.

    Attributes:
        size: (width, height) of every image; None draws from :data:`IMAGE_SIZES`.
        focal_range_px: focal length range in pixels; None draws a horizontal field of view in
            ``fov_range_deg`` instead.
        fov_range_deg: horizontal field of view range when ``focal_range_px`` is None.
        people: number of people per scene.
        distortion: ``none``, ``plumb_bob`` or ``equidistant`` (rendered and recorded).
        depth_range_m: ground distance of the people from the camera.
        camera_height_m: camera height above the ground.
        pitch_deg: camera pitch (negative looks down).
        roll_deg: camera roll.
        height_range_m: stature of the people.
        fps: frame rate of sequences.
        principal_offset_range: |offset| of the principal point from the image centre, as a
            fraction of the image size, uniform with a random sign per axis; None draws it near
            the centre (normal, 2 % standard deviation, clipped at 8 %).
    """

    size: tuple[int, int] | None = None
    focal_range_px: tuple[float, float] | None = None
    fov_range_deg: tuple[float, float] = (45.0, 100.0)
    people: tuple[int, int] = (2, 8)
    distortion: str = "none"
    depth_range_m: tuple[float, float] = (1.0, 15.0)
    camera_height_m: tuple[float, float] = (0.3, 2.0)
    pitch_deg: tuple[float, float] = (-25.0, 10.0)
    roll_deg: tuple[float, float] = (-6.0, 6.0)
    height_range_m: tuple[float, float] = (1.0, 2.0)
    fps: float = 30.0
    principal_offset_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.distortion not in ("none", "plumb_bob", "equidistant"):
            raise ValueError(
                f"distortion must be none, plumb_bob or equidistant, got {self.distortion!r}"
            )
        if not 0 <= self.people[0] <= self.people[1]:
            raise ValueError(f"people must be 0 <= min <= max, got {self.people}")
        if self.size is not None and (self.size[0] < 32 or self.size[1] < 32):
            raise ValueError(f"size must be at least 32x32 pixels, got {self.size}")
        focal = self.focal_range_px
        if focal is not None and not 0 < focal[0] <= focal[1]:
            raise ValueError(f"focal_range_px must be 0 < min <= max, got {self.focal_range_px}")
        if not 0 < self.depth_range_m[0] <= self.depth_range_m[1]:
            raise ValueError(f"depth_range_m must be 0 < min <= max, got {self.depth_range_m}")
        if not self.fps > 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")


@dataclass(frozen=True)
class SynthRecipe:
    """A named dataset: how many images, which seed, which scenes (a YAML file in config/synth/)."""

    images: int
    seed: int
    scene: SceneConfig = field(default_factory=SceneConfig)


@dataclass(frozen=True, eq=False)
class SyntheticFrame:
    """One rendered image and its ground truth. P annotated people, J = 21 (``muco_21``).

    Attributes:
        image: (H, W, 3) uint8 RGB; None in a :class:`PreparedFrame` (not rendered yet).
        intrinsics: the camera, distortion included.
        keypoints_cam_m: (P, J, 3) joints in metres in the optical frame.
        keypoints_img_px: (P, J, 2) ``project(keypoints_cam_m, intrinsics)``; may lie outside.
        visible: (P, J) bool, seen by the camera (inside the image and not occluded).
        track_ids: (P,) int64 identities, stable through a sequence (1, 2, ...).
        bbox_px: (P, 4) ``x, y, w, h`` of each person's projected body, clipped to the image.
        stamp_ns: capture time in nanoseconds.
        sequence: index of the sequence (of the image when not a sequence).
        frame_idx: index of the frame in its sequence.
        R_cam_world: (3, 3) camera orientation (world Y up); camera_height_m: its height.
    """

    image: np.ndarray | None
    intrinsics: Intrinsics
    keypoints_cam_m: np.ndarray
    keypoints_img_px: np.ndarray
    visible: np.ndarray
    track_ids: np.ndarray
    bbox_px: np.ndarray
    stamp_ns: int
    sequence: int
    frame_idx: int
    R_cam_world: np.ndarray
    camera_height_m: float
    skeleton: str = field(default=MUCO_21.name)

    @property
    def stamp_s(self) -> float:
        return self.stamp_ns * 1e-9


# ----------------------------------------------------------------------------- camera


def _rx(deg: float) -> np.ndarray:
    c, s = np.cos(np.deg2rad(deg)), np.sin(np.deg2rad(deg))
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _rz(deg: float) -> np.ndarray:
    c, s = np.cos(np.deg2rad(deg)), np.sin(np.deg2rad(deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def camera_rotation(pitch_deg: float, roll_deg: float) -> np.ndarray:
    """(3, 3) ``R_cam_world`` of a camera with pitch (> 0 up) and roll (module docstring)."""
    return _rz(-roll_deg) @ _rx(-pitch_deg) @ np.diag([-1.0, -1.0, 1.0])


# Ground frame (REP-103: x forward, y left, z up, the floor at z = 0) from the world frame above
# (Y up, the camera looking along +Z before pitch and roll, +X on the image's left).
GROUND_FROM_WORLD = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def ground_from_camera(R_cam_world: np.ndarray, camera_height_m: float) -> tuple[np.ndarray, np.ndarray]:
    """The camera's pose over the floor: ``(R, t)`` with ``p_ground = R p_cam + t`` (what tf2 gives
    for ``ground <- camera optical frame``); the camera stands at ``(0, 0, height)``."""
    rotation = GROUND_FROM_WORLD @ np.asarray(R_cam_world, dtype=np.float64).T
    return rotation, GROUND_FROM_WORLD @ np.array([0.0, float(camera_height_m), 0.0])


def _sample_distortion(
    rng: np.random.Generator, model: str, K: np.ndarray, size: tuple[int, int]
) -> np.ndarray:
    """Coefficients of a lens that stays one-to-one over the whole image (redrawn until it does)."""
    width, height = size
    border = np.array([[u, v] for u in np.linspace(0, width - 1, 9) for v in (0, height - 1)]
                      + [[u, v] for v in np.linspace(0, height - 1, 9) for u in (0, width - 1)])
    for _ in range(50):
        if model == "plumb_bob":
            D = np.array([rng.uniform(-0.35, 0.12), rng.uniform(-0.05, 0.12),
                          rng.normal(0, 1e-3), rng.normal(0, 1e-3), rng.uniform(-0.02, 0.02)])
        else:
            D = np.array([rng.uniform(-0.06, 0.06), rng.uniform(-0.02, 0.02),
                          rng.uniform(-0.005, 0.005), rng.uniform(-0.002, 0.002)])
        intr = Intrinsics(K, width, height, model, D)
        rays = pixel_rays(border, intr)
        if np.all(np.isfinite(rays)) and np.abs(project(rays, intr) - border).max() < 1e-3:
            radius = np.linalg.norm(rays[:, :2], axis=1).max() * 1.1
            r = np.linspace(1e-3, radius, 200)
            radial = distort_normalized(np.stack([r, 0 * r], 1), model, D)
            distorted = np.linalg.norm(radial, axis=1)
            if np.all(np.diff(distorted) > 0):
                return D
    raise ValueError(f"could not draw a one-to-one {model} lens for a {width}x{height} camera")


def _principal_offset(
    rng: np.random.Generator, offset_range: tuple[float, float] | None
) -> tuple[float, float]:
    """Principal point offsets from the image centre, as fractions of the image size (x, y)."""
    if offset_range is None:  # like real lenses: near the centre
        return tuple(float(np.clip(rng.normal(0, 0.02), -0.08, 0.08)) for _ in range(2))
    magnitude = rng.uniform(*offset_range, size=2)
    return tuple(float(m * rng.choice([-1.0, 1.0])) for m in magnitude)


def sample_camera(
    rng: np.random.Generator, config: SceneConfig
) -> tuple[Intrinsics, np.ndarray, float]:
    """A random camera: ``(intrinsics, R_cam_world, height_m)``."""
    width, height = config.size or IMAGE_SIZES[int(rng.integers(len(IMAGE_SIZES)))]
    if config.focal_range_px is not None:
        fx = rng.uniform(*config.focal_range_px)
    else:
        fx = 0.5 * width / np.tan(np.deg2rad(rng.uniform(*config.fov_range_deg)) / 2)
    fy = fx * (1 + float(np.clip(rng.normal(0, 0.003), -0.01, 0.01)))
    offset_x, offset_y = _principal_offset(rng, config.principal_offset_range)
    cx = (width - 1) / 2 + offset_x * width
    cy = (height - 1) / 2 + offset_y * height
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    if config.distortion == "none":
        intr = Intrinsics(K, width, height)
    else:
        D = _sample_distortion(rng, config.distortion, K, (width, height))
        intr = Intrinsics(K, width, height, config.distortion, D)
    R = camera_rotation(rng.uniform(*config.pitch_deg), rng.uniform(*config.roll_deg))
    return intr, R, float(rng.uniform(*config.camera_height_m))


@dataclass(frozen=True, eq=False)
class _Camera:
    """A camera of the world frame: intrinsics, orientation, height above the ground."""

    intrinsics: Intrinsics
    R_cam_world: np.ndarray
    height_m: float

    def to_camera(self, points_world_m: np.ndarray) -> np.ndarray:
        """(*, 3) world points (metres) in the optical frame."""
        return (points_world_m - [0.0, self.height_m, 0.0]) @ self.R_cam_world.T

    def sees(self, joints_world_m: np.ndarray) -> bool:
        """In front of the camera (every joint 0.3 m or more) with a joint inside the image."""
        joints = self.to_camera(joints_world_m)
        if joints[:, 2].min() < 0.3:
            return False
        uv = project(joints, self.intrinsics)
        width, height = self.intrinsics.size
        inside = (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height)
        return bool(inside.any())


@dataclass(frozen=True, eq=False)
class _Plan:
    """A scene over time: one camera (and its :func:`ray_grid`), one environment, people with
    motions and appearances."""

    camera: _Camera
    environment: Environment
    appearance: Appearance
    people: tuple[Person, ...]
    ray_grid: np.ndarray | None


def _half_fov_rad(intr: Intrinsics) -> float:
    return float(np.arctan(0.5 * intr.width / intr.fx))


def _placement(
    rng: np.random.Generator,
    config: SceneConfig,
    intr: Intrinsics,
    taken: list[tuple[float, float]],
) -> tuple[float, float]:
    """A free ground position in or near the view; often right behind or before someone."""
    alpha, (near, far) = _half_fov_rad(intr), config.depth_range_m
    xz = (0.0, near)
    for _ in range(30):
        if taken and rng.random() < 0.35:  # line up with someone: occlusion
            ox, oz = taken[int(rng.integers(len(taken)))]
            distance = np.hypot(ox, oz) + rng.choice([-1.0, 1.0]) * rng.uniform(0.8, 3.0)
            azimuth = np.arctan2(-ox, oz) + rng.normal(0, 0.04)
        else:
            # Half log-uniform (as many people at 1-2 m as at 7.5-15 m), half uniform.
            if rng.random() < 0.5:
                distance = np.exp(rng.uniform(np.log(near), np.log(far)))
            else:
                distance = rng.uniform(near, far)
            azimuth = rng.uniform(-1.15 * alpha, 1.15 * alpha)
        xz = ground_point(float(np.clip(distance, near, far)), azimuth)
        if all(np.hypot(xz[0] - x, xz[1] - z) >= 0.75 for x, z in taken):
            break
    return xz


def _sample_plan(
    rng: np.random.Generator,
    config: SceneConfig,
    mocap: Sequence[MocapTake] | None,
    duration_s: float,
) -> _Plan:
    """Camera, people (each in view at t = 0, or walking into it) and environment of a scene."""
    intr, R, height = sample_camera(rng, config)
    camera = _Camera(intr, R, height)
    people: list[Person] = []
    taken: list[tuple[float, float]] = []
    for _ in range(int(rng.integers(config.people[0], config.people[1] + 1))):
        shape = bodies.sample_shape(rng, height_range_m=config.height_range_m)
        for _ in range(20):
            xz = _placement(rng, config, intr, taken)
            motion = sample_motion(rng, shape, xz, duration_s, config.fps, mocap,
                                   _half_fov_rad(intr), config.depth_range_m)
            entering = isinstance(motion, Walk) and motion.start_xz_m != xz
            if entering or camera.sees(motion.joints_at(0.0, shape)):
                sleeves, trousers = bool(rng.random() < 0.7), bool(rng.random() < 0.75)
                people.append(Person(shape, sleeves, trousers, motion))
                taken.append(xz)
                break
    env = sample_environment(rng, R, height, intr.width, intr.height)
    return _Plan(camera, env, sample_appearance(rng, len(people)), tuple(people), ray_grid(intr))


# ----------------------------------------------------------------------------- frames


def bbox_from_primitives(prims: bodies.Primitives, intr: Intrinsics) -> np.ndarray:
    """(4,) ``x, y, w, h`` around one body's projected outline, clipped to the image.

    The outline is sampled at each capsule end and ellipsoid centre, moved by its extent along
    the camera's x and y axes (exact for spheres seen head-on, within a pixel or two otherwise).
    """
    offsets = np.array([[1.0, 0, 0], [-1.0, 0, 0], [0, 1.0, 0], [0, -1.0, 0]])
    points = [end[:, None, :] + prims.capsule_radius_m[:, None, None] * offsets
              for end in (prims.capsule_a_m, prims.capsule_b_m)]
    extent = np.linalg.norm(prims.ellipsoid_axes_m[:, :2, :], axis=-1)  # (M, 2) along x and y
    along_x = extent[:, None, 0:1] * offsets[None, :2]
    along_y = extent[:, None, 1:2] * offsets[None, 2:]
    shifts = np.concatenate([along_x, along_y], axis=1)
    points.append(prims.ellipsoid_center_m[:, None, :] + shifts)
    uv = project(np.concatenate([p.reshape(-1, 3) for p in points]), intr)
    uv = uv[np.all(np.isfinite(uv), axis=1)]
    low = np.clip(uv.min(axis=0), 0, [intr.width - 1, intr.height - 1])
    high = np.clip(uv.max(axis=0), 0, [intr.width - 1, intr.height - 1])
    return np.concatenate([low, high - low])


def _frame_scene(plan: _Plan, t_s: float) -> tuple[Scene, np.ndarray, np.ndarray, list]:
    """The render scene of the plan at ``t_s``, the (P, J, 3) camera joints of the people in front
    of the camera, their track ids and their primitives."""
    joints, prims, ids = [], [], []
    for track, person in enumerate(plan.people):
        cam = plan.camera.to_camera(person.joints_at(t_s))
        if cam[:, 2].min() < 0.05:  # at or behind the camera plane: not in this frame
            continue
        prims.append(bodies.body_primitives(cam, person.shape, person.long_sleeves,
                                            person.long_trousers, person=len(joints)))
        joints.append(cam)
        ids.append(track + 1)
    count = len(joints)
    joints = np.array(joints).reshape(count, MUCO_21.num_joints, 3)
    keep = np.array(ids, dtype=np.int64) - 1
    appearance = Appearance(*(np.asarray(getattr(plan.appearance, f))[keep]
                              for f in Appearance.__dataclass_fields__))
    scene = Scene(plan.camera.intrinsics, bodies.concatenate_primitives(prims), appearance,
                  joints[:, MUCO_21.root].reshape(count, 3), plan.environment, plan.ray_grid)
    return scene, joints, np.array(ids, dtype=np.int64), prims


@dataclass(frozen=True, eq=False)
class PreparedFrame:
    """A frame before rendering: its render scene and its whole ground truth (``truth.image`` is
    None; :func:`render_frames` fills it in)."""

    scene: Scene
    truth: SyntheticFrame


def _prepare(
    plan: _Plan, t_s: float, sequence: int, frame_idx: int, stamp_ns: int
) -> PreparedFrame:
    """The plan at ``t_s`` with the ground truth of the people that have a joint inside the
    image."""
    scene, joints, ids, prims = _frame_scene(plan, t_s)
    intr = plan.camera.intrinsics
    visible = joint_visibility(joints, scene.primitives, intr)
    uv = project(joints, intr)
    inside = (uv[..., 0] >= -0.5) & (uv[..., 0] < intr.width - 0.5) & (uv[..., 1] >= -0.5) & (
        uv[..., 1] < intr.height - 0.5)
    shown = inside.any(axis=1)
    boxes = np.array([bbox_from_primitives(p, intr) for p in prims]).reshape(len(ids), 4)
    truth = SyntheticFrame(None, intr, joints[shown], uv[shown], visible[shown], ids[shown],
                           boxes[shown], stamp_ns, sequence, frame_idx, plan.camera.R_cam_world,
                           plan.camera.height_m)
    return PreparedFrame(scene, truth)


def render_frames(
    prepared: Sequence[PreparedFrame], device: torch.device | str = "cpu"
) -> list[SyntheticFrame]:
    """The prepared frames with their images, rendered on ``device`` in one batch per image size
    (a scene renders to the same image in any batch: see
    :func:`mp3d_ros.synthetic.render.render_batch`)."""
    by_size: dict[tuple[int, int], list[int]] = {}
    for k, frame in enumerate(prepared):
        by_size.setdefault(frame.scene.intrinsics.size, []).append(k)
    images: list[np.ndarray | None] = [None] * len(prepared)
    for indices in by_size.values():
        rendered = render_batch([prepared[k].scene for k in indices], device).image
        for k, image in zip(indices, _to_host(rendered)):
            images[k] = image
    return [replace(frame.truth, image=image)
            for frame, image in zip(prepared, images)]


def _to_host(images: torch.Tensor) -> np.ndarray:
    """(B, H, W, 3) uint8 images as numpy; from a GPU through pinned memory (PyTorch caches and
    reuses it), since a copy into fresh pageable memory takes longer than the rendering."""
    if images.device.type != "cuda":
        return images.cpu().numpy()
    host = torch.empty(images.shape, dtype=images.dtype, pin_memory=True)
    host.copy_(images, non_blocking=True)
    torch.cuda.current_stream(images.device).synchronize()
    return host.numpy()


def prepare_image(
    config: SceneConfig, seed: int, index: int, mocap: Sequence[MocapTake] | None = None
) -> PreparedFrame:
    """Image ``index`` of the stream of independent images of ``seed``, not rendered yet."""
    plan = _sample_plan(np.random.default_rng([seed, index]), config, mocap, 0.0)
    stamp = _BASE_STAMP_NS + index * int(round(1e9 / config.fps))
    return _prepare(plan, 0.0, index, 0, stamp)


def generate_image(
    config: SceneConfig, seed: int, index: int, mocap: Sequence[MocapTake] | None = None,
    device: torch.device | str = "cpu",
) -> SyntheticFrame:
    """Image ``index`` of the stream of independent images of ``seed``."""
    return render_frames([prepare_image(config, seed, index, mocap)], device)[0]


def prepare_sequence(
    config: SceneConfig, seed: int, index: int, num_frames: int,
    mocap: Sequence[MocapTake] | None = None,
) -> Iterator[PreparedFrame]:
    """The ``num_frames`` frames of sequence ``index`` of ``seed``, one per ``1 / config.fps`` s,
    not rendered yet.

    People keep their track ids; walkers cross the view, mocap takes play in time.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    rng = np.random.default_rng([seed, index, 1])
    plan = _sample_plan(rng, config, mocap, (num_frames - 1) / config.fps)
    start = _BASE_STAMP_NS + index * 3600 * 10**9
    for k in range(num_frames):
        stamp = start + int(round(k * 1e9 / config.fps))
        yield _prepare(plan, k / config.fps, index, k, stamp)


def generate_sequence(
    config: SceneConfig, seed: int, index: int, num_frames: int,
    mocap: Sequence[MocapTake] | None = None, device: torch.device | str = "cpu",
) -> Iterator[SyntheticFrame]:
    """The frames of :func:`prepare_sequence`, rendered one by one on ``device``."""
    for frame in prepare_sequence(config, seed, index, num_frames, mocap):
        yield render_frames([frame], device)[0]


# ----------------------------------------------------------------------------- dataset

ANNOTATION_FILE = "annotations.json"
_MOCAP_CACHE: dict[tuple[str, float], list[MocapTake]] = {}


def mocap_takes(mocap_dir: str | None, fps: float) -> list[MocapTake] | None:
    """The takes of ``mocap_dir`` in MuCo-21 at ``fps``, loaded once per process (None: no folder)."""
    if mocap_dir is None:
        return None
    from mp3d_ros.synthetic.bvh import load_mocap_poses

    key = (str(mocap_dir), float(fps))
    if key not in _MOCAP_CACHE:
        _MOCAP_CACHE[key] = load_mocap_poses(mocap_dir, MUCO_21, fps=fps)
    return _MOCAP_CACHE[key]


def frame_records(frame: SyntheticFrame, file_name: str) -> tuple[dict, list[dict]]:
    """The MuCo-3DHP (3DMPPE) JSON image entry and annotation entries of a frame (no ids yet)."""
    intr = frame.intrinsics
    image = {
        "file_name": file_name, "width": intr.width, "height": intr.height,
        "f": [intr.fx, intr.fy], "c": [intr.cx, intr.cy],
    }
    if intr.distortion_model != "none":
        image["distortion_model"] = intr.distortion_model
        image["distortion"] = [float(v) for v in intr.D]
    rotation, translation = ground_from_camera(frame.R_cam_world, frame.camera_height_m)
    image.update(sequence=frame.sequence, frame_idx=frame.frame_idx, stamp=frame.stamp_s,
                 ground_from_camera={"rotation": rotation.tolist(), "translation_m": translation.tolist()})
    annotations = [
        {
            "keypoints_cam": (frame.keypoints_cam_m[p] * 1000.0).tolist(),
            "keypoints_img": frame.keypoints_img_px[p].tolist(),
            "keypoints_vis": [bool(v) for v in frame.visible[p]],
            "bbox": frame.bbox_px[p].tolist(),
            "track_id": int(frame.track_ids[p]),
        }
        for p in range(len(frame.track_ids))
    ]
    return image, annotations


@dataclass(frozen=True)
class _Unit:
    """One independent image (or one sequence) of a dataset and the file index of its first
    frame."""

    config: SceneConfig
    seed: int
    index: int
    first_image: int
    num_frames: int
    mocap_dir: str | None
    as_sequence: bool


def _prepare_unit(unit: _Unit) -> list[PreparedFrame]:
    """The prepared frames of a unit (worker entry)."""
    torch.set_num_threads(1)  # the same arithmetic in every process, hence the same bytes
    takes = mocap_takes(unit.mocap_dir, unit.config.fps)
    if unit.as_sequence:
        return list(prepare_sequence(unit.config, unit.seed, unit.index, unit.num_frames, takes))
    return [prepare_image(unit.config, unit.seed, unit.index, takes)]


def _image_name(index: int) -> str:
    return f"images/{index:06d}.jpg"


def _write_jpeg(path: Path, image_rgb: np.ndarray) -> None:
    import cv2

    ok = cv2.imwrite(str(path), cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR),
                     [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise OSError(f"could not write {path}")


def _write_unit(out_dir: str, unit: _Unit) -> list[tuple[dict, list[dict]]]:
    """Render a unit's frames one by one on the CPU, write their JPEGs, return their JSON
    records (worker entry)."""
    records = []
    for k, prepared in enumerate(_prepare_unit(unit)):
        frame = render_frames([prepared])[0]
        name = _image_name(unit.first_image + k)
        _write_jpeg(Path(out_dir) / name, frame.image)
        records.append(frame_records(frame, name))
    return records


def _records_per_unit(
    out_dir: Path, units: list[_Unit], workers: int
) -> Iterator[tuple[dict, list[dict]]]:
    """The JSON records of every frame, each unit rendered and written by one of ``workers``
    processes."""
    write = functools.partial(_write_unit, str(out_dir))
    if workers == 1:
        for records in map(write, units):
            yield from records
        return
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        for records in pool.imap(write, units):
            yield from records


def _prepared_frames(units: list[_Unit], workers: int, ahead: int) -> Iterator[PreparedFrame]:
    """The prepared frames of ``units`` in order, from ``workers`` processes that keep at most
    ``ahead`` units ready (a pool's imap would sample the whole dataset into memory ahead of a
    slower consumer)."""
    if workers == 1:
        for unit in units:
            yield from _prepare_unit(unit)
        return
    queue = iter(units)
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pending = collections.deque(pool.apply_async(_prepare_unit, (unit,))
                                    for unit in itertools.islice(queue, ahead))
        while pending:
            frames = pending.popleft().get()
            pending.extend(pool.apply_async(_prepare_unit, (unit,))
                           for unit in itertools.islice(queue, 1))
            yield from frames


def _rendered_batches(
    chunks: Iterator[list[PreparedFrame]], device: torch.device
) -> Iterator[list[SyntheticFrame]]:
    """:func:`render_frames` of each chunk, in a thread that renders the next chunk while the
    caller takes this one and draws the next (the GIL is free while the GPU works)."""
    with ThreadPoolExecutor(1) as renderer:
        pending = None
        for chunk in chunks:
            rendering = renderer.submit(render_frames, chunk, device)
            if pending is not None:
                yield pending.result()
            pending = rendering
        if pending is not None:
            yield pending.result()


def _records_batched(
    out_dir: Path, units: list[_Unit], workers: int, device: torch.device, batch: int
) -> Iterator[tuple[dict, list[dict]]]:
    """The JSON records of every frame: ``workers`` processes sample scenes and ground truth,
    this process renders them ``batch`` at a time on ``device``, and ``workers`` threads encode
    and write the JPEGs meanwhile (OpenCV releases the GIL)."""
    # Three batches ahead: the workers keep sampling while a batch renders.
    frames_per_unit = units[0].num_frames if units else 1
    frames = _prepared_frames(units, workers, ahead=2 * workers + -(-3 * batch // frames_per_unit))
    chunks = iter(lambda: list(itertools.islice(frames, batch)), [])
    index = 0
    with ThreadPoolExecutor(workers) as writers:
        writes: collections.deque = collections.deque()
        for rendered in _rendered_batches(chunks, device):
            for frame in rendered:
                name = _image_name(index)
                writes.append(writers.submit(_write_jpeg, out_dir / name, frame.image))
                index += 1
                yield frame_records(frame, name)
            while len(writes) > 2 * batch:  # at most two batches of images wait in memory
                writes.popleft().result()
        for write in writes:
            write.result()


def write_dataset(
    out_dir: str | Path,
    config: SceneConfig,
    num_images: int,
    seed: int,
    workers: int = 1,
    mocap_dir: str | Path | None = None,
    sequence_frames: int = 0,
    progress: bool = True,
    device: torch.device | str = "cpu",
    batch: int = 0,
) -> Path:
    """Write ``num_images`` images to ``out_dir/images/`` and their annotations in the MuCo-3DHP
    (3DMPPE) layout to ``out_dir/annotations.json``; returns the JSON path.

    ``file_name`` is relative to the JSON's folder (as in MuCo-3DHP.json). With
    ``sequence_frames > 0`` the images come as sequences of that many frames (the last one
    shorter); otherwise every image is its own scene.

    With ``batch == 0`` each of ``workers`` processes renders its images one at a time on the CPU.
    With ``batch >= 1``, ``workers`` processes sample scenes and ground truth, this process
    renders ``batch`` images at a time on ``device`` (a GPU) and ``workers`` threads write them.
    The JSON depends on ``seed`` only; so do the images, for a given device (a GPU's float
    arithmetic may differ from the CPU's in the last bit, hence a pixel by one level here and
    there), not on ``workers`` or ``batch``.
    """
    import json

    from tqdm import tqdm

    if num_images < 0 or workers < 1 or sequence_frames < 0 or batch < 0:
        raise ValueError(f"need num_images >= 0, workers >= 1, sequence_frames >= 0, batch >= 0; "
                         f"got {num_images}, {workers}, {sequence_frames}, {batch}")
    device = torch.device(device)
    if batch == 0 and device.type != "cpu":
        raise ValueError(f"device {device} needs batch >= 1 (batch 0 renders in the CPU workers)")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device}: no CUDA device is available")
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    size = sequence_frames or 1
    units = [_Unit(config, seed, unit, start, min(size, num_images - start),
                   None if mocap_dir is None else str(mocap_dir), sequence_frames > 0)
             for unit, start in enumerate(range(0, num_images, size))]
    images, annotations = [], []
    bar = tqdm(total=num_images, desc="synthetic images", unit="img", disable=not progress)
    threads = torch.get_num_threads()
    try:
        if batch:
            torch.set_num_threads(1)  # the workers' arithmetic on the CPU: the same bytes
            records = _records_batched(out_dir, units, workers, device, batch)
        else:
            records = _records_per_unit(out_dir, units, workers)
        for image, anns in records:
            image_id = len(images)
            images.append({"id": image_id, **image})
            for ann in anns:
                annotations.append({"id": len(annotations), "image_id": image_id, **ann})
            bar.update(1)
    finally:
        torch.set_num_threads(threads)
        bar.close()
    categories = [{"id": 1, "name": "person", "keypoints": list(MUCO_21.joints),
                   "skeleton": [list(b) for b in MUCO_21.bones]}]
    path = out_dir / ANNOTATION_FILE
    data = {"images": images, "annotations": annotations, "categories": categories}
    path.write_text(json.dumps(data))
    return path
