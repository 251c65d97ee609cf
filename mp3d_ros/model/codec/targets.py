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

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from mp3d_ros.geometry.skeleton import get_joint_set
from mp3d_ros.model.config import ModelConfig
from mp3d_ros.model.network import NetworkOutput

__all__ = [
    "PersonTables",
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
class PersonTables:
    """Per-person ground truth of one image (numpy, no batch axis) or of a batch (tensors, leading
    B axis), padded to N = ``max_people``: valid people first. Everything the dense maps are drawn
    from (:meth:`TargetGenerator.maps`) and what the losses need at person level.
    """

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


@dataclass
class TargetMaps(PersonTables):
    """Targets of one image (numpy, no batch axis) or of a batch (tensors, leading B axis): the
    person tables and the dense maps (C, h, w) drawn from them, with their weights.
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


def _gaussian_maps(points: torch.Tensor, present: torch.Tensor, sigma: float, grid_x: torch.Tensor,
                   grid_y: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) float32 max over people of the Gaussians ``exp(-d^2 / (2 sigma^2))`` of
    (B, N, C, 2) map points where (B, N, C) ``present``; 0 where no point is.

    Evaluated separably in float64, one person at a time, so memory stays at one map per channel.
    """
    points = points.to(torch.float64)
    gx = torch.exp(-((grid_x - points[..., :1]) ** 2) / (2 * sigma**2))  # (B, N, C, w)
    gy = torch.exp(-((grid_y - points[..., 1:]) ** 2) / (2 * sigma**2))  # (B, N, C, h)
    batch, people, channels = present.shape
    maps = torch.zeros(batch, channels, len(grid_y), len(grid_x), dtype=torch.float32, device=points.device)
    for k in range(people):
        value = (gy[:, k, :, :, None] * gx[:, k, :, None, :]).float()
        maps = torch.maximum(maps, value * present[:, k, :, None, None])
    return maps


def _disc_owners(points: torch.Tensor, present: torch.Tensor, radius: float, grid_x: torch.Tensor,
                 grid_y: torch.Tensor) -> torch.Tensor:
    """(B, h, w) int64 index of the nearest of the (B, N) ``present`` (B, N, 2) map points within
    ``radius`` of each map pixel (the first of equally near ones), -1 where none is."""
    points = points.to(torch.float64)
    d2 = ((grid_x - points[..., 0, None, None]) ** 2
          + (grid_y[:, None] - points[..., 1, None, None]) ** 2)  # (B, N, h, w)
    d2 = torch.where(present[..., None, None], d2, torch.inf)
    nearest = d2.argmin(1)  # the first minimum: the lowest person index on ties
    within = torch.gather(d2, 1, nearest[:, None])[:, 0] <= radius**2
    return torch.where(within, nearest, -1)


class TargetGenerator:
    """Builds :class:`TargetMaps` for a :class:`ModelConfig` from :class:`SceneAnnotation` s, in two
    steps: the person tables on the CPU (:meth:`tables`), then the dense maps on any device,
    a batch at a time (:meth:`maps`). Training sends only the tables through its loader and draws
    the maps on the training device, so a batch crosses the host in kilobytes instead of megabytes.
    """

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
        """The targets of one image (numpy, no batch axis), drawn on the CPU."""
        maps = self.maps(collate_targets([self.tables(ann)]))
        return type(maps)(**{f.name: getattr(maps, f.name)[0].numpy() for f in fields(maps)})

    def tables(self, ann: SceneAnnotation) -> PersonTables:
        """The person tables of one image (numpy): people with a visible joint, most visible
        joints first, in map pixels; each person's center is the mean of its visible joints."""
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

        count = visible.sum(1)
        keep = np.argsort(-count, kind="stable")[: cfg.max_people]
        keep = keep[count[keep] > 0]
        xy, labelled, visible, xyz, lab3 = xy[keep], labelled[keep], visible[keep], xyz[keep], lab3[keep]
        p = len(keep)
        centers = (xy * visible[..., None]).sum(1) / np.maximum(visible.sum(1), 1)[:, None]
        root = js.root
        has_root = labelled[:, root]
        roots = np.stack([xy[:, root, 0].clip(0, w - 1), xy[:, root, 1].clip(0, h - 1)], -1)
        box = np.where(labelled[..., None], xy, np.nan)
        extent = np.nan_to_num(np.nanmax(box, 1) - np.nanmin(box, 1)) if p else np.zeros((0, 2))
        size = np.maximum(np.hypot(extent[:, 0], extent[:, 1]), 1.0)
        factor = float(self.model_cfg.depth_factor(float(ann.K[0][0]), float(ann.K[1][1])))
        n, f32 = cfg.max_people, np.float32

        def table(values: np.ndarray, fill: float | bool = 0) -> np.ndarray:
            out = np.full((n,) + values.shape[1:], fill, dtype=values.dtype)
            out[:p] = values
            return out

        center_px = np.rint(centers).astype(np.int64)
        root_px = np.rint(roots).astype(np.int64)
        distortion, equidistant = _lens(ann)
        return PersonTables(
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
            has_depth=table(lab3[:, root] & has_root, False),
            size_px=table(size.astype(f32), 1.0),
            K=np.asarray(ann.K, dtype=f32),
            distortion=distortion,
            equidistant=equidistant,
            depth_factor=np.asarray(factor, dtype=f32),
        )

    def maps(self, tables: PersonTables) -> TargetMaps:
        """The batch's targets: its (batched tensor) tables and the dense maps drawn from them on
        their device.

        - heatmaps: max over people of each visible joint's Gaussian; a channel is trained only in
          images where every person has that joint labelled;
        - center: Gaussian at each person center;
        - within ``center_radius`` of a center (the nearest one's pixels): offsets to its
          labelled joints and its size;
        - within ``root_radius`` of a root: the root->center offset and, for people with depth,
          the root depth and the labelled joints' depths relative to the root.
        """
        t, cfg, root = tables, self.cfg, self.joint_set.root
        w, h = self.model_cfg.output_size
        device = t.center_xy.device
        batch = len(t.person_valid)
        # Valid people come first; one slot at least, so an image of nobody still indexes a table.
        people = max(1, int(t.person_valid.sum(1).max()) if batch else 0)
        valid = t.person_valid[:, :people]
        joints_xy, labelled = t.joints_xy[:, :people], t.labelled[:, :people]
        xyz, labelled_3d, has_depth = t.xyz_m[:, :people], t.labelled_3d[:, :people], t.has_depth[:, :people]
        center_xy, size_px = t.center_xy[:, :people], t.size_px[:, :people]
        grid_x = torch.arange(w, dtype=torch.float64, device=device)
        grid_y = torch.arange(h, dtype=torch.float64, device=device)
        grid = torch.stack(torch.broadcast_tensors(grid_x, grid_y[:, None]), -1)  # (h, w, 2) pixel (x, y)
        image = torch.arange(batch, device=device)[:, None, None]

        heatmaps = _gaussian_maps(joints_xy, t.visible[:, :people] & valid[..., None], cfg.joint_sigma,
                                  grid_x, grid_y)
        every_labelled = (labelled | ~valid[..., None]).all(1)  # (B, J)
        center = _gaussian_maps(center_xy[:, :, None], valid[..., None], cfg.center_sigma, grid_x, grid_y)

        center_owner = _disc_owners(center_xy, valid, cfg.center_radius, grid_x, grid_y)
        in_center = center_owner >= 0
        owner = center_owner.clamp(min=0)
        offset_weight = labelled[image, owner] & in_center[..., None]  # (B, h, w, J)
        offsets = (joints_xy[image, owner].double() - grid[:, :, None]) * offset_weight[..., None]
        center_size = torch.where(in_center, size_px[image, owner], 1.0)

        root_owner = _disc_owners(t.root_xy[:, :people], labelled[..., root] & valid, cfg.root_radius,
                                  grid_x, grid_y)
        in_root = root_owner >= 0
        owner = root_owner.clamp(min=0)
        root_to_center = (center_xy[image, owner].double() - grid) * in_root[..., None]
        with_depth = in_root & has_depth[image, owner]
        depth = xyz[..., 2][image, owner]  # (B, h, w, J) depth of the owner's joints
        root_z = depth[..., root]
        root_depth = torch.where(with_depth, root_z * t.depth_factor[:, None, None], 0.0)
        rel_weight = labelled_3d[image, owner] & with_depth[..., None]  # (B, h, w, J)
        rel_depth = (depth - root_z[..., None]) * rel_weight

        f32 = torch.float32
        joints = self.joint_set.num_joints
        return TargetMaps(
            **{f.name: getattr(t, f.name) for f in fields(PersonTables)},
            center=center,
            center_weight=torch.ones(batch, 1, h, w, dtype=f32, device=device),
            heatmaps=heatmaps,
            heatmap_weight=every_labelled[..., None, None].to(f32).expand(batch, joints, h, w).contiguous(),
            offsets=offsets.to(f32).permute(0, 3, 4, 1, 2).contiguous(),
            offset_weight=offset_weight.to(f32).permute(0, 3, 1, 2).contiguous(),
            center_size=center_size[:, None].to(f32),
            root_to_center=root_to_center.to(f32).permute(0, 3, 1, 2).contiguous(),
            root_to_center_weight=in_root[:, None].to(f32),
            root_depth=root_depth[:, None].to(f32),
            root_depth_weight=with_depth[:, None].to(f32),
            rel_depth=rel_depth.to(f32).permute(0, 3, 1, 2).contiguous(),
            rel_depth_weight=rel_weight.to(f32).permute(0, 3, 1, 2).contiguous(),
            root_owner=root_owner,
        )


def collate_targets(items: Sequence[PersonTables], device: torch.device | str | None = None) -> PersonTables:
    """Stack per-image targets (:class:`PersonTables` or :class:`TargetMaps`, numpy) into a batch
    of tensors (leading B axis) of the same kind."""
    return type(items[0])(**{
        f.name: torch.as_tensor(np.stack([getattr(t, f.name) for t in items]), device=device)
        for f in fields(items[0])
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
