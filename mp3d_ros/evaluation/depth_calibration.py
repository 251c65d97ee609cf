"""Measuring what a root-depth sigma is made of, and how far the reported sigma is from honest.

The body-size and floor cues report sigmas from noise levels (2D keypoint error, lifted
relative-depth error, segment proportions, ankle height: :class:`mp3d_ros.geometry.absolute_depth.BodyPrior`,
:class:`mp3d_ros.geometry.floor.FloorConfig`). These helpers measure those levels against ground
truth, robustly (the detector's errors are heavy-tailed: swapped left/right joints), and find the
one factor that brings a cue's errors to a nominal coverage where the measured levels alone do
not (correlated or biased errors). ``benchmarks/calibrate_depth_sigma.py`` uses them on renders.
"""

from __future__ import annotations

import math

import numpy as np

from mp3d_ros.evaluation.depth_bias import gated_assignment

__all__ = ["ONE_SIGMA", "MAD_TO_SD", "inflation_for_coverage", "match_keypoints", "rms_over_joints",
           "robust_sd", "within_sigma"]

ONE_SIGMA = math.erf(1.0 / math.sqrt(2.0))  # 0.6827: the fraction of a Gaussian within 1 sd
MAD_TO_SD = 1.4826  # sd / median absolute deviation of a Gaussian


def robust_sd(values: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """Standard deviation from the median absolute deviation about the median,
    ``1.4826 * median(|x - median(x)|)``: the sd for Gaussian values, blind to a minority of
    outliers. NaN for no values."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return float("nan")
    centre = np.median(values, axis=axis, keepdims=True)
    spread = MAD_TO_SD * np.median(np.abs(values - centre), axis=axis)
    return float(spread) if np.ndim(spread) == 0 else spread


def rms_over_joints(errors: np.ndarray, joints: np.ndarray) -> float:
    """One sigma for errors of several joints (N,) with joint labels (N,): the RMS over the joints
    of each joint's :func:`robust_sd`, so each joint weighs the same and each one's outliers are
    left out (a pooled robust sd would mostly see the joints with small errors)."""
    errors, joints = np.asarray(errors, dtype=np.float64), np.asarray(joints)
    if errors.shape != joints.shape:
        raise ValueError(f"errors {errors.shape} and joints {joints.shape} must have one shape")
    if errors.size == 0:
        return float("nan")
    return float(np.sqrt(np.mean([robust_sd(errors[joints == j]) ** 2 for j in np.unique(joints)])))


def within_sigma(errors: np.ndarray, sigmas: np.ndarray, k: float = 1.0) -> float:
    """Fraction of ``|errors| <= k * sigmas`` (NaN for none)."""
    errors, sigmas = np.asarray(errors, dtype=np.float64), np.asarray(sigmas, dtype=np.float64)
    return float(np.mean(np.abs(errors) <= k * sigmas)) if errors.size else float("nan")


def inflation_for_coverage(errors: np.ndarray, sigmas: np.ndarray, fixed_sigmas: np.ndarray | None = None,
                           coverage: float = ONE_SIGMA) -> float:
    """The factor ``f`` for which a fraction ``coverage`` of ``|e| <= sqrt((f s)^2 + c^2)``.

    ``s`` (``sigmas``) is the part of the sigma to inflate, ``c`` (``fixed_sigmas``, default 0) a
    part left as it is (added in quadrature). Sample i is covered from
    ``f_i = sqrt(max(e_i^2 - c_i^2, 0)) / s_i`` on, so ``f`` is the ``coverage`` quantile of the
    ``f_i``. NaN for no samples.

    Args:
        errors: (N,) estimate minus truth.
        sigmas: (N,) > 0, the inflated part of each reported sigma.
        fixed_sigmas: (N,) >= 0 or None.
        coverage: the fraction to cover, in (0, 1); 0.6827 for 1 sigma.
    """
    errors, sigmas = np.asarray(errors, dtype=np.float64), np.asarray(sigmas, dtype=np.float64)
    if errors.shape != sigmas.shape:
        raise ValueError(f"errors {errors.shape} and sigmas {sigmas.shape} must have one shape")
    if not 0.0 < coverage < 1.0:
        raise ValueError(f"coverage must be in (0, 1), got {coverage}")
    if errors.size == 0:
        return float("nan")
    if np.any(~(sigmas > 0)):
        raise ValueError("sigmas must be positive")
    fixed = np.zeros_like(sigmas) if fixed_sigmas is None else np.asarray(fixed_sigmas, dtype=np.float64)
    needed = np.sqrt(np.maximum(errors**2 - fixed**2, 0.0)) / sigmas
    return float(np.quantile(needed, coverage))


def match_keypoints(predicted_uv_px: np.ndarray, predicted_seen: np.ndarray, truth_uv_px: np.ndarray,
                    gate_px: float, min_joints: int = 3) -> list[tuple[int, int]]:
    """Pairs ``(predicted, truth)`` of people by their keypoints: Hungarian assignment on the
    median distance over the predicted person's seen joints; a pair needs ``min_joints`` seen
    joints and a median under ``gate_px``. Sorted by predicted index.

    Args:
        predicted_uv_px: (P, J, 2) detected keypoints.
        predicted_seen: (P, J) bool, which detected keypoints count.
        truth_uv_px: (T, J, 2) the true joints of the same J, projected.
    """
    predicted = np.asarray(predicted_uv_px, dtype=np.float64)
    seen = np.asarray(predicted_seen, dtype=bool)
    truth = np.asarray(truth_uv_px, dtype=np.float64)
    if len(predicted) == 0 or len(truth) == 0:
        return []
    distance = np.linalg.norm(predicted[:, None] - truth[None], axis=-1)  # (P, T, J)
    cost = np.full(distance.shape[:2], np.inf)
    for p in np.flatnonzero(seen.sum(axis=1) >= min_joints):
        cost[p] = np.median(distance[p][:, seen[p]], axis=1)
    return gated_assignment(cost, gate_px)  # a NaN truth never matches
