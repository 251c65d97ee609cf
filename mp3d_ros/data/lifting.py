"""Training pairs for the 2D -> 3D lifter: mocap poses seen through random cameras.

A pose bank (:func:`load_pose_bank`) holds CMU mocap poses (:mod:`mp3d_ros.synthetic.bvh`) in the union
of COCO-17 and MuPoTS-17, root-relative, Y up, scaled from the mocap figure's stature to the
lifter's canonical height. :func:`sample_lifting_batch` then draws, all in torch on one device:

- a pose, mirrored left-right with probability 1/2, turned about the vertical by a random yaw, and
  given the bone lengths of a random adult of the bank's bodies (:func:`sample_bodies`: the
  anthropometric proportions of :func:`mp3d_ros.synthetic.body.sample_shape`, which the renders
  use too, scaled to the canonical stature), so the lifter learns real adults' proportions rather
  than those of the one figure the CMU takes were captured on;
- a camera: image width 480-1920 px (4:3 or 16:9), horizontal field of view 40-100 deg, principal
  point near the centre, pitch (looking down > 0) and roll; no lens distortion (the lifter gets
  undistorted rays);
- a place: root depth 1-15 m, root pixel anywhere in the image (so people are cut by the image
  border as in real frames);
- detector-like 2D errors: Gaussian noise of 0.5-3% of the person's image height plus a 0.5-2 px
  floor, occasional gross outliers, random missing joints, whole limbs or the lower body missing,
  joints outside the image missing; confidences in [0.3, 1] for kept joints (low for outliers).

Targets are MuPoTS-17 joints, root-relative, in the camera frame, metres at the canonical height.
Held-out subjects are split off by :func:`split_subjects` for the MPJPE the training reports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from mp3d_ros.geometry.camera_torch import pinhole_rays
from mp3d_ros.geometry.skeleton import COCO_17, MUCO_21, MUPOTS_17, JointSet, flip_permutation
from mp3d_ros.synthetic.body import sample_shape
from mp3d_ros.synthetic.bvh import load_mocap_poses, read_bvh, rest_positions, to_joint_set

__all__ = [
    "LIFTING_JOINTS",
    "LiftingDataConfig",
    "PoseBank",
    "LiftingBatch",
    "bone_lengths",
    "mocap_stature_m",
    "load_pose_bank",
    "retarget_lifting_poses",
    "sample_bodies",
    "split_subjects",
    "sample_lifting_batch",
]

# MuPoTS-17 followed by the COCO joints it lacks (face points), so one mocap pass serves both.
LIFTING_JOINTS = JointSet(
    name="mupots_17_coco_face",
    joints=MUPOTS_17.joints + tuple(n for n in COCO_17.joints if n not in MUPOTS_17.joints),
    bones=(),
    root=MUPOTS_17.root,
    neck=MUPOTS_17.neck,
)
_COCO_INDEX = torch.tensor([LIFTING_JOINTS.index(n) for n in COCO_17.joints])
_MUPOTS_INDEX = torch.tensor([LIFTING_JOINTS.index(n) for n in MUPOTS_17.joints])
_MIRROR = torch.from_numpy(flip_permutation(LIFTING_JOINTS))
_FACE = tuple(n for n in COCO_17.joints if n not in MUPOTS_17.joints)


def _lifting_parents() -> np.ndarray:
    """(J,) parent of each LIFTING_JOINTS joint: MuCo-21's tree, the face points on the head."""
    muco_parents = MUCO_21.parents()
    parents = np.full(LIFTING_JOINTS.num_joints, -1, dtype=np.int64)
    for j, name in enumerate(LIFTING_JOINTS.joints):
        if name in _FACE:
            parents[j] = LIFTING_JOINTS.index("head")
        elif muco_parents[MUCO_21.index(name)] >= 0:
            parents[j] = LIFTING_JOINTS.index(MUCO_21.joints[muco_parents[MUCO_21.index(name)]])
    return parents


