"""Absolute root depth of a person from a 2.5D pose, the live intrinsics and a body-size prior.

Inputs per person: the undistorted rays ``r_j = [x_j, y_j, 1]`` of the joints seen in the image, and
a lifted root-relative 3D pose (camera-aligned axes) whose size is that of a body of
``canonical_height_m``. The lifted pose is scaled by ``s = prior.height_m / canonical_height_m``;
its z column gives the relative depths ``d_j`` and its distances give segment lengths. Joint j is
then at ``P_j = (Z + d_j) r_j`` (MAR Eq. 1) for the root depth ``Z``.

Two estimates of ``Z``:

- **torso** (MAR Eq. 7-8, :func:`mp3d_ros.geometry.depth.geometric_root_depth`): the depth at which the
  hip-midpoint -> shoulder-midpoint distance equals its scaled lifted length times
  ``torso_keypoint_scale`` (COCO detectors see hips and shoulders, not the pelvis and thorax of
  the 3D sets, and mark them on the body's outline, which spans a longer torso than the joints);
- **bones**: least squares over all seen rigid segments (upper arms, forearms, thighs, shins,
  shoulder and hip widths) on the log-length residuals ``e_k(Z) = log |Z a_k + b_k| - log L_k -
  beta_k`` with ``a_k = r_i - r_j`` and ``b_k = d_i r_i - d_j r_j`` for segment ``k = (i, j)``:
  generalised least squares ``min_Z e^T Sigma^-1 e``, solved by Gauss-Newton from the mean of the
  per-segment closed forms. ``Sigma`` is the residuals' covariance at the current depth: each
  length's own relative uncertainty (``segment_rel_sigma``), plus the 2D keypoint noise across each
  joint's ray and the relative-depth noise along it, propagated through
  ``de_k = u_k . (dP_i - dP_j) / L_k`` (segments that share a joint are correlated). The depth's
  sigma is ``(J^T Sigma^-1 J)^-1/2`` with ``J_k = de_k/dZ``: short segments and segments seen
  end-on have small ``J_k`` against their noise, so fewer and shorter visible bones give a larger
  uncertainty.

  **Why log lengths (errors in variables).** The 2D noise makes the regressor noisy: the
  back-projected length ``|D_k| ~ Z |a_k|`` of a short segment is its image length, noise included.
  On plain lengths, least squares weights each segment by ``|a_k|^2``, so segments that noise
  lengthened weigh more and pull the person near (7 % at 10-14 m for 3 px noise, shins 17 px and
  forearms 11 px long; the classical attenuation of errors in variables). In log form every
  segment seen side-on has the slope ``1/Z`` whatever its noise, the weights use the lifted
  ``L_k`` rather than the noisy length, and ``E log |D_k + n| = log |D_k| + (tr C_k -
  2 u_k^T C_k u_k) / (2 |D_k|^2)`` to second order for noise of covariance ``C_k``: zero for 2D
  noise on a segment in the image plane, ``beta_k = s_k u_z^2 / |D_k|^2`` in general (``s_k`` the
  noise's variance per image axis), which is subtracted.

The two share no segment, so their errors are treated as independent and fused with MAR Eq. 12
(:func:`mp3d_ros.geometry.depth.fuse_depths`), with both sigmas evaluated at one depth (the
first fusion's): each grows with the depth it is evaluated at, so taken at each cue's own
estimate the weights would favour the nearer one (a torso 25 % too far weighed 0.77 of the same
torso 25 % too near, and noisy people at 10-14 m came out at 0.968 of their depth with both cues
at 0.974-0.997; ``benchmarks/bone_fit_noise.py``). The body-size prior adds an error common to
both, a relative ``height_sigma_m / height_m``, added in quadrature after the fusion. With the
noise the prior describes, the reported 1-sigma covers about 68% of the errors (tested).

Real detectors and lifters are not that noise: their errors are heavy-tailed, biased and
correlated between joints (on renders MoveNet marks shoulders and elbows about 2 network-input
pixels above the joints, hips and knees below them; lifted segments are 4 % short).
``sigma_inflation`` multiplies both estimates' sigmas (so their fusion is unchanged) by one
factor measured on rendered scenes for what the noise model leaves out; the stature part is not
inflated. ``benchmarks/calibrate_depth_sigma.py`` measures the noise levels and the factor.

**Scale assumption.** Monocular images fix only the ratio of size to distance: every person is
assumed to be ``prior.height_m`` tall. A child of 1.2 m at 3 m looks like a 1.7 m adult at 4.25 m
and is placed there (depth and lateral position both scaled by 1.7 / 1.2, along the same rays);
the stature part of its reported sigma covers adult height variation only (``sigma_inflation``
was measured on renders a quarter of whose people are children, so it widens the rest somewhat).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from mp3d_ros.geometry.camera import Intrinsics, pixel_rays
from mp3d_ros.geometry.camera_torch import compiled_once
from mp3d_ros.geometry.depth import fuse_depths, geometric_root_depth
from mp3d_ros.geometry.skeleton import JointSet

__all__ = ["BodyPrior", "RootDepth", "SEGMENTS", "estimate_root_depth", "estimate_root_depth_px",
           "segment_root_depths"]

# Rigid segments whose both ends COCO-style detectors see; the torso (hip midpoint -> shoulder
# midpoint) is left out because the closed form uses it, which keeps the two estimates independent.
SEGMENTS: tuple[tuple[str, str], ...] = (
    ("left_shoulder", "left_elbow"),
    ("left_elbow", "left_wrist"),
    ("right_shoulder", "right_elbow"),
    ("right_elbow", "right_wrist"),
    ("left_hip", "left_knee"),
    ("left_knee", "left_ankle"),
    ("right_hip", "right_knee"),
    ("right_knee", "right_ankle"),
    ("left_shoulder", "right_shoulder"),
    ("left_hip", "right_hip"),
)
_HIPS = ("left_hip", "right_hip")
_SHOULDERS = ("left_shoulder", "right_shoulder")
# Six steps: on 160 renders (259 people with segments) every depth after six was within 0.54 % of
# the limit (32 steps), 95 % within 1e-5 (eight steps: 0.22 %); each further step is about 90
# kernels in the CUDA graph and 0.3-0.7 ms on one CPU core (benchmarks/RESULTS.md, issue 19).
_GAUSS_NEWTON_STEPS = 6
_MAX_LOG_STEP = 3.0  # a factor of 20 per Gauss-Newton step at most
_MIN_DEPTH_M = 0.1
# Three rounds: on the same 160 renders (255 people with a torso) every torso depth after three
# was within 4.6e-6 of the limit (16 rounds), the fused depth within 1.2e-6; a fourth round is
# 65 kernels in the CUDA graph (benchmarks/RESULTS.md, issue 19).
_MIDPOINT_ROUNDS = 3


@dataclass(frozen=True)
class BodyPrior:
    """Body size and the noise levels the uncertainty is computed from.

    Attributes:
        height_m: assumed standing height of everybody (the scale assumption above).
        height_sigma_m: standard deviation of real heights around it (adults, both sexes).
        segment_rel_sigma: relative standard deviation of one segment's length around the scaled
            lifted length (body proportions and lifting error).
        rel_depth_sigma_m: standard deviation of one lifted relative depth, metres.
        keypoint_sigma_px: standard deviation of a detected 2D keypoint per axis, pixels.
        sigma_inflation: measured inflation factor of the torso and bones sigmas (before the
            stature part is added) for the errors the noise model above leaves out; 1 reports
            the noise model's own sigma.
        torso_keypoint_scale: length of the torso between the 2D model's hip and shoulder
            midpoints over the lifted (joint-centre) torso's. COCO keypoints are marked on the
            body's outline (shoulders at the acromion, hips low on the pelvis), so the torso they
            span is longer than the one between joint centres; 1 takes the lifted length as is.
    """

    # Measured for movenet-lift (its 288 x 224 CPU input, the lifter trained on survey adults'
    # proportions) on 640 x 480 renders, people at 2-10 m, by benchmarks/calibrate_depth_sigma.py
    # on 2026-12-02 (calibration seed 21, checked on seed 22; the values guessed at first are in
    # brackets): the sd of rendered adults' (>= 1.5 m) statures (0.09); the robust sd of lifted /
    # true segment length - 1 at one stature (0.08; 0.135 with the lifter that knew one mocap
    # figure); the RMS over the 12 seen COCO joints of each joint's robust sd of lifted - true
    # relative depth at 1.70 m (0.05); and the inflation putting 68.3 % of all matched people's
    # body-size depth errors within 1 sigma (1; 1.71 since the bones fit log lengths and the
    # fusion takes both cues' sigmas at one depth, 1.58 before). See benchmarks/RESULTS.md.
    height_m: float = 1.70
    height_sigma_m: float = 0.085
    segment_rel_sigma: float = 0.065
    rel_depth_sigma_m: float = 0.10
    keypoint_sigma_px: float = 3.0  # not measured: movenet-lift passes its own (keypoint_sigma_input_px)
    sigma_inflation: float = 1.71
    # Measured by benchmarks/segment_depths.py on 2026-12-02: MoveNet's torso alone puts people at
    # 0.890 of the depth their forearms and shins give on the COCO fixtures (11 real people), and
    # at 0.869 of the true depth on renders of 1.70 m people (61); 1 / 0.89, from the real images.
    torso_keypoint_scale: float = 1.12


@dataclass(frozen=True)
class RootDepth:
    """Root (pelvis) depth estimates for P people; tensors of shape (P,), metres.

    ``depth_m`` / ``sigma_m`` / ``valid`` are the fused result with the body-size error included;
    the ``torso_*`` and ``bones_*`` fields are the two estimates before fusion, their sigmas
    (inflated by ``sigma_inflation``) without the common body-size error. Invalid entries hold 0
    depth and infinite sigma.
    """

    depth_m: torch.Tensor
    sigma_m: torch.Tensor
    valid: torch.Tensor
    torso_depth_m: torch.Tensor
    torso_sigma_m: torch.Tensor
    torso_valid: torch.Tensor
    bones_depth_m: torch.Tensor
    bones_sigma_m: torch.Tensor
    bones_valid: torch.Tensor
    num_segments: torch.Tensor


def _pick(values: torch.Tensor, joints: Sequence[int]) -> torch.Tensor:
    """(P, J, *) values at ``joints`` -> (P, len(joints), *).

    One view per joint, stacked: indexing with a list would copy the list to the device, which a
    CUDA graph cannot capture.
    """
    return torch.stack([values[:, j] for j in joints], dim=1)


def _one_hot(joints: Sequence[int], like: torch.Tensor) -> torch.Tensor:
    """(len(joints), J) rows of the identity for (P, J, *) joint values ``like``."""
    eye = torch.eye(like.shape[1], dtype=like.dtype, device=like.device)
    return torch.stack([eye[j] for j in joints])


@dataclass(frozen=True)
class _SegmentNoise:
    """What :func:`_residual_covariance` needs of S segments that does not change with the depth:
    the (S, J) joint coefficients ``c``, their products ``c_kj c_lj`` (S, S, J) and the lengths'
    own variances ``(segment_rel_sigma L_k)^2`` on a diagonal (P, S, S). Built once per fit, so the
    Gauss-Newton steps do not repeat them (each repetition is a kernel in the CUDA graph)."""

    coefficients: torch.Tensor
    pair: torch.Tensor
    length_variance: torch.Tensor


def _segment_noise(coefficients: torch.Tensor, length_m: torch.Tensor, prior: BodyPrior) -> _SegmentNoise:
    """:class:`_SegmentNoise` of segments with joint ``coefficients`` (S, J) and lengths (P, S)."""
    return _SegmentNoise(coefficients, coefficients[:, None, :] * coefficients[None, :, :],
                         torch.diag_embed((prior.segment_rel_sigma * length_m) ** 2))


def _residual_covariance(
    noise: _SegmentNoise,
    direction: torch.Tensor,
    rays: torch.Tensor,
    rel: torch.Tensor,
    depth_m: torch.Tensor,
    ray_sigma: torch.Tensor | float,
    prior: BodyPrior,
) -> torch.Tensor:
    """(P, S, S) covariance of the residuals ``|D_k| - L_k`` for ``D_k = sum_j c_kj P_j``.

    Joint j at ``P_j = (Z + d_j) r_j`` moves across its ray by ``(Z + d_j) ray_sigma`` per image
    axis (2D noise ``sigma_px / f``) and along it by ``sigma_d r_j`` (relative-depth noise).
    Linearised, ``d|D_k| = u_k . dD_k`` with the unit ``direction`` u (P, S, 3), so segments
    sharing a joint are correlated. Each length adds its own ``(segment_rel_sigma L_k)^2``.
    """
    # Broadcast products rather than batched matmuls: the matrices are tiny (S <= 10, J = 17).
    lateral = ((depth_m[:, None] + rel) * ray_sigma) ** 2  # (P, J)
    in_plane = (direction[:, :, None, :2] * direction[:, None, :, :2]).sum(-1)  # (P, S, S)
    shared = (noise.pair * lateral[:, None, None, :]).sum(-1)
    # along[p, k, j] = c_kj (u_k . r_j): how joint j's depth noise moves residual k.
    along = noise.coefficients * (direction[:, :, None, :] * rays[:, None, :, :]).sum(-1)
    depth_part = (along[:, :, None] * along[:, None]).sum(-1)
    cov = in_plane * shared + prior.rel_depth_sigma_m**2 * depth_part
    return cov + noise.length_variance


def _whitened_products(
    cov: torch.Tensor, jacobian: torch.Tensor, residual: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``J^T Sigma^-1 J`` and ``J^T Sigma^-1 e`` (each (P,)) for SPD ``cov`` (P, S, S).

    Gaussian elimination of ``[Sigma | J e]`` without pivoting (fine for SPD matrices) gives
    ``Sigma = L D L^T`` and the right-hand sides ``L^-1 J`` and ``L^-1 e``, so the products are
    ``sum_k (L^-1 J)_k (L^-1 .)_k / D_k``. Unlike ``torch.linalg.solve`` it never checks for
    errors on the host, which a CUDA graph cannot capture.
    """
    m = torch.cat([cov, jacobian[..., None], residual[..., None]], dim=-1)  # (P, S, S + 2)
    pivots, whitened = [], []
    for _ in range(cov.shape[-1]):
        row = m[:, 0]
        pivots.append(row[:, 0])
        whitened.append(row[:, -2:])
        m = m[:, 1:, 1:] - m[:, 1:, :1] * (row[:, None, 1:] / row[:, None, :1])
    pivot = torch.stack(pivots, dim=1)  # (P, S): D
    whitened_j, whitened_e = torch.stack(whitened, dim=1).unbind(-1)  # (P, S): L^-1 J, L^-1 e
    return (whitened_j * whitened_j / pivot).sum(-1), (whitened_j * whitened_e / pivot).sum(-1)


