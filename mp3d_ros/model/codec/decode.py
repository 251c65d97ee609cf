"""Decoding the network's maps into people: batched torch on the network's device, then numpy.

:func:`decode_batch` (torch, no Python loop over pixels or people, fixed-size outputs for export):

1. center NMS by max-pooling, top-K centers (K = ``max_people``, DRM §3.3);
2. 2D pose from the center->joint offsets at each center pixel (DRM Eq. 1);
3. structured 2.5D pose (MAR Eq. 3): each joint snaps to the nearest local maximum of its heatmap
   within ``snap_radius`` of its offset position when that maximum is confident
   (>= ``heatmap_threshold``), refined to sub-pixel by a parabola through the log-heatmap (exact for
   a Gaussian peak); otherwise it keeps the offset position and is flagged *inferred*;
4. root depth, its Laplace scales and the relative depths read (bilinearly) at the root; the
   scales ``b`` become standard deviations ``sqrt(2) b`` (DESIGN.md "Absolute depth");
5. geometric root depth from the 2.5D torso (MAR Eq. 7-8,
   :func:`geometry.depth.geometric_root_depth_from_rays`) on the undistorted rays of root and neck
   in the source camera, and uncertainty-weighted fusion (MAR Eq. 12);
6. pose NMS (a person whose 2D pose and root depth duplicate a better-scored one is dropped) and
   the score threshold.

:func:`source_people` maps the people to their source images, still batched on the device: pixels
through the inverse of the letterbox (or any) :class:`ImageTransform`, 3D points by
back-projection with each frame's live intrinsics (undistorting, MAR Eq. 1 / DRM Eq. 13,
:mod:`mp3d_ros.geometry.camera_torch`). Its :class:`PeopleTensors` pack into one array, so the host receives
one copy and :func:`unpack_people` only slices it into :class:`People`. :func:`to_people` does that
for one image of a batch, :func:`decode` all of it for one image.

Coordinates: map pixel (x, y) is centred on network-input pixel ``(s x + (s-1)/2, s y + (s-1)/2)``
for stride s (half-pixel centres). The network input is a letterbox of the distorted source
image, so the geometric depth and back-projection both undistort through the source camera.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from mp3d_ros.geometry.camera import ImageTransform, Intrinsics
from mp3d_ros.geometry.camera_torch import CameraBatch, map_points_px, pixel_rays
from mp3d_ros.geometry.depth import fuse_depths, geometric_root_depth_from_rays, laplace_std
from mp3d_ros.geometry.people import People
from mp3d_ros.geometry.skeleton import get_joint_set
from mp3d_ros.model.config import ModelConfig
from mp3d_ros.model.heads import gather_pixels, sample_maps
from mp3d_ros.model.network import NetworkOutput

__all__ = ["DecodeConfig", "DecodedPoses", "PeopleTensors", "decode", "decode_batch", "snap_to_heatmaps",
           "source_people", "to_people", "unpack_people"]


@dataclass(frozen=True)
class DecodeConfig:
    """Decoding parameters; :meth:`from_model_config` copies what the network config fixes."""

    # Joint set of the network's outputs.
    joint_set: str = "mupots_17"
    # Input pixels per output-map pixel.
    stride: int = 4
    # Maximum number of people per image (top-K centers; DRM keeps 20).
    max_people: int = 20
    # Minimum person score (center heatmap peak) in [0, 1].
    score_threshold: float = 0.1
    # Max-pool window of the center NMS, map pixels (odd).
    nms_kernel: int = 5
    # Heatmap value at which a joint counts as seen and snaps to its peak (MAR Eq. 3 threshold).
    heatmap_threshold: float = 0.3
    # Search radius for the heatmap peak around the offset position, map pixels.
    snap_radius: int = 2
    # MAR Eq. 3 snapping on / off (off: offsets only).
    heatmap_refinement: bool = True
    # Joints snap to the nearest heatmap peak whatever its value (offsets only group joints).
    snap_to_nearest_peak: bool = False
    # MAR Eq. 12 fusion of regressed and geometric root depth; off: regressed depth only.
    adaptive_fusion: bool = True
    # Pelvis-neck length Omega (m) for the geometric depth.
    torso_length_m: float = 0.5
    # Depth units of the network (see ModelConfig.depth_factor).
    depth_scale_px: float = 100.0
    focal_normalised_depth: bool = True
    # Pose NMS: duplicates have mean joint distance below this fraction of the person size ...
    pose_nms_distance: float = 0.1
    # ... and root depths within this fraction of each other.
    pose_nms_depth: float = 0.1
    # Measured factor on both root-depth sigmas (regressed and geometric, so Eq. 12's weights are
    # unchanged) that puts about 68 % of root-depth errors within the published 1 sigma on renders
    # (benchmarks/calibrate_network_sigma.py); 1 publishes the heads' own sigmas.
    sigma_inflation: float = 1.0

    @classmethod
    def from_model_config(cls, cfg: ModelConfig, **overrides) -> DecodeConfig:
        values = {
            "joint_set": cfg.joint_set, "stride": cfg.output_stride,
            "heatmap_refinement": cfg.heatmap_refinement, "snap_to_nearest_peak": cfg.snap_to_nearest_peak,
            "adaptive_fusion": cfg.adaptive_fusion, "torso_length_m": cfg.torso_length_m,
            "depth_scale_px": cfg.depth_scale_px, "focal_normalised_depth": cfg.focal_normalised_depth,
        }
        return cls(**{**values, **overrides})


class DecodedPoses(NamedTuple):
    """Per-person tensors of a batch, K = ``max_people`` slots sorted by score; use ``valid``.

    Attributes:
        uv_px: (B, K, J, 2) joints in network-input pixels (structured 2.5D pose).
        rel_depth_m: (B, K, J) ``Z_j - Z_root``, metres.
        root_depth_m: (B, K) final (fused) root depth, metres.
        root_sigma_m: (B, K) its standard deviation, metres (``sqrt(2)`` times a Laplace scale).
        confidence: (B, K, J) heatmap value of each joint in [0, 1].
        inferred: (B, K, J) bool, the joint comes from offsets (not a confident heatmap peak).
        score: (B, K) center heatmap peak in [0, 1].
        valid: (B, K) bool, above the score threshold and not a pose-NMS duplicate.
        reg_depth_m: (B, K) regressed root depth (MAR §3.2), metres.
        geo_depth_m: (B, K) geometric root depth (MAR §3.3), metres (0 where invalid).
        geo_valid: (B, K) bool, the geometric depth exists.
    """

    uv_px: torch.Tensor
    rel_depth_m: torch.Tensor
    root_depth_m: torch.Tensor
    root_sigma_m: torch.Tensor
    confidence: torch.Tensor
    inferred: torch.Tensor
    score: torch.Tensor
    valid: torch.Tensor
    reg_depth_m: torch.Tensor
    geo_depth_m: torch.Tensor
    geo_valid: torch.Tensor


def _gather_joint_pixels(maps: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-joint maps (B, J, h, w) at integer pixels (B, K, J, *) (clamped) -> values (B, K, J, *)."""
    b, j, h, w = maps.shape
    k, rest = x.shape[1], x.shape[3:]
    index = (y.clamp(0, h - 1) * w + x.clamp(0, w - 1)).long()  # (B, K, J, *)
    index = index.movedim(2, 1).reshape(b, j, -1)  # (B, J, K * prod(rest))
    values = maps.reshape(b, j, -1).gather(2, index)
    return values.reshape(b, j, k, *rest).movedim(1, 2)


