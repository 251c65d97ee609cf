"""Whose skeleton did each matched person get? A check of the MuPoTS identity matching.

The MuPoTS protocol (:func:`mp3d_ros.evaluation.metrics.match_people_mupots`) walks the annotated
people in their file order, and each takes the free prediction with the most joints within 40 px
in x and y. That threshold was set for MuPoTS's 2048 x 2048 and 1920 x 1080 frames with up to three
people. In crowded scenes with small, far people, a far person listed first can take the
prediction of a nearer person standing in front of them, and the near person then takes another
or none. Every figure over "matched people" (MRPE, PCK_root, matched PCK) then scores some
predictions against the wrong person, whatever their depth.

This module measures how often that happens and what the root error is without it. Neither is
part of the protocol, whose figures stay as published:

- **2D fit** of a prediction to an annotated person: the median, over the MuPoTS matching joints
  both have, of the 2D joint distance over the diagonal of the person's annotated 2D extent (0 is
  the same skeleton, 0.1 is a tenth of the person's size off);
- **misassigned**: a protocol match whose prediction fits another annotated person of the frame
  better than the one it was given;
- **one to one**: people and predictions paired to minimise the summed 2D fit (Hungarian,
  :func:`scipy.optimize.linear_sum_assignment`), keeping pairs that fit within ``max_fit``.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from mp3d_ros.evaluation.metrics import (
    MATCHING_JOINTS,
    ROOT,
    FrameGroundTruth,
    FramePrediction,
    match_people_mupots,
    mrpe,
    predicted_joints_present,
)

__all__ = ["skeleton_fit", "match_one_to_one", "check_identities", "format_identity_check"]

_MIN_SHARED_JOINTS = 3
MAX_FIT = 0.25  # a quarter of the person's size: a looser pair is not that person's skeleton


def skeleton_fit(gt_uv_px: np.ndarray, gt_labelled: np.ndarray, pred_uv_px: np.ndarray) -> np.ndarray:
    """(G, P) 2D fit of each prediction to each annotated person (module docstring); infinite where
    they share fewer than three matching joints.

    Args:
        gt_uv_px: (G, 17, 2) annotated joint pixels, MuPoTS-17 order.
        gt_labelled: (G, 17) bool, joint annotated.
        pred_uv_px: (P, 17, 2) predicted joint pixels; NaN or exactly (0, 0) marks a missing joint.
    """
    gt = np.asarray(gt_uv_px, dtype=np.float64)
    pred = np.asarray(pred_uv_px, dtype=np.float64)
    labelled = np.asarray(gt_labelled, dtype=bool) & np.isfinite(gt).all(-1)
    present = predicted_joints_present(pred)
    if not len(gt) or not len(pred):
        return np.full((len(gt), len(pred)), np.inf)
    masked = np.where(labelled[..., None], gt, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # people with no labelled joint
        extent = np.nanmax(masked, axis=1) - np.nanmin(masked, axis=1)  # (G, 2)
    size = np.maximum(np.nan_to_num(np.hypot(extent[:, 0], extent[:, 1])), 1.0)
    shared = (labelled[:, None] & present[None])[:, :, MATCHING_JOINTS]  # (G, P, 13)
    distance = np.linalg.norm(gt[:, None, MATCHING_JOINTS] - pred[None, :, MATCHING_JOINTS], axis=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # pairs sharing no joint: all-NaN medians
        median = np.nanmedian(np.where(shared, distance, np.nan), axis=-1)
    fit = median / size[:, None]
    return np.where(shared.sum(-1) >= _MIN_SHARED_JOINTS, fit, np.inf)


def match_one_to_one(fit: np.ndarray, max_fit: float = MAX_FIT) -> np.ndarray:
    """(G,) prediction index per annotated person, or -1: the assignment of least summed ``fit``
    (G, P), pairs fitting worse than ``max_fit`` dropped."""
    matching = np.full(fit.shape[0], -1, dtype=np.int64)
    if not fit.size:
        return matching
    usable = np.isfinite(fit) & (fit < max_fit)
    # Pairs that may not be taken cost more than all usable pairs together, so the solver takes
    # them only where nothing usable is left, and they are dropped afterwards.
    cost = np.where(usable, fit, max_fit * (min(fit.shape) + 1))
    rows, cols = linear_sum_assignment(cost)
    keep = usable[rows, cols]
    matching[rows[keep]] = cols[keep]
    return matching


def _root_deltas_mm(pred: FramePrediction, gt_root_mm: np.ndarray, matching: np.ndarray) -> np.ndarray:
    """(M, 3) predicted minus true root of the M people ``matching`` pairs with a prediction."""
    matched = np.flatnonzero(matching >= 0)
    return pred.keypoints_mm[matching[matched], ROOT] - gt_root_mm[matched]


def _mrpe_mm(delta_mm: np.ndarray) -> float:
    """MRPE (:func:`~mp3d_ros.evaluation.metrics.mrpe`) over the finite (N, 3) root deltas."""
    return mrpe(delta_mm[np.isfinite(delta_mm).all(-1)])["total"]


def check_identities(
    predictions: Sequence[FramePrediction], ground_truth: Sequence[FrameGroundTruth],
    max_fit: float = MAX_FIT,
) -> dict:
    """How many protocol matches are misassigned, and MRPE with and without them (module docstring).

    Returns:
        ``{"protocol": {"matched", "misassigned", "mrpe_mm", "mrpe_mm_misassigned",
        "mrpe_mm_rest"}, "one_to_one": {"matched", "mrpe_mm"}, "max_fit"}``; MRPE is the mean
        Euclidean root error in millimetres over the people with a finite root (NaN when none).
    """
    protocol: list[np.ndarray] = []
    misassigned: list[np.ndarray] = []
    one_to_one: list[np.ndarray] = []
    for pred, gt in zip(predictions, ground_truth):
        keep = gt.valid
        gt_uv, gt_labelled, gt_root = gt.uv_px[keep], gt.labelled[keep], gt.keypoints_mm[keep, ROOT]
        greedy = match_people_mupots(gt_uv, gt_labelled, pred.uv_px)
        fit = skeleton_fit(gt_uv, gt_labelled, pred.uv_px)
        people = np.flatnonzero(greedy >= 0)
        given = fit[people, greedy[people]]
        others = fit[:, greedy[people]].copy()  # (G, M): every person's fit to each matched prediction
        others[people, np.arange(len(people))] = np.inf
        misassigned.append(others.min(axis=0, initial=np.inf) < given)
        protocol.append(_root_deltas_mm(pred, gt_root, greedy))
        one_to_one.append(_root_deltas_mm(pred, gt_root, match_one_to_one(fit, max_fit)))
    wrong = np.concatenate([np.zeros(0, dtype=bool), *misassigned])
    errors = np.concatenate([np.zeros((0, 3)), *protocol])
    paired = np.concatenate([np.zeros((0, 3)), *one_to_one])
    return {
        "protocol": {
            "matched": len(errors), "misassigned": int(wrong.sum()), "mrpe_mm": _mrpe_mm(errors),
            "mrpe_mm_misassigned": _mrpe_mm(errors[wrong]), "mrpe_mm_rest": _mrpe_mm(errors[~wrong]),
        },
        "one_to_one": {"matched": len(paired), "mrpe_mm": _mrpe_mm(paired)},
        "max_fit": max_fit,
    }


def format_identity_check(result: dict) -> str:
    """Two lines on :func:`check_identities`' result."""
    protocol, paired = result["protocol"], result["one_to_one"]
    share = 100.0 * protocol["misassigned"] / max(protocol["matched"], 1)
    return (f"identity check (not part of the protocol): {protocol['misassigned']} of "
            f"{protocol['matched']} matched people ({share:.1f} %) got a prediction whose 2D skeleton "
            f"fits another annotated person better (MRPE {protocol['mrpe_mm_misassigned']:.0f} mm; "
            f"the rest {protocol['mrpe_mm_rest']:.0f} mm)\n"
            f"matched one to one by 2D fit (median joint error < {result['max_fit']:g} of the person's "
            f"size): {paired['matched']} people, MRPE {paired['mrpe_mm']:.0f} mm")