def _scaled_pose(pose_rel_m: torch.Tensor, joint_set: JointSet, height_m: float,
                 canonical_height_m: float) -> torch.Tensor:
    """(P, J, 3) lifted poses, root at 0, scaled from the canonical body to one of ``height_m``."""
    root = pose_rel_m[:, joint_set.root : joint_set.root + 1]
    return (pose_rel_m - root) * (height_m / canonical_height_m)


def _closed_form(ray_a, ray_b, rel_a, rel_b, length_m) -> tuple[torch.Tensor, torch.Tensor]:
    """Depth of the ``b`` end at which the segment has ``length_m`` (MAR Eq. 7-8), and validity."""
    identity = torch.eye(3, dtype=ray_a.dtype, device=ray_a.device)
    return geometric_root_depth(ray_b[..., :2], ray_a[..., :2], rel_a - rel_b, identity, length_m)


def _closed_form_root(ray_a, ray_b, rel_a, rel_b, length_m) -> tuple[torch.Tensor, torch.Tensor]:
    """Root depth at which the segment ``a -> b`` alone has ``length_m``, and validity."""
    z_end, ok = _closed_form(ray_a, ray_b, rel_a, rel_b, length_m)
    return z_end - rel_b, ok


@dataclass(frozen=True)
class _BoneTerms:
    """The seen segments of P people as :func:`_gauss_newton_step` takes them: ``D_k = Z a_k +
    b_k`` (each (P, S, 3)), the use mask (P, S), the count of segments whose closed form exists
    (P,), and what does not change from step to step: the logs of the lifted lengths, 0 where
    unused (P, S), the coefficients' squares (S, J), the residuals' scale ``mask_k mask_l /
    (L_k L_l)`` and the unused segments' unit diagonal (P, S, S), and the :class:`_SegmentNoise`."""

    a: torch.Tensor
    b: torch.Tensor
    mask: torch.Tensor
    count: torch.Tensor
    log_lifted: torch.Tensor
    squared_coefficients: torch.Tensor
    lifted_outer: torch.Tensor
    mask_outer: torch.Tensor
    unused: torch.Tensor
    noise: _SegmentNoise


