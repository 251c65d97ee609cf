"""bvh.py: parsing, forward kinematics in closed form, the Daz joint map, and loading takes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from mp3d_ros.geometry.skeleton import COCO_17, H36M_17, MUCO_21, MUPOTS_17
from mp3d_ros.synthetic.bvh import (
    forward_kinematics,
    load_mocap_poses,
    read_bvh,
    to_joint_set,
)

# A root with position channels, an arm joint with Z-X-Y rotations and an End Site. Frame 0 is the
# rest pose, frame 1 moves the root, turns it by 90 deg about z and the arm by 90 deg about z then
# x; frame 2 turns the root by 90 deg about y and the arm by 90 deg about x.
TINY_BVH = """HIERARCHY\r
ROOT base\r
{\r
  OFFSET 0 0 0\r
  CHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation Xrotation\r
  JOINT arm\r
  {\r
    OFFSET 0 10 0\r
    CHANNELS 3 Zrotation Xrotation Yrotation\r
    End Site\r
    {\r
      OFFSET 0 5 0\r
    }\r
  }\r
}\r
MOTION\r
Frames: 3\r
Frame Time: 0.05\r
0 0 0 0 0 0 0 0 0
1 2 3 90 0 0 90 90 0
0 0 0 0 90 0 0 90 0
"""


def write(tmp_path: Path, text: str, name: str = "tiny.bvh") -> Path:
    path = tmp_path / name
    path.write_text(text, newline="")
    return path


def test_tiny_bvh_header(tmp_path: Path) -> None:
    motion = read_bvh(write(tmp_path, TINY_BVH))
    assert motion.names == ("base", "arm", "arm_end")
    assert motion.parents.tolist() == [-1, 0, 1]
    assert motion.channels[2] == ()
    assert motion.channel_start.tolist() == [0, 6, 9]
    assert motion.motion.shape == (3, 9)
    assert motion.frame_time_s == pytest.approx(0.05)
    np.testing.assert_array_equal(motion.offsets_cm[1], [0, 10, 0])


def test_tiny_bvh_forward_kinematics_closed_form(tmp_path: Path) -> None:
    positions = forward_kinematics(read_bvh(write(tmp_path, TINY_BVH)), unit_m=1.0)
    # Rest: offsets stack up the y axis.
    np.testing.assert_allclose(positions[0], [[0, 0, 0], [0, 10, 0], [0, 15, 0]], atol=1e-12)
    # Root at (1, 2, 3) turned 90 deg about z: arm offset (0, 10, 0) -> (-10, 0, 0).
    # Arm Rz(90) Rx(90) (0, 5, 0) = Rz(90) (0, 0, 5) = (0, 0, 5), then the root's Rz(90) keeps it.
    np.testing.assert_allclose(positions[1], [[1, 2, 3], [-9, 2, 3], [-9, 2, 8]], atol=1e-12)
    # Root Yrotation 90 keeps (0, 10, 0); arm Rx(90) (0, 5, 0) = (0, 0, 5); root Ry(90) -> (5, 0, 0)
    np.testing.assert_allclose(positions[2], [[0, 0, 0], [0, 10, 0], [5, 10, 0]], atol=1e-12)


def test_frames_argument_selects_rows(tmp_path: Path) -> None:
    motion = read_bvh(write(tmp_path, TINY_BVH))
    every = forward_kinematics(motion)
    np.testing.assert_array_equal(forward_kinematics(motion, [2, 0]), every[[2, 0]])
    np.testing.assert_array_equal(forward_kinematics(motion, slice(1, None)), every[1:])
    np.testing.assert_allclose(every[1, 2], [-0.09, 0.02, 0.08], atol=1e-12)  # centimetres -> m
    with pytest.raises(ValueError, match="out of range"):
        forward_kinematics(motion, [3])


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("OFFSET 0 10 0", "OFFSET 0 ten 0", r"tiny\.bvh:8: expected a number"),
        (
            "Zrotation Xrotation Yrotation",
            "Zrotation Xrotation Wrotation",
            r"tiny\.bvh:9: unknown channel",
        ),
        ("1 2 3 90 0 0 90 90 0", "1 2 3 90 0 0 90 90", r"tiny\.bvh:20: frame line has 8 values"),
        ("1 2 3 90 0 0 90 90 0", "1 2 3 90 0 0 90 x 0", r"tiny\.bvh:20: .*no number"),
        ("Frames: 3", "Frames: 4", r"tiny\.bvh: 'Frames: 4' but 3 frame lines"),
        ("Frame Time: 0.05", "Frame Time: -1", r"tiny\.bvh:18: Frame Time must be > 0"),
        ("MOTION", "MOTON", r"tiny\.bvh: no MOTION line"),
        ("    End Site", "    End Sight", r"tiny\.bvh:10: expected 'Site'"),
        ("JOINT arm", "JOINT base", r"tiny\.bvh:6: duplicate joint name"),
    ],
)
def test_malformed_bvh_names_file_and_line(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    assert old in TINY_BVH
    with pytest.raises(ValueError, match=message):
        read_bvh(write(tmp_path, TINY_BVH.replace(old, new, 1)))


def test_joint_map_rejects_a_foreign_skeleton(tmp_path: Path) -> None:
    motion = read_bvh(write(tmp_path, TINY_BVH))
    with pytest.raises(
        ValueError, match=r"tiny\.bvh lacks the Daz joints \['abdomen', 'chest', 'head'"
    ):
        to_joint_set(forward_kinematics(motion), motion, MUCO_21)
    with pytest.raises(ValueError, match="positions_m has shape"):
        to_joint_set(np.zeros((2, 4, 3)), motion, MUCO_21)


# ----------------------------------------------------------------------------- real CMU takes


@pytest.fixture(scope="module")
def walk(request: pytest.FixtureRequest) -> tuple:
    shared = Path(__file__).resolve().parents[1].parent / "shared"
    path = shared / "mocap" / "cmu_daz" / "02" / "02_01.bvh"
    if not path.is_file():
        pytest.skip(f"{path} is absent: the CMU mocap lives in ../shared beside the checkout")
    motion = read_bvh(path)
    return motion, forward_kinematics(motion)


def bone_lengths(joints: np.ndarray, joint_set, first: str, second: str) -> np.ndarray:
    return np.linalg.norm(
        joints[:, joint_set.index(first)] - joints[:, joint_set.index(second)], axis=-1
    )


def test_real_take_header(walk: tuple) -> None:
    motion, positions = walk
    assert motion.num_joints == 43 + 14
    assert motion.motion.shape == (344, 132)
    assert motion.fps == pytest.approx(120.0, rel=1e-5)
    assert positions.shape == (344, 57, 3)


# Bones that are one rigid BVH segment each: their length may not change over frames.
RIGID_BONES = {
    ("right_hip", "right_knee"): (0.35, 0.55),  # femur
    ("left_hip", "left_knee"): (0.35, 0.55),
    ("right_knee", "right_ankle"): (0.35, 0.55),  # shin
    ("left_knee", "left_ankle"): (0.35, 0.55),
    ("right_shoulder", "right_elbow"): (0.22, 0.38),  # upper arm
    ("left_shoulder", "left_elbow"): (0.22, 0.38),
    ("right_elbow", "right_wrist"): (0.18, 0.32),  # forearm
    ("left_elbow", "left_wrist"): (0.18, 0.32),
    ("right_ankle", "right_toe"): (0.08, 0.2),
    ("head", "head_top"): (0.08, 0.15),
}


def test_real_take_bones_are_rigid_and_plausible(walk: tuple) -> None:
    motion, positions = walk
    joints = to_joint_set(positions, motion, MUCO_21)
    for (first, second), (low, high) in RIGID_BONES.items():
        lengths = bone_lengths(joints, MUCO_21, first, second)
        assert np.ptp(lengths) < 1e-9, (first, second)
        assert low < lengths[0] < high, (first, second, lengths[0])
    # Left and right limbs of the one Daz figure are mirror images.
    np.testing.assert_allclose(
        bone_lengths(joints, MUCO_21, "left_hip", "left_knee"),
        bone_lengths(joints, MUCO_21, "right_hip", "right_knee"),
        rtol=1e-9,
    )


def test_real_take_anatomy(walk: tuple) -> None:
    motion, positions = walk
    joints = to_joint_set(positions[10:], motion, MUCO_21)
    height = lambda name: joints[:, MUCO_21.index(name), 1]  # noqa: E731 (Y up)
    # A walking person: head top over head over neck over pelvis over knees over ankles.
    order = ["head_top", "head", "neck", "spine", "pelvis", "right_knee", "right_ankle"]
    for upper, lower in zip(order, order[1:]):
        assert np.all(height(upper) > height(lower)), (upper, lower)
    stature = np.median(height("head_top") - np.minimum(height("right_toe"), height("left_toe")))
    assert 1.5 < stature < 1.8
    # T-pose (frame 0): facing +Z, the figure's left at +X.
    rest = to_joint_set(positions[0], motion, COCO_17)
    assert rest[COCO_17.index("left_wrist"), 0] > rest[COCO_17.index("right_wrist"), 0] + 1.0
    assert rest[COCO_17.index("nose"), 2] > rest[COCO_17.index("left_ear"), 2] + 0.05
    eyes = np.linalg.norm(rest[COCO_17.index("left_eye")] - rest[COCO_17.index("right_eye")])
    assert 0.06 < eyes < 0.09


@pytest.mark.parametrize("joint_set", [MUCO_21, MUPOTS_17, COCO_17, H36M_17])
def test_real_take_every_joint_set(walk: tuple, joint_set) -> None:
    motion, positions = walk
    joints = to_joint_set(positions[:5], motion, joint_set)
    assert joints.shape == (5, joint_set.num_joints, 3)
    assert np.all(np.isfinite(joints))
    if joint_set.root >= 0:
        np.testing.assert_array_equal(joints[:, joint_set.root], positions[:5, motion.index("hip")])


@given(
    quaternion=st.lists(st.floats(-1, 1), min_size=4, max_size=4).filter(
        lambda q: np.linalg.norm(q) > 0.1
    ),
    shift=st.lists(st.floats(-5, 5), min_size=3, max_size=3),
    scale=st.floats(0.5, 2.0),
)
def test_joint_map_commutes_with_similarity_transforms(
    walk: tuple, quaternion: list, shift: list, scale: float
) -> None:
    """Face points come from the head joints' frame, so they move with the body and its scale."""
    motion, positions = walk
    rotation = Rotation.from_quat(quaternion).as_matrix()
    moved = scale * positions[40:42] @ rotation.T + shift
    expected = scale * to_joint_set(positions[40:42], motion, COCO_17) @ rotation.T + shift
    np.testing.assert_allclose(to_joint_set(moved, motion, COCO_17), expected, atol=1e-9)


