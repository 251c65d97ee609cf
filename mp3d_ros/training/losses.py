"""Training losses of the papers' network; every term is returned separately (weighted) for logging.

Dense terms (read the maps where :class:`TargetMaps` weights are non-zero):

- ``center``, ``heatmap``: squared error of the center and joint heatmaps (DRM Eq. 5, MAR §3.1);
- ``offset``: smooth-L1 of the center->joint offsets divided by the person size
  ``B = sqrt(W^2 + H^2)`` of its box (DRM Eq. 6); ``root_to_center`` likewise for DRM's O_e;
- ``root_depth``: Laplace NLL of the regressed root depth, ``|z - z*| / sigma1 + log(sigma1)``
  (MAR Eq. 6), in network depth units; ``depth_bins`` adds HDNet's soft-bin cross-entropy for
  the log-bins head;
- ``rel_depth``: smooth-L1 of the root-relative depths in metres (DRM Eq. 8);
- ``dapl``: DRM Eq. 11, the X and Y errors of the absolute joints rebuilt from the predicted depths
  and the ground-truth pixels, ``|x* (Z - Z*)|`` (+ same in y) with ``[x*, y*, 1]`` the
  undistorted ray of the pixel (``(u* - cx) / fx`` for a pinhole), divided by B.

Person terms (predictions gathered at each ground-truth center / root pixel):

- ``geometric``: Laplace NLL (MAR Eq. 9) of the geometric root depth computed in closed form (Eq.
  7-8, as the argmin of Eq. 7 when no exact root exists, :func:`torso_depth_argmin`) from the
  predicted 2.5D torso (offsets, relative depths), on the rays undistorted through the input's
  lens (the targets carry it); its gradient flows back into the
  offsets and relative depths (Eq. 10) unless ``ModelConfig.geometry_backward`` is off;
- ``hmor``: HMOR's instance-, part- and joint-level ordinal losses (Eq. 5-9) with the camera axis as
  ``n``; weight 0 by default (not computed then).

Reduction as DRM's Eq. 5-12: every term is a *sum* over the image's supervised entries (pixels,
joints, people), averaged over the batch, and DRM's weights ``lambda_o = lambda_rz = lambda_dz =
0.03``, ``lambda_p = 0.003`` apply (MAR's Laplace NLL takes the place of DRM's root-depth smooth-L1;
the geometric NLL is per person with weight 1, MAR Eq. 11). NLL terms subtract ``log(sigma_min)``
(a constant) so they are >= 0 and reach 0 only for a perfect, maximally confident prediction. An
image without people contributes zeros, never NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mp3d_ros.geometry.camera_torch import EQUIDISTANT, POLYNOMIAL, CameraBatch, pixel_rays
from mp3d_ros.geometry.depth import encode_log_depth_bins, laplace_nll, torso_coefficients
from mp3d_ros.geometry.skeleton import get_joint_set
from mp3d_ros.model.codec.targets import TargetMaps
from mp3d_ros.model.config import ModelConfig
from mp3d_ros.model.heads import gather_pixels
from mp3d_ros.model.network import NetworkOutput

__all__ = ["LossConfig", "compute_losses", "hmor_loss", "torso_depth_argmin"]


@dataclass(frozen=True)
class LossConfig:
    """Weights of the terms (each a per-image sum, batch-averaged; defaults from DRM Eq. 12) and
    smooth-L1 transition points."""

    # Center heatmap squared error (DRM Eq. 5, weight 1).
    center: float = 1.0
    # Joint heatmap squared error over the channels every person in the image has labelled.
    heatmap: float = 1.0
    # Offset smooth-L1 / person size (DRM Eq. 6, lambda_o).
    offset: float = 0.03
    # Root->center offset smooth-L1 / person size (DRM's O_e; weighted like the offsets).
    root_to_center: float = 0.03
    # Regressed root depth Laplace NLL per root-region pixel (MAR Eq. 6 with DRM's lambda_rz).
    root_depth: float = 0.03
    # Geometric root depth Laplace NLL per person (MAR Eq. 9 / 11).
    geometric: float = 1.0
    # Root-relative depth smooth-L1 (DRM Eq. 8, lambda_dz).
    rel_depth: float = 0.03
    # DRM's decoupled absolute pose loss (Eq. 11, lambda_p); ignored when ModelConfig.dapl is off.
    dapl: float = 0.003
    # Soft log-depth-bin cross-entropy per root-region pixel (log_bins head only).
    depth_bins: float = 0.03
    # HMOR ordinal losses (Eq. 9); 0 = off.
    hmor: float = 0.0
    # Smooth-L1 transition of the offsets, map pixels.
    offset_beta_px: float = 0.1
    # Smooth-L1 transition of the relative depths, metres.
    rel_depth_beta_m: float = 0.01
    # Cap of the geometric-depth error inside its NLL, network depth units (5 = 25 m at f = 500 px).
    geometric_max_error: float = 5.0


def _masked_mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """sum(weight * values) / max(count(weight > 0), 1), NaN-safe where weight is 0."""
    weighted = torch.where(weight > 0, values * weight, torch.zeros_like(values))
    return weighted.sum() / (weight > 0).sum().clamp_min(1)


def _image_sum(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """sum(weight * values) / B: per-image sums averaged over the batch (axis 0), NaN-safe."""
    weighted = torch.where(weight > 0, values * weight, torch.zeros_like(values))
    return weighted.sum() / values.shape[0]


def _laplace(pred: torch.Tensor, target: torch.Tensor, sigma: torch.Tensor, sigma_min: float) -> torch.Tensor:
    """MAR Eq. 6 / 9 shifted by -log(sigma_min): ``|pred - target| / sigma + log(sigma / sigma_min)``."""
    return laplace_nll(pred, target, sigma, sigma_min) - math.log(sigma_min)


def _input_cameras(K: torch.Tensor, distortion: torch.Tensor, equidistant: torch.Tensor) -> CameraBatch:
    """The (B,) network-input cameras of targets as a :class:`CameraBatch` whose source image is
    the network input itself, so :func:`pixel_rays` undistorts through the input's lens.

    The lens families are read back to the host (one sync per step, like DAPL's nonzero): a
    pinhole batch then skips the undistortion's Newton steps.
    """
    b = K.shape[0]
    fisheye = bool(equidistant.any())
    polynomial = bool(((distortion != 0).any(-1) & ~equidistant).any())
    lenses = tuple(name for name, used in ((EQUIDISTANT, fisheye), (POLYNOMIAL, polynomial)) if used)
    identity = torch.eye(2, 3, dtype=K.dtype, device=K.device).expand(b, 2, 3)
    size = torch.zeros(b, 2, dtype=K.dtype, device=K.device)  # unused by pixel_rays
    return CameraBatch(K, K, identity, size, distortion, equidistant, lenses)


def _dense_terms(out: NetworkOutput, t: TargetMaps, model_cfg: ModelConfig, cfg: LossConfig) -> dict[str, torch.Tensor]:
    terms = {
        "center": cfg.center * _image_sum((out.center - t.center) ** 2, t.center_weight),
        "heatmap": cfg.heatmap * _image_sum((out.heatmaps - t.heatmaps) ** 2, t.heatmap_weight),
    }
    offset_err = F.smooth_l1_loss(out.offsets, t.offsets, reduction="none", beta=cfg.offset_beta_px).sum(2)
    terms["offset"] = cfg.offset * _image_sum(offset_err / t.center_size, t.offset_weight)
    b = t.size_px.shape[0]
    root_size = t.size_px.gather(1, t.root_owner.clamp_min(0).reshape(b, -1)).reshape(t.root_owner.shape)
    r2c_err = F.smooth_l1_loss(out.root_to_center, t.root_to_center, reduction="none", beta=cfg.offset_beta_px).sum(1)
    terms["root_to_center"] = cfg.root_to_center * _image_sum(r2c_err / root_size, t.root_to_center_weight[:, 0])
    nll = _laplace(out.root_depth, t.root_depth, out.root_sigma, model_cfg.sigma_min)
    terms["root_depth"] = cfg.root_depth * _image_sum(nll, t.root_depth_weight)
    if out.root_depth_logits is not None:
        soft = encode_log_depth_bins(t.root_depth[:, 0].clamp_min(1e-6), model_cfg.depth_bins, *model_cfg.depth_bin_range)
        ce = -(soft.movedim(-1, 1) * out.root_depth_logits.log_softmax(1)).sum(1)
        terms["depth_bins"] = cfg.depth_bins * _image_sum(ce, t.root_depth_weight[:, 0])
    rel_err = F.smooth_l1_loss(out.rel_depth, t.rel_depth, reduction="none", beta=cfg.rel_depth_beta_m)
    terms["rel_depth"] = cfg.rel_depth * _image_sum(rel_err, t.rel_depth_weight)
    return terms


def _dapl(out: NetworkOutput, t: TargetMaps, model_cfg: ModelConfig) -> torch.Tensor:
    """DRM Eq. 11 summed over supervised root-region pixels and joints, averaged over the batch."""
    b, y, x = torch.nonzero(t.root_depth_weight[:, 0] > 0, as_tuple=True)
    if b.numel() == 0:
        return out.root_depth.sum() * 0.0
    owner = t.root_owner[b, y, x]
    s = model_cfg.output_stride
    uv = (t.joints_xy[b, owner] + 0.5) * s - 0.5  # (M, J, 2) ground-truth pixels
    K = t.K[b]
    factor = t.depth_factor[b]
    depth = out.root_depth[b, 0, y, x] / factor
    z_pred = depth[:, None] + out.rel_depth[b, :, y, x]  # (M, J)
    z_true = t.xyz_m[b, owner, :, 2]
    known = t.labelled_3d[b, owner] & t.labelled[b, owner]
    ray = pixel_rays(uv, _input_cameras(K, t.distortion[b], t.equidistant[b]))[..., :2]  # (u - cx) / fx undistorted
    err = (ray.abs() * (z_pred - z_true).abs().unsqueeze(-1)).sum(-1)
    size = t.size_px[b, owner]
    per_pixel = torch.where(known, err, torch.zeros_like(err)).sum(-1) / size
    return per_pixel.sum() / out.root_depth.shape[0]


def _person_predictions(out: NetworkOutput, t: TargetMaps, model_cfg: ModelConfig):
    """2.5D poses read at the ground-truth centers / roots: uv (B, N, J, 2) input px, rel (B, N, J),
    root depth and sigma2 (B, N) in network units."""
    w = out.center.shape[-1]
    s = model_cfg.output_stride
    offsets = gather_pixels(out.offsets.flatten(1, 2), t.center_index).unflatten(-1, (-1, 2))
    center_px = torch.stack([t.center_index % w, torch.div(t.center_index, w, rounding_mode="floor")], -1)
    uv = (center_px.unsqueeze(2).to(offsets.dtype) + offsets + 0.5) * s - 0.5
    at_root = gather_pixels(torch.cat([out.root_depth, out.geo_sigma, out.rel_depth], 1), t.root_index)
    return uv, at_root[..., 2:], at_root[..., 0], at_root[..., 1]


def torso_depth_argmin(
    ray_root: torch.Tensor, ray_neck: torch.Tensor, rel_depth_neck_m: torch.Tensor, torso_length_m: float,
    min_a: float = 1e-10,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MAR Eq. 7 as an argmin that always exists, for (*, 3) undistorted rays: (*) depth and validity.

    With ``a Z^2 + b Z + c = 0`` of :func:`geometry.depth.torso_coefficients` (``aZ^2 + bZ + c``
    is the squared root-neck distance minus ``Omega^2``), Eq. 8's root is the argmin of Eq. 7 when
    the discriminant is >= 0; when it is negative the torso is longer than Omega at every depth and
    the argmin is the depth of the shortest torso, ``-b / 2a``. ``(-b + sqrt(max(disc, 0))) / 2a``
    covers both and is continuous, so training cannot escape the loss by making the discriminant
    negative. Invalid where ``a ~ 0`` or the depth is not positive (then 0, zero gradient).
    """
    a, b, c = torso_coefficients(ray_root, ray_neck, rel_depth_neck_m, torso_length_m)
    discriminant = b * b - 4 * a * c
    ok = a > min_a
    safe_a = torch.where(ok, a, torch.ones_like(a))
    positive = discriminant > 0
    root = torch.sqrt(torch.where(positive, discriminant, torch.ones_like(discriminant)))
    depth = (-b + torch.where(positive, root, torch.zeros_like(root))) / (2 * safe_a)
    valid = ok & (depth > 0)
    return torch.where(valid, depth, torch.zeros_like(depth)), valid


def _geometric(out: NetworkOutput, t: TargetMaps, model_cfg: ModelConfig, cfg: LossConfig) -> torch.Tensor:
    """MAR Eq. 9 for every person with depth, through the closed form of Eq. 7-8 (Eq. 10 gradients)."""
    js = get_joint_set(model_cfg.joint_set)
    uv, rel, _, sigma_geo = _person_predictions(out, t, model_cfg)
    if not model_cfg.geometry_backward:
        uv, rel = uv.detach(), rel.detach()
    rays = pixel_rays(torch.stack([uv[:, :, js.root], uv[:, :, js.neck]], 2),
                      _input_cameras(t.K.to(uv.dtype), t.distortion, t.equidistant))
    depth_m, valid = torso_depth_argmin(
        rays[:, :, 0], rays[:, :, 1], rel[:, :, js.neck] - rel[:, :, js.root], model_cfg.torso_length_m)
    factor = t.depth_factor.unsqueeze(1)
    target = t.xyz_m[:, :, js.root, 2] * factor
    use = valid & t.person_valid & t.has_depth & t.labelled[:, :, js.root] & t.labelled[:, :, js.neck]
    # A nearly foreshortened random torso gives absurd depths early in training: cap the error so
    # it cannot swamp the other terms (beyond the cap only sigma2 learns from it).
    error = (depth_m * factor - target).abs().clamp(max=cfg.geometric_max_error)
    nll = _laplace(error, torch.zeros_like(error), sigma_geo, model_cfg.sigma_min)
    return _image_sum(nll, use.to(nll.dtype))


def _pairs(values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Differences a_i - a_j (B, M, M, *) of (B, M, *) and the mask of valid pairs i < j (B, M, M)."""
    m = values.shape[1]
    upper = torch.ones(m, m, dtype=torch.bool, device=values.device).triu(1)
    return values.unsqueeze(2) - values.unsqueeze(1), mask.unsqueeze(2) & mask.unsqueeze(1) & upper


def hmor_loss(
    pred_m: torch.Tensor, true_m: torch.Tensor, known: torch.Tensor, person: torch.Tensor,
    bones: tuple[tuple[int, int], ...],
) -> torch.Tensor:
    """HMOR Eq. 5-9 with ``n`` the optical axis (depth = z): instance + part + joint ordinal terms.

    Args:
        pred_m: (B, N, J, 3) predicted joints, camera metres; true_m: the same, ground truth.
        known: (B, N, J) bool, the joint's 3D ground truth exists; person: (B, N) bool.
        bones: (start, end) joint pairs defining the body parts.

    Relations come from the ground truth (``R = sign`` of the true order); wrongly ordered pairs
    pay ``log(1 + max(0, R (z1 - z2)))`` (Eq. 5, 8) and ``max(0, R (t1 x t2) . n)`` (Eq. 7), where
    ``R = -sign`` of the true cross product, so the ground truth itself costs 0.
    """
    b, n, j, _ = pred_m.shape
    known = known & person.unsqueeze(-1)
    weights = known.to(pred_m.dtype)
    count = weights.sum(-1).clamp_min(1)
    full = person & known.all(-1)

    def ordinal(pred_z: torch.Tensor, true_z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        dp, pair = _pairs(pred_z, mask)
        dt, _ = _pairs(true_z, mask)
        err = torch.log1p(F.relu(-torch.sign(dt) * dp))  # R = +1 when 1 is closer (smaller z)
        return _masked_mean(err, pair.to(err.dtype))

    instance = ordinal(
        (pred_m[..., 2] * weights).sum(-1) / count, (true_m[..., 2] * weights).sum(-1) / count, full)
    joint = ordinal(pred_m[..., 2].reshape(b, n * j), true_m[..., 2].reshape(b, n * j), known.reshape(b, n * j))
    start, end = (torch.tensor(idx, device=pred_m.device) for idx in zip(*bones))
    # Part vectors projected on the image plane (Eq. 6 with n = z), (B, N * S, 2).
    tp = (pred_m[..., end, :2] - pred_m[..., start, :2]).reshape(b, -1, 2)
    tt = (true_m[..., end, :2] - true_m[..., start, :2]).reshape(b, -1, 2)
    part_known = (known[..., start] & known[..., end]).reshape(b, -1)
    # (t1 x t2) . n for every pair of parts, (B, M, M).
    cross_pred = tp[:, :, None, 0] * tp[:, None, :, 1] - tp[:, :, None, 1] * tp[:, None, :, 0]
    cross_true = tt[:, :, None, 0] * tt[:, None, :, 1] - tt[:, :, None, 1] * tt[:, None, :, 0]
    _, pair = _pairs(tp[..., 0], part_known)
    part = _masked_mean(F.relu(-torch.sign(cross_true) * cross_pred), pair.to(cross_pred.dtype))
    return instance + part + joint


def _hmor(out: NetworkOutput, t: TargetMaps, model_cfg: ModelConfig) -> torch.Tensor:
    js = get_joint_set(model_cfg.joint_set)
    uv, rel, root_depth, _ = _person_predictions(out, t, model_cfg)
    depth = root_depth / t.depth_factor.unsqueeze(1)
    rays = pixel_rays(uv, _input_cameras(t.K.to(uv.dtype), t.distortion, t.equidistant))
    pred = rays * (depth.unsqueeze(-1) + rel).unsqueeze(-1)
    known = t.labelled_3d & t.has_depth.unsqueeze(-1)
    return hmor_loss(pred, t.xyz_m.to(pred.dtype), known, t.person_valid & t.has_depth, js.bones)


def compute_losses(
    out: NetworkOutput, targets: TargetMaps, model_cfg: ModelConfig, cfg: LossConfig = LossConfig()
) -> dict[str, torch.Tensor]:
    """All loss terms, weighted, plus ``"total"`` (their sum); scalars on the outputs' device.

    Args:
        out: the network's maps for a batch.
        targets: the batch's targets (:func:`mp3d_ros.model.codec.targets.collate_targets`), same device.
    """
    terms = _dense_terms(out, targets, model_cfg, cfg)
    zero = out.center.sum() * 0.0
    terms["dapl"] = cfg.dapl * _dapl(out, targets, model_cfg) if model_cfg.dapl and cfg.dapl else zero
    terms["geometric"] = cfg.geometric * _geometric(out, targets, model_cfg, cfg) if cfg.geometric else zero
    terms["hmor"] = cfg.hmor * _hmor(out, targets, model_cfg) if cfg.hmor else zero
    terms["total"] = sum(terms.values())
    return terms