_PARENTS = _lifting_parents()
_PARENT_INDEX = torch.from_numpy(np.maximum(_PARENTS, 0))  # the root points at itself
_HAS_PARENT = torch.from_numpy(_PARENTS >= 0)


def _ancestry() -> torch.Tensor:
    """(J, J) 1 where bone k (ending at joint k) lies on the path from the root to joint j."""
    chains = torch.zeros(len(_PARENTS), len(_PARENTS))
    for joint in range(len(_PARENTS)):
        k = joint
        while _PARENTS[k] >= 0:
            chains[joint, k] = 1.0
            k = int(_PARENTS[k])
    return chains


_ANCESTRY = _ancestry()
# COCO joints hidden together by one occlusion: each arm, each leg, the lower body, the face.
_PARTS = [
    [COCO_17.index(n) for n in names]
    for names in (
        ("left_elbow", "left_wrist"),
        ("right_elbow", "right_wrist"),
        ("left_knee", "left_ankle"),
        ("right_knee", "right_ankle"),
        ("left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle"),
        ("left_knee", "right_knee", "left_ankle", "right_ankle"),
        ("nose", "left_eye", "right_eye", "left_ear", "right_ear"),
    )
]
# Toe tips sit about 2 cm above the floor in the CMU Daz rest pose (../shared/mocap/README.md).
_TOE_HEIGHT_M = 0.02


@dataclass(frozen=True)
class LiftingDataConfig:
    """Ranges of the random cameras, placements and 2D errors (uniform unless said otherwise)."""

    image_width_px: tuple[int, int] = (480, 1920)
    horizontal_fov_deg: tuple[float, float] = (40.0, 100.0)
    # Principal-point offset from the image centre, standard deviation as a fraction of the width.
    principal_point_sigma: float = 0.03
    pitch_deg: tuple[float, float] = (-20.0, 50.0)
    roll_deg: tuple[float, float] = (-8.0, 8.0)
    depth_m: tuple[float, float] = (1.0, 15.0)
    # Per-person keypoint noise, standard deviation as a fraction of the person's image height.
    noise_fraction: tuple[float, float] = (0.005, 0.03)
    noise_floor_px: tuple[float, float] = (0.5, 2.0)
    outlier_probability: float = 0.02
    # Outlier displacement, standard deviation as a fraction of the person's image height.
    outlier_fraction: float = 0.2
    # Per-person probability that each joint is missing, drawn from this range.
    missing_probability: tuple[float, float] = (0.0, 0.2)
    # Probability that one body part (an arm, a leg, the lower body, the face) is missing.
    part_missing_probability: float = 0.15


@dataclass(frozen=True, eq=False)
class PoseBank:
    """N mocap poses and the bodies they are retargeted to.

    Attributes:
        poses_m: (N, J, 3) float32 LIFTING_JOINTS poses, root at 0, Y up, canonical size.
        subjects: (N,) subject id of each pose.
        bodies_m: (M, J) float32 bone lengths (the bone ending at each joint, 0 at the root) of
            M bodies of canonical stature (:func:`sample_bodies`); None keeps the mocap figure's.
    """

    poses_m: torch.Tensor
    subjects: np.ndarray
    bodies_m: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.subjects)

    def to(self, device: torch.device | str) -> "PoseBank":
        """The bank with its tensors on ``device``."""
        bodies = None if self.bodies_m is None else self.bodies_m.to(device)
        return PoseBank(self.poses_m.to(device), self.subjects, bodies)


@dataclass(frozen=True)
class LiftingBatch:
    """B training pairs.

    Attributes:
        rays: (B, 17, 3) undistorted rays ``[x, y, 1]`` of the COCO-17 keypoints.
        confidence: (B, 17) in [0, 1], 0 where missing.
        target_m: (B, 17, 3) MuPoTS-17 joints, root-relative, camera frame, canonical metres.
    """

    rays: torch.Tensor
    confidence: torch.Tensor
    target_m: torch.Tensor


