"""Depth ratio and sigma coverage by distance (mp3d-eval's and the replay report's depth table)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from mp3d_ros.evaluation.depth_bias import (
    DepthMatches,
    depth_bias_table,
    found_summary,
    match_roots,
    torso_in_image,
)
from mp3d_ros.geometry.people import DEPTH_CUE_FLOOR, People
from mp3d_ros.geometry.skeleton import MUPOTS_17


def one_person_at(z_m: float, u_px: float, sigma_m: float) -> People:
    keypoints = np.zeros((1, 17, 3))
    keypoints[0, :, 2] = z_m
    uv = np.zeros((1, 17, 2))
    uv[0, :, 0] = u_px
    return People("mupots_17", uv_px=uv, keypoints_m=keypoints, confidence=np.ones((1, 17)),
                  inferred=np.zeros((1, 17), bool), score=np.ones(1), root_sigma_m=np.array([sigma_m]))


def test_known_ratios_and_coverage_per_band() -> None:
    rng = np.random.default_rng(0)
    matches = DepthMatches()
    sigma = 0.2
    for true_z in np.linspace(2.1, 7.9, 3000):
        predicted = true_z * 0.9 + rng.normal(0.0, sigma)  # 10 % too near, honest Gaussian sigma
        matches.add_roots(one_person_at(predicted, 100.0, sigma), np.array([[100.0, 0.0]]), np.array([true_z]))
    rows = {row["band_m"]: row for row in depth_bias_table(matches)}
    assert rows["2-4"]["median_ratio"] == pytest.approx(0.9, abs=0.01)
    # the bias makes errors exceed the sigma more often at larger distances
    assert rows["2-4"]["within_1_sigma"] > rows["6-8"]["within_1_sigma"]
    assert rows["all"]["matched"] == 3000 and rows["all"]["missed"] == 0


def test_unbiased_honest_sigma_covers_68_and_95_percent() -> None:
    rng = np.random.default_rng(1)
    matches = DepthMatches()
    for true_z in rng.uniform(2.0, 8.0, 4000):
        matches.add_roots(one_person_at(true_z + rng.normal(0, 0.3), 50.0, 0.3), np.array([[50.0, 0.0]]),
                          np.array([true_z]))
    row = depth_bias_table(matches)[-1]
    assert row["within_1_sigma"] == pytest.approx(0.683, abs=0.02)
    assert row["within_2_sigma"] == pytest.approx(0.954, abs=0.01)


def test_unmatched_people_count_as_missed_in_their_band() -> None:
    matches = DepthMatches()
    matches.add_roots(one_person_at(3.0, 0.0, 0.1), np.array([[0.0, 0.0], [500.0, 0.0]]), np.array([3.0, 9.0]))
    matches.add_roots(People.empty("mupots_17"), np.array([[0.0, 0.0]]), np.array([5.0]))
    rows = {row["band_m"]: row for row in depth_bias_table(matches)}
    assert (rows["2-4"]["matched"], rows["8-10"]["missed"], rows["4-6"]["missed"]) == (1, 1, 1)


def test_mp3d_eval_uses_the_annotated_floor_and_prints_the_depth_table(tmp_path, capsys, one_torch_thread) -> None:
    from mp3d_ros.cli.evaluate import main as evaluate_main
    from mp3d_ros.cli.synth import main as synth_main
    from mp3d_ros.evaluation.predictions import load_predictions

    assert synth_main(["--out", str(tmp_path / "scenes"), "--images", "3", "--seed", "2", "--size", "320x240",
                       "--people", "2,3"]) == 0
    annotations = json.loads((tmp_path / "scenes" / "annotations.json").read_text())
    assert all("ground_from_camera" in image for image in annotations["images"])
    code = evaluate_main(["--model", "movenet-lift", "--dataset", "synthetic", "--data", str(tmp_path / "scenes"),
                          "--floor", "--device", "cpu", "--out", str(tmp_path / "p.json"),
                          "--metrics-out", str(tmp_path / "m.json")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "median predicted / true depth" in printed and "within 1 sigma" in printed
    saved, _ = load_predictions(tmp_path / "p.json")
    cues = np.concatenate([prediction.people.depth_cues for prediction in saved])
    assert np.any(cues & DEPTH_CUE_FLOOR)
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["depth_by_distance"][-1]["band_m"] == "all"
    found = metrics["found"]
    assert f"whose torso is in the image: {found['found']} of {found['people']} found" in printed
    assert found["people"] + found["torso_cut_off"] > 0


def test_match_roots_assigns_nearest_pairs_within_the_gate() -> None:
    truth = np.array([[100.0, 100.0], [300.0, 100.0], [500.0, 100.0]])
    predicted = np.array([[305.0, 98.0], [104.0, 103.0], [900.0, 100.0]])
    assert match_roots(predicted, truth, gate_px=40.0) == [(0, 1), (1, 0)]
    assert match_roots(predicted, truth, gate_px=4.0) == []
    assert match_roots(np.zeros((0, 2)), truth) == []


def test_torso_in_image_needs_both_shoulders_and_both_hips_inside() -> None:
    uv = np.full((3, 17, 2), 50.0)
    uv[1, MUPOTS_17.joints.index("left_hip")] = (-3.0, 50.0)  # one hip left of the image
    uv[2, MUPOTS_17.joints.index("head_top")] = (500.0, 50.0)  # only the head outside
    np.testing.assert_array_equal(torso_in_image(uv, MUPOTS_17.joints, (100, 80)), [True, False, True])


def test_found_summary_counts_people_in_view_within_the_distance() -> None:
    matches = DepthMatches()
    truth_uv = np.array([[0.0, 0.0], [200.0, 0.0], [400.0, 0.0], [600.0, 0.0]])
    matches.add_roots(one_person_at(3.0, 0.0, 0.1), truth_uv, np.array([3.0, 5.0, 1.0, 9.0]),
                      torso_seen=np.array([True, True, False, True]))
    summary = found_summary(matches, max_depth_m=8.0)
    # within 8 m: two in view (one found), one cut off (missed); the one at 9 m is not counted
    assert (summary["people"], summary["found"], summary["share"]) == (2, 1, 0.5)
    assert (summary["torso_cut_off"], summary["torso_cut_off_found"]) == (1, 0)
    assert found_summary(DepthMatches()) is None


def test_renders_through_the_real_pipeline_are_unbiased_in_depth(mocap_dir, one_torch_thread) -> None:
    """movenet-lift on renders of people as tall as its size prior (1.70 m), 2-10 m away: the median
    predicted / true root depth lies within 3 % (issue 16). The lifter's body and what MoveNet marks
    both enter: on these scenes it is 1.020; the lifter of one mocap figure's proportions gave 1.031,
    and without the torso's keypoint scale it is 0.964."""
    from mp3d_ros.config import load_config
    from mp3d_ros.geometry.skeleton import MUCO_21
    from mp3d_ros.inference import Estimator
    from mp3d_ros.messages.synthetic_bag import ground_truth_people
    from mp3d_ros.resources import find_share_path
    from mp3d_ros.synthetic.bvh import load_mocap_poses
    from mp3d_ros.synthetic.scenes import SynthRecipe, generate_image

    scenes = load_config(SynthRecipe, find_share_path("config/synth/depth_scenes.yaml")).scene
    config = replace(scenes, height_range_m=(1.70, 1.70))
    mocap = load_mocap_poses(mocap_dir, MUCO_21, fps=config.fps, takes=["01_01", "02_01", "07_01", "08_01"])
    estimator = Estimator("movenet-lift", device="cpu", backend="torch")
    matches = DepthMatches()
    for index in range(24):
        frame = generate_image(config, 5, index, mocap)
        matches.add(estimator.estimate(frame.image, frame.intrinsics), ground_truth_people(frame))
    rows = {row["band_m"]: row for row in depth_bias_table(matches)}
    overall = rows["all"]
    assert overall["matched"] >= 30, overall
    assert abs(overall["median_ratio"] - 1.0) < 0.03, rows
