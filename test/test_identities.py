"""Identity switches of track ids against ground truth that carries ids."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from mp3d_ros.evaluation.identities import identity_summary
from mp3d_ros.geometry.people import People
from mp3d_ros.geometry.skeleton import get_joint_set

JOINTS = get_joint_set("mupots_17")


def people_at(root_uv_px: list[tuple[float, float]], ids: list[int]) -> People:
    """People whose joints all sit at their root pixels, with these track ids."""
    count = len(root_uv_px)
    uv = np.repeat(np.asarray(root_uv_px, dtype=np.float64).reshape(-1, 1, 2), JOINTS.num_joints, 1)
    people = People("mupots_17", uv, np.ones((count, JOINTS.num_joints, 3)),
                    np.ones((count, JOINTS.num_joints)), np.zeros((count, JOINTS.num_joints), bool),
                    np.full(count, 0.9), np.full(count, 0.2))
    return replace(people, track_id=np.asarray(ids, dtype=np.int64))


PLACES = [(100.0, 200.0), (400.0, 210.0)]


def test_steady_ids_give_no_switches_and_one_id_each() -> None:
    frames = [(people_at(PLACES[::-1], [8, 7]), people_at(PLACES, [1, 2])) for _ in range(5)]
    summary = identity_summary(frames)
    assert (summary.people, summary.matched, summary.tracked) == (2, 10, 10)
    assert summary.id_switches == 0 and summary.ids_per_person == 1.0


def test_swapped_ids_count_one_switch_per_person() -> None:
    truth = people_at(PLACES, [1, 2])
    frames = [(people_at(PLACES, [7, 8]), truth)] * 3 + [(people_at(PLACES, [8, 7]), truth)] * 3
    summary = identity_summary(frames)
    assert summary.id_switches == 2 and summary.ids_per_person == 2.0


def test_untracked_frames_are_no_switch_and_a_new_id_is() -> None:
    truth = people_at(PLACES[:1], [1])
    frames = [(people_at(PLACES[:1], [ids]), truth) for ids in (5, 0, 0, 5, 6, 6)]
    summary = identity_summary(frames)
    assert (summary.matched, summary.tracked, summary.id_switches) == (6, 4, 1)
    assert summary.ids_per_person == 2.0


def test_far_predictions_are_not_matched_and_truth_without_ids_gives_none() -> None:
    far = people_at([(900.0, 900.0)], [3])
    assert identity_summary([(far, people_at(PLACES, [1, 2]))]) is None  # nobody matched
    assert identity_summary([(people_at(PLACES, [3, 4]), people_at(PLACES, [0, 0]))]) is None
