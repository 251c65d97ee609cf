"""MuPoTS-3D / Panoptic / Human3.6M metrics: hand-worked cases, invariances, malformed input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mp3d_ros.evaluation.metrics import (
    OFFICIAL_PARENTS,
    TRAVERSAL_ORDER,
    FrameGroundTruth,
    FramePrediction,
    ap_root,
    evaluate_h36m,
    evaluate_mupots,
    evaluate_panoptic,
    match_people_by_root,
    match_people_mupots,
    rescale_to_gt_bones,
)
from mp3d_ros.geometry.skeleton import MUPOTS_17

J = MUPOTS_17.num_joints
ROOT = MUPOTS_17.root
FOCAL_PX, CENTER_PX = 1500.0, 1000.0

# A root-relative pose in MuPoTS-17 order (mm, y down), not planar, bones of distinct lengths.
POSE_MM = np.array([
    [0, -720, 10], [0, -500, 0], [-180, -480, 0], [-200, -200, 50], [-210, 50, 120],
    [180, -480, 0], [200, -200, 50], [210, 50, 120], [-100, 0, 0], [-110, 420, -40],
    [-115, 830, 0], [100, 0, 0], [110, 420, -40], [115, 830, 0], [0, 0, 0], [0, -250, 20],
    [0, -620, 30],
], dtype=float)


def person(root_mm) -> tuple[np.ndarray, np.ndarray]:
    """(17, 2) pixels and (17, 3) mm of POSE_MM at ``root_mm`` seen by a 1500 px camera."""
    xyz = POSE_MM + np.asarray(root_mm, dtype=float)
    return xyz[:, :2] / xyz[:, 2:] * FOCAL_PX + CENTER_PX, xyz


def gt_frame(roots, sequence="TS1") -> FrameGroundTruth:
    people = [person(r) for r in roots]
    return FrameGroundTruth(sequence, np.array([p[0] for p in people]).reshape(-1, J, 2),
                            np.array([p[1] for p in people]).reshape(-1, J, 3))


def pred_frame(roots, scores=None, shift_mm=(0.0, 0.0, 0.0)) -> FramePrediction:
    """Predictions whose 2D is exact and whose 3D is the truth moved by ``shift_mm``."""
    people = [person(r) for r in roots]
    scores = np.linspace(0.9, 0.5, len(roots)) if scores is None else scores
    return FramePrediction(np.array([p[0] for p in people]).reshape(-1, J, 2),
                           np.array([p[1] + shift_mm for p in people]).reshape(-1, J, 3), scores)


SCENE = [[-800, 0, 3000], [700, 100, 4500]]


# ----------------------------------------------------------------------------- hand-worked cases


def test_perfect_prediction_scores_full_marks_and_the_official_auc_and_ap():
    truth = [gt_frame(SCENE, "TS1"), gt_frame(SCENE, "TS2")]
    result = evaluate_mupots([pred_frame(SCENE), pred_frame(SCENE)], truth)
    for mode in ("all", "matched"):
        for key in ("pck_rel", "pck_abs", "pck_root", "pcod"):
            assert result[mode][key] == 100.0
        # Thresholds 0, 5, ..., 150 are 31; error 0 is not < 0, so 30 of 31 steps pass.
        assert result[mode]["auc_rel"] == pytest.approx(100 * 30 / 31)
    # 4 true positives, precision 1 at every step, recall 1/4 .. 4/4; the official sum starts at
    # the second step: 1 * (2/4 - 1/4) + 1 * (3/4 - 2/4) + 1 * (4/4 - 3/4) = 0.75.
    assert result["ap_root_25"] == pytest.approx(75.0)
    assert result["mrpe_mm"] == {"total": 0.0, "x": 0.0, "y": 0.0, "z": 0.0}
    assert result["counts"] == {"frames": 2, "sequences": 2, "gt_people": 4, "matched_people": 4,
                                "predictions": 4}


def test_prediction_shifted_by_160_mm_fails_pck_abs_but_not_pck_rel():
    result = evaluate_mupots([pred_frame(SCENE, shift_mm=(160.0, 0, 0))], [gt_frame(SCENE)])
    # Same 2D, so both people match; every joint is 160 mm off (>= 150) before root alignment
    # and exactly right after it; the pelvis is 160 mm off (< 250) so PCK_root still passes.
    assert result["all"]["pck_abs"] == 0.0
    assert result["all"]["auc_abs"] == 0.0
    assert result["all"]["pck_rel"] == 100.0
    assert result["all"]["pck_root"] == 100.0
    assert result["mrpe_mm"]["total"] == pytest.approx(160.0)
    assert result["mrpe_mm"]["x"] == pytest.approx(160.0)
    far = evaluate_mupots([pred_frame(SCENE, shift_mm=(0, 0, 260.0))], [gt_frame(SCENE)])
    assert far["all"]["pck_root"] == 0.0  # 260 mm is not < 250
    # Depth differences keep their sign (both moved by 260 mm): ordinal depth stays correct.
    assert far["all"]["pcod"] == 100.0


def test_missing_person_scores_zero_in_all_people_and_is_skipped_in_matched():
    result = evaluate_mupots([pred_frame(SCENE[:1])], [gt_frame(SCENE)])
    # 2 people x 14 joints; the matched one gets all 14 right, the missing one none: 14/28.
    assert result["all"]["pck_rel"] == pytest.approx(50.0)
    assert result["all"]["pck_root"] == pytest.approx(50.0)
    assert result["all"]["auc_rel"] == pytest.approx(50.0 * 30 / 31)
    assert result["matched"]["pck_rel"] == 100.0
    assert result["per_sequence"]["all"]["TS1"]["people"] == 2
    assert result["per_sequence"]["matched"]["TS1"]["people"] == 1
    # PCOD pairs: all people uses the official 100 m placeholder for the missing (farther) one:
    # d_gt = 4500 - 3000 > 0 and d_pred = 100000 - 3000 > 0 -> correct. Matched: no pair at all.
    assert result["all"]["pcod"] == 100.0
    assert np.isnan(result["matched"]["pcod"])


def test_pcod_placeholder_counts_a_missing_nearer_person_as_wrong():
    scene = [[0, 0, 4000], [600, 0, 2500]]
    result = evaluate_mupots([pred_frame(scene[:1])], [gt_frame(scene)])
    # d_gt = 2500 - 4000 = -1500 (|.| >= 300), d_pred = 100000 - 4000 > 0: opposite signs.
    assert result["all"]["pcod"] == 0.0


def test_pcod_counts_pairs_closer_than_300_mm_as_correct_whatever_the_sign():
    scene = [[-900, 0, 4000], [900, 0, 4200]]
    pred = pred_frame(scene)
    flipped = FramePrediction(pred.uv_px, pred.keypoints_mm + np.array([[[0, 0, 150]], [[0, 0, -150]]]),
                              pred.score)
    # d_gt = +200, d_pred = 200 - 300 = -100: opposite signs but both |d| < 300 -> correct.
    assert evaluate_mupots([flipped], [gt_frame(scene)])["all"]["pcod"] == 100.0
    wrong = FramePrediction(pred.uv_px, pred.keypoints_mm + np.array([[[0, 0, 300]], [[0, 0, -300]]]),
                            pred.score)
    # d_pred = 200 - 600 = -400: |d_pred| >= 300 and the sign is wrong -> incorrect.
    assert evaluate_mupots([wrong], [gt_frame(scene)])["all"]["pcod"] == 0.0


def test_bone_rescaling_walks_the_official_tree_from_the_pelvis():
    _, gt = person([0, 0, 3000])
    assert np.allclose(rescale_to_gt_bones(gt[None], gt[None])[0], gt)
    pred = gt.copy()
    spine, neck = MUPOTS_17.index("spine"), MUPOTS_17.index("neck")
    pred[spine] = gt[ROOT] + [0, -300, 0]  # true spine bone: |(0, -250, 20)| mm
    pred[neck] = pred[spine] + [50, 0, 0]  # predicted neck bone points along +x
    out = rescale_to_gt_bones(pred[None], gt[None])[0]
    spine_len = np.linalg.norm(gt[spine] - gt[ROOT])  # sqrt(250^2 + 20^2) = 250.80 mm
    neck_len = np.linalg.norm(gt[neck] - gt[spine])  # sqrt(250^2 + 20^2)
    assert np.allclose(out[ROOT], gt[ROOT])  # the pelvis keeps its predicted position
    assert np.allclose(out[spine], gt[ROOT] + [0, -spine_len, 0])
    assert np.allclose(out[neck], out[spine] + [neck_len, 0, 0])
    # head_top hangs from the neck in the official table (o1(1) = 2), not from the head.
    head_top = MUPOTS_17.index("head_top")
    bone = pred[head_top] - pred[neck]  # the original predicted bone keeps its direction
    length = np.linalg.norm(gt[head_top] - gt[neck])  # |(0, -220, 10)| = 220.23 mm
    assert np.allclose(out[head_top], out[neck] + bone * length / np.linalg.norm(bone))


def test_bone_rescaling_fixes_a_uniformly_scaled_pose_for_pck_rel():
    truth = gt_frame(SCENE)
    pred = pred_frame(SCENE)
    root = pred.keypoints_mm[:, ROOT:ROOT + 1]
    scaled = FramePrediction(pred.uv_px, root + 1.5 * (pred.keypoints_mm - root), pred.score)
    # Without rescaling the ankle would be 0.5 * |(115, 830, 0)| = 419 mm off; with it, exact.
    assert evaluate_mupots([scaled], [truth])["all"]["pck_rel"] == 100.0


def test_greedy_matching_follows_ground_truth_order_not_the_best_assignment():
    base, _ = person([0, 0, 3000])
    gt = np.stack([base, base + [30, 0]])  # GT1 is GT0 moved 30 px right
    good_for_both = base + [15, 0]  # 15 px from each: 13 joints within 40 px of both
    only_gt0 = base - [20, 0]  # 20 px from GT0, 50 px from GT1
    only_gt0[3] += 500  # one joint far away: 12 joints for GT0
    pred = np.stack([good_for_both, only_gt0])
    labelled = np.ones((2, J), bool)
    # GT0 takes prediction 0 (13 > 12); GT1's only candidate is taken, prediction 1 scores 0.
    assert match_people_mupots(gt, labelled, pred).tolist() == [0, -1]
    # In the other order GT1 takes prediction 0 first and GT0 falls back to prediction 1.
    assert match_people_mupots(gt[::-1], labelled, pred).tolist() == [0, 1]


def test_matching_window_is_per_axis_strict_and_ignores_missing_joints():
    base, _ = person([0, 0, 3000])
    labelled = np.ones((1, J), bool)
    # 39 px in x and 39 px in y (55 px apart) still counts: the test is per axis.
    assert match_people_mupots(base[None], labelled, (base + [39, 39])[None]).tolist() == [0]
    assert match_people_mupots(base[None], labelled, (base + [40, 0])[None]).tolist() == [-1]
    zeros = np.zeros((1, J, 2))
    assert match_people_mupots(np.zeros((1, J, 2)), labelled, zeros).tolist() == [-1]
    # Two identical candidates: the first wins the tie.
    assert match_people_mupots(base[None], labelled, np.stack([base, base])).tolist() == [0]


def test_per_sequence_values_are_averaged_not_pooled():
    truth = [gt_frame(SCENE[:1], "TS1"), gt_frame(SCENE + [[0, -200, 6000]], "TS2")]
    result = evaluate_mupots([pred_frame(SCENE[:1]), pred_frame(SCENE[:1])], truth)
    # TS1: 1/1 people right = 100; TS2: 1 of 3 = 33.3; mean 66.7 (pooled would be 2/4 = 50).
    assert result["per_sequence"]["all"]["TS2"]["pck_rel"] == pytest.approx(100 / 3)
    assert result["all"]["pck_rel"] == pytest.approx((100 + 100 / 3) / 2)


def test_ap_root_on_a_small_list_matches_the_hand_computation():
    truth = [gt_frame([[0, 0, 3000], [500, 0, 5000]])]
    roots = truth[0].keypoints_mm[:, ROOT]
    preds = pred_frame([[0, 0, 3000]] * 4, scores=np.array([0.6, 0.9, 0.7, 0.8]))
    keypoints = preds.keypoints_mm.copy()
    offsets = {1: roots[0] + [100, 0, 0],  # score .9: 100 mm from A -> TP
               3: roots[0] + [50, 0, 0],  # score .8: nearest is A, already taken -> FP
               2: roots[1] + [300, 0, 0],  # score .7: 300 mm from B -> FP
               0: roots[1] + [10, 0, 0]}  # score .6: 10 mm from B -> TP
    for p, root in offsets.items():
        keypoints[p] += root - keypoints[p, ROOT]
    preds = FramePrediction(preds.uv_px, keypoints, preds.score)
    # Order TP, FP, FP, TP over 2 ground truths: precision 1, 1/2, 1/3, 2/4;
    # recall 1/2, 1/2, 1/2, 1. AP = 1/2*0 + 1/3*0 + 2/4*(1 - 1/2) = 0.25.
    assert ap_root([preds], truth) == pytest.approx(25.0)
    # A frame without ground truth is skipped, even with the best-scored prediction.
    empty_truth = FrameGroundTruth("TS1", np.zeros((0, J, 2)), np.zeros((0, J, 3)))
    high = pred_frame([[0, 0, 3000]], scores=np.array([0.99]))
    assert ap_root([preds, high], truth + [empty_truth]) == pytest.approx(25.0)


def test_ap_root_takes_the_nearest_root_even_when_it_is_taken():
    truth = [gt_frame([[0, 0, 3000], [0, 0, 3300]])]
    a, b = truth[0].keypoints_mm[:, ROOT]
    preds = pred_frame([[0, 0, 3000]] * 3, scores=np.array([0.9, 0.8, 0.7]))
    keypoints = preds.keypoints_mm.copy()
    for p, root in enumerate([a, a + [0, 0, 140], b]):
        keypoints[p] += root - keypoints[p, ROOT]
    # Second prediction: A is 140 mm away, B 160 mm; A (nearest) is taken -> FP (RootNet's rule;
    # "nearest free root" would have made it a TP). TP, FP, TP: precision 1, 1/2, 2/3;
    # recall 1/2, 1/2, 1 -> AP = 1/2*0 + 2/3*1/2 = 1/3.
    assert ap_root([FramePrediction(preds.uv_px, keypoints, preds.score)], truth) == \
        pytest.approx(100 / 3)


# ----------------------------------------------------------------------------- invariances


@given(st.permutations(range(4)))
def test_permuting_predictions_changes_neither_pck_nor_ap(order):
    scene = SCENE + [[-200, 300, 6000], [1500, -100, 5200]]
    rng = np.random.default_rng(3)
    pred = pred_frame(scene, scores=np.array([0.8, 0.6, 0.7, 0.5]))
    noisy = FramePrediction(pred.uv_px, pred.keypoints_mm + rng.normal(0, 60, pred.keypoints_mm.shape),
                            pred.score)
    truth = [gt_frame(scene[:3])]
    base = evaluate_mupots([noisy], truth)
    index = list(order)
    permuted = FramePrediction(noisy.uv_px[index], noisy.keypoints_mm[index], noisy.score[index])
    other = evaluate_mupots([permuted], truth)
    assert other["all"] == base["all"] and other["matched"] == base["matched"]
    assert other["ap_root_25"] == base["ap_root_25"]  # distinct scores: no ties


@given(st.integers(0, 2**31 - 1))
def test_rescaled_bones_have_true_lengths_and_predicted_directions(seed):
    rng = np.random.default_rng(seed)
    gt = rng.normal(0, 300, (2, J, 3))
    pred = rng.normal(0, 300, (2, J, 3))
    out = rescale_to_gt_bones(pred, gt)
    assert np.allclose(out[:, ROOT], pred[:, ROOT])
    for j in TRAVERSAL_ORDER:
        parent = OFFICIAL_PARENTS[j]
        bone, true = out[:, j] - out[:, parent], gt[:, j] - gt[:, parent]
        predicted = pred[:, j] - pred[:, parent]
        assert np.allclose(np.linalg.norm(bone, axis=-1), np.linalg.norm(true, axis=-1))
        assert np.allclose(np.cross(bone, predicted), 0, atol=1e-6)
        assert (np.einsum("pi,pi->p", bone, predicted) > 0).all()


@given(st.integers(0, 2**31 - 1))
def test_matching_never_reuses_a_prediction_and_needs_a_close_joint(seed):
    rng = np.random.default_rng(seed)
    gt = rng.uniform(0, 300, (4, J, 2))
    pred = gt[rng.permutation(4)[:3]] + rng.normal(0, 30, (3, J, 2))
    matching = match_people_mupots(gt, np.ones((4, J), bool), pred)
    used = matching[matching >= 0]
    assert len(set(used.tolist())) == len(used)

    def close(g: int, p: int) -> int:
        return int((np.abs(gt[g, 1:14] - pred[p, 1:14]) < 40).all(-1).sum())

    for g, p in enumerate(matching):
        if p >= 0:
            assert close(g, p) > 0
        else:  # every prediction still free at the end was free when g looked, and had nothing
            assert all(close(g, q) == 0 for q in range(3) if q not in used)


def test_evaluating_twice_gives_identical_output():
    truth = [gt_frame(SCENE, "TS1"), gt_frame(SCENE[:1], "TS2")]
    preds = [pred_frame(SCENE, shift_mm=(40, 0, 90)), pred_frame(SCENE)]
    assert repr(evaluate_mupots(preds, truth)) == repr(evaluate_mupots(preds, truth))


# ----------------------------------------------------------------------------- malformed input


def test_wrong_joint_count_is_refused_naming_the_joint_set():
    with pytest.raises(ValueError, match="mupots_17"):
        FramePrediction(np.zeros((1, 15, 2)), np.zeros((1, 15, 3)), np.ones(1))
    with pytest.raises(ValueError, match="mupots_17"):
        FrameGroundTruth("TS1", np.zeros((1, 21, 2)), np.zeros((1, 21, 3)))
    with pytest.raises(ValueError, match="score"):
        FramePrediction(np.zeros((1, J, 2)), np.zeros((1, J, 3)), np.array([np.nan]))
    with pytest.raises(ValueError, match="frames"):
        evaluate_mupots([pred_frame(SCENE)], [])


def test_nan_joints_are_misses_and_propagate_down_the_bone_tree():
    pred = pred_frame(SCENE[:1])
    leaf = pred.keypoints_mm.copy()
    leaf[0, MUPOTS_17.index("left_ankle")] = np.nan
    result = evaluate_mupots([FramePrediction(pred.uv_px, leaf, pred.score)], [gt_frame(SCENE[:1])])
    assert result["all"]["pck_rel"] == pytest.approx(100 * 13 / 14)  # only that joint fails
    spine = pred.keypoints_mm.copy()
    spine[0, MUPOTS_17.index("spine")] = np.nan
    result = evaluate_mupots([FramePrediction(pred.uv_px, spine, pred.score)], [gt_frame(SCENE[:1])])
    # Below the spine: neck, then head_top and both arms (shoulder, elbow, wrist): 8 of the 14
    # scored joints are NaN; the 6 leg joints hang from the pelvis and stay right: 6/14.
    assert result["all"]["pck_rel"] == pytest.approx(100 * 6 / 14)
    no_2d = FramePrediction(np.full((1, J, 2), np.nan), pred.keypoints_mm, pred.score)
    assert evaluate_mupots([no_2d], [gt_frame(SCENE[:1])])["all"]["pck_rel"] == 0.0


def test_empty_frames_and_invalid_people_are_handled():
    empty_pred = FramePrediction(np.zeros((0, J, 2)), np.zeros((0, J, 3)), np.zeros(0))
    empty_truth = FrameGroundTruth("TS1", np.zeros((0, J, 2)), np.zeros((0, J, 3)))
    result = evaluate_mupots([empty_pred, pred_frame(SCENE)], [empty_truth, gt_frame(SCENE)])
    assert result["all"]["pck_rel"] == 100.0
    truth = gt_frame(SCENE)
    ignored = FrameGroundTruth("TS1", truth.uv_px, truth.keypoints_mm, valid=np.array([True, False]))
    result = evaluate_mupots([pred_frame(SCENE[:1])], [ignored])
    assert result["all"]["pck_rel"] == 100.0 and result["counts"]["gt_people"] == 1
    assert np.isnan(evaluate_mupots([empty_pred], [empty_truth])["all"]["pck_rel"])


# ----------------------------------------------------------------------------- Panoptic, Human3.6M


def test_panoptic_matching_takes_globally_closest_roots_first():
    gt = np.array([[100.0, 0], [120.0, 0]])
    pred = np.array([[112.0, 0], [135.0, 0]])
    # Distances: (GT1, P0) 8, (GT0, P0) 12, (GT1, P1) 15, (GT0, P1) 35 >= 30.
    # GT1-P0 first; GT0's only candidate within 30 px is then taken -> unmatched.
    assert match_people_by_root(gt, pred).tolist() == [-1, 0]
    assert match_people_by_root(gt, np.array([[129.0, 0]])).tolist() == [-1, 0]
    assert match_people_by_root(gt[:1], np.array([[130.0, 0]])).tolist() == [-1]  # 30 is not < 30


def test_panoptic_mpjpe_and_root_error_by_hand():
    truth = gt_frame(SCENE[:1], "160422_haggling1")
    shared = [MUPOTS_17.index(n) for n in MUPOTS_17.joints if n not in ("head_top", "spine", "head")]
    labelled = np.zeros((1, J), bool)
    labelled[0, shared] = True  # the 14 joints Panoptic shares with MuPoTS
    truth = FrameGroundTruth(truth.sequence, truth.uv_px, truth.keypoints_mm, labelled)
    pred = pred_frame(SCENE[:1], shift_mm=(10.0, 0, 0))
    moved = pred.keypoints_mm.copy()
    moved[0, MUPOTS_17.index("left_wrist")] += [0, 30, 0]
    result = evaluate_panoptic([FramePrediction(pred.uv_px, moved, pred.score)], [truth],
                               group_of=lambda s: s.split("_")[1])
    row = result["per_group"]["haggling1"]
    # Pelvis-aligned: only the left wrist is off (30 mm); mean over 14 joints = 30/14.
    assert row["mpjpe_mm"] == pytest.approx(30 / 14)
    assert row["rt_error_mm"] == pytest.approx(10.0)
    assert row["recall"] == 100.0
    hidden = FrameGroundTruth(truth.sequence, truth.uv_px, truth.keypoints_mm, labelled,
                              visible=np.zeros((1, J), bool))
    assert evaluate_panoptic([pred], [hidden])["per_group"][truth.sequence]["people"] == 0


def test_h36m_mrpe_components_by_hand():
    truth = [gt_frame(SCENE[:1], "s_09_act_02_subact_01_ca_01"),
             gt_frame(SCENE[:1], "s_09_act_03_subact_01_ca_01")]
    preds = [pred_frame(SCENE[:1], shift_mm=(30.0, -40.0, 0)), pred_frame(SCENE[:1])]
    result = evaluate_h36m(preds, truth, group_of=lambda s: s[5:11])
    # First frame: root error (30, -40, 0) -> 50 mm; second: 0. Means: 25, x 15, y 20, z 0.
    assert result["total"]["mrpe_mm"] == pytest.approx(25.0)
    assert result["total"]["mrpe_x_mm"] == pytest.approx(15.0)
    assert result["total"]["mrpe_y_mm"] == pytest.approx(20.0)
    assert result["total"]["mrpe_z_mm"] == 0.0
    assert result["total"]["mpjpe_mm"] == pytest.approx(0.0)
    assert result["per_group"]["act_02"]["mrpe_mm"] == pytest.approx(50.0)