def _bone_terms(rays, rel, pose_m, seen, segments, prior) -> tuple[_BoneTerms, torch.Tensor, torch.Tensor]:
    """:class:`_BoneTerms`, the Gauss-Newton start (the mean of the per-segment closed forms) and
    the number of seen segments, each (P,)."""
    i, j = [a for a, _ in segments], [b for _, b in segments]
    coefficients = _one_hot(i, rays) - _one_hot(j, rays)  # (S, J)
    length = (_pick(pose_m, i) - _pick(pose_m, j)).norm(dim=-1)  # (P, S)
    rays_i, rays_j, rel_i, rel_j = _pick(rays, i), _pick(rays, j), _pick(rel, i), _pick(rel, j)
    a = rays_i - rays_j
    b = rel_i[..., None] * rays_i - rel_j[..., None] * rays_j
    z_root, ok = _closed_form_root(rays_i, rays_j, rel_i, rel_j, length)
    use = _pick(seen, i) & _pick(seen, j) & (length > 1e-3)
    start = use & ok
    count = start.sum(-1)
    z = torch.where(start, z_root, torch.zeros_like(z_root)).sum(-1) / count.clamp_min(1)
    mask = use.to(rays.dtype)
    lifted = torch.where(mask > 0, length, torch.ones_like(length))
    terms = _BoneTerms(
        a, b, mask, count, lifted.log(), coefficients.square(),
        lifted[:, :, None] * lifted[:, None, :], mask[:, :, None] * mask[:, None, :],
        torch.diag_embed(1 - mask), _segment_noise(coefficients, length, prior))
    return terms, z.clamp_min(_MIN_DEPTH_M), use.sum(-1)


