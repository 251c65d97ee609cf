"""The identity check of MuPoTS matches: 2D fit, one-to-one pairing, and a far person taking a near
person's prediction."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mp3d_ros.evaluation.identity_check import (
    MAX_FIT,
    check_identities,
    format_identity_check,
    match_one_to_one,
    skeleton_fit,
)
from mp3d_ros.evaluation.metrics import FrameGroundTruth, FramePrediction, match_people_mupots
from mp3d_ros.geometry.skeleton import MUPOTS_17
from test_metrics import person

J = MUPOTS_17.num_joints
ROOT = MUPOTS_17.root


def people(roots_mm) -> tuple[np.ndarray, np.ndarray]:
    """(P, 17, 2) pixels and (P, 17, 3) mm of test_metrics' pose at each root."""
    seen = [person(root) for root in roots_mm]
    return np.array([uv for uv, _ in seen]), np.array([xyz for _, xyz in seen])


def test_fit_is_the_shift_over_the_persons_size_and_needs_three_shared_joints():
    uv, _ = people([[0, 0, 3000]])
    size = np.hypot(*(uv[0].max(0) - uv[0].min(0)))
    labelled = np.ones((1, J), bool)
    np.testing.assert_allclose(skeleton_fit(uv, labelled, uv + [12.0, 0.0]), [[12.0 / size]])
    few = np.full_like(uv, np.nan)
    few[0, 1:3] = uv[0, 1:3]  # two joints of the prediction only
    few[0, 3] = 0.0  # the (0, 0) "missing" marker is not a joint
    assert np.isinf(skeleton_fit(uv, labelled, few)).all()
    assert skeleton_fit(uv, labelled, np.zeros((0, J, 2))).shape == (1, 0)


def test_a_far_person_listed_first_takes_the_near_persons_prediction():
    """The protocol gives the far person (listed first, not detected) the near person's skeleton
    because its joints lie within 40 px of the near right hip; the one-to-one pairing gives it to the near person."""
    uv, xyz = people([[-700, -200, 20000], [0, 0, 2500]])
    truth = FrameGroundTruth("TS1", uv, xyz)
    found = FramePrediction(uv[1:], xyz[1:] + [0.0, 0.0, 100.0], np.array([0.9]))
    assert match_people_mupots(truth.uv_px, truth.labelled, found.uv_px).tolist() == [0, -1]

    result = check_identities([found], [truth])
    protocol, paired = result["protocol"], result["one_to_one"]
    assert (protocol["matched"], protocol["misassigned"]) == (1, 1)
    np.testing.assert_allclose(protocol["mrpe_mm"], np.linalg.norm(xyz[1, ROOT] + [0, 0, 100] - xyz[0, ROOT]))
    assert np.isnan(protocol["mrpe_mm_rest"])
    assert paired == {"matched": 1, "mrpe_mm": 100.0}
    assert "1 of 1 matched people (100.0 %)" in format_identity_check(result)


def test_exact_skeletons_in_any_order_are_never_misassigned():
    uv, xyz = people([[-900, 0, 3000], [800, 100, 4500], [0, 50, 9000]])
    truth = FrameGroundTruth("TS1", uv, xyz)
    order = [2, 0, 1]
    found = FramePrediction(uv[order], xyz[order] + [0.0, 0.0, 300.0], np.array([0.9, 0.8, 0.7]))
    result = check_identities([found], [truth])
    assert result["protocol"]["misassigned"] == 0
    assert result["protocol"]["matched"] == result["one_to_one"]["matched"] == 3
    np.testing.assert_allclose([result["protocol"]["mrpe_mm"], result["one_to_one"]["mrpe_mm"]], 300.0)


def test_ignored_people_and_empty_frames_are_skipped():
    uv, xyz = people([[0, 0, 3000], [600, 0, 3000]])
    truth = FrameGroundTruth("TS1", uv, xyz, valid=np.array([False, True]))
    found = FramePrediction(uv, xyz, np.array([0.9, 0.8]))
    empty = FramePrediction(np.zeros((0, J, 2)), np.zeros((0, J, 3)), np.zeros(0))
    result = check_identities([found, empty], [truth, truth])
    assert result["protocol"]["matched"] == result["one_to_one"]["matched"] == 1
    assert result["protocol"]["misassigned"] == 0


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 5), st.integers(0, 5), st.integers(0, 2**31 - 1))
def test_one_to_one_uses_each_prediction_once_and_only_close_pairs(gts, preds, seed):
    rng = np.random.default_rng(seed)
    fit = rng.uniform(0.0, 0.5, (gts, preds))
    fit[rng.random((gts, preds)) < 0.2] = np.inf
    matching = match_one_to_one(fit)
    taken = matching[matching >= 0]
    assert len(set(taken.tolist())) == len(taken)
    assert all(fit[g, p] < MAX_FIT for g, p in enumerate(matching) if p >= 0)
    # Every person left out has no close prediction that is still free.
    free = np.setdiff1d(np.arange(preds), taken)
    for g in np.flatnonzero(matching < 0):
        assert not (fit[g, free] < MAX_FIT).any()
