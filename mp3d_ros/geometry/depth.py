"""Depth geometry in torch: batched, differentiable, NaN-free.

- :func:`geometric_root_depth`: MAR Eq. 7-8, the root depth at which the pelvis-neck distance of
  a 2.5D pose equals the torso length (with the erratum of DESIGN.md), and its validity;
- :func:`fuse_depths`: MAR Eq. 12, uncertainty-weighted fusion of two depth estimates;
- :func:`laplace_nll`: MAR Eq. 6 / 9, the Laplace negative log-likelihood;
- :func:`k_value_depth`: RootNet Eq. 1, the k-value depth from a box area and focal lengths;
- :func:`normalize_depth` / :func:`denormalize_depth`: HDNet Eq. 7's focal normalisation
  ``z_n = Z / sqrt(fx * fy)``, so one network serves any camera;
- :func:`encode_log_depth_bins` / :func:`decode_log_depth_bins`: HDNet Eq. 6-7, soft log-depth bins.

Shapes: ``(*)`` is any batch shape; ``K`` is ``(*, 3, 3)`` and broadcasts against the batch.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "geometric_root_depth",
    "fuse_depths",
    "laplace_nll",
    "k_value_depth",
    "normalize_depth",
    "denormalize_depth",
    "encode_log_depth_bins",
    "decode_log_depth_bins",
]

# RootNet's assumed real area of a person's box, 2000 mm x 2000 mm.
ROOTNET_AREA_M2 = 4.0


def _rays(uv_px: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """(*, 3) rays ``K^-1 [u, v, 1]^T`` for (*, 2) pixels and upper-triangular camera matrices.

    Back-substitution instead of a general solve: a handful of elementwise kernels that CUDA graphs
    capture, where ``linalg.solve`` launches a factorisation per call.
    """
    fx, skew, cx = K[..., 0, 0], K[..., 0, 1], K[..., 0, 2]
    fy, cy = K[..., 1, 1], K[..., 1, 2]
    y = (uv_px[..., 1] - cy) / fy
    x = (uv_px[..., 0] - cx - skew * y) / fx
    return torch.stack([x, y, torch.ones_like(x)], dim=-1)


def geometric_root_depth(
    uv_root_px: torch.Tensor,
    uv_neck_px: torch.Tensor,
    rel_depth_neck_m: torch.Tensor,
    K: torch.Tensor,
    torso_length_m: torch.Tensor | float,
    min_a: float = 1e-10,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Root depth from the 2.5D torso, MAR Eq. 7-8 with the erratum of DESIGN.md.

    With ``q = K^-1 [u_neck, v_neck, 1]^T`` and ``d = q - K^-1 [u_root, v_root, 1]^T``, the root at
    ``Z r`` and the neck at ``(Z + Z^r_m) q`` are ``Omega`` apart when
    ``|Z d + Z^r_m q|^2 = Omega^2``, i.e. ``a Z^2 + b Z + c = 0`` with ``a = |d|^2``,
    ``b = 2 Z^r_m (d . q)``, ``c = (Z^r_m)^2 |q|^2 - Omega^2``. The larger root (Eq. 8) is returned.

    Args:
        uv_root_px: (*, 2) undistorted pixel position of the root (pelvis). For a distorted
            image pass undistorted normalised coordinates (:func:`mp3d_ros.geometry.camera.pixel_rays`)
            with ``K`` = identity.
        uv_neck_px: (*, 2) undistorted pixel position of the neck.
        rel_depth_neck_m: (*) neck depth minus root depth, ``Z^r_m``, metres.
        K: (*, 3, 3) upper-triangular camera matrix of the image the pixels are in.
        torso_length_m: root-neck distance ``Omega`` in metres, scalar or (*).
        min_a: ``a`` below this (root and neck on one ray) makes the result invalid.

    Returns:
        ``(depth_m, valid)``: (*) depth, and a bool mask that is False where ``a ~ 0``, the
        discriminant is negative (no real root) or the depth is not positive. Invalid entries hold
        0 and have zero gradient; values and gradients are never NaN.
    """
    q = _rays(uv_neck_px, K)
    d = q - _rays(uv_root_px, K)
    rel = rel_depth_neck_m
    # A float stays a float: a tensor made from it on the GPU is a copy CUDA graphs cannot capture.
    omega = torso_length_m.to(q) if isinstance(torso_length_m, torch.Tensor) else float(torso_length_m)
    a = (d * d).sum(-1)
    b = 2 * rel * (d * q).sum(-1)
    c = rel * rel * (q * q).sum(-1) - omega * omega
    discriminant = b * b - 4 * a * c
    ok = (a > min_a) & (discriminant >= 0)
    # Substitute harmless values before sqrt and division so masked entries have finite gradients.
    safe_a = torch.where(ok, a, torch.ones_like(a))
    safe_disc = torch.where(ok, discriminant, torch.ones_like(discriminant))
    depth = (-b + torch.sqrt(safe_disc)) / (2 * safe_a)
    valid = ok & (depth > 0)
    return torch.where(valid, depth, torch.zeros_like(depth)), valid