def snap_to_heatmaps(
    heatmaps: torch.Tensor, xy: torch.Tensor, threshold: float, radius: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MAR Eq. 3: move joints to the nearest confident local heatmap maximum near them.

    Args:
        heatmaps: (B, J, h, w) joint heatmaps in [0, 1].
        xy: (B, K, J, 2) offset positions, map pixels.
        threshold: minimum peak value; peaks must also be > 0.
        radius: search window half-size around ``round(xy)``, map pixels.

    Returns:
        ``(xy, confidence, snapped)``: positions (B, K, J, 2) (sub-pixel peak where snapped, the
        input elsewhere), the heatmap value there (B, K, J), and the bool mask of snapped joints.
    """
    h, w = heatmaps.shape[-2:]
    is_peak = (heatmaps == F.max_pool2d(heatmaps, 3, 1, 1)) & (heatmaps >= max(threshold, 1e-6))
    steps = torch.arange(-radius, radius + 1, device=xy.device)
    dy, dx = torch.meshgrid(steps, steps, indexing="ij")
    base = xy.round().long()
    cx = base[..., 0:1] + dx.reshape(1, 1, 1, -1)  # (B, K, J, W2)
    cy = base[..., 1:2] + dy.reshape(1, 1, 1, -1)
    inside = (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)
    peak = _gather_joint_pixels(is_peak.to(heatmaps.dtype), cx, cy) > 0
    dist2 = (cx - xy[..., 0:1]) ** 2 + (cy - xy[..., 1:2]) ** 2
    dist2 = torch.where(peak & inside, dist2, torch.full_like(dist2, math.inf))
    best = dist2.argmin(-1, keepdim=True)
    snapped = torch.isfinite(dist2.gather(-1, best)).squeeze(-1)
    px, py = cx.gather(-1, best).squeeze(-1), cy.gather(-1, best).squeeze(-1)

    # Sub-pixel: vertex of the parabola through the log-heatmap at the peak and its 4 neighbours.
    # Centre, left, right, up, down; built by arithmetic because a tensor literal would be a
    # host-to-device copy, which CUDA graph capture forbids.
    nx = torch.stack([px, px - 1, px + 1, px, px], dim=-1)
    ny = torch.stack([py, py, py, py - 1, py + 1], dim=-1)
    values = _gather_joint_pixels(heatmaps, nx, ny)
    logv = torch.log(values.clamp_min(1e-12))

    def vertex(minus: torch.Tensor, centre: torch.Tensor, plus: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
        curvature = minus - 2 * centre + plus
        ok = ok & (curvature < 0)
        delta = 0.5 * (minus - plus) / torch.where(ok, curvature, torch.ones_like(curvature))
        return torch.where(ok, delta.clamp(-0.5, 0.5), torch.zeros_like(delta))

    ddx = vertex(logv[..., 1], logv[..., 0], logv[..., 2], (px > 0) & (px < w - 1))
    ddy = vertex(logv[..., 3], logv[..., 0], logv[..., 4], (py > 0) & (py < h - 1))
    peak_xy = torch.stack([px + ddx, py + ddy], -1).to(xy.dtype)
    out_xy = torch.where(snapped.unsqueeze(-1), peak_xy, xy)
    confidence = torch.where(snapped, values[..., 0], _bilinear_per_joint(heatmaps, xy))
    return out_xy, confidence, snapped


def _bilinear_per_joint(heatmaps: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """Heatmap j sampled at joint j's position: (B, J, h, w), (B, K, J, 2) -> (B, K, J)."""
    b, j, h, w = heatmaps.shape
    per_joint = sample_maps(heatmaps.reshape(b * j, 1, h, w), xy.movedim(2, 1).reshape(b * j, -1, 2))
    return per_joint.reshape(b, j, -1).transpose(1, 2)


def _depth_factor(K: torch.Tensor, config: DecodeConfig) -> torch.Tensor:
    """(B,) metres -> network depth units for network-input camera matrices (B, 3, 3)."""
    if not config.focal_normalised_depth:
        return torch.ones_like(K[:, 0, 0])
    return config.depth_scale_px / torch.sqrt(K[:, 0, 0] * K[:, 1, 1])


def _pose_nms(xy: torch.Tensor, depth: torch.Tensor, candidate: torch.Tensor, config: DecodeConfig) -> torch.Tensor:
    """(B, K) bool: slot i duplicates a better-ranked candidate (slots are sorted by score)."""
    extent = xy.amax(2) - xy.amin(2)  # (B, K, 2)
    size = (extent[..., 0] * extent[..., 1]).clamp_min(1.0).sqrt()
    distance = (xy.unsqueeze(2) - xy.unsqueeze(1)).norm(dim=-1).mean(-1)  # (B, K, K)
    close_2d = distance < config.pose_nms_distance * torch.maximum(size.unsqueeze(2), size.unsqueeze(1))
    close_z = (depth.unsqueeze(2) - depth.unsqueeze(1)).abs() < config.pose_nms_depth * torch.minimum(
        depth.unsqueeze(2), depth.unsqueeze(1)).abs()
    k = xy.shape[1]
    better = torch.ones(k, k, dtype=torch.bool, device=xy.device).tril(-1)  # [i, j]: j ranks above i
    return (close_2d & close_z & better & candidate.unsqueeze(1)).any(-1)


def _geometric_depth(uv: torch.Tensor, rel_depth: torch.Tensor, cameras: CameraBatch,
                     config: DecodeConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """MAR Eq. 7-8 for (B, K, J, 2) network-input joints: (B, K) depth and validity.

    Root and neck go back to the distorted source image and through its lens to undistorted rays
    (the letterbox moves pixels, not rays); float64 like :func:`source_people`.
    """
    js = get_joint_set(config.joint_set)
    torso = torch.stack([uv[:, :, js.root], uv[:, :, js.neck]], 2).double()  # no index tensor: no upload
    rays = pixel_rays(map_points_px(torso, cameras.input_to_source), cameras)
    rel = (rel_depth[:, :, js.neck] - rel_depth[:, :, js.root]).double()
    depth, valid = geometric_root_depth_from_rays(rays[:, :, 0], rays[:, :, 1], rel, config.torso_length_m)
    return depth.to(uv.dtype), valid


@torch.no_grad()
def decode_batch(outputs: NetworkOutput, cameras: CameraBatch, config: DecodeConfig) -> DecodedPoses:
    """Decode a batch of output maps on their device.

    Args:
        outputs: the network's maps (B, *, h, w).
        cameras: the batch's cameras (network input, source camera with its lens, letterbox).
        config: decoding parameters.

    Returns:
        :class:`DecodedPoses` with K = min(max_people, h * w) slots per image.
    """
    js = get_joint_set(config.joint_set)
    center = outputs.center[:, 0].clamp(0, 1)
    b, h, w = center.shape
    pad = config.nms_kernel // 2
    pooled = F.max_pool2d(center.unsqueeze(1), config.nms_kernel, 1, pad).squeeze(1)
    peaks = torch.where(center == pooled, center, torch.zeros_like(center))
    score, index = peaks.reshape(b, -1).topk(min(config.max_people, h * w), dim=1)
    center_xy = torch.stack([index % w, torch.div(index, w, rounding_mode="floor")], -1).to(center.dtype)

    offsets = gather_pixels(outputs.offsets.flatten(1, 2), index).unflatten(-1, (-1, 2))  # (B, K, J, 2)
    xy = center_xy.unsqueeze(2) + offsets
    heatmaps = outputs.heatmaps.clamp(0, 1)
    if config.heatmap_refinement:
        threshold = 0.0 if config.snap_to_nearest_peak else config.heatmap_threshold
        xy, confidence, seen = snap_to_heatmaps(heatmaps, xy, threshold, config.snap_radius)
        seen = seen & (confidence >= config.heatmap_threshold)
    else:
        confidence = _bilinear_per_joint(heatmaps, xy)
        seen = confidence >= config.heatmap_threshold

    root_xy = torch.stack([xy[:, :, js.root, 0].clamp(0, w - 1), xy[:, :, js.root, 1].clamp(0, h - 1)], -1)
    depth_maps = torch.cat([outputs.root_depth, outputs.root_sigma, outputs.geo_sigma, outputs.rel_depth], 1)
    at_root = sample_maps(depth_maps, root_xy).transpose(1, 2)  # (B, K, 3 + J)
    factor = _depth_factor(cameras.K_input.to(center.dtype), config).unsqueeze(1)  # (B, 1)
    reg_depth = at_root[..., 0] / factor
    # The heads' sigmas are Laplace scales; Eq. 12 and the published sigma are standard deviations.
    sigma_reg, sigma_geo = (config.sigma_inflation * laplace_std(at_root[..., i] / factor) for i in (1, 2))
    rel_depth = at_root[..., 3:]

    s = config.stride
    uv = (xy + 0.5) * s - 0.5
    geo_depth, geo_valid = _geometric_depth(uv, rel_depth, cameras, config)
    if config.adaptive_fusion:
        root_depth, root_sigma = fuse_depths(reg_depth, sigma_reg, geo_depth, sigma_geo, geo_valid)
    else:
        root_depth, root_sigma = reg_depth, sigma_reg

    candidate = score >= config.score_threshold
    duplicate = _pose_nms(xy, root_depth, candidate, config)
    return DecodedPoses(
        uv_px=uv, rel_depth_m=rel_depth, root_depth_m=root_depth, root_sigma_m=root_sigma,
        confidence=confidence.clamp(0, 1), inferred=~seen, score=score, valid=candidate & ~duplicate,
        reg_depth_m=reg_depth, geo_depth_m=geo_depth, geo_valid=geo_valid,
    )


class PeopleTensors(NamedTuple):
    """:class:`People` of a batch as tensors on the device: K slots per image, use ``valid``.

    Attributes:
        uv_px: (B, K, J, 2) joints in source-image pixels (distorted, as observed).
        keypoints_m: (B, K, J, 3) joints in metres in the camera optical frame.
        confidence: (B, K, J) in [0, 1].
        inferred: (B, K, J) bool.
        score: (B, K) in [0, 1]; valid slots come in the order :class:`People` lists them.
        root_sigma_m: (B, K) standard deviation of the root depth, metres.
        valid: (B, K) bool, the slot holds a person.
    """

    uv_px: torch.Tensor
    keypoints_m: torch.Tensor
    confidence: torch.Tensor
    inferred: torch.Tensor
    score: torch.Tensor
    root_sigma_m: torch.Tensor
    valid: torch.Tensor

    def pack(self) -> torch.Tensor:
        """(B, K, 7 J + 3) float64, the fields side by side (bools as 0 / 1): one copy to the host."""
        b, k = self.score.shape
        return torch.cat([t.reshape(b, k, -1).double() for t in self], dim=-1)


def unpack_people(packed: np.ndarray, skeleton: str) -> list[People]:
    """:meth:`PeopleTensors.pack`'s (B, K, C) array -> the valid people of each image."""
    joints = get_joint_set(skeleton).num_joints
    ends = np.cumsum([2 * joints, 3 * joints, joints, joints, 1, 1])
    people = []
    for rows in packed:
        rows = rows[rows[:, -1] > 0.5]
        uv, xyz, confidence, inferred, score, sigma = np.split(rows[:, :-1], ends[:-1], axis=1)
        people.append(People(
            skeleton, uv_px=uv.reshape(-1, joints, 2), keypoints_m=xyz.reshape(-1, joints, 3),
            confidence=confidence, inferred=inferred > 0.5, score=score[:, 0],
            root_sigma_m=sigma[:, 0]))
    return people


def source_people(decoded: DecodedPoses, cameras: CameraBatch) -> PeopleTensors:
    """Decoded people in their source images' pixels and their cameras' metres, on the device.

    Pixels go through ``cameras.input_to_source`` (the inverse letterbox); joint j is at depth
    ``Z_root + Z^r_j`` on the undistorted ray of its pixel (MAR Eq. 1 / DRM Eq. 13). float64, as
    the pixels are hundreds and the depths metres.
    """
    uv_src = map_points_px(decoded.uv_px.double(), cameras.input_to_source)
    depth = decoded.root_depth_m.double()[..., None] + decoded.rel_depth_m.double()
    return PeopleTensors(
        uv_px=uv_src,
        keypoints_m=pixel_rays(uv_src, cameras) * depth[..., None],
        confidence=decoded.confidence.clamp(0, 1),
        inferred=decoded.inferred,
        score=decoded.score.clamp(0, 1),
        root_sigma_m=decoded.root_sigma_m,
        valid=decoded.valid,
    )


def to_people(
    decoded: DecodedPoses, transform: ImageTransform, intrinsics: Intrinsics, skeleton: str, index: int = 0
) -> People:
    """Image ``index`` of a decoded batch as :class:`People` of the source image.

    Args:
        decoded: output of :func:`decode_batch`.
        transform: the map from source-image pixels to network-input pixels (e.g. the letterbox).
        intrinsics: the source frame's intrinsics (live CameraInfo), distortion included.
        skeleton: joint set name of the network.
    """
    image = DecodedPoses(*(t[index : index + 1] for t in decoded))
    cameras = CameraBatch.build([transform], [intrinsics], decoded.uv_px.device)
    return unpack_people(source_people(image, cameras).pack().cpu().numpy(), skeleton)[0]


def decode(
    outputs: NetworkOutput, transform: ImageTransform, intrinsics: Intrinsics, config: DecodeConfig
) -> People:
    """One image (B = 1): maps -> people in the source image and its camera frame."""
    if outputs.center.shape[0] != 1:
        raise ValueError(f"decode() takes one image, got a batch of {outputs.center.shape[0]}; "
                         "use decode_batch() and to_people() per image")
    cameras = CameraBatch.build([transform], [intrinsics], outputs.center.device)
    decoded = decode_batch(outputs, cameras, config)
    return unpack_people(source_people(decoded, cameras).pack().cpu().numpy(), config.joint_set)[0]
