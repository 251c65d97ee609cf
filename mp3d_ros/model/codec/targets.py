"""Training targets of the papers' network: ground-truth maps from per-person annotations.

Given the joints of every person in the *network input* image (2D pixels with labelled / visible
flags, optionally 3D camera coordinates in metres) and that image's camera matrix, the generator
draws, at output stride 4 (map pixel (x, y) is centred on input pixel ``(4x + 1.5, 4y + 1.5)``):

- ``center``: Gaussian at the person center, the mean of the *visible* joints (DRM §3.1);
- ``heatmaps``: Gaussians at visible joints (MAR §3.1); occluded joints are taught to be absent,
  so the structured pose (MAR Eq. 3) falls back to offsets there;
- ``offsets``: joint minus pixel, map pixels, within ``center_radius`` of each center (DRM: radius 3);
- ``root_to_center``: center minus pixel within ``root_radius`` of each root (DRM's O_e);
- ``root_depth`` (network units, see :meth:`ModelConfig.depth_factor`) and ``rel_depth``
  (``Z_j - Z_root``, metres) within ``root_radius`` of each root.

A root outside the image is stored at the nearest map pixel (the decoder reads it there too).
Where discs of two people overlap, a pixel belongs to the nearest center (root). Every target comes
with its weight map; a weight of 0 means "unknown, do not train" (unlabelled joints; depth of
2D-only samples such as COCO; heatmap channels of joints some person in the image lacks), never
"train toward 0".

Per-person tables (padded to ``max_people``) give the losses the ground truth they need at person
level (MAR's geometric depth, DAPL, HMOR); the camera (K and lens) lets them undistort.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from mp3d_ros.geometry.skeleton import get_joint_set
from mp3d_ros.model.config import ModelConfig
from mp3d_ros.model.network import NetworkOutput

__all__ = [
    "SceneAnnotation",
    "TargetConfig",
    "TargetGenerator",
    "TargetMaps",
    "collate_targets",
    "in_depth_units",
    "targets_as_outputs",
]


@dataclass(frozen=True)
class TargetConfig:
    """How targets are drawn (map pixels are output-map pixels, stride 4)."""

    # Gaussian standard deviation of the center heatmap, map pixels.
    center_sigma: float = 2.0
    # Gaussian standard deviation of the joint heatmaps, map pixels.
    joint_sigma: float = 2.0
    # Radius around the center where offsets are supervised, map pixels (DRM / DEKR).
    center_radius: float = 3.0
    # Radius around the root where depths and the root->center offset are supervised, map pixels.
    root_radius: float = 3.0
    # Size of the per-person tables; people beyond it (fewest visible joints first) are dropped.
    max_people: int = 32


@dataclass(frozen=True)
class SceneAnnotation:
    """Everybody in one network-input image (P people, J joints of the model's joint set).

    Attributes:
        uv_px: (P, J, 2) joint pixels in the network input image (any value where unlabelled).
        labelled: (P, J) bool, the 2D position is known (visible or annotated while occluded).
        visible: (P, J) bool, the joint is seen (not occluded); joints outside the image are
            treated as not visible whatever this says.
        K: (3, 3) camera matrix of the network input image.
        image_size: (W, H) of the network input image, pixels.
        xyz_m: (P, J, 3) joints in the camera frame, metres (x right, y down, z forward), or None
            for 2D-only samples.
        labelled_3d: (P, J) bool, the 3D position is known (defaults to ``labelled`` when xyz_m is
            given). A person has depth targets only when its root is labelled in 3D.
        distortion_model: lens model of the network input camera (``Intrinsics.distortion_model``;
            a letterbox of a raw image keeps the source's lens).
        distortion: its coefficients ``Intrinsics.D`` (None: no distortion).
    """

    uv_px: np.ndarray
    labelled: np.ndarray
    visible: np.ndarray
    K: np.ndarray
    image_size: tuple[int, int]
    xyz_m: np.ndarray | None = None
    labelled_3d: np.ndarray | None = None
    distortion_model: str = "none"
    distortion: np.ndarray | None = None


# Lens coefficients per image in TargetMaps, zero-padded (rational_polynomial has the most).
LENS_COEFFICIENTS = 8


def _lens(ann: SceneAnnotation) -> tuple[np.ndarray, np.ndarray]:
    """(8,) coefficients (zero for a pinhole) and the () equidistant flag of an annotation's camera."""
    coefficients = np.zeros(LENS_COEFFICIENTS, dtype=np.float32)
    if ann.distortion_model != "none" and ann.distortion is not None:
        values = np.asarray(ann.distortion, dtype=np.float64).ravel()[:LENS_COEFFICIENTS]
        coefficients[: len(values)] = values
    return coefficients, np.asarray(ann.distortion_model == "equidistant")


@dataclass
class TargetMaps:
    """Targets of one image (numpy, no batch axis) or of a batch (tensors, leading B axis).

    Dense maps (C, h, w) with their weights; per-person tables (N = max_people).
    Offsets in map pixels, joint (or center) minus pixel; depths as in :class:`NetworkOutput`.
    """

    center: np.ndarray  # (1, h, w)
    center_weight: np.ndarray  # (1, h, w)
    heatmaps: np.ndarray  # (J, h, w)
    heatmap_weight: np.ndarray  # (J, h, w)
    offsets: np.ndarray  # (J, 2, h, w)
    offset_weight: np.ndarray  # (J, h, w)
    center_size: np.ndarray  # (1, h, w) person size B_i (map px) of the pixel's owner, 1 elsewhere
    root_to_center: np.ndarray  # (2, h, w)
    root_to_center_weight: np.ndarray  # (1, h, w)
    root_depth: np.ndarray  # (1, h, w) network depth units
    root_depth_weight: np.ndarray  # (1, h, w)
    rel_depth: np.ndarray  # (J, h, w) metres
    rel_depth_weight: np.ndarray  # (J, h, w)
    root_owner: np.ndarray  # (h, w) int64 index of the person whose root disc holds the pixel, -1
    person_valid: np.ndarray  # (N,) bool
    center_xy: np.ndarray  # (N, 2) center, map px (sub-pixel)
    center_index: np.ndarray  # (N,) int64 flat index y * w + x of the center pixel, 0 if invalid
    root_xy: np.ndarray  # (N, 2) root clamped into the map, map px
    root_index: np.ndarray  # (N,) int64 flat index of the root pixel, 0 if invalid
    joints_xy: np.ndarray  # (N, J, 2) joints, map px
    labelled: np.ndarray  # (N, J) bool
    visible: np.ndarray  # (N, J) bool
    xyz_m: np.ndarray  # (N, J, 3) metres, 0 where unknown
    labelled_3d: np.ndarray  # (N, J) bool
    has_depth: np.ndarray  # (N,) bool, root labelled in 3D
    size_px: np.ndarray  # (N,) person size B_i = diagonal of the labelled joints' box, map px
    K: np.ndarray  # (3, 3) network-input camera matrix
    distortion: np.ndarray  # (8,) its lens coefficients, zero-padded; 0 for a pinhole
    equidistant: np.ndarray  # () bool, the lens is a fisheye (equidistant) one
    depth_factor: np.ndarray  # () metres -> network depth units for this image


# A Gaussian is drawn only where it is at least this large (the rest of its map stays 0).
GAUSSIAN_CUTOFF = 1e-7


def _gaussian_reach(sigma: float) -> int:
    """Half-width (map px) of the window around a point's nearest pixel outside which its Gaussian
    is below :data:`GAUSSIAN_CUTOFF`: a pixel outside is at least ``reach + 0.5`` away along an axis."""
    return math.ceil(sigma * math.sqrt(2 * math.log(1 / GAUSSIAN_CUTOFF)) - 0.5)


def _gaussian_maps(points: np.ndarray, channels: np.ndarray, sigma: float, num_channels: int, height: int,
                   width: int) -> np.ndarray:
    """(C, h, w) float32 max of the Gaussians ``exp(-d^2 / (2 sigma^2))`` of (N, 2) map points, each
    in its channel of (N,) ``channels``; 0 where no point is. Points must be finite.

    Each Gaussian is evaluated (separably, in float64) only in a window of
    :func:`_gaussian_reach` pixels around the point, so it differs from the full-map one by less
    than :data:`GAUSSIAN_CUTOFF` and costs O(N sigma^2) instead of O(N h w).
    """
    reach = _gaussian_reach(sigma)
    steps = np.arange(-reach, reach + 1, dtype=np.float64)
    x = np.rint(points[:, :1]) + steps  # (N, k) pixel columns of each window
    y = np.rint(points[:, 1:2]) + steps
    gx = np.exp(-((x - points[:, :1]) ** 2) / (2 * sigma**2))
    gy = np.exp(-((y - points[:, 1:2]) ** 2) / (2 * sigma**2))
    values = (gy[:, :, None] * gx[:, None, :]).astype(np.float32)  # (N, k, k)
    inside = ((y >= 0) & (y < height))[:, :, None] & ((x >= 0) & (x < width))[:, None, :]
    flat = (channels[:, None, None] * height + y[:, :, None]) * width + x[:, None, :]
    maps = np.zeros(num_channels * height * width, dtype=np.float32)
    # Windows of points in one channel overlap: maximum.at combines repeated pixels.
    np.maximum.at(maps, flat[inside].astype(np.int64), values[inside])
    return maps.reshape(num_channels, height, width)


def _disc_owners(points: np.ndarray, radius: float, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Map pixels within ``radius`` of some of (P, 2) points: (n,) flat indices ``y * w + x``
    (ascending) and (n,) index of the nearest point (the first of equally near ones)."""
    reach = math.ceil(radius)
    steps = np.arange(-reach, reach + 2, dtype=np.float64)  # from floor(point): covers point ± radius
    x = (np.floor(points[:, :1]) + steps)[:, None, :]  # (P, 1, k)
    y = (np.floor(points[:, 1:2]) + steps)[:, :, None]  # (P, k, 1)
    d2 = (x - points[:, 0, None, None]) ** 2 + (y - points[:, 1, None, None]) ** 2  # (P, k, k)
    near = (d2 <= radius**2) & (x >= 0) & (x < width) & (y >= 0) & (y < height)
    owner = np.broadcast_to(np.arange(len(points))[:, None, None], d2.shape)[near]
    flat = np.broadcast_to(y * width + x, d2.shape)[near].astype(np.int64)
    # Per pixel: the smallest squared distance first, then the lowest point index (argmin's choice).
    order = np.lexsort((owner, d2[near], flat))
    flat, owner = flat[order], owner[order]
    first = np.ones(len(flat), dtype=bool)
    first[1:] = flat[1:] != flat[:-1]
    return flat[first], owner[first]


class TargetGenerator:
    """Builds :class:`TargetMaps` for a :class:`ModelConfig` from :class:`SceneAnnotation` s."""

    def __init__(self, model_cfg: ModelConfig, cfg: TargetConfig = TargetConfig()) -> None:
        self.model_cfg, self.cfg = model_cfg, cfg
        self.joint_set = get_joint_set(model_cfg.joint_set)
        self.stride = model_cfg.output_stride

    def _check(self, ann: SceneAnnotation) -> None:
        j = self.joint_set.num_joints
        uv = np.asarray(ann.uv_px)
        if uv.ndim != 3 or uv.shape[1:] != (j, 2):
            raise ValueError(f"SceneAnnotation.uv_px has shape {uv.shape}, expected (P, {j}, 2)")
        for name in ("labelled", "visible"):
            if np.asarray(getattr(ann, name)).shape != uv.shape[:2]:
                raise ValueError(f"SceneAnnotation.{name} must have shape {uv.shape[:2]}")
        if ann.xyz_m is not None and np.asarray(ann.xyz_m).shape != (uv.shape[0], j, 3):
            raise ValueError(f"SceneAnnotation.xyz_m has shape {np.shape(ann.xyz_m)}, expected ({uv.shape[0]}, {j}, 3)")
        if tuple(ann.image_size) != self.model_cfg.input_size:
            raise ValueError(f"SceneAnnotation.image_size {tuple(ann.image_size)} differs from the "
                             f"network input {self.model_cfg.input_size}")

    def __call__(self, ann: SceneAnnotation) -> TargetMaps:
        self._check(ann)
        cfg, js = self.cfg, self.joint_set
        w, h = self.model_cfg.output_size
        s = self.stride
        xy = (np.asarray(ann.uv_px, dtype=np.float64) + 0.5) / s - 0.5  # input px -> map px
        labelled = np.asarray(ann.labelled, dtype=bool) & np.isfinite(xy).all(-1)
        xy = np.where(labelled[..., None], xy, 0.0)
        inside = (xy[..., 0] >= -0.5) & (xy[..., 0] <= w - 0.5) & (xy[..., 1] >= -0.5) & (xy[..., 1] <= h - 0.5)
        visible = np.asarray(ann.visible, dtype=bool) & labelled & inside
        if ann.xyz_m is not None:
            xyz = np.asarray(ann.xyz_m, dtype=np.float64)
            lab3 = labelled if ann.labelled_3d is None else np.asarray(ann.labelled_3d, dtype=bool)
            lab3 = lab3 & np.isfinite(xyz).all(-1)
            xyz = np.where(lab3[..., None], xyz, 0.0)
        else:
            xyz, lab3 = np.zeros(xy.shape[:2] + (3,)), np.zeros(xy.shape[:2], dtype=bool)

        # Keep people with a visible joint (a center exists), most visible joints first.
        count = visible.sum(1)
        keep = np.argsort(-count, kind="stable")[: cfg.max_people]
        keep = keep[count[keep] > 0]
        xy, labelled, visible, xyz, lab3 = xy[keep], labelled[keep], visible[keep], xyz[keep], lab3[keep]
        p = len(keep)
        centers = (xy * visible[..., None]).sum(1) / np.maximum(visible.sum(1), 1)[:, None]
        root = js.root
        has_depth = lab3[:, root] & labelled[:, root]
        has_root = labelled[:, root]
        roots = np.stack([xy[:, root, 0].clip(0, w - 1), xy[:, root, 1].clip(0, h - 1)], -1)
        box = np.where(labelled[..., None], xy, np.nan)
        extent = np.nan_to_num(np.nanmax(box, 1) - np.nanmin(box, 1)) if p else np.zeros((0, 2))
        size = np.maximum(np.hypot(extent[:, 0], extent[:, 1]), 1.0)
        factor = float(self.model_cfg.depth_factor(float(ann.K[0][0]), float(ann.K[1][1])))

        # Heatmaps: max over people of each visible joint's Gaussian.
        j, f32 = js.num_joints, np.float32
        person, joint = np.nonzero(visible)
        heat = _gaussian_maps(xy[person, joint], joint, cfg.joint_sigma, j, h, w)
        heat_weight = np.broadcast_to(labelled.all(0)[:, None, None], heat.shape).astype(f32)
        center = _gaussian_maps(centers, np.zeros(p, dtype=np.int64), cfg.center_sigma, 1, h, w)

        # Dense targets are 0 (weight 0) outside the discs: only the disc pixels are computed.
        c_pix, c_who = _disc_owners(centers, cfg.center_radius, h, w)
        c_grid = np.stack([c_pix % w, c_pix // w], -1).astype(np.float64)  # (n, 2) pixel (x, y)
        c_weight = labelled[c_who]  # (n, J)
        offsets = np.zeros((j, 2, h * w), dtype=f32)
        offsets[:, :, c_pix] = ((xy[c_who] - c_grid[:, None]) * c_weight[..., None]).transpose(1, 2, 0)
        offset_weight = np.zeros((j, h * w), dtype=f32)
        offset_weight[:, c_pix] = c_weight.T
        center_size = np.ones(h * w, dtype=f32)
        center_size[c_pix] = size[c_who]

        rooted = np.flatnonzero(has_root)
        r_pix, r_local = _disc_owners(roots[rooted], cfg.root_radius, h, w)
        r_who = rooted[r_local]
        r_grid = np.stack([r_pix % w, r_pix // w], -1).astype(np.float64)
        r_owner = np.full(h * w, -1, dtype=np.int64)
        r_owner[r_pix] = r_who
        root_to_center = np.zeros((2, h * w), dtype=f32)
        root_to_center[:, r_pix] = (centers[r_who] - r_grid).T
        r_depth = has_depth[r_who]
        depth_in = np.zeros(h * w, dtype=f32)
        depth_in[r_pix] = r_depth
        root_depth = np.zeros(h * w, dtype=f32)
        root_depth[r_pix] = np.where(r_depth, xyz[r_who, root, 2] * factor, 0.0)
        r_weight = lab3[r_who] & r_depth[:, None]  # (n, J)
        rel = np.zeros((j, h * w), dtype=f32)
        rel[:, r_pix] = ((xyz[:, :, 2] - xyz[:, root:root + 1, 2])[r_who] * r_weight).T
        rel_weight = np.zeros((j, h * w), dtype=f32)
        rel_weight[:, r_pix] = r_weight.T

        n = cfg.max_people

        def table(values: np.ndarray, fill: float | bool = 0) -> np.ndarray:
            out = np.full((n,) + values.shape[1:], fill, dtype=values.dtype)
            out[:p] = values
            return out

        center_px = np.rint(centers).astype(np.int64)
        root_px = np.rint(roots).astype(np.int64)
        distortion, equidistant = _lens(ann)
        return TargetMaps(
            center=center,
            center_weight=np.ones((1, h, w), f32),
            heatmaps=heat,
            heatmap_weight=heat_weight,
            offsets=offsets.reshape(j, 2, h, w),
            offset_weight=offset_weight.reshape(j, h, w),
            center_size=center_size.reshape(1, h, w),
            root_to_center=root_to_center.reshape(2, h, w),
            root_to_center_weight=(r_owner >= 0).astype(f32).reshape(1, h, w),
            root_depth=root_depth.reshape(1, h, w),
            root_depth_weight=depth_in.reshape(1, h, w),
            rel_depth=rel.reshape(j, h, w),
            rel_depth_weight=rel_weight.reshape(j, h, w),
            root_owner=r_owner.reshape(h, w),
            person_valid=table(np.ones(p, dtype=bool), False),
            center_xy=table(centers.astype(f32)),
            center_index=table(center_px[:, 1] * w + center_px[:, 0]),
            root_xy=table(roots.astype(f32)),
            root_index=table(np.where(has_root, root_px[:, 1] * w + root_px[:, 0], 0)),
            joints_xy=table(xy.astype(f32)),
            labelled=table(labelled, False),
            visible=table(visible, False),
            xyz_m=table(xyz.astype(f32)),
            labelled_3d=table(lab3, False),
            has_depth=table(has_depth, False),
            size_px=table(size.astype(f32), 1.0),
            K=np.asarray(ann.K, dtype=f32),
            distortion=distortion,
            equidistant=equidistant,
            depth_factor=np.asarray(factor, dtype=f32),
        )


def collate_targets(items: Sequence[TargetMaps], device: torch.device | str | None = None) -> TargetMaps:
    """Stack per-image targets into a batch of tensors (leading B axis)."""
    return TargetMaps(**{
        f.name: torch.as_tensor(np.stack([getattr(t, f.name) for t in items]), device=device)
        for f in fields(TargetMaps)
    })


def in_depth_units(targets: TargetMaps, drawn_for: ModelConfig, wanted: ModelConfig) -> TargetMaps:
    """Batched targets drawn for ``drawn_for`` re-expressed in ``wanted``'s root-depth units.

    Only ``root_depth`` and ``depth_factor`` depend on the depth units
    (:meth:`ModelConfig.depth_factor`, from each image's K), so targets drawn for one config serve
    another that differs in ``focal_normalised_depth`` or ``depth_scale_px``: what the
    ablation study needs to train such variants on the very same batches. Targets already in the
    wanted units come back as they are (bit for bit, not rescaled by a ratio of 1).
    """
    if drawn_for.depth_units == wanted.depth_units:
        return targets
    factor = wanted.depth_factor(targets.K[:, 0, 0], targets.K[:, 1, 1]).to(targets.depth_factor.dtype)
    ratio = (factor / targets.depth_factor).view(-1, 1, 1, 1)
    return replace(targets, root_depth=targets.root_depth * ratio, depth_factor=factor)


def targets_as_outputs(targets: TargetMaps, sigma: float = 1.0, geo_sigma: float = 1.0) -> NetworkOutput:
    """Batched targets as a :class:`NetworkOutput` ("oracle" network), e.g. to test the decoder.

    The Laplace scales are the constants ``sigma`` and ``geo_sigma`` (network depth units).
    """
    t = targets
    return NetworkOutput(
        center=t.center,
        heatmaps=t.heatmaps,
        offsets=t.offsets,
        root_to_center=t.root_to_center,
        root_depth=t.root_depth,
        root_sigma=torch.full_like(t.root_depth, sigma),
        geo_sigma=torch.full_like(t.root_depth, geo_sigma),
        rel_depth=t.rel_depth,
        root_depth_logits=None,
    )
