"""``movenet-lift``: the real-camera default model (MoveNet 2D -> mocap lifter -> geometric depth).

1. MoveNet MultiPose (:mod:`mp3d_ros.model.movenet`) finds people and their COCO-17 keypoints in the
   letterboxed image (one forward pass and a batched decode on the device);
2. keypoints go back to source pixels, are undistorted into rays with the frame's live intrinsics,
   and the lifter (:mod:`mp3d_ros.model.lifter`) gives each person's root-relative MuPoTS-17 pose;
3. :func:`mp3d_ros.absolute_depth.estimate_root_depth` gives the root depth and its sigma from the
   seen keypoints, the lifted pose and the body-size prior (everybody is ``prior.height_m`` tall:
   a child is placed farther away, see that module);
4. joints are placed in metres: a seen joint on its ray at ``Z + d_j`` (MAR Eq. 1, so it projects
   exactly onto its detection); every other joint, and the five MuPoTS joints COCO lacks (pelvis,
   neck, spine, head, head_top), at the root plus the scaled lifted offset, with 2D from projecting
   it through the frame's camera (distortion included), flagged ``inferred``.

Confidence of the joints COCO lacks: the mean MoveNet score of the keypoints they sit between
(pelvis: hips; neck: shoulders; spine: hips and shoulders; head and head_top: the face points).
People below ``min_person_score``, and people without one seen limb or torso segment (no depth can
be measured), are left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mp3d_ros.absolute_depth import BodyPrior, estimate_root_depth
from mp3d_ros.camera import ImageTransform, Intrinsics, pixel_rays, project
from mp3d_ros.model.lifter import Lifter, lift, load_lifter
from mp3d_ros.model.movenet import (
    MoveNet,
    MoveNetMaps,
    MoveNetPeople,
    decode_movenet,
    movenet_multipose_lightning,
)
from mp3d_ros.people import People
from mp3d_ros.preprocess import Normalization, letterbox_batch
from mp3d_ros.skeleton import COCO_17, MUPOTS_17, index_map

__all__ = ["MoveNetLiftConfig", "MoveNetLift", "RAW_PIXELS"]

# MoveNet normalises inside the model, so the batch carries raw 0-255 RGB (padding 0 = black).
RAW_PIXELS = Normalization((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
_COCO_TO_MUPOTS = index_map(COCO_17, MUPOTS_17)  # -1 for the joints COCO lacks
_SUPPORT = {  # MuPoTS joints COCO lacks -> the COCO keypoints whose scores give their confidence
    "pelvis": ("left_hip", "right_hip"),
    "neck": ("left_shoulder", "right_shoulder"),
    "spine": ("left_hip", "right_hip", "left_shoulder", "right_shoulder"),
    "head": ("nose", "left_eye", "right_eye", "left_ear", "right_ear"),
    "head_top": ("nose", "left_eye", "right_eye", "left_ear", "right_ear"),
}


@dataclass(frozen=True)
class MoveNetLiftConfig:
    """Inference settings of ``movenet-lift``."""

    # Network input (W, H), multiples of 32; MoveNet MultiPose was trained with 256 on the long side.
    input_size: tuple[int, int] = (256, 256)
    # People decoded per image (MoveNet's graph keeps 6).
    max_people: int = 6
    # People with a lower MoveNet score are left out.
    min_person_score: float = 0.2
    # Keypoints with a lower MoveNet score count as not seen (lifted and projected instead).
    min_keypoint_score: float = 0.25
    # 2D keypoint error of MoveNet, standard deviation per axis in network-input pixels.
    keypoint_sigma_input_px: float = 1.5
    # Body-size prior and noise levels of the geometric depth.
    prior: BodyPrior = field(default_factory=BodyPrior)


class MoveNetLift(nn.Module):
    """MoveNet MultiPose + lifter + geometric root depth; outputs :class:`People` in MuPoTS-17."""

    def __init__(
        self, movenet: MoveNet, lifter: Lifter, cfg: MoveNetLiftConfig = MoveNetLiftConfig()
    ) -> None:
        super().__init__()
        for size in cfg.input_size:
            if size % 32:
                raise ValueError(f"input_size {cfg.input_size} must be multiples of 32")
        self.movenet = movenet
        self.lifter = lifter
        self.cfg = cfg
        self.decode_cfg = replace(movenet.decode_cfg, max_people=cfg.max_people)

    @classmethod
    def from_files(
        cls,
        movenet_weights: str | Path,
        lifter_weights: str | Path,
        cfg: MoveNetLiftConfig = MoveNetLiftConfig(),
        device: torch.device | str = "cpu",
    ) -> "MoveNetLift":
        """Load both parts (strictly) in eval mode on ``device``."""
        lifter, _ = load_lifter(lifter_weights)
        return cls(movenet_multipose_lightning(movenet_weights), lifter, cfg).to(device).eval()

    @property
    def device(self) -> torch.device:
        return next(self.movenet.parameters()).device

    def forward(self, images: torch.Tensor) -> MoveNetMaps:
        """(B, 3, H, W) RGB in [0, 255] (letterboxed, multiples of 32) -> MoveNet's raw maps."""
        return self.movenet(images)

    def decode(self, maps: MoveNetMaps) -> MoveNetPeople:
        """Batched MoveNet decoding on the maps' device (``max_people`` per image)."""
        return decode_movenet(maps, self.decode_cfg)

    @torch.no_grad()
    def estimate(self, image_rgb: np.ndarray, intrinsics: Intrinsics) -> People:
        """People in one (H, W, 3) uint8 RGB image taken with the camera ``intrinsics``."""
        intrinsics.check_image_size(image_rgb.shape[1], image_rgb.shape[0])
        batch, transforms = letterbox_batch(
            [image_rgb], self.cfg.input_size, RAW_PIXELS, self.device
        )
        detections = self.decode(self(batch))
        return self.to_people(detections, 0, transforms[0], intrinsics)

    @torch.no_grad()
    def to_people(
        self,
        detections: MoveNetPeople,
        index: int,
        transform: ImageTransform,
        intrinsics: Intrinsics,
    ) -> People:
        """3D people of image ``index`` of a decoded batch; ``transform`` maps its source pixels
        into the network input, ``intrinsics`` is its camera."""
        keep = (detections.scores[index] >= self.cfg.min_person_score).cpu().numpy()
        if not keep.any():
            return People.empty(MUPOTS_17.name)
        uv_input, scores, person_score = (
            t[index].detach().cpu().double().numpy()[keep]
            for t in (detections.keypoints_px, detections.keypoint_scores, detections.scores)
        )
        uv_coco = (uv_input - transform.A[:2, 2]) @ np.linalg.inv(transform.A[:2, :2]).T
        inside = ((uv_coco >= -0.5) & (uv_coco <= np.array(intrinsics.size) - 0.5)).all(-1)
        seen_coco = (scores >= self.cfg.min_keypoint_score) & inside
        rays_coco = pixel_rays(np.where(seen_coco[..., None], uv_coco, 0.0), intrinsics)
        pose = self._lift(rays_coco, np.where(seen_coco, scores, 0.0))
        # COCO keypoints into MuPoTS-17; the five joints COCO lacks are never seen.
        present = _COCO_TO_MUPOTS >= 0
        seen = np.zeros((len(pose), MUPOTS_17.num_joints), dtype=bool)
        seen[:, present] = seen_coco[:, _COCO_TO_MUPOTS[present]]
        rays = np.zeros((len(pose), MUPOTS_17.num_joints, 3))
        rays[:, present] = rays_coco[:, _COCO_TO_MUPOTS[present]]
        uv = np.zeros((len(pose), MUPOTS_17.num_joints, 2))
        uv[:, present] = uv_coco[:, _COCO_TO_MUPOTS[present]]
        confidence = np.zeros(seen.shape)
        confidence[:, present] = scores[:, _COCO_TO_MUPOTS[present]]
        for name, support in _SUPPORT.items():
            support_index = [COCO_17.index(n) for n in support]
            confidence[:, MUPOTS_17.index(name)] = scores[:, support_index].mean(1)
        depth = estimate_root_depth(
            torch.from_numpy(rays), torch.from_numpy(seen), torch.from_numpy(pose), MUPOTS_17,
            math.sqrt(intrinsics.fx * intrinsics.fy), self.lifter.cfg.canonical_height_m,
            self.cfg.prior,
            # Network-input pixels to source pixels: divide by the letterbox scale.
            self.cfg.keypoint_sigma_input_px / math.sqrt(abs(np.linalg.det(transform.A[:2, :2]))),
        )
        valid = depth.valid.numpy()
        joints_m = self._place(depth.depth_m.numpy()[valid], pose[valid], rays[valid], seen[valid])
        uv = np.where(seen[valid][..., None], uv[valid], project(joints_m, intrinsics))
        order = np.argsort(-person_score[valid], kind="stable")
        return People(
            MUPOTS_17.name,
            uv_px=uv[order],
            keypoints_m=joints_m[order],
            confidence=np.clip(confidence[valid][order], 0.0, 1.0),
            inferred=~seen[valid][order],
            score=np.clip(person_score[valid][order], 0.0, 1.0),
            root_sigma_m=depth.sigma_m.numpy()[valid][order],
        )

    def _lift(self, rays_coco: np.ndarray, confidence: np.ndarray) -> np.ndarray:
        """(P, 17, 3) root-relative MuPoTS-17 poses (canonical size, camera frame), float64."""
        device = next(self.lifter.parameters()).device
        rays = torch.from_numpy(rays_coco).float().to(device)
        pose = lift(self.lifter, rays, torch.from_numpy(confidence).float().to(device))
        return pose.double().cpu().numpy()

    def _place(
        self, depth_m: np.ndarray, pose: np.ndarray, rays: np.ndarray, seen: np.ndarray
    ) -> np.ndarray:
        """(P, J, 3) joints in metres: seen joints on their rays at ``Z + d_j``, the others at the
        root plus their scaled lifted offsets; the root's x, y fit the seen joints best."""
        offsets = (pose - pose[:, MUPOTS_17.root : MUPOTS_17.root + 1]) * (
            self.cfg.prior.height_m / self.lifter.cfg.canonical_height_m
        )
        on_rays = (depth_m[:, None, None] + offsets[..., 2:]) * rays
        from_seen = ((on_rays - offsets)[..., :2] * seen[..., None]).sum(1)
        lateral = from_seen / seen.sum(1, keepdims=True)  # a valid depth needs seen joints
        root = np.concatenate([lateral, depth_m[:, None]], axis=-1)
        return np.where(seen[..., None], on_rays, root[:, None] + offsets)