def _bones_information(z, terms: _BoneTerms, rays, rel, ray_sigma, prior):
    """:func:`_gauss_newton_step` over ``terms``: the next depth and ``J^T Sigma^-1 J`` at ``z``."""
    return _gauss_newton_step(z, terms.a, terms.b, terms.mask, terms.count, terms.log_lifted,
                              terms.squared_coefficients, terms.lifted_outer, terms.mask_outer, terms.unused,
                              terms.noise.coefficients, terms.noise.pair, terms.noise.length_variance,
                              rays, rel, ray_sigma, prior)


def _bones(terms: _BoneTerms, start, rays, rel, ray_sigma, prior):
    """Least-squares root depth over the seen segments: (depth, sigma, valid), each (P,).

    Generalised least squares on log lengths (module docstring): the residuals' covariance (shared
    joints correlate segments) weights the Gauss-Newton steps, and
    ``sigma = (J^T Sigma^-1 J)^-1/2`` at the solution.
    """
    z, information = start, torch.zeros_like(start)
    for _ in range(_GAUSS_NEWTON_STEPS):
        z, information = _bones_information(z, terms, rays, rel, ray_sigma, prior)
    valid = (terms.count > 0) & (z > _MIN_DEPTH_M) & (information > 0)
    sigma = torch.where(valid, information.clamp_min(1e-12).rsqrt(), torch.full_like(z, math.inf))
    return torch.where(valid, z, torch.zeros_like(z)), sigma, valid


