"""Multi-person 3D pose metrics, computed the way the published evaluation code computes them.

MuPoTS-3D (:func:`evaluate_mupots`) follows ``mpii_mupots_multiperson_eval.m`` with its helpers
(``mpii_multiperson_get_identity_matching.m``, ``mpii_map_to_gt_bone_lengths.m``,
``mpii_get_joints.m``, ``mpii_compute_3d_pck.m``) as released with 3DMPPE and SMAP, SMAP's
``cal_ordinal.m`` for PCOD and RootNet's ``MuPoTS_eval.py`` for AP_root^25:

- joints in MuPoTS-17 order (:data:`mp3d_ros.geometry.skeleton.MUPOTS_17`), millimetres; PCK/AUC over
  joints 1-14 (head_top .. left_ankle); joint groups head, neck, shoulder, elbow, wrist, hip,
  knee, ankle;
- matching per frame: ground-truth people in order, each takes the not-yet-matched prediction
  with the most of joints 2-14 within 40 px in **both** x and y (strict ``<``; a predicted joint at
  (0, 0) or non-finite is missing; ties go to the first prediction); none when that count is 0;
- a matched prediction is rescaled to the ground-truth bone lengths along the official parent
  table (``o1``: head_top and head hang from the neck), walking outward from the pelvis, which
  keeps its predicted position; each bone keeps its predicted direction. A zero-length or NaN
  predicted bone gives NaN (MATLAB's 0/0), which propagates to the joints below it;
- PCK_rel centres both poses at their pelvis first, PCK_abs does not; a joint is correct when its
  error is ``< 150`` mm (NaN is never correct); AUC is the mean PCK over 0, 5, ..., 150 mm, so a
  perfect pose scores 30/31 (nothing is ``< 0``);
- "all people" gives an unmatched ground truth the official placeholder prediction (100 m on every
  axis), failing every joint; "matched people" skips it; each figure is the mean of the
  per-sequence values (sequences with nobody to score are left out of that mean);
- PCK_root: pelvis of the absolute, matched pose within 250 mm (same modes and averaging);
- PCOD (``cal_ordinal``): for every pair of scored people in a frame, correct when
  ``(Zgt_a - Zgt_b)(Zpred_a - Zpred_b) > 0`` or both differences are under 300 mm; in "all people"
  an unmatched person's predicted depth is the placeholder, exactly as the official script does;
  per-sequence correct/total, then the mean over sequences with at least one pair;
- AP_root^25: all predictions sorted by score (stable: ties keep their input order); each is
  compared with the **nearest** valid ground-truth root of its image and is a true positive when
  that root is < 250 mm away and not taken yet (a taken nearest root makes it a false positive,
  as in RootNet's code); predictions in images without valid ground truth are skipped; recall is
  over all valid ground truth; ``AP = sum_n precision[n+1] (recall[n+1] - recall[n])`` (the
  official sum, which drops the first step). Reported in percent.

CMU Panoptic (:func:`evaluate_panoptic`) follows SMAP's ``test_util_panoptic.py``; Human3.6M
(:func:`evaluate_h36m`) RootNet's and PoseNet's ``Human36M.evaluate``. Their conventions are in
:data:`PANOPTIC_CONVENTIONS` and :data:`H36M_CONVENTIONS`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from mp3d_ros.geometry.skeleton import MUPOTS_17

__all__ = [
    "FramePrediction",
    "FrameGroundTruth",
    "JOINT_GROUPS",
    "match_people_mupots",
    "match_people_by_root",
    "predicted_joints_present",
    "mrpe",
    "rescale_to_gt_bones",
    "ap_root",
    "evaluate_mupots",
    "evaluate_panoptic",
    "evaluate_h36m",
    "MUPOTS_CONVENTIONS",
    "PANOPTIC_CONVENTIONS",
    "H36M_CONVENTIONS",
]

_J = MUPOTS_17.num_joints
ROOT = MUPOTS_17.root
PCK_JOINTS = np.arange(14)  # joints 1-14 of the official 1-based numbering
MATCHING_JOINTS = np.arange(1, 14)  # joints 2-14
AUC_THRESHOLDS_MM = np.arange(0.0, 151.0, 5.0)
UNMATCHED_PLACEHOLDER_MM = 100000.0  # the official script's stand-in for a missing prediction

# Official parent table o1 of mpii_get_joints('relevant') and traversal order
# safe_traversal_order(2:end), by name (1-based o1 = [2 16 2 3 4 2 6 7 15 9 10 15 12 13 15 15 2]).
_PARENT_NAMES = {
    "head_top": "neck", "neck": "spine", "right_shoulder": "neck", "right_elbow": "right_shoulder",
    "right_wrist": "right_elbow", "left_shoulder": "neck", "left_elbow": "left_shoulder",
    "left_wrist": "left_elbow", "right_hip": "pelvis", "right_knee": "right_hip",
    "right_ankle": "right_knee", "left_hip": "pelvis", "left_knee": "left_hip",
    "left_ankle": "left_knee", "pelvis": "pelvis", "spine": "pelvis", "head": "neck",
}
OFFICIAL_PARENTS = np.array([MUPOTS_17.index(_PARENT_NAMES[n]) for n in MUPOTS_17.joints])
TRAVERSAL_ORDER = np.array([MUPOTS_17.index(n) for n in (
    "spine", "neck", "head_top", "head", "right_shoulder", "right_elbow", "right_wrist",
    "left_shoulder", "left_elbow", "left_wrist", "right_hip", "right_knee", "right_ankle",
    "left_hip", "left_knee", "left_ankle",
)])
JOINT_GROUPS: dict[str, tuple[int, ...]] = {
    group: tuple(MUPOTS_17.index(n) for n in names) for group, names in (
        ("head", ("head_top",)), ("neck", ("neck",)),
        ("shoulder", ("right_shoulder", "left_shoulder")),
        ("elbow", ("right_elbow", "left_elbow")), ("wrist", ("right_wrist", "left_wrist")),
        ("hip", ("right_hip", "left_hip")), ("knee", ("right_knee", "left_knee")),
        ("ankle", ("right_ankle", "left_ankle")),
    )
}


def _checked(value: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == len(shape) and len(shape) >= 2 and array.shape[1] != shape[1]:
        raise ValueError(f"{what} has {array.shape[1]} joints; metrics need the mupots_17 order "
                         f"({_J} joints)")
    if array.shape != shape:
        raise ValueError(f"{what} has shape {array.shape}, expected {shape}")
    return array


@dataclass(frozen=True, eq=False)
class FramePrediction:
    """People predicted in one frame, MuPoTS-17 order. P people.

    Attributes:
        uv_px: (P, 17, 2) joint pixels; NaN or exactly (0, 0) marks a missing joint.
        keypoints_mm: (P, 17, 3) camera-frame joints in millimetres; NaN joints are never correct.
        score: (P,) person score (AP_root ranking), finite.
    """

    uv_px: np.ndarray
    keypoints_mm: np.ndarray
    score: np.ndarray

    def __post_init__(self) -> None:
        count = len(np.asarray(self.score).reshape(-1))
        object.__setattr__(self, "uv_px", _checked(self.uv_px, (count, _J, 2), "prediction uv_px"))
        object.__setattr__(self, "keypoints_mm",
                           _checked(self.keypoints_mm, (count, _J, 3), "prediction keypoints_mm"))
        score = np.asarray(self.score, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(score)):
            raise ValueError(f"prediction score must be finite, got {score.tolist()}")
        object.__setattr__(self, "score", score)

    def __len__(self) -> int:
        return len(self.score)


@dataclass(frozen=True, eq=False)
class FrameGroundTruth:
    """Annotated people of one frame, MuPoTS-17 order. G people.

    Attributes:
        sequence: sequence the frame belongs to (per-sequence averaging, activity tables).
        uv_px: (G, 17, 2) joint pixels.
        keypoints_mm: (G, 17, 3) camera-frame joints in millimetres.
        labelled: (G, 17) bool, joint annotated (default: finite in both arrays).
        visible: (G, 17) bool, joint visible (default: labelled); Panoptic scores only people
            whose pelvis is visible.
        valid: (G,) bool, person evaluated at all (MuPoTS ``isValidFrame``; default all True).
    """

    sequence: str
    uv_px: np.ndarray
    keypoints_mm: np.ndarray
    labelled: np.ndarray = field(default=None)  # type: ignore[assignment]
    visible: np.ndarray = field(default=None)  # type: ignore[assignment]
    valid: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        count = len(np.asarray(self.keypoints_mm))
        uv = _checked(self.uv_px, (count, _J, 2), "ground truth uv_px")
        xyz = _checked(self.keypoints_mm, (count, _J, 3), "ground truth keypoints_mm")
        labelled = (np.isfinite(uv).all(-1) & np.isfinite(xyz).all(-1) if self.labelled is None
                    else np.asarray(self.labelled, dtype=bool))
        visible = labelled if self.visible is None else np.asarray(self.visible, dtype=bool)
        valid = np.ones(count, bool) if self.valid is None else np.asarray(self.valid, dtype=bool)
        for name, value, shape in (("labelled", labelled, (count, _J)),
                                   ("visible", visible, (count, _J)), ("valid", valid, (count,))):
            if value.shape != shape:
                raise ValueError(f"ground truth {name} has shape {value.shape}, expected {shape}")
        for name, value in (("uv_px", uv), ("keypoints_mm", xyz), ("labelled", labelled),
                            ("visible", visible & labelled), ("valid", valid)):
            object.__setattr__(self, name, value)


def predicted_joints_present(uv_px: np.ndarray) -> np.ndarray:
    """(..., J) bool: a predicted 2D joint exists (finite and not the (0, 0) 'missing' marker)."""
    finite = np.isfinite(uv_px).all(-1)
    origin = (np.nan_to_num(uv_px) == 0).all(-1)
    return finite & ~origin


def match_people_mupots(
    gt_uv_px: np.ndarray, gt_labelled: np.ndarray, pred_uv_px: np.ndarray, threshold_px: float = 40.0
) -> np.ndarray:
    """Official greedy identity matching; returns (G,) prediction index per ground truth or -1.

    Ground truths in order each take the unmatched prediction with the most joints 2-14 within
    ``threshold_px`` in both x and y (counting joints present in both); the first prediction wins
    ties; a count of 0 means no match.
    """
    gt = np.asarray(gt_uv_px, dtype=np.float64)[:, MATCHING_JOINTS]
    pred = np.asarray(pred_uv_px, dtype=np.float64)[:, MATCHING_JOINTS]
    gt_ok = np.asarray(gt_labelled, dtype=bool)[:, MATCHING_JOINTS] & np.isfinite(gt).all(-1)
    pred_ok = predicted_joints_present(pred)
    with np.errstate(invalid="ignore"):
        close = (np.abs(gt[:, None] - pred[None]) < threshold_px).all(-1)  # (G, P, 13)
    counts = (close & gt_ok[:, None] & pred_ok[None]).sum(-1)
    matching = np.full(len(gt), -1, dtype=np.int64)
    taken = np.zeros(len(pred), dtype=bool)
    for g in range(len(gt)):
        scores = np.where(taken, 0, counts[g])
        if len(scores) and scores.max() > 0:
            matching[g] = int(np.argmax(scores))
            taken[matching[g]] = True
    return matching


def match_people_by_root(
    gt_root_uv_px: np.ndarray, pred_root_uv_px: np.ndarray, threshold_px: float = 30.0
) -> np.ndarray:
    """SMAP's Panoptic matching: (G,) prediction index per ground truth or -1.

    Repeatedly pairs the globally closest free (ground truth, prediction) roots while their 2D
    distance is ``< threshold_px``; equal distances are taken in row-major order.
    """
    gt = np.asarray(gt_root_uv_px, dtype=np.float64).reshape(-1, 2)
    pred = np.asarray(pred_root_uv_px, dtype=np.float64).reshape(-1, 2)
    distance = np.linalg.norm(gt[:, None] - pred[None], axis=-1)
    distance[:, ~predicted_joints_present(pred)] = np.inf
    distance[~np.isfinite(distance)] = np.inf
    matching = np.full(len(gt), -1, dtype=np.int64)
    taken = np.zeros(len(pred), dtype=bool)
    for flat in np.argsort(distance, axis=None, kind="stable"):
        g, p = divmod(int(flat), len(pred))
        if not distance[g, p] < threshold_px:
            break
        if matching[g] < 0 and not taken[p]:
            matching[g], taken[p] = p, True
    return matching


def rescale_to_gt_bones(pred_mm: np.ndarray, gt_mm: np.ndarray) -> np.ndarray:
    """``mpii_map_to_gt_bone_lengths``: (N, 17, 3) predictions with the ground truth's bone lengths.

    Walking :data:`TRAVERSAL_ORDER`, joint j becomes ``new[parent] + b * |gt_j - gt_parent| / |b|``
    with ``b = pred_j - pred_parent`` (the original predicted bone). The pelvis is kept.
    """
    pred = np.asarray(pred_mm, dtype=np.float64)
    gt = np.asarray(gt_mm, dtype=np.float64)
    out = pred.copy()
    with np.errstate(invalid="ignore", divide="ignore"):
        for j in TRAVERSAL_ORDER:
            parent = OFFICIAL_PARENTS[j]
            gt_length = np.linalg.norm(gt[:, j] - gt[:, parent], axis=-1, keepdims=True)
            bone = pred[:, j] - pred[:, parent]
            length = np.linalg.norm(bone, axis=-1, keepdims=True)
            scaled = np.where(length > 0, bone * gt_length / np.where(length > 0, length, 1), np.nan)
            out[:, j] = out[:, parent] + scaled
    return out


@dataclass(frozen=True)
class _FrameScores:
    """Per-person results of one frame (G valid ground-truth people)."""

    sequence: str
    matched: np.ndarray  # (G,) bool
    error_rel_mm: np.ndarray  # (G, 17), placeholder errors where unmatched
    error_abs_mm: np.ndarray  # (G, 17)
    root_delta_mm: np.ndarray  # (G, 3) predicted minus true pelvis, NaN where unmatched
    ordinal: tuple[int, int, int, int]  # correct / total pairs, all people then matched people


def _ordinal_counts(pred_z: np.ndarray, gt_z: np.ndarray,
                    threshold_mm: float = 300.0) -> tuple[int, int]:
    """``cal_ordinal`` over every pair: (correct, total)."""
    a, b = np.triu_indices(len(gt_z), k=1)
    if len(a) == 0:
        return 0, 0
    d_gt, d_pred = gt_z[b] - gt_z[a], pred_z[b] - pred_z[a]
    with np.errstate(invalid="ignore"):
        both_close = (np.abs(d_gt) < threshold_mm) & (np.abs(d_pred) < threshold_mm)
        correct = (d_gt * d_pred > 0) | both_close
    return int(correct.sum()), len(a)


def _aligned_errors(chosen_mm: np.ndarray, gt_mm: np.ndarray, matched: np.ndarray,
                    relative: bool) -> tuple[np.ndarray, np.ndarray]:
    """(G, 17) errors and (G, 17, 3) scored predictions: matched ones rescaled to the true
    bones (after centring both at the pelvis when ``relative``), the placeholder elsewhere."""
    if relative:
        chosen_mm = chosen_mm - chosen_mm[:, ROOT:ROOT + 1]
        gt_mm = gt_mm - gt_mm[:, ROOT:ROOT + 1]
    placeholder = np.full_like(gt_mm, UNMATCHED_PLACEHOLDER_MM)
    scored = np.where(matched[:, None, None], rescale_to_gt_bones(chosen_mm, gt_mm), placeholder)
    return np.linalg.norm(scored - gt_mm, axis=-1), scored


def _score_frame(pred: FramePrediction, gt: FrameGroundTruth, threshold_px: float) -> _FrameScores:
    keep = gt.valid
    gt_uv, gt_lab = gt.uv_px[keep], gt.labelled[keep]
    gt_xyz = np.where(gt_lab[..., None], gt.keypoints_mm[keep], np.nan)
    matching = match_people_mupots(gt_uv, gt_lab, pred.uv_px, threshold_px)
    matched = matching >= 0
    chosen = (pred.keypoints_mm[np.where(matched, matching, 0)] if len(pred)
              else np.full_like(gt_xyz, UNMATCHED_PLACEHOLDER_MM))
    error_rel, _ = _aligned_errors(chosen, gt_xyz, matched, relative=True)
    error_abs, scored = _aligned_errors(chosen, gt_xyz, matched, relative=False)
    # PCOD reads the pelvis depth of the scored absolute pose, placeholder included (official).
    pred_z, gt_z = scored[:, ROOT, 2], gt_xyz[:, ROOT, 2]
    ordinal = _ordinal_counts(pred_z, gt_z) + _ordinal_counts(pred_z[matched], gt_z[matched])
    delta = np.where(matched[:, None], chosen[:, ROOT] - gt_xyz[:, ROOT], np.nan)
    return _FrameScores(gt.sequence, matched, error_rel, error_abs, delta, ordinal)


def _pck(errors: np.ndarray, threshold: float) -> float:
    with np.errstate(invalid="ignore"):
        return float(100.0 * np.mean(errors < threshold)) if errors.size else float("nan")


def _mode_summary(rel: np.ndarray, abs_: np.ndarray, pairs: tuple[int, int], root_mm: float,
                  pck_mm: float) -> dict[str, float]:
    """Metrics of one sequence in one mode from its (N, 17) error rows."""
    out = {
        "pck_rel": _pck(rel[:, PCK_JOINTS], pck_mm),
        "pck_abs": _pck(abs_[:, PCK_JOINTS], pck_mm),
        "auc_rel": float(np.mean([_pck(rel[:, PCK_JOINTS], t) for t in AUC_THRESHOLDS_MM])),
        "auc_abs": float(np.mean([_pck(abs_[:, PCK_JOINTS], t) for t in AUC_THRESHOLDS_MM])),
        "pck_root": _pck(abs_[:, ROOT], root_mm),
        "pcod": 100.0 * pairs[0] / pairs[1] if pairs[1] else float("nan"),
        "people": float(len(rel)),
    }
    for group, joints in JOINT_GROUPS.items():
        out[f"rel_{group}"] = _pck(rel[:, list(joints)], pck_mm)
        out[f"abs_{group}"] = _pck(abs_[:, list(joints)], pck_mm)
    return out


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _check_pairs(predictions: Sequence, ground_truth: Sequence) -> None:
    if len(predictions) != len(ground_truth):
        raise ValueError(f"{len(predictions)} prediction frames for {len(ground_truth)} "
                         "ground-truth frames; pass one prediction per frame, in the same order")


def ap_root(predictions: Sequence[FramePrediction], ground_truth: Sequence[FrameGroundTruth],
            threshold_mm: float = 250.0) -> float:
    """AP_root in percent with RootNet's matching and summation (see the module docstring)."""
    _check_pairs(predictions, ground_truth)
    entries = [(float(s), f, p) for f, pred in enumerate(predictions) for p, s in enumerate(pred.score)]
    order = sorted(range(len(entries)), key=lambda i: -entries[i][0])  # stable
    gt_roots = [g.keypoints_mm[g.valid, ROOT] for g in ground_truth]
    total = sum(len(r) for r in gt_roots)
    if total == 0:
        return float("nan")
    taken = [np.zeros(len(r), dtype=bool) for r in gt_roots]
    tp = fp = 0
    precision, recall = [], []
    for i in order:
        _, f, p = entries[i]
        if len(gt_roots[f]) == 0:
            continue
        distance = np.linalg.norm(gt_roots[f] - predictions[f].keypoints_mm[p, ROOT], axis=-1)
        nearest = int(np.argmin(np.where(np.isnan(distance), np.inf, distance)))
        if distance[nearest] < threshold_mm and not taken[f][nearest]:
            taken[f][nearest] = True
            tp += 1
        else:
            fp += 1
        precision.append(tp / (tp + fp))
        recall.append(tp / total)
    steps = range(len(precision) - 1)
    return 100.0 * sum(precision[n + 1] * (recall[n + 1] - recall[n]) for n in steps)


