"""``movenet-lift``: the real-camera default model (MoveNet 2D -> mocap lifter -> geometric depth).

1. MoveNet MultiPose (:mod:`mp3d_ros.model.movenet`) finds people and their COCO-17 keypoints in the
   letterboxed image (one forward pass and a batched decode on the device);
2. keypoints go back to source pixels, are undistorted into rays with the frame's live intrinsics,
   and the lifter (:mod:`mp3d_ros.model.lifter`) gives each person's root-relative MuPoTS-17 pose;
3. :func:`mp3d_ros.geometry.absolute_depth.estimate_root_depth` gives the root depth and its sigma from the
   seen keypoints, the lifted pose and the body-size prior (everybody is ``prior.height_m`` tall:
   a child is placed farther away, see that module);
4. joints are placed in metres: a seen joint on its ray at ``Z + d_j`` (MAR Eq. 1, so it projects
   exactly onto its detection); every other joint, and the five MuPoTS joints COCO lacks (pelvis,
   neck, spine, head, head_top), at the root plus the scaled lifted offset, with 2D from projecting
   it through the frame's camera (distortion included), flagged ``inferred``.

Steps 2-4 run batched on the network's device for all ``max_people`` slots at once
(:meth:`MoveNetLift.people_tensors`, static shapes, so a CUDA graph captures them with the network).

Confidence of the joints COCO lacks: the mean MoveNet score of the keypoints they sit between
(pelvis: hips; neck: shoulders; spine: hips and shoulders; head and head_top: the face points).
People below ``min_person_score``, and people without one seen limb or torso segment (no depth can
be measured), are left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from mp3d_ros.geometry.absolute_depth import BodyPrior, estimate_root_depth
from mp3d_ros.geometry.camera import ImageTransform, Intrinsics
from mp3d_ros.geometry.camera_torch import CameraBatch, map_points_px, pixel_rays, project
from mp3d_ros.geometry.people import People
from mp3d_ros.geometry.skeleton import COCO_17, MUPOTS_17, index_map
from mp3d_ros.inference.preprocess import Normalization, letterbox_batch
from mp3d_ros.model.codec.decode import PeopleTensors, unpack_people
from mp3d_ros.model.lifter import Lifter, lift, load_lifter
from mp3d_ros.model.movenet import (
    MoveNet,
    MoveNetMaps,
    MoveNetPeople,
    decode_movenet,
    movenet_multipose_lightning,
    slots_where,
)

__all__ = ["LiftedPeople", "MoveNetLiftConfig", "MoveNetLift", "RAW_PIXELS"]

# MoveNet normalises inside the model, so the batch carries raw 0-255 RGB (padding 0 = black).
RAW_PIXELS = Normalization((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
_COCO_TO_MUPOTS = index_map(COCO_17, MUPOTS_17).tolist()  # -1 for the joints COCO lacks
_SUPPORT = {  # MuPoTS joints COCO lacks -> the COCO keypoints whose scores give their confidence
    "pelvis": ("left_hip", "right_hip"),
    "neck": ("left_shoulder", "right_shoulder"),
    "spine": ("left_hip", "right_hip", "left_shoulder", "right_shoulder"),
    "head": ("nose", "left_eye", "right_eye", "left_ear", "right_ear"),
    "head_top": ("nose", "left_eye", "right_eye", "left_ear", "right_ear"),
}


# movenet-lift's input on a GPU: on an H200, 512 x 384 found 60 of 101 rendered people at 2-10 m
# against 56 at 256 x 256 (8 against 5 at 8-10 m) for 5.5 instead of 5.2 ms per frame
# (benchmarks/depth_by_distance.py, RESULTS.md); on 2 CPU cores 256 x 256 keeps 82 ms per frame.
MOVENET_LIFT_GPU_INPUT = (512, 384)


@dataclass(frozen=True)
class MoveNetLiftConfig:
    """Inference settings of ``movenet-lift``."""

    # Network input (W, H), multiples of 32 (the CPU default; Estimator uses MOVENET_LIFT_GPU_INPUT
    # on CUDA). Camera images are landscape: 288 x 224 has the pixels of 256 x 256, so it costs the
    # same, but a 640 x 480 image fills it at scale 0.45 instead of 0.40 and a 16:9 one at 0.28
    # instead of 0.25 (benchmarks/RESULTS.md: more people found, better poses, same ms).
    input_size: tuple[int, int] = (288, 224)
    # People decoded per image (MoveNet's graph keeps 6).
    max_people: int = 6
    # People with a lower MoveNet score are left out.
    min_person_score: float = 0.2
    # Keypoints with a lower MoveNet score count as not seen (lifted and projected instead).
    min_keypoint_score: float = 0.25
    # 2D keypoint error of MoveNet, standard deviation per axis in network-input pixels: against
    # the projected joints of 640 x 480 renders, people at 2-10 m, the RMS of the two axes' robust
    # sds (1.4826 MAD) over the 12 COCO keypoints the depth uses; measured by
    # benchmarks/calibrate_depth_sigma.py at the 288 x 224 input on 2026-12-02 (it was a guessed
    # 1.5; 2.95 at 256 x 256).
    keypoint_sigma_input_px: float = 3.0
    # Body-size prior and noise levels of the geometric depth.
    prior: BodyPrior = field(default_factory=BodyPrior)


class LiftedPeople(NamedTuple):
    """Steps 1-2 of the module docstring for the K decoded slots of each of B images (COCO-17).

    Attributes:
        uv_px: (B, K, 17, 2) keypoints in source-image pixels (distorted, as observed).
        seen: (B, K, 17) bool: confident enough and inside the source image.
        rays: (B, K, 17, 3) undistorted rays ``[x, y, 1]`` of the seen keypoints (of pixel 0 else).
        keypoint_scores: (B, K, 17) MoveNet's keypoint scores.
        pose_m: (B, K, 17 MuPoTS, 3) lifted root-relative pose, camera axes, metres for a body of
            the lifter's ``canonical_height_m``.
    """

    uv_px: torch.Tensor
    seen: torch.Tensor
    rays: torch.Tensor
    keypoint_scores: torch.Tensor
    pose_m: torch.Tensor


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
        """Batched MoveNet decoding on the maps' device (``max_people`` per image). On the CPU only
        people whose centre score reaches ``min_person_score`` are snapped: the others would be
        dropped anyway, and the snapping costs most of the decoding (static shapes stay on a GPU,
        for CUDA graphs)."""
        on_cpu = maps.center.device.type == "cpu"
        return decode_movenet(maps, self.decode_cfg, self.cfg.min_person_score if on_cpu else None)

    def _input(self, image_rgb: np.ndarray, intrinsics: Intrinsics
               ) -> tuple[torch.Tensor, ImageTransform, CameraBatch]:
        """One (H, W, 3) uint8 RGB image as a letterboxed batch of one, its letterbox and camera."""
        intrinsics.check_image_size(image_rgb.shape[1], image_rgb.shape[0])
        batch, transforms = letterbox_batch([image_rgb], self.cfg.input_size, RAW_PIXELS, self.device)
        return batch, transforms[0], CameraBatch.build(transforms, [intrinsics], self.device)

    @torch.no_grad()
    def estimate(self, image_rgb: np.ndarray, intrinsics: Intrinsics) -> People:
        """People in one (H, W, 3) uint8 RGB image taken with the camera ``intrinsics``."""
        batch, _, cameras = self._input(image_rgb, intrinsics)
        people = self.people_tensors(self.decode(self(batch)), cameras)
        return unpack_people(people.pack().cpu().numpy(), MUPOTS_17.name)[0]

    @torch.no_grad()
    def lift_image(self, image_rgb: np.ndarray, intrinsics: Intrinsics
                   ) -> tuple[LiftedPeople, ImageTransform, CameraBatch]:
        """Steps 1-2 of one image for diagnostics: the lifted people whose score is kept (the
        leading image axis dropped, one row a person, MoveNet's order), the letterbox and the
        camera. Benchmarks measure MoveNet and the lifter against ground truth with it."""
        batch, transform, cameras = self._input(image_rgb, intrinsics)
        detections = self.decode(self(batch))
        lifted = self.lift_people(detections, cameras)
        keep = detections.scores[0] >= self.cfg.min_person_score
        return LiftedPeople(*(t[0][keep] for t in lifted)), transform, cameras

    @torch.no_grad()
    def lift_people(self, detections: MoveNetPeople, cameras: CameraBatch) -> LiftedPeople:
        """Keypoints of every slot in source pixels, which count as seen, their rays and the
        lifted pose (float64; the lifter in float32). Static shapes, like :meth:`people_tensors`."""
        dtype = torch.float64
        b, k = detections.scores.shape
        scores = detections.keypoint_scores.to(dtype)
        uv_coco = map_points_px(detections.keypoints_px.to(dtype), cameras.input_to_source)
        size = cameras.size_px.to(dtype)[:, None, None]
        inside = ((uv_coco >= -0.5) & (uv_coco <= size - 0.5)).all(-1)
        seen_coco = (scores >= self.cfg.min_keypoint_score) & inside
        rays_coco = pixel_rays(torch.where(seen_coco[..., None], uv_coco, torch.zeros_like(uv_coco)),
                               cameras)
        confidence_coco = torch.where(seen_coco, scores, torch.zeros_like(scores))
        pose = lift(self.lifter, rays_coco.flatten(0, 1).float(), confidence_coco.flatten(0, 1).float())
        return LiftedPeople(uv_coco, seen_coco, rays_coco, scores, pose.to(dtype).unflatten(0, (b, k)))

    @torch.no_grad()
    def people_tensors(self, detections: MoveNetPeople, cameras: CameraBatch) -> PeopleTensors:
        """3D people of a decoded batch on its device (steps 2-4 of the module docstring).

        On a GPU all ``max_people`` slots of every image are computed at once (float64; the lifter
        in float32) and the ones to leave out are masked, so the shapes are static and a CUDA graph
        captures the whole step. On the CPU only the slots whose person score can be kept are
        computed (a person's result does not depend on the other slots, up to float rounding) and
        the rest padded as empty: a third of the decoding's cost with 2 people in 20 slots.
        ``cameras`` are the images' cameras and letterboxes.
        """
        if detections.scores.device.type != "cpu":
            return self._all_slots(detections, cameras)
        kept_first = slots_where(detections.scores.to(torch.float64) >= self.cfg.min_person_score)
        slots, used = detections.scores.shape[1], kept_first.shape[1]
        subset = MoveNetPeople(**{f.name: _gather_people(getattr(detections, f.name), kept_first)
                                  for f in fields(MoveNetPeople)})
        people = self._all_slots(subset, cameras)

        def padded(values: torch.Tensor) -> torch.Tensor:
            empty = torch.zeros((values.shape[0], slots - used) + values.shape[2:], dtype=values.dtype)
            return torch.cat([values, empty], dim=1)

        return PeopleTensors(*(padded(t) for t in people))

    def _all_slots(self, detections: MoveNetPeople, cameras: CameraBatch) -> PeopleTensors:
        """:meth:`people_tensors` of every slot, masked (static shapes)."""
        dtype = torch.float64
        b, k = detections.scores.shape
        person_score = detections.scores.to(dtype)
        keep = person_score >= self.cfg.min_person_score
        uv_coco, seen_coco, rays_coco, scores, pose = self.lift_people(detections, cameras)
        # COCO keypoints into MuPoTS-17; the five joints COCO lacks are never seen.
        seen, rays, uv, confidence = (_to_mupots(t) for t in (seen_coco, rays_coco, uv_coco, scores))
        for name, support in _SUPPORT.items():
            confidence[:, :, MUPOTS_17.index(name)] = torch.stack(
                [scores[:, :, COCO_17.index(n)] for n in support], dim=-1).mean(-1)
        K = cameras.K.to(dtype)
        # Network-input pixels to source pixels: times the inverse letterbox's zoom.
        a = cameras.input_to_source.to(dtype)
        zoom = (a[:, 0, 0] * a[:, 1, 1] - a[:, 0, 1] * a[:, 1, 0]).abs().sqrt()
        per_person = [t[:, None].expand(b, k).flatten() for t in (
            torch.sqrt(K[:, 0, 0] * K[:, 1, 1]), self.cfg.keypoint_sigma_input_px * zoom)]
        depth = estimate_root_depth(
            rays.flatten(0, 1), seen.flatten(0, 1), pose.flatten(0, 1), MUPOTS_17, per_person[0],
            self.lifter.cfg.canonical_height_m, self.cfg.prior, per_person[1])
        depth_m = depth.depth_m.unflatten(0, (b, k))
        joints_m = self._joints_at_depth(depth_m, pose, rays, seen)
        uv = torch.where(seen[..., None], uv, project(joints_m, cameras))
        valid = keep & depth.valid.unflatten(0, (b, k))
        # People are listed by score; a stable sort keeps MoveNet's order among equal scores.
        order = torch.sort(torch.where(valid, person_score, torch.full_like(person_score, -1.0)),
                           dim=1, descending=True, stable=True).indices
        people = PeopleTensors(
            uv_px=uv, keypoints_m=joints_m, confidence=confidence.clamp(0.0, 1.0), inferred=~seen,
            score=person_score.clamp(0.0, 1.0), root_sigma_m=depth.sigma_m.unflatten(0, (b, k)),
            valid=valid)
        return PeopleTensors(*(_gather_people(t, order) for t in people))

    def _joints_at_depth(self, depth_m: torch.Tensor, pose: torch.Tensor, rays: torch.Tensor,
               seen: torch.Tensor) -> torch.Tensor:
        """(B, K, J, 3) joints in metres: seen joints on their rays at ``Z + d_j``, the others at
        the root plus their scaled lifted offsets; the root's x, y fit the seen joints best."""
        root = MUPOTS_17.root
        offsets = (pose - pose[:, :, root : root + 1]) * (
            self.cfg.prior.height_m / self.lifter.cfg.canonical_height_m
        )
        on_rays = (depth_m[..., None, None] + offsets[..., 2:]) * rays
        from_seen = ((on_rays - offsets)[..., :2] * seen[..., None]).sum(2)
        # Without seen joints there is no depth and the person is masked out; avoid 0 / 0 there.
        lateral = from_seen / seen.sum(2, keepdim=True).clamp_min(1)
        root_m = torch.cat([lateral, depth_m[..., None]], dim=-1)
        return torch.where(seen[..., None], on_rays, root_m[:, :, None] + offsets)


def _to_mupots(coco: torch.Tensor) -> torch.Tensor:
    """(B, K, 17 COCO, *) -> (B, K, 17 MuPoTS, *), zero (False) at the joints COCO lacks.

    One view per joint, stacked: indexing with a list would copy it to the device, which a CUDA
    graph cannot capture.
    """
    absent = torch.zeros_like(coco[:, :, 0])
    return torch.stack([coco[:, :, c] if c >= 0 else absent for c in _COCO_TO_MUPOTS], dim=2)


def _gather_people(values: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """(B, K, *) per-person values at the slots of the (B, N) ``order`` -> (B, N, *)."""
    index = order.reshape(order.shape + (1,) * (values.dim() - 2)).expand(order.shape + values.shape[2:])
    return values.gather(1, index)