@compiled_once
def _gauss_newton_step(z, a, b, mask, count, log_lifted, squared_coefficients, lifted_outer,
                       mask_outer, unused, coefficients, pair, length_variance, rays, rel, ray_sigma, prior):
    """One step of :func:`_bones` (Gauss-Newton in ``log Z``): the new depth and ``J^T Sigma^-1 J``
    (with ``J = de/dZ``) at the old one, each (P,). A compiled region: the :class:`_BoneTerms` come
    as their tensors."""
    vector = z[:, None, None] * a + b
    norm = vector.norm(dim=-1).clamp_min(1e-9)
    direction = vector / norm[..., None]
    lateral = ((z[:, None] + rel) * ray_sigma) ** 2  # (P, J): 2D noise variance per image axis
    spread = (squared_coefficients[None] * lateral[:, None]).sum(-1)  # (P, S): s_k
    excess = spread * direction[..., 2].square() / norm.square()  # beta_k
    residual = (norm.log() - log_lifted - excess) * mask
    jacobian = (a * direction).sum(-1) / norm * mask
    noise = _SegmentNoise(coefficients, pair, length_variance)
    cov = _residual_covariance(noise, direction, rays, rel, z, ray_sigma, prior) / lifted_outer
    # Unused segments: decoupled unit-variance rows with zero residual and Jacobian.
    cov = cov * mask_outer + unused
    information, numerator = _whitened_products(cov, jacobian, residual)
    # The step in log Z (Jacobian Z J): log lengths are linear in log Z for segments seen side-on,
    # so a start far off is corrected in one step instead of crawling back from the clamp.
    log_step = (numerator / (z * information).clamp_min(1e-12)).clamp(-_MAX_LOG_STEP, _MAX_LOG_STEP)
    return torch.where(count > 0, (z * torch.exp(-log_step)).clamp_min(_MIN_DEPTH_M), z), information