def evaluate_mupots(
    predictions: Sequence[FramePrediction],
    ground_truth: Sequence[FrameGroundTruth],
    match_threshold_px: float = 40.0,
    pck_threshold_mm: float = 150.0,
    root_threshold_mm: float = 250.0,
) -> dict:
    """The MuPoTS-3D protocol (module docstring) over paired frames.

    Returns:
        ``{"all": {...}, "matched": {...}, "ap_root_25", "mrpe_mm": {total, x, y, z},
        "per_sequence": {mode: {sequence: {...}}}, "counts": {...}}`` where each mode dict holds
        ``pck_rel, pck_abs, auc_rel, auc_abs, pck_root, pcod`` and ``rel_<group>`` /
        ``abs_<group>`` PCK per joint group (percent; means over sequences). MRPE (RootNet's
        definition) is over matched people, pooled.
    """
    _check_pairs(predictions, ground_truth)
    frames = [_score_frame(p, g, match_threshold_px) for p, g in zip(predictions, ground_truth)]
    by_sequence: dict[str, list[_FrameScores]] = defaultdict(list)
    for frame in frames:
        by_sequence[frame.sequence].append(frame)
    per_sequence: dict[str, dict[str, dict[str, float]]] = {"all": {}, "matched": {}}
    for name in sorted(by_sequence, key=_natural_key):
        group = by_sequence[name]
        rel = np.concatenate([f.error_rel_mm for f in group])
        abs_ = np.concatenate([f.error_abs_mm for f in group])
        matched = np.concatenate([f.matched for f in group])
        pairs = np.sum([f.ordinal for f in group], axis=0)
        per_sequence["all"][name] = _mode_summary(rel, abs_, tuple(pairs[:2]), root_threshold_mm,
                                                  pck_threshold_mm)
        per_sequence["matched"][name] = _mode_summary(rel[matched], abs_[matched], tuple(pairs[2:]),
                                                      root_threshold_mm, pck_threshold_mm)
    result: dict = {}
    for mode, table in per_sequence.items():
        keys = next(iter(table.values())).keys() if table else []
        result[mode] = {k: _nanmean([row[k] for row in table.values()]) for k in keys if k != "people"}
    delta = np.concatenate([f.root_delta_mm for f in frames]) if frames else np.zeros((0, 3))
    delta = delta[np.isfinite(delta).all(-1)]
    result["ap_root_25"] = ap_root(predictions, ground_truth, root_threshold_mm)
    result["mrpe_mm"] = mrpe(delta)
    result["per_sequence"] = per_sequence
    result["counts"] = {
        "frames": len(frames), "sequences": len(by_sequence),
        "gt_people": int(sum(len(f.matched) for f in frames)),
        "matched_people": int(sum(f.matched.sum() for f in frames)),
        "predictions": int(sum(len(p) for p in predictions)),
    }
    return result


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def mrpe(delta_mm: np.ndarray) -> dict[str, float]:
    """RootNet's MRPE: mean Euclidean root error and mean absolute error per axis (mm)."""
    if len(delta_mm) == 0:
        return {"total": float("nan"), "x": float("nan"), "y": float("nan"), "z": float("nan")}
    axes = np.abs(delta_mm).mean(axis=0)
    return {"total": float(np.linalg.norm(delta_mm, axis=-1).mean()),
            "x": float(axes[0]), "y": float(axes[1]), "z": float(axes[2])}


