"""depth_calibration.py: robust spreads, coverage, the inflation factor and keypoint matching, on
inputs whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from mp3d_ros.evaluation.depth_calibration import (ONE_SIGMA, inflation_for_coverage, match_keypoints,
                                                   rms_over_joints, robust_sd, within_sigma)


def test_robust_sd_is_the_sd_of_gaussian_values_and_ignores_a_few_outliers() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(5.0, 2.0, 20000)
    assert robust_sd(values) == pytest.approx(2.0, rel=0.02)
    values[:1000] = 1e6  # 5 % gross outliers
    assert robust_sd(values) == pytest.approx(2.0 * 1.07, rel=0.03)  # the MAD moves a little, the sd a lot
    assert np.std(values) > 1e4
    np.testing.assert_allclose(robust_sd(rng.normal(0, [1.0, 3.0], (20000, 2)), axis=0), [1.0, 3.0], rtol=0.03)
    assert np.isnan(robust_sd(np.zeros(0)))


def test_rms_over_joints_weighs_every_joint_the_same() -> None:
    rng = np.random.default_rng(1)
    small, large = rng.normal(0, 0.02, 9000), rng.normal(0, 0.2, 1000)
    errors, joints = np.r_[small, large], np.r_[np.zeros(9000, int), np.ones(1000, int)]
    assert rms_over_joints(errors, joints) == pytest.approx(np.sqrt((0.02**2 + 0.2**2) / 2), rel=0.03)
    assert robust_sd(errors) < 0.03  # pooled, the joint with many small errors hides the other
    with pytest.raises(ValueError, match="one shape"):
        rms_over_joints(errors, joints[:10])


def test_within_sigma_counts_the_covered_fraction() -> None:
    errors = np.array([-0.5, 1.0, 1.5, -3.0])
    assert within_sigma(errors, np.ones(4)) == 0.5
    assert within_sigma(errors, np.ones(4), 2.0) == 0.75
    assert np.isnan(within_sigma(np.zeros(0), np.zeros(0)))


def test_inflation_of_a_sigma_half_the_true_one_is_two() -> None:
    rng = np.random.default_rng(2)
    sigma = rng.uniform(0.1, 1.0, 40000)
    errors = rng.normal(0.0, 2.0 * sigma)
    factor = inflation_for_coverage(errors, sigma)
    assert factor == pytest.approx(2.0, rel=0.02)
    assert within_sigma(errors, factor * sigma) == pytest.approx(ONE_SIGMA, abs=0.002)
    assert inflation_for_coverage(errors, sigma, coverage=0.9545) == pytest.approx(4.0, rel=0.03)


def test_inflation_leaves_the_fixed_part_alone() -> None:
    rng = np.random.default_rng(3)
    own, fixed = np.full(40000, 0.3), np.full(40000, 0.4)
    errors = rng.normal(0.0, np.hypot(3.0 * own, fixed))  # own part 3x too small, fixed part honest
    factor = inflation_for_coverage(errors, own, fixed)
    assert factor == pytest.approx(3.0, rel=0.03)
    assert within_sigma(errors, np.hypot(factor * own, fixed)) == pytest.approx(ONE_SIGMA, abs=0.003)
    # errors all inside the fixed part need no inflation at all
    assert inflation_for_coverage(np.full(10, 0.1), own[:10], fixed[:10]) == 0.0


def test_inflation_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="one shape"):
        inflation_for_coverage(np.zeros(3), np.ones(2))
    with pytest.raises(ValueError, match="positive"):
        inflation_for_coverage(np.zeros(2), np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="coverage"):
        inflation_for_coverage(np.zeros(2), np.ones(2), coverage=1.0)
    assert np.isnan(inflation_for_coverage(np.zeros(0), np.zeros(0)))


def test_keypoint_matching_pairs_people_and_gates_strangers() -> None:
    rng = np.random.default_rng(4)
    truth = rng.uniform(0, 600, (3, 12, 2))
    predicted = truth[[2, 0]] + rng.normal(0, 2.0, (2, 12, 2))  # two of the three, in another order
    seen = np.ones((2, 12), bool)
    predicted[0, :4] += 300.0  # a third of the joints wildly off: the median still matches
    assert match_keypoints(predicted, seen, truth, gate_px=20.0) == [(0, 2), (1, 0)]
    stranger = np.concatenate([predicted, truth[1:2] + 100.0])
    assert match_keypoints(stranger, np.ones((3, 12), bool), truth, gate_px=20.0) == [(0, 2), (1, 0)]


def test_keypoint_matching_uses_only_seen_joints_and_needs_enough_of_them() -> None:
    truth = np.zeros((1, 12, 2))
    predicted = np.zeros((1, 12, 2))
    predicted[0, 3:] = 500.0  # only the first three are right
    seen = np.zeros((1, 12), bool)
    seen[0, :3] = True
    assert match_keypoints(predicted, seen, truth, gate_px=1.0) == [(0, 0)]
    assert match_keypoints(predicted, seen, truth, gate_px=1.0, min_joints=4) == []
    assert match_keypoints(np.zeros((0, 12, 2)), np.zeros((0, 12), bool), truth, gate_px=1.0) == []