def mocap_stature_m(bvh_path: str | Path) -> float:
    """Standing height of the mocap figure: head top to toe tip in the rest pose, plus the toe tip's
    height above the floor."""
    motion = read_bvh(bvh_path)
    joints = to_joint_set(rest_positions(motion)[None], motion, LIFTING_JOINTS)[0]
    return float(
        joints[LIFTING_JOINTS.index("head_top"), 1]
        - rest_positions(motion)[:, 1].min()
        + _TOE_HEIGHT_M
    )


def load_pose_bank(
    mocap_dir: str | Path,
    canonical_height_m: float,
    fps: float = 30.0,
    takes: Sequence[str] | None = None,
    bodies: int = 4096,
    seed: int = 0,
) -> PoseBank:
    """Valid frames of the mocap takes at ``fps``, root-relative, scaled to ``canonical_height_m``,
    with ``bodies`` adult bodies to retarget them to (0: keep the mocap figure's proportions)."""
    loaded = load_mocap_poses(mocap_dir, LIFTING_JOINTS, fps=fps, takes=takes)
    first = next(Path(mocap_dir).rglob(f"{loaded[0].take}.bvh"))
    scale = canonical_height_m / mocap_stature_m(first)
    poses, subjects = [], []
    for take in loaded:
        joints = take.joints_m[take.valid]
        poses.append((joints - joints[:, LIFTING_JOINTS.root : LIFTING_JOINTS.root + 1]) * scale)
        subjects.append(np.full(len(joints), take.subject))
    poses_m = torch.from_numpy(np.concatenate(poses).astype(np.float32))
    body_lengths = sample_bodies(bodies, canonical_height_m, poses_m[0], seed) if bodies else None
    return PoseBank(poses_m, np.concatenate(subjects), body_lengths)


def bone_lengths(poses_m: torch.Tensor) -> torch.Tensor:
    """(*, J) length of the bone ending at each LIFTING_JOINTS joint of (*, J, 3) poses (0 at the
    root)."""
    bones = poses_m - poses_m[..., _PARENT_INDEX.to(poses_m.device), :]
    return bones.norm(dim=-1) * _HAS_PARENT.to(poses_m.device)


def sample_bodies(count: int, canonical_height_m: float, reference_pose_m: torch.Tensor,
                  seed: int = 0) -> torch.Tensor:
    """(count, J) float32 bone lengths of random adults (:func:`~mp3d_ros.synthetic.body.sample_shape`,
    no children) scaled to ``canonical_height_m``.

    The face points (nose, eyes, ears) keep their offsets from the head of ``reference_pose_m``
    (a (J, 3) mocap pose at canonical size), scaled with the body's head-to-head-top length.
    """
    rng = np.random.default_rng(seed)
    reference = bone_lengths(reference_pose_m.double()).numpy()
    body = [j for j, name in enumerate(LIFTING_JOINTS.joints) if name not in _FACE]
    muco = [MUCO_21.index(LIFTING_JOINTS.joints[j]) for j in body]
    face = [LIFTING_JOINTS.index(name) for name in _FACE]
    head_chain = [LIFTING_JOINTS.index(n) for n in ("head", "head_top")]
    lengths = np.zeros((count, LIFTING_JOINTS.num_joints))
    for row in range(count):
        shape = sample_shape(rng, child_fraction=0.0)
        lengths[row, body] = shape.bone_lengths_m[muco] * (canonical_height_m / shape.height_m)
    head_scale = lengths[:, head_chain].sum(1, keepdims=True) / reference[head_chain].sum()
    lengths[:, face] = reference[face] * head_scale
    return torch.from_numpy(lengths.astype(np.float32))