MUPOTS_CONVENTIONS = (
    "MuPoTS-3D (mpii_mupots_multiperson_eval.m): ground truth matched in order to the prediction "
    "with most joints 2-14 within 40 px in x and y; bones rescaled to ground-truth lengths from "
    "the pelvis; PCK < 150 mm and AUC over 0:5:150 mm on joints 1-14; PCK_root < 250 mm; PCOD "
    "with 300 mm tolerance; every figure is the mean of per-sequence values; unmatched people "
    "fail every joint in 'all people' and are skipped in 'matched people'; AP_root^25 with "
    "RootNet's nearest-root matching and summation; MRPE over matched people."
)


PANOPTIC_CONVENTIONS = (
    "CMU Panoptic (SMAP test_util_panoptic.py): a prediction matches a ground truth when their 2D "
    "pelvis points are < 30 px apart (globally closest pairs first); only ground truth with a "
    "visible pelvis is scored; MPJPE = pelvis-aligned error per joint averaged over matched people, "
    "then over the joints both skeletons share (pelvis included); RtError = absolute 3D pelvis "
    "error of matched people; both in mm, per activity and their mean over activities; recall = "
    "matched / scored ground truth."
)


def evaluate_panoptic(
    predictions: Sequence[FramePrediction],
    ground_truth: Sequence[FrameGroundTruth],
    group_of: Callable[[str], str] = lambda sequence: sequence,
    threshold_px: float = 30.0,
) -> dict:
    """CMU Panoptic MPJPE and RtError per activity (``group_of(sequence)``), see
    :data:`PANOPTIC_CONVENTIONS`. Returns ``{"per_group": {g: {...}}, "mean": {...}}``."""
    _check_pairs(predictions, ground_truth)
    sums = defaultdict(lambda: {"rel": np.zeros(_J), "count": np.zeros(_J), "root": [],
                                "scored": 0, "matched": 0})
    for pred, gt in zip(predictions, ground_truth):
        acc = sums[group_of(gt.sequence)]
        matching = match_people_by_root(gt.uv_px[:, ROOT], pred.uv_px[:, ROOT], threshold_px)
        for g in np.flatnonzero(gt.valid & gt.visible[:, ROOT]):
            acc["scored"] += 1
            if matching[g] < 0:
                continue
            acc["matched"] += 1
            p, t = pred.keypoints_mm[matching[g]], gt.keypoints_mm[g]
            usable = gt.labelled[g] & np.isfinite(p).all(-1) & np.isfinite(p[ROOT]).all()
            rel = np.linalg.norm((p - p[ROOT]) - (t - t[ROOT]), axis=-1)
            acc["rel"][usable] += rel[usable]
            acc["count"][usable] += 1
            if np.isfinite(p[ROOT]).all():
                acc["root"].append(float(np.linalg.norm(p[ROOT] - t[ROOT])))
    per_group = {}
    for name in sorted(sums, key=_natural_key):
        acc = sums[name]
        seen = acc["count"] > 0
        per_joint_mm = acc["rel"][seen] / acc["count"][seen]
        per_group[name] = {
            "mpjpe_mm": float(np.mean(per_joint_mm)) if seen.any() else float("nan"),
            "rt_error_mm": float(np.mean(acc["root"])) if acc["root"] else float("nan"),
            "recall": 100.0 * acc["matched"] / acc["scored"] if acc["scored"] else float("nan"),
            "people": float(acc["scored"]),
        }
    mean = {k: _nanmean([row[k] for row in per_group.values()])
            for k in ("mpjpe_mm", "rt_error_mm", "recall")}
    return {"per_group": per_group, "mean": mean}


