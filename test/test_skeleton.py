"""skeleton.py: joint sets, index maps, flip pairs and bone trees."""

from __future__ import annotations

import numpy as np
import pytest

from mp3d_ros.geometry.skeleton import (
    COCO_17,
    H36M_17,
    JOINT_SETS,
    MUCO_21,
    MUPOTS_17,
    PANOPTIC_15,
    convert_flags,
    convert_joints,
    flip_permutation,
    get_joint_set,
    index_map,
)


def test_sizes_roots_and_necks() -> None:
    assert [s.num_joints for s in (MUCO_21, MUPOTS_17, COCO_17, PANOPTIC_15, H36M_17)] == [
        21, 17, 17, 15, 17]
    assert MUPOTS_17.joints[MUPOTS_17.root] == "pelvis" and MUPOTS_17.root == 14
    assert MUPOTS_17.joints[MUPOTS_17.neck] == "neck" and MUPOTS_17.neck == 1
    assert MUCO_21.joints[:17] == MUPOTS_17.joints  # MuCo extends MuPoTS with hands and toes
    assert H36M_17.root == 0 and PANOPTIC_15.root == 2 and COCO_17.root == -1


@pytest.mark.parametrize("joint_set", [MUCO_21, MUPOTS_17, PANOPTIC_15, H36M_17])
def test_3d_bones_form_a_tree_rooted_at_the_pelvis(joint_set) -> None:
    parents = joint_set.parents()
    assert len(joint_set.bones) == joint_set.num_joints - 1
    for joint in range(joint_set.num_joints):
        seen, current = set(), joint
        while current != joint_set.root:
            assert current not in seen and parents[current] >= 0, (joint_set.name, joint)
            seen.add(current)
            current = parents[current]


@pytest.mark.parametrize("joint_set", list(JOINT_SETS.values()))
def test_flip_pairs_swap_left_and_right(joint_set) -> None:
    perm = flip_permutation(joint_set)
    np.testing.assert_array_equal(perm[perm], np.arange(joint_set.num_joints))
    for a, b in joint_set.flip_pairs:
        assert joint_set.joints[a].replace("left_", "right_") == joint_set.joints[b]
    sides = sum(n.startswith(("left_", "right_")) for n in joint_set.joints)
    assert 2 * len(joint_set.flip_pairs) == sides


def test_index_map_and_round_trip() -> None:
    mapping = index_map(H36M_17, MUPOTS_17)
    assert mapping[MUPOTS_17.index("head")] == -1  # Human3.6M has no head centre
    assert mapping[MUPOTS_17.root] == H36M_17.root
    joints = np.random.default_rng(0).normal(size=(4, 21, 3))
    mupots, labelled = convert_joints(joints, MUCO_21, MUPOTS_17)
    assert labelled.all() and mupots.shape == (4, 17, 3)
    back, back_labelled = convert_joints(mupots, MUPOTS_17, MUCO_21)
    np.testing.assert_array_equal(back[:, :17], joints[:, :17])
    assert not back_labelled[:, 17:].any() and np.isnan(back[:, 17:]).all()


def test_coco_maps_limbs_only() -> None:
    _, labelled = convert_joints(np.zeros((17, 2)), COCO_17, MUPOTS_17)
    names = {MUPOTS_17.joints[i] for i in np.flatnonzero(labelled)}
    assert names == {f"{side}_{part}" for side in ("left", "right")
                     for part in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle")}


def test_errors_name_the_problem() -> None:
    with pytest.raises(KeyError, match="known"):
        get_joint_set("smpl_24")
    with pytest.raises(ValueError, match="mupots_17 has 17"):
        convert_joints(np.zeros((15, 3)), MUPOTS_17, MUCO_21)
    with pytest.raises(KeyError, match="no joint 'tail'"):
        MUPOTS_17.index("tail")


def test_flags_follow_their_joints_and_missing_joints_are_false() -> None:
    coco, mupots = get_joint_set("coco_17"), get_joint_set("mupots_17")
    flags = np.zeros((2, coco.num_joints), dtype=bool)
    flags[0, coco.joints.index("left_knee")] = True
    flags[1] = True
    converted = convert_flags(flags, coco, mupots)
    assert converted.shape == (2, mupots.num_joints)
    assert np.flatnonzero(converted[0]).tolist() == [mupots.joints.index("left_knee")]
    # COCO has no pelvis, neck or head top: never flagged, whatever the source says
    for name in ("pelvis", "neck", "head_top"):
        assert not converted[1, mupots.joints.index(name)]
