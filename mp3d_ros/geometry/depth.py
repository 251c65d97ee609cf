"""Depth geometry in torch: batched, differentiable, NaN-free.

- :func:`torso_coefficients`: the ``a, b, c`` of MAR Eq. 8's quadratic from the rays of a 2.5D torso;
- :func:`geometric_root_depth` / :func:`geometric_root_depth_from_rays`: MAR Eq. 7-8, the root
  depth at which the pelvis-neck distance of a 2.5D pose equals the torso length (with the erratum
  of DESIGN.md), and its validity;
- :func:`laplace_std`: a Laplace scale ``b`` as the standard deviation ``sqrt(2) b`` it implies;
- :func:`fuse_depths`: MAR Eq. 12, uncertainty-weighted fusion of two depth estimates;
- :func:`laplace_nll`: MAR Eq. 6 / 9, the Laplace negative log-likelihood;
- :func:`k_value_depth`: RootNet Eq. 1, the k-value depth from a box area and focal lengths;
- :func:`encode_log_depth_bins` / :func:`decode_log_depth_bins`: HDNet Eq. 6-7, soft log-depth bins.

Shapes: ``(*)`` is any batch shape; ``K`` is ``(*, 3, 3)`` and broadcasts against the batch.
"""

from __future__ import annotations

import math

import torch

from mp3d_ros.geometry.camera_torch import pinhole_rays

__all__ = [
    "torso_coefficients",
    "geometric_root_depth",
    "geometric_root_depth_from_rays",
    "laplace_std",
    "fuse_depths",
    "laplace_nll",
    "k_value_depth",
    "encode_log_depth_bins",
    "decode_log_depth_bins",
]

# RootNet's assumed real area of a person's box, 2000 mm x 2000 mm.
ROOTNET_AREA_M2 = 4.0


def torso_coefficients(
    ray_root: torch.Tensor, ray_neck: torch.Tensor, rel_depth_neck_m: torch.Tensor, torso_length_m: torch.Tensor | float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(a, b, c)`` of MAR Eq. 8 (with the erratum of DESIGN.md) for (*, 3) rays ``[x, y, 1]``.

    With ``q`` the neck's ray and ``d = q - r`` (``r`` the root's), the root at ``Z r`` and the
    neck at ``(Z + Z^r_m) q`` are ``Omega`` apart when ``a Z^2 + b Z + c = 0``: ``a = |d|^2``,
    ``b = 2 Z^r_m (d . q)``, ``c = (Z^r_m)^2 |q|^2 - Omega^2``.
    """
    q = ray_neck
    d = q - ray_root
    rel = rel_depth_neck_m
    # A float stays a float: a tensor made from it on the GPU is a copy CUDA graphs cannot capture.
    omega = torso_length_m.to(q) if isinstance(torso_length_m, torch.Tensor) else float(torso_length_m)
    a = (d * d).sum(-1)
    b = 2 * rel * (d * q).sum(-1)
    c = rel * rel * (q * q).sum(-1) - omega * omega
    return a, b, c


def geometric_root_depth_from_rays(
    ray_root: torch.Tensor,
    ray_neck: torch.Tensor,
    rel_depth_neck_m: torch.Tensor,
    torso_length_m: torch.Tensor | float,
    min_a: float = 1e-10,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`geometric_root_depth` for (*, 3) undistorted rays ``[x, y, 1]`` of root and neck
    (e.g. :func:`mp3d_ros.geometry.camera_torch.pixel_rays`, which undistorts)."""
    a, b, c = torso_coefficients(ray_root, ray_neck, rel_depth_neck_m, torso_length_m)
    discriminant = b * b - 4 * a * c
    ok = (a > min_a) & (discriminant >= 0)
    # Substitute harmless values before sqrt and division so masked entries have finite gradients.
    safe_a = torch.where(ok, a, torch.ones_like(a))
    safe_disc = torch.where(ok, discriminant, torch.ones_like(discriminant))
    depth = (-b + torch.sqrt(safe_disc)) / (2 * safe_a)
    valid = ok & (depth > 0)
    return torch.where(valid, depth, torch.zeros_like(depth)), valid


def geometric_root_depth(
    uv_root_px: torch.Tensor,
    uv_neck_px: torch.Tensor,
    rel_depth_neck_m: torch.Tensor,
    K: torch.Tensor,
    torso_length_m: torch.Tensor | float,
    min_a: float = 1e-10,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Root depth from the 2.5D torso, MAR Eq. 7-8 with the erratum of DESIGN.md.

    With the rays ``K^-1 [u, v, 1]^T`` of neck and root, the larger root (Eq. 8) of
    :func:`torso_coefficients`' quadratic ``|Z d + Z^r_m q|^2 = Omega^2`` is returned.

    Args:
        uv_root_px: (*, 2) undistorted pixel position of the root (pelvis). For a distorted
            image use :func:`geometric_root_depth_from_rays` with undistorted rays.
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
    return geometric_root_depth_from_rays(
        pinhole_rays(uv_root_px, K), pinhole_rays(uv_neck_px, K), rel_depth_neck_m, torso_length_m, min_a)


def laplace_std(scale: torch.Tensor) -> torch.Tensor:
    """The standard deviation ``sqrt(2) b`` of a Laplace distribution of scale ``b``.

    The network's sigmas are Laplace scales (trained by :func:`laplace_nll`); MAR Eq. 12 and the
    published ``root_sigma_m`` want standard deviations (DESIGN.md "Absolute depth").
    """
    return math.sqrt(2.0) * scale


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