def _midpoint_ray(rays: torch.Tensor, rel: torch.Tensor, depth_m: torch.Tensor) -> torch.Tensor:
    """(P, 3) ray of the 3D midpoint of two joints (P, 2, 3) when the root is at ``depth_m`` (P,)."""
    midpoint = ((depth_m[:, None] + rel)[..., None] * rays).mean(1)
    return midpoint / midpoint[:, 2:3].clamp_min(1e-9)


@compiled_once
def _torso_round(ray_hip, ray_sh, rays_hip, rays_sh, rel_hip, rel_sh, rels_hip, rels_sh, omega):
    """One round of :func:`_torso`: hip depth, its validity, root depth and the new midpoint rays."""
    z_hip, ok = _closed_form(ray_sh, ray_hip, rel_sh, rel_hip, omega)
    z_root = torch.where(ok, z_hip - rel_hip, torch.ones_like(z_hip))
    return (z_hip, ok, z_root, _midpoint_ray(rays_hip, rels_hip, z_root),
            _midpoint_ray(rays_sh, rels_sh, z_root))


@dataclass(frozen=True)
class _TorsoTerms:
    """The torso segment of P people: the midpoint rays (P, 3) and relative depths (P,) of hips and
    shoulders, the lifted torso length (P,) and the segment's :class:`_SegmentNoise`."""

    ray_hip: torch.Tensor
    ray_sh: torch.Tensor
    rel_hip: torch.Tensor
    rel_sh: torch.Tensor
    omega: torch.Tensor
    noise: _SegmentNoise


def _torso(rays, rel, pose_m, seen, hips, shoulders, ray_sigma, prior):
    """MAR's closed form on hip midpoint -> shoulder midpoint: (depth, sigma, valid), each (P,),
    and the :class:`_TorsoTerms` that give its sigma at another depth.

    The ray of a 3D midpoint depends a little on the depth (its two joints are at different depths),
    so the closed form is repeated with the midpoint rays at the previous depth, starting from the
    image midpoints; the error shrinks by about ``d / Z`` per round.
    """
    seen_all = _pick(seen, hips).all(-1) & _pick(seen, shoulders).all(-1)
    rays_hip, rays_sh = _pick(rays, hips), _pick(rays, shoulders)
    rels_hip, rels_sh = _pick(rel, hips), _pick(rel, shoulders)
    rel_hip, rel_sh = rels_hip.mean(1), rels_sh.mean(1)
    omega = (_pick(pose_m, shoulders).mean(1) - _pick(pose_m, hips).mean(1)).norm(dim=-1) * (
        prior.torso_keypoint_scale)
    ray_hip, ray_sh = rays_hip.mean(1), rays_sh.mean(1)
    for _ in range(_MIDPOINT_ROUNDS):
        z_hip, ok, z_root, ray_hip, ray_sh = _torso_round(
            ray_hip, ray_sh, rays_hip, rays_sh, rel_hip, rel_sh, rels_hip, rels_sh, omega)
    valid = seen_all & ok & (z_root > _MIN_DEPTH_M)
    coefficients = 0.5 * (_one_hot(shoulders, rays).sum(0) - _one_hot(hips, rays).sum(0))[None]
    torso = _TorsoTerms(ray_hip, ray_sh, rel_hip, rel_sh, omega,
                        _segment_noise(coefficients, omega[:, None], prior))
    sigma = _torso_sigma(z_root, torso, rays, rel, ray_sigma, prior)
    return (
        torch.where(valid, z_root, torch.zeros_like(z_root)),
        torch.where(valid, sigma, torch.full_like(sigma, math.inf)),
        valid,
        torso,
    )