def test_load_mocap_poses_resamples_and_names_subjects(walk: tuple, tmp_path: Path) -> None:
    motion, positions = walk
    (tmp_path / "02").mkdir()
    shutil.copy(motion.path, tmp_path / "02" / "02_01.bvh")
    (tmp_path / "takes.csv").write_text("take,subject,description\n02_01,2,walk\n")
    [take] = load_mocap_poses(tmp_path, MUPOTS_17, fps=30.0)
    assert (take.take, take.subject, take.description, take.fps) == ("02_01", "02", "walk", 30.0)
    expected = to_joint_set(positions[10::4], motion, MUPOTS_17)  # 120 fps -> every 4th frame
    assert take.joints_m.shape == expected.shape
    np.testing.assert_allclose(take.joints_m, expected, atol=1e-5)
    assert take.valid.all()
    # 48 fps: frame k sits 2.5 source frames after frame k-1, halfway between two source frames.
    [half] = load_mocap_poses(tmp_path, MUPOTS_17, fps=48.0)
    np.testing.assert_allclose(
        half.joints_m[1],
        0.5 * (expected_frame(positions, motion, 12) + expected_frame(positions, motion, 13)),
        atol=1e-5,
    )
    with pytest.raises(ValueError, match=r"takes \['99_99'\] not found"):
        load_mocap_poses(tmp_path, MUPOTS_17, takes=["99_99"])


def expected_frame(positions: np.ndarray, motion, index: int) -> np.ndarray:
    return to_joint_set(positions[index], motion, MUPOTS_17)


def test_load_mocap_poses_flags_joint_flips(walk: tuple, tmp_path: Path) -> None:
    motion, _ = walk
    lines = Path(motion.path).read_text().split("\n")
    data_start = next(i for i, line in enumerate(lines) if line.startswith("Frame Time")) + 1
    # Frame 30 gets a 150 deg elbow rotation for one frame: the wrist jumps by ~0.45 m in 1/120 s.
    values = lines[data_start + 30].split()
    elbow = int(motion.channel_start[motion.index("rForeArm")])
    values[elbow] = str(float(values[elbow]) + 150.0)
    lines[data_start + 30] = " ".join(values)
    (tmp_path / "02").mkdir()
    (tmp_path / "02" / "02_01.bvh").write_text("\n".join(lines))
    [take] = load_mocap_poses(tmp_path, MUPOTS_17, fps=120.0)
    flagged = np.nonzero(~take.valid)[0]
    assert 19 in flagged and 20 in flagged  # frame 30 of the file is frame 20 after skipping 10
    assert len(flagged) <= 4