def retarget_lifting_poses(poses_m: torch.Tensor, lengths_m: torch.Tensor) -> torch.Tensor:
    """(B, J, 3) LIFTING_JOINTS poses given the bone lengths (B, J): every bone keeps its
    direction, the root stays at its place. Each joint is the root plus the bones on its path,
    summed in one product with the tree's ancestry matrix."""
    bones = poses_m - poses_m[:, _PARENT_INDEX.to(poses_m.device)]
    directions = bones / bones.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    ancestry = _ANCESTRY.to(device=poses_m.device, dtype=poses_m.dtype)
    root = poses_m[:, LIFTING_JOINTS.root : LIFTING_JOINTS.root + 1]
    return root + ancestry @ (lengths_m[..., None] * directions)


def split_subjects(bank: PoseBank, held_out: Sequence[str]) -> tuple[PoseBank, PoseBank]:
    """(training bank, held-out bank) by subject id."""
    test = np.isin(bank.subjects, list(held_out))
    if not test.any() or test.all():
        raise ValueError(
            f"held-out subjects {list(held_out)} leave an empty split of {sorted(set(bank.subjects))}"
        )
    train = torch.from_numpy(~test)
    return (PoseBank(bank.poses_m[train], bank.subjects[~test], bank.bodies_m),
            PoseBank(bank.poses_m[~train], bank.subjects[test], bank.bodies_m))


def _uniform(shape, bounds, generator, device) -> torch.Tensor:
    low, high = bounds
    return low + (high - low) * torch.rand(shape, generator=generator, device=device)