H36M_CONVENTIONS = (
    "Human3.6M (RootNet / PoseNet Human36M.evaluate): people matched with the MuPoTS rule (joints "
    "2-14 within 40 px); MRPE = mean Euclidean 3D pelvis error, MRPE_x/y/z = mean absolute error "
    "per axis; MPJPE = pelvis-aligned error over the joints both skeletons share (protocol 2, no "
    "Procrustes); all in mm over matched people, pooled, and per action."
)


def evaluate_h36m(
    predictions: Sequence[FramePrediction],
    ground_truth: Sequence[FrameGroundTruth],
    group_of: Callable[[str], str] = lambda sequence: sequence,
    threshold_px: float = 40.0,
) -> dict:
    """Human3.6M MRPE (x/y/z) and MPJPE, see :data:`H36M_CONVENTIONS`.

    Returns ``{"total": {...}, "per_group": {action: {...}}}`` with ``mrpe_mm``, ``mrpe_x_mm``,
    ``mrpe_y_mm``, ``mrpe_z_mm``, ``mpjpe_mm``, ``people`` and ``matched``.
    """
    _check_pairs(predictions, ground_truth)
    groups: dict[str, dict[str, list]] = defaultdict(lambda: {"delta": [], "joint": [], "people": [0]})
    for pred, gt in zip(predictions, ground_truth):
        acc = groups[group_of(gt.sequence)]
        valid = np.flatnonzero(gt.valid)
        matching = match_people_mupots(gt.uv_px[valid], gt.labelled[valid], pred.uv_px, threshold_px)
        acc["people"][0] += len(valid)
        for g, m in zip(valid, matching):
            if m < 0:
                continue
            p, t = pred.keypoints_mm[m], gt.keypoints_mm[g]
            acc["delta"].append(p[ROOT] - t[ROOT])
            usable = gt.labelled[g] & np.isfinite(p).all(-1)
            acc["joint"].extend(np.linalg.norm((p - p[ROOT]) - (t - t[ROOT]), axis=-1)[usable])

    def summary(delta: list, joint: list, people: int) -> dict[str, float]:
        delta_mm = np.array(delta, dtype=np.float64).reshape(-1, 3)
        root = mrpe(delta_mm[np.isfinite(delta_mm).all(-1)])
        return {"mrpe_mm": root["total"], "mrpe_x_mm": root["x"], "mrpe_y_mm": root["y"],
                "mrpe_z_mm": root["z"], "mpjpe_mm": float(np.mean(joint)) if joint else float("nan"),
                "people": float(people), "matched": float(len(delta))}

    per_group = {name: summary(acc["delta"], acc["joint"], acc["people"][0])
                 for name, acc in sorted(groups.items(), key=lambda kv: _natural_key(kv[0]))}
    total = summary([d for a in groups.values() for d in a["delta"]],
                    [e for a in groups.values() for e in a["joint"]],
                    sum(a["people"][0] for a in groups.values()))
    return {"total": total, "per_group": per_group}