def _torso_sigma(z_root, torso: _TorsoTerms, rays, rel, ray_sigma, prior) -> torch.Tensor:
    """(P,) sigma of the torso's root depth were the root at ``z_root``: the length residual's
    noise over its slope in depth."""
    z_hip = z_root + torso.rel_hip
    vector = (z_hip + torso.rel_sh - torso.rel_hip)[:, None] * torso.ray_sh - z_hip[:, None] * torso.ray_hip
    norm = vector.norm(dim=-1).clamp_min(1e-9)
    direction = vector / norm[..., None]
    jacobian = ((torso.ray_sh - torso.ray_hip) * direction).sum(-1)
    variance = _residual_covariance(torso.noise, direction[:, None], rays, rel, z_root, ray_sigma,
                                    prior)[:, 0, 0]
    return (variance / jacobian.square().clamp_min(1e-12)).sqrt()


def estimate_root_depth(
    rays: torch.Tensor,
    seen: torch.Tensor,
    pose_rel_m: torch.Tensor,
    joint_set: JointSet,
    focal_px: torch.Tensor | float,
    canonical_height_m: float,
    prior: BodyPrior = BodyPrior(),
    keypoint_sigma_px: torch.Tensor | float | None = None,
) -> RootDepth:
    """Root depths of P people from rays, seen flags and lifted poses.

    Batched with tensor operations of static shapes only (CUDA graphs capture it).

    Args:
        rays: (P, J, 3) undistorted normalised rays ``[x, y, 1]`` of the joints (any finite value
            where not seen).
        seen: (P, J) bool, True where the joint's 2D position is a detection (not inferred).
        pose_rel_m: (P, J, 3) lifted pose, root-relative, camera-aligned axes, metres, for a body of
            ``canonical_height_m``.
        joint_set: the joint set of the J joints (its ``root`` is the pelvis).
        focal_px: ``sqrt(fx * fy)`` of the image the keypoints were detected in (for the noise),
            one for all or (P,) per person.
        canonical_height_m: standing height of the body the lifted poses are sized for.
        prior: the body-size prior and noise levels.
        keypoint_sigma_px: 2D noise per axis, one for all or (P,); ``prior.keypoint_sigma_px``
            when None.
    """
    keypoint_sigma_px = prior.keypoint_sigma_px if keypoint_sigma_px is None else keypoint_sigma_px
    ray_sigma = keypoint_sigma_px / focal_px
    if isinstance(ray_sigma, torch.Tensor):
        ray_sigma = ray_sigma[:, None]  # per person, across its joints
    pose_m = _scaled_pose(pose_rel_m, joint_set, prior.height_m, canonical_height_m)
    rel = pose_m[..., 2]
    seen = seen.bool()
    segments = [(joint_set.index(a), joint_set.index(b)) for a, b in SEGMENTS]
    hips = [joint_set.index(n) for n in _HIPS]
    shoulders = [joint_set.index(n) for n in _SHOULDERS]
    bone_terms, start, count = _bone_terms(rays, rel, pose_m, seen, segments, prior)
    z_b, s_b, v_b = _bones(bone_terms, start, rays, rel, ray_sigma, prior)
    z_t, s_t, v_t, torso = _torso(rays, rel, pose_m, seen, hips, shoulders, ray_sigma, prior)
    s_b, s_t = s_b * prior.sigma_inflation, s_t * prior.sigma_inflation
    both = v_t & v_b
    # Eq. 12 with the bones as the "regressed" estimate; where only the torso exists, use it alone.
    # Each sigma grows with the depth it is evaluated at: taken at each cue's own estimate, the
    # weights would favour the nearer one, so both are taken at one depth, the first fusion's.
    finite_b = torch.nan_to_num(s_b, posinf=1.0)
    first, _ = fuse_depths(z_b, finite_b, z_t, torch.nan_to_num(s_t, posinf=1.0), both)
    common = torch.where(both, first, torch.ones_like(first))
    _, information = _bones_information(common, bone_terms, rays, rel, ray_sigma, prior)
    s_b_common = information.clamp_min(1e-12).rsqrt() * prior.sigma_inflation
    s_t_common = _torso_sigma(common, torso, rays, rel, ray_sigma, prior) * prior.sigma_inflation
    fused, fused_sigma = fuse_depths(z_b, torch.where(both, s_b_common, finite_b), z_t, s_t_common, both)
    depth = torch.where(v_b, fused, z_t)
    sigma_indep = torch.where(v_b, fused_sigma, s_t)
    valid = v_b | v_t
    sigma = torch.sqrt(sigma_indep**2 + (depth * prior.height_sigma_m / prior.height_m) ** 2)
    return RootDepth(
        depth_m=torch.where(valid, depth, torch.zeros_like(depth)),
        sigma_m=torch.where(valid, sigma, torch.full_like(sigma, math.inf)),
        valid=valid,
        torso_depth_m=z_t,
        torso_sigma_m=s_t,
        torso_valid=v_t,
        bones_depth_m=z_b,
        bones_sigma_m=s_b,
        bones_valid=v_b,
        num_segments=count,
    )