def _rotation(axis: int, angle: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) right-handed rotations by ``angle`` (B,) radians about x, y or z."""
    c, s = torch.cos(angle), torch.sin(angle)
    out = torch.zeros(angle.shape + (3, 3), dtype=angle.dtype, device=angle.device)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    out[:, axis, axis] = 1
    out[:, i, i], out[:, j, j], out[:, i, j], out[:, j, i] = c, c, -s, s
    return out


def _cameras(batch: int, cfg: LiftingDataConfig, generator, device):
    """Intrinsics (B, 3, 3) and image sizes (B, 2) of random pinhole cameras."""
    width = _uniform(batch, cfg.image_width_px, generator, device).round()
    wide = torch.rand(batch, generator=generator, device=device) < 0.5
    height = (width * torch.where(wide, 9 / 16, 3 / 4)).round()
    fov = torch.deg2rad(_uniform(batch, cfg.horizontal_fov_deg, generator, device))
    focal = width / 2 / torch.tan(fov / 2)
    K = torch.zeros(batch, 3, 3, device=device)
    K[:, 0, 0], K[:, 1, 1], K[:, 2, 2] = focal, focal, 1
    shift = (
        torch.randn(batch, 2, generator=generator, device=device)
        * cfg.principal_point_sigma
        * width[:, None]
    )
    K[:, 0, 2] = (width - 1) / 2 + shift[:, 0]
    K[:, 1, 2] = (height - 1) / 2 + shift[:, 1]
    return K, torch.stack([width, height], dim=-1)


def _pose_in_random_camera(poses: torch.Tensor, K, size, cfg: LiftingDataConfig, generator) -> torch.Tensor:
    """Camera-frame joints (B, J, 3): yaw, camera pitch and roll, root at a random pixel and depth."""
    batch, device = poses.shape[0], poses.device
    yaw = _uniform(batch, (0.0, 2 * math.pi), generator, device)
    pitch = torch.deg2rad(_uniform(batch, cfg.pitch_deg, generator, device))
    roll = torch.deg2rad(_uniform(batch, cfg.roll_deg, generator, device))
    # World (Y up) to a level camera looking along +Z: x_cam = -X, y_cam = -Y, z_cam = Z.
    level = torch.diag(torch.tensor([-1.0, -1.0, 1.0], device=device))
    rotation = _rotation(2, roll) @ _rotation(0, pitch) @ level @ _rotation(1, yaw)
    pixel = torch.rand(batch, 2, generator=generator, device=device) * size
    depth = _uniform(batch, cfg.depth_m, generator, device)
    root = pinhole_rays(pixel, K)
    return poses @ rotation.transpose(-1, -2) + (root * depth[:, None])[:, None]


def _observe(joints: torch.Tensor, K, size, cfg: LiftingDataConfig, generator):
    """Noisy pixels (B, J, 2) and confidences (B, J) of camera-frame joints (B, J, 3)."""
    batch, count, device = joints.shape[0], joints.shape[1], joints.device
    in_front = joints[..., 2] > 0.1
    uv = joints @ K.transpose(-1, -2)
    uv = uv[..., :2] / uv[..., 2:].clamp_min(0.1)
    extent = (uv[..., 1].amax(1) - uv[..., 1].amin(1)).clamp_min(1.0)  # person height in pixels
    fraction = _uniform((batch, 1), cfg.noise_fraction, generator, device)
    floor = _uniform((batch, 1), cfg.noise_floor_px, generator, device)
    sigma = (
        fraction * extent[:, None] * _uniform((batch, count), (0.5, 1.5), generator, device) + floor
    )
    uv = uv + torch.randn(batch, count, 2, generator=generator, device=device) * sigma[..., None]
    outlier = torch.rand(batch, count, generator=generator, device=device) < cfg.outlier_probability
    jump = (
        torch.randn(batch, count, 2, generator=generator, device=device)
        * cfg.outlier_fraction
        * extent[:, None, None]
    )
    uv = uv + jump * outlier[..., None]
    inside = (uv >= 0).all(-1) & (uv <= size[:, None] - 1).all(-1) & in_front
    missing_rate = _uniform((batch, 1), cfg.missing_probability, generator, device)
    keep = inside & (torch.rand(batch, count, generator=generator, device=device) >= missing_rate)
    part = torch.randint(len(_PARTS), (batch,), generator=generator, device=device)
    hide = torch.rand(batch, generator=generator, device=device) < cfg.part_missing_probability
    part_mask = torch.zeros(len(_PARTS), count, dtype=torch.bool, device=device)
    for i, joints_of_part in enumerate(_PARTS):
        part_mask[i, joints_of_part] = True
    keep &= ~(part_mask[part] & hide[:, None])
    confidence = torch.where(
        outlier,
        _uniform((batch, count), (0.1, 0.5), generator, device),
        _uniform((batch, count), (0.3, 1.0), generator, device),
    )
    return uv, confidence * keep


def sample_lifting_batch(
    bank: PoseBank,
    batch_size: int,
    cfg: LiftingDataConfig = LiftingDataConfig(),
    generator: torch.Generator | None = None,
) -> LiftingBatch:
    """Draw ``batch_size`` training pairs (module docstring) on the bank's device."""
    device = bank.poses_m.device
    index = torch.randint(len(bank), (batch_size,), generator=generator, device=device)
    poses = bank.poses_m[index]
    mirror = torch.rand(batch_size, generator=generator, device=device) < 0.5
    mirrored = poses[:, _MIRROR.to(device)] * poses.new_tensor([-1.0, 1.0, 1.0])
    poses = torch.where(mirror[:, None, None], mirrored, poses)
    if bank.bodies_m is not None:
        body = torch.randint(len(bank.bodies_m), (batch_size,), generator=generator, device=device)
        poses = retarget_lifting_poses(poses, bank.bodies_m[body])
    K, size = _cameras(batch_size, cfg, generator, device)
    joints = _pose_in_random_camera(poses, K, size, cfg, generator)
    uv, confidence = _observe(joints[:, _COCO_INDEX.to(device)], K, size, cfg, generator)
    rays = pinhole_rays(uv, K[:, None])
    target = joints[:, _MUPOTS_INDEX.to(device)]
    target = target - target[:, MUPOTS_17.root : MUPOTS_17.root + 1]
    return LiftingBatch(rays=rays, confidence=confidence, target_m=target)