def fuse_depths(
    z_reg: torch.Tensor,
    sigma_reg: torch.Tensor,
    z_geo: torch.Tensor,
    sigma_geo: torch.Tensor,
    valid_geo: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MAR Eq. 12: ``Z = (Z_reg / s1 + Z_geo / s2) / (1 / s1 + 1 / s2)``.

    The fused uncertainty ``sqrt(2) / (1 / s1 + 1 / s2)`` is the standard deviation of that weighted
    mean for independent errors of standard deviations ``s1`` and ``s2`` (weights ``w_i = 1/s_i``
    give ``Var = sum w_i^2 s_i^2 / (sum w_i)^2 = 2 / (sum w_i)^2``). Where ``valid_geo`` is False the
    regressed depth and its sigma are returned unchanged (the geometric depth does not exist).

    Returns:
        ``(depth, sigma)`` with the broadcast shape of the inputs.
    """
    w_reg, w_geo = 1.0 / sigma_reg, 1.0 / sigma_geo
    fused = (z_reg * w_reg + z_geo * w_geo) / (w_reg + w_geo)
    sigma = math.sqrt(2.0) / (w_reg + w_geo)
    if valid_geo is None:
        return fused, sigma
    return torch.where(valid_geo, fused, z_reg), torch.where(valid_geo, sigma, sigma_reg)


def laplace_nll(
    prediction: torch.Tensor, target: torch.Tensor, sigma: torch.Tensor, min_sigma: float = 1e-4
) -> torch.Tensor:
    """MAR Eq. 6 / 9, elementwise: ``|prediction - target| / sigma + log(sigma)``.

    ``sigma`` is clamped below at ``min_sigma`` so a collapsing scale cannot give infinities.
    """
    sigma = sigma.clamp_min(min_sigma)
    return (prediction - target).abs() / sigma + torch.log(sigma)


def k_value_depth(
    fx_px: torch.Tensor | float,
    fy_px: torch.Tensor | float,
    box_area_px2: torch.Tensor,
    real_area_m2: float = ROOTNET_AREA_M2,
) -> torch.Tensor:
    """RootNet Eq. 1: ``k = sqrt(a_x a_y A_real / A_img)`` in metres (A_real = 2 m x 2 m)."""
    return torch.sqrt(
        torch.as_tensor(fx_px) * torch.as_tensor(fy_px) * real_area_m2 / box_area_px2.clamp_min(1e-6)
    )


def normalize_depth(
    depth_m: torch.Tensor, fx_px: torch.Tensor | float, fy_px: torch.Tensor | float
) -> torch.Tensor:
    """HDNet Eq. 7's normalisation ``z_n = Z / sqrt(fx * fy)`` (metres per pixel of focal length)."""
    return depth_m / torch.sqrt(torch.as_tensor(fx_px) * torch.as_tensor(fy_px))


def denormalize_depth(
    depth_n: torch.Tensor, fx_px: torch.Tensor | float, fy_px: torch.Tensor | float
) -> torch.Tensor:
    """Inverse of :func:`normalize_depth` with the focal lengths of the frame being processed."""
    return depth_n * torch.sqrt(torch.as_tensor(fx_px) * torch.as_tensor(fy_px))


def encode_log_depth_bins(
    depth_n: torch.Tensor, num_bins: int, alpha: float, beta: float
) -> torch.Tensor:
    """HDNet Eq. 6: soft one-hot ``(*, num_bins)`` target for normalised depths ``(*)``.

    ``b = (log z - log alpha) / (log beta - log alpha) (N_B - 1)``; the weight is split between
    bins ``floor(b)`` and ``floor(b) + 1`` like a linear interpolation, so
    :func:`decode_log_depth_bins` returns the depth exactly for ``alpha <= z <= beta``. Depths
    outside the range are clamped to it.
    """
    position = (torch.log(depth_n) - math.log(alpha)) / (math.log(beta) - math.log(alpha))
    position = (position * (num_bins - 1)).clamp(0, num_bins - 1)
    lower = position.floor().clamp(max=num_bins - 2).long()
    upper_weight = position - lower.to(position.dtype)
    bins = torch.zeros(position.shape + (num_bins,), dtype=position.dtype, device=position.device)
    bins.scatter_(-1, lower.unsqueeze(-1), (1 - upper_weight).unsqueeze(-1))
    bins.scatter_(-1, (lower + 1).unsqueeze(-1), upper_weight.unsqueeze(-1))
    return bins


def decode_log_depth_bins(
    probabilities: torch.Tensor, alpha: float, beta: float
) -> torch.Tensor:
    """HDNet Eq. 7 (soft-argmax over bins): ``(*, N_B)`` probabilities to ``(*)`` normalised depth."""
    num_bins = probabilities.shape[-1]
    index = torch.arange(num_bins, dtype=probabilities.dtype, device=probabilities.device)
    expected_bin = (probabilities * index).sum(-1)
    log_depth = expected_bin / (num_bins - 1) * (math.log(beta) - math.log(alpha)) + math.log(alpha)
    return torch.exp(log_depth)