def segment_root_depths(
    rays: torch.Tensor,
    seen: torch.Tensor,
    pose_rel_m: torch.Tensor,
    joint_set: JointSet,
    canonical_height_m: float,
    height_m: float = BodyPrior.height_m,
) -> torch.Tensor:
    """(P, S + 1) root depth each segment of :data:`SEGMENTS`, then the torso, gives on its own.

    The closed form of MAR Eq. 7-8 per segment (the torso on the image midpoints of hips and
    shoulders), with the lifted pose scaled to a body of ``height_m``; NaN where an end is not seen
    or the segment has no solution. Diagnostics only: a segment whose depths lie off the others'
    shows where the lifted body and what the 2D model marks disagree.
    """
    pose_m = _scaled_pose(pose_rel_m, joint_set, height_m, canonical_height_m)
    rel = pose_m[..., 2]
    seen = seen.bool()
    pairs = [([joint_set.index(a)], [joint_set.index(b)]) for a, b in SEGMENTS]
    pairs.append(([joint_set.index(n) for n in _HIPS], [joint_set.index(n) for n in _SHOULDERS]))
    depths = []
    for a, b in pairs:
        ray_a, ray_b = _pick(rays, a).mean(1), _pick(rays, b).mean(1)
        rel_a, rel_b = _pick(rel, a).mean(1), _pick(rel, b).mean(1)
        length = (_pick(pose_m, a).mean(1) - _pick(pose_m, b).mean(1)).norm(dim=-1)
        z_root, ok = _closed_form_root(ray_a, ray_b, rel_a, rel_b, length)
        use = ok & _pick(seen, a).all(-1) & _pick(seen, b).all(-1) & (z_root > _MIN_DEPTH_M)
        depths.append(torch.where(use, z_root, torch.full_like(z_root, math.nan)))
    return torch.stack(depths, dim=-1)


def estimate_root_depth_px(
    uv_px: np.ndarray,
    seen: np.ndarray,
    pose_rel_m: np.ndarray,
    intrinsics: Intrinsics,
    joint_set: JointSet,
    canonical_height_m: float,
    prior: BodyPrior = BodyPrior(),
    keypoint_sigma_px: float | None = None,
) -> RootDepth:
    """:func:`estimate_root_depth` from (P, J, 2) observed (distorted) pixels and live intrinsics."""
    uv = np.where(np.asarray(seen)[..., None], np.asarray(uv_px, dtype=np.float64), 0.0)
    rays = torch.from_numpy(pixel_rays(uv, intrinsics))
    return estimate_root_depth(
        rays,
        torch.from_numpy(np.asarray(seen, dtype=bool)),
        torch.as_tensor(np.asarray(pose_rel_m, dtype=np.float64)),
        joint_set,
        math.sqrt(intrinsics.fx * intrinsics.fy),
        canonical_height_m,
        prior,
        keypoint_sigma_px,
    )
