"""Named joint sets, index maps between them, flip pairs, bones, root and neck indices.

Every joint set names its joints from one shared vocabulary, so an index map between two sets is a
match of names: a joint the destination set has but the source lacks maps to -1 and is *unlabelled*
(masked in losses and metrics, never zero-filled).

Vocabulary notes (where datasets use different words for the same point):
- ``neck`` is the thorax / upper-chest point (MuCo/MuPoTS "Thorax", Human3.6M "Neck",
  Panoptic "Neck"). MAR's torso length Omega is pelvis -> neck.
- ``head_top`` is the top of the skull; ``head`` the head centre (MuPoTS "Head", between the ears).
- ``pelvis`` is the root of every 3D set; COCO has no pelvis (2D only).

Orders follow the datasets' own files: MuCo-3DHP / MuPoTS-3D / Human3.6M as in the 3DMPPE
(RootNet/PoseNet) releases, COCO as in the keypoint annotations, CMU Panoptic as the first 15 joints
of its ``coco19`` order (as SMAP uses).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "JointSet",
    "MUCO_21",
    "MUPOTS_17",
    "COCO_17",
    "PANOPTIC_15",
    "H36M_17",
    "JOINT_SETS",
    "get_joint_set",
    "index_map",
    "convert_joints",
    "convert_flags",
    "flip_permutation",
]


@dataclass(frozen=True)
class JointSet:
    """One skeleton convention.

    Attributes:
        name: identifier used in configs, checkpoints and messages (e.g. ``"mupots_17"``).
        joints: joint names in the dataset's order.
        bones: (parent, child) index pairs; for 3D sets they form a tree rooted at ``root``.
        root: index of the pelvis, or -1 for 2D-only sets without one.
        neck: index of the neck / thorax, or -1.
    """

    name: str
    joints: tuple[str, ...]
    bones: tuple[tuple[int, int], ...]
    root: int
    neck: int
    flip_pairs: tuple[tuple[int, int], ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "flip_pairs", _flip_pairs(self.joints))
        if len(set(self.joints)) != len(self.joints):
            raise ValueError(f"joint set {self.name}: duplicate joint names")

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    def index(self, joint: str) -> int:
        """Index of a named joint; ``KeyError`` naming the set when absent."""
        try:
            return self.joints.index(joint)
        except ValueError:
            raise KeyError(f"joint set {self.name} has no joint {joint!r}") from None

    def parents(self) -> np.ndarray:
        """(J,) parent index of each joint along ``bones`` (-1 for the root and unconnected joints)."""
        parent = np.full(self.num_joints, -1, dtype=np.int64)
        for a, b in self.bones:
            parent[b] = a
        return parent


def _flip_pairs(joints: tuple[str, ...]) -> tuple[tuple[int, int], ...]:
    """Pairs (left, right) found by the ``left_`` / ``right_`` prefixes of the names."""
    pairs = []
    for i, name in enumerate(joints):
        if name.startswith("left_"):
            mirror = "right_" + name[len("left_"):]
            if mirror in joints:
                pairs.append((i, joints.index(mirror)))
    return tuple(pairs)


def _bones(joints: tuple[str, ...], named: list[tuple[str, str]]) -> tuple[tuple[int, int], ...]:
    return tuple((joints.index(a), joints.index(b)) for a, b in named)


_LIMBS = [
    ("neck", "right_shoulder"), ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"),
    ("neck", "left_shoulder"), ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
    ("pelvis", "right_hip"), ("right_hip", "right_knee"), ("right_knee", "right_ankle"),
    ("pelvis", "left_hip"), ("left_hip", "left_knee"), ("left_knee", "left_ankle"),
]

_MUPOTS_JOINTS = (
    "head_top", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder",
    "left_elbow", "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee",
    "left_ankle", "pelvis", "spine", "head",
)
_MUPOTS_BONES = [("pelvis", "spine"), ("spine", "neck"), ("neck", "head"), ("head", "head_top")] + _LIMBS

MUPOTS_17 = JointSet(
    name="mupots_17",
    joints=_MUPOTS_JOINTS,
    bones=_bones(_MUPOTS_JOINTS, _MUPOTS_BONES),
    root=_MUPOTS_JOINTS.index("pelvis"),
    neck=_MUPOTS_JOINTS.index("neck"),
)

_MUCO_JOINTS = _MUPOTS_JOINTS + ("right_hand", "left_hand", "right_toe", "left_toe")
MUCO_21 = JointSet(
    name="muco_21",
    joints=_MUCO_JOINTS,
    bones=_bones(
        _MUCO_JOINTS,
        _MUPOTS_BONES
        + [("right_wrist", "right_hand"), ("left_wrist", "left_hand"),
           ("right_ankle", "right_toe"), ("left_ankle", "left_toe")],
    ),
    root=_MUCO_JOINTS.index("pelvis"),
    neck=_MUCO_JOINTS.index("neck"),
)

_COCO_JOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle",
)
COCO_17 = JointSet(
    name="coco_17",
    joints=_COCO_JOINTS,
    bones=_bones(
        _COCO_JOINTS,
        [("nose", "left_eye"), ("nose", "right_eye"), ("left_eye", "left_ear"),
         ("right_eye", "right_ear"), ("left_shoulder", "right_shoulder"),
         ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
         ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"),
         ("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"), ("left_hip", "right_hip"),
         ("left_hip", "left_knee"), ("left_knee", "left_ankle"), ("right_hip", "right_knee"),
         ("right_knee", "right_ankle")],
    ),
    root=-1,
    neck=-1,
)

_PANOPTIC_JOINTS = (
    "neck", "nose", "pelvis", "left_shoulder", "left_elbow", "left_wrist", "left_hip", "left_knee",
    "left_ankle", "right_shoulder", "right_elbow", "right_wrist", "right_hip", "right_knee",
    "right_ankle",
)
PANOPTIC_15 = JointSet(
    name="panoptic_15",
    joints=_PANOPTIC_JOINTS,
    bones=_bones(_PANOPTIC_JOINTS, [("pelvis", "neck"), ("neck", "nose")] + _LIMBS),
    root=_PANOPTIC_JOINTS.index("pelvis"),
    neck=_PANOPTIC_JOINTS.index("neck"),
)

_H36M_JOINTS = (
    "pelvis", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "spine", "neck", "nose", "head_top", "left_shoulder", "left_elbow", "left_wrist",
    "right_shoulder", "right_elbow", "right_wrist",
)
H36M_17 = JointSet(
    name="h36m_17",
    joints=_H36M_JOINTS,
    bones=_bones(
        _H36M_JOINTS,
        [("pelvis", "spine"), ("spine", "neck"), ("neck", "nose"), ("nose", "head_top")] + _LIMBS,
    ),
    root=_H36M_JOINTS.index("pelvis"),
    neck=_H36M_JOINTS.index("neck"),
)

JOINT_SETS: dict[str, JointSet] = {
    s.name: s for s in (MUCO_21, MUPOTS_17, COCO_17, PANOPTIC_15, H36M_17)
}


def get_joint_set(name: str) -> JointSet:
    """The joint set called ``name``; ``KeyError`` listing the known names otherwise."""
    try:
        return JOINT_SETS[name]
    except KeyError:
        raise KeyError(f"unknown joint set {name!r}; known: {sorted(JOINT_SETS)}") from None


def index_map(source: JointSet, target: JointSet) -> np.ndarray:
    """(J_target,) index into ``source`` for each joint of ``target``, -1 where source lacks it."""
    return np.array(
        [source.joints.index(n) if n in source.joints else -1 for n in target.joints], dtype=np.int64
    )


def convert_joints(
    joints: np.ndarray, source: JointSet, target: JointSet
) -> tuple[np.ndarray, np.ndarray]:
    """Reorder ``(*, J_source, C)`` joints into ``target``'s order.

    Returns ``(joints_target, labelled)``: ``(*, J_target, C)`` values (NaN for joints the source
    lacks, so they can never be mistaken for data) and a ``(*, J_target)`` bool mask.
    """
    joints = np.asarray(joints)
    if joints.shape[-2] != source.num_joints:
        raise ValueError(
            f"joints have {joints.shape[-2]} joints along axis -2, joint set {source.name} has "
            f"{source.num_joints}"
        )
    mapping = index_map(source, target)
    labelled = mapping >= 0
    out = np.full(joints.shape[:-2] + (target.num_joints, joints.shape[-1]), np.nan)
    out[..., labelled, :] = joints[..., mapping[labelled], :]
    return out, np.broadcast_to(labelled, out.shape[:-1]).copy()


def convert_flags(flags: np.ndarray, source: JointSet, target: JointSet) -> np.ndarray:
    """``(*, J_source)`` bool per joint -> ``(*, J_target)``, False for joints the source lacks."""
    converted, mapped = convert_joints(np.asarray(flags)[..., None].astype(np.float64), source, target)
    return mapped & (np.nan_to_num(converted[..., 0]) > 0)


def flip_permutation(joint_set: JointSet) -> np.ndarray:
    """(J,) permutation that swaps left and right joints; applying it twice is the identity."""
    perm = np.arange(joint_set.num_joints)
    for a, b in joint_set.flip_pairs:
        perm[a], perm[b] = b, a
    return perm
