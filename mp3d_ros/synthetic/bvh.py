"""BVH motion capture: reader, forward kinematics, the CMU Daz skeleton in our joint sets.

Reading follows the Biovision format: a ``HIERARCHY`` block (``ROOT`` / ``JOINT`` entries with an
``OFFSET`` to their parent, a ``CHANNELS`` list, children, and ``End Site`` leaves with only an
``OFFSET``), then ``MOTION`` with ``Frames:``, ``Frame Time:`` and one line of channel values per
frame.
Line endings may be mixed (CRLF and LF); ``\\r`` is stripped.

Forward kinematics (column vectors, angles in degrees): a joint's local rotation is the product of
its rotation channels in the order they are listed, ``R = R_c1 R_c2 R_c3`` (``Zrotation Xrotation
Yrotation`` gives ``Rz Rx Ry``); its local translation is ``OFFSET`` plus its position channels, if
any; ``R_world[j] = R_world[parent] R_local[j]`` and
``p_world[j] = p_world[parent] + R_world[parent] t_local[j]``. End Sites are kept as joints without
channels, named ``<parent>_end``, because the CMU toe tip is one.

Joint map of the CMU "Daz-friendly" skeleton (``../shared/mocap/README.md``) into the vocabulary of
:mod:`mp3d_ros.geometry.skeleton`. A BVH joint's position is the origin of the bone of that name:

============================  =====================================================================
ours                          Daz BVH
============================  =====================================================================
pelvis                        ``hip`` (the root)
spine                         midpoint of ``abdomen`` and ``chest`` (halfway up the abdomen bone)
neck (thorax point)           ``neck`` (base of the neck)
right/left_shoulder           ``rShldr`` / ``lShldr``
right/left_elbow              ``rForeArm`` / ``lForeArm``
right/left_wrist              ``rHand`` / ``lHand``
right/left_hand               ``rMid1`` / ``lMid1`` (knuckle of the middle finger)
right/left_hip                ``rThigh`` / ``lThigh``
right/left_knee               ``rShin`` / ``lShin``
right/left_ankle              ``rFoot`` / ``lFoot``
right/left_toe                End Site of ``rFoot`` / ``lFoot`` (toe tip)
right/left_eye                ``rightEye`` / ``leftEye`` (eyeball centre)
head, head_top, nose, ears    fixed points of the head bone, below
============================  =====================================================================

The head has no joint for its centre, its top, the nose or the ears. They are placed at fixed
offsets from ``head`` (the skull base) in the head bone's frame, given here in the rest pose (figure
facing +Z, its left at +X, Y up; centimetres on the Aiko3 figure, eyes 8.05 cm above and in front of
``head``). ``m = 0.244`` is the x of the midline (halfway between the eyes):

- ``head`` (centre of the skull, between the ears): ``(m, 8.0, 1.0)``;
- ``head_top`` (top of the skull): ``(m, 18.5, 1.0)``, 10.5 cm above the eyes, so that the
  figure's 155 cm eye height gives a stature of 165.5 cm (eye height is about 0.936 of stature);
- ``nose`` (tip): ``(m, 4.3, 11.0)``, 3.7 cm below and 3 cm in front of the eyeball centres;
- ``left_ear`` / ``right_ear`` (ear canals): ``(m +- 7.0, 6.5, 0.5)``.

Such a point is rebuilt in any frame from the three head joints ``head``, ``leftEye`` and
``rightEye`` (rigid on the head bone): with ``u = leftEye - head``, ``v = rightEye - head`` and
``w = (u x v) / sqrt(|u x v|)`` (rotates with the head and scales linearly with the skeleton), the
point is ``head + a u + b v + c w`` with ``(a, b, c)`` solved once in the rest pose. So
:func:`to_joint_set` needs joint positions only, also after a uniform rescale.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from mp3d_ros.geometry.skeleton import JointSet

__all__ = [
    "BvhMotion",
    "MocapTake",
    "read_bvh",
    "forward_kinematics",
    "to_joint_set",
    "rest_positions",
    "load_mocap_poses",
    "DAZ_JOINT_MAP",
]

_ROTATION_AXES = {"Xrotation": 0, "Yrotation": 1, "Zrotation": 2}
_POSITION_AXES = {"Xposition": 0, "Yposition": 1, "Zposition": 2}
_CM_TO_M = 0.01


@dataclass(frozen=True, eq=False)
class BvhMotion:
    """One BVH file. J joints (End Sites included), C channels, F frames.

    Attributes:
        path: file the motion was read from (for messages).
        names: (J,) joint names in file order (parents before children); End Sites are
            ``<parent>_end``.
        parents: (J,) int64 parent index, -1 for the root.
        offsets_cm: (J, 3) float64 ``OFFSET`` of each joint in its parent's frame (file units,
            centimetres for the CMU files).
        channels: (J,) tuple of each joint's channel names in file order (empty for End Sites).
        channel_start: (J,) int64 column of each joint's first channel in ``motion``.
        motion: (F, C) float64 channel values, one row per frame (degrees and file units).
        frame_time_s: seconds between frames.
    """

    path: str
    names: tuple[str, ...]
    parents: np.ndarray
    offsets_cm: np.ndarray
    channels: tuple[tuple[str, ...], ...]
    channel_start: np.ndarray
    motion: np.ndarray
    frame_time_s: float

    @property
    def num_frames(self) -> int:
        return int(self.motion.shape[0])

    @property
    def num_joints(self) -> int:
        return len(self.names)

    @property
    def fps(self) -> float:
        return 1.0 / self.frame_time_s

    def index(self, name: str) -> int:
        """Index of joint ``name``; ``KeyError`` naming the file when absent."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"{self.path} has no joint {name!r}") from None


# ----------------------------------------------------------------------------- reading


class _Tokens:
    """Whitespace tokens of the HIERARCHY block with their 1-based line numbers."""

    def __init__(self, path: str, lines: list[str]) -> None:
        self.path = path
        self.items = [(tok, no + 1) for no, line in enumerate(lines) for tok in line.split()]
        self.pos = 0

    def error(self, message: str, line: int | None = None) -> ValueError:
        if line is None:
            line = self.items[min(self.pos, len(self.items) - 1)][1] if self.items else 1
        return ValueError(f"{self.path}:{line}: {message}")

    def next(self, what: str) -> tuple[str, int]:
        if self.pos >= len(self.items):
            raise self.error(f"unexpected end of HIERARCHY, expected {what}")
        item = self.items[self.pos]
        self.pos += 1
        return item

    def expect(self, word: str) -> int:
        token, line = self.next(repr(word))
        if token != word:
            raise self.error(f"expected {word!r}, got {token!r}", line)
        return line

    def number(self, what: str) -> float:
        token, line = self.next(what)
        try:
            value = float(token)
        except ValueError:
            raise self.error(f"expected a number for {what}, got {token!r}", line) from None
        if not np.isfinite(value):
            raise self.error(f"{what} is not finite: {token!r}", line)
        return value


@dataclass
class _Skeleton:
    names: list[str]
    parents: list[int]
    offsets: list[tuple[float, float, float]]
    channels: list[tuple[str, ...]]


def _parse_joint(
    tokens: _Tokens, skeleton: _Skeleton, name: str, parent: int, line: int, end_site: bool = False
) -> None:
    if name in skeleton.names:
        raise tokens.error(f"duplicate joint name {name!r}", line)
    index = len(skeleton.names)
    skeleton.names.append(name)
    skeleton.parents.append(parent)
    tokens.expect("{")
    tokens.expect("OFFSET")
    skeleton.offsets.append(tuple(tokens.number(f"OFFSET of {name}") for _ in range(3)))
    skeleton.channels.append(())
    if end_site:
        tokens.expect("}")
        return
    tokens.expect("CHANNELS")
    count_token, count_line = tokens.next("a channel count")
    if not count_token.isdigit():
        raise tokens.error(f"CHANNELS of {name}: expected a count, got {count_token!r}", count_line)
    names = []
    for _ in range(int(count_token)):
        channel, channel_line = tokens.next(f"a channel name of {name}")
        if channel not in _ROTATION_AXES and channel not in _POSITION_AXES:
            raise tokens.error(f"unknown channel {channel!r} of joint {name}", channel_line)
        names.append(channel)
    if len(set(names)) != len(names):
        raise tokens.error(f"joint {name} repeats a channel: {names}", count_line)
    skeleton.channels[index] = tuple(names)
    while True:
        token, token_line = tokens.next(f"JOINT, End Site or '}}' in {name}")
        if token == "}":
            return
        if token == "JOINT":
            child, child_line = tokens.next("a joint name")
            _parse_joint(tokens, skeleton, child, index, child_line)
        elif token == "End":
            tokens.expect("Site")
            _parse_joint(tokens, skeleton, name + "_end", index, token_line, end_site=True)
        else:
            raise tokens.error(
                f"expected JOINT, End Site or '}}' in {name}, got {token!r}", token_line
            )


def _header_value(path: str, lines: list[str], index: int, key: str) -> str:
    line = lines[index] if index < len(lines) else ""
    match = re.fullmatch(rf"\s*{key}:?\s*(\S+)\s*", line)
    if match is None:
        raise ValueError(f"{path}:{index + 1}: expected '{key}: <value>', got {line.strip()!r}")
    return match.group(1)


def _read_frames(
    path: str, lines: list[str], motion_line: int, num_channels: int
) -> tuple[np.ndarray, float]:
    """(F, C) channel values and frame time of the MOTION block at line index ``motion_line``."""
    frames_text = _header_value(path, lines, motion_line + 1, "Frames")
    time_text = _header_value(path, lines, motion_line + 2, "Frame Time")
    if not frames_text.isdigit():
        raise ValueError(f"{path}:{motion_line + 2}: Frames must be a count, got {frames_text!r}")
    try:
        frame_time_s = float(time_text)
    except ValueError:
        frame_time_s = float("nan")
    if not (frame_time_s > 0 and np.isfinite(frame_time_s)):
        raise ValueError(f"{path}:{motion_line + 3}: Frame Time must be > 0, got {time_text!r}")
    data = [(i + 1, line) for i, line in enumerate(lines[motion_line + 3:], motion_line + 3)
            if line.strip()]
    if len(data) != int(frames_text):
        raise ValueError(f"{path}: 'Frames: {frames_text}' but {len(data)} frame lines follow")
    rows = []
    for number, line in data:
        try:
            row = np.array(line.split(), dtype=np.float64)
        except ValueError:
            raise ValueError(f"{path}:{number}: frame line has a value that is no number") from None
        if row.size != num_channels:
            raise ValueError(
                f"{path}:{number}: frame line has {row.size} values, the hierarchy has "
                f"{num_channels} channels"
            )
        if not np.all(np.isfinite(row)):
            raise ValueError(f"{path}:{number}: frame line has non-finite values")
        rows.append(row)
    return (np.stack(rows) if rows else np.zeros((0, num_channels))), frame_time_s


def read_bvh(path: str | Path) -> BvhMotion:
    """Read a BVH file.

    Raises:
        ValueError: naming the file and line of malformed input (bad keyword, non-numeric value,
            wrong number of values on a frame line, frame count different from ``Frames:``).
    """
    path = str(path)
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().replace("\r", "").split("\n")
    try:
        motion_line = next(i for i, line in enumerate(lines) if line.strip() == "MOTION")
    except StopIteration:
        raise ValueError(f"{path}: no MOTION line") from None
    tokens = _Tokens(path, lines[:motion_line])
    tokens.expect("HIERARCHY")
    tokens.expect("ROOT")
    root, root_line = tokens.next("the root name")
    skeleton = _Skeleton([], [], [], [])
    _parse_joint(tokens, skeleton, root, -1, root_line)
    if tokens.pos != len(tokens.items):
        raise tokens.error(f"unexpected {tokens.items[tokens.pos][0]!r} after the root's block")
    counts = np.array([len(c) for c in skeleton.channels], dtype=np.int64)
    motion, frame_time_s = _read_frames(path, lines, motion_line, int(counts.sum()))
    offsets = np.array(skeleton.offsets, dtype=np.float64).reshape(-1, 3)
    channel_start = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    parents = np.array(skeleton.parents, dtype=np.int64)
    for array in (offsets, channel_start, motion, parents):
        array.setflags(write=False)
    return BvhMotion(
        path, tuple(skeleton.names), parents, offsets, tuple(skeleton.channels), channel_start,
        motion, frame_time_s,
    )


# ----------------------------------------------------------------------------- kinematics


def _axis_rotations(angles_deg: np.ndarray, axis: int) -> np.ndarray:
    """(F, 3, 3) rotations by ``angles_deg`` (F,) about x, y or z (right-handed, column vectors)."""
    rad = np.deg2rad(angles_deg)
    c, s = np.cos(rad), np.sin(rad)
    out = np.zeros(angles_deg.shape + (3, 3))
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    out[:, axis, axis] = 1.0
    out[:, i, i] = c
    out[:, j, j] = c
    out[:, i, j] = -s
    out[:, j, i] = s
    return out


def _select_frames(
    motion: BvhMotion, frames: np.ndarray | slice | Sequence[int] | None
) -> np.ndarray:
    if frames is None:
        return motion.motion
    if isinstance(frames, slice):
        return motion.motion[frames]
    index = np.asarray(frames, dtype=np.int64).ravel()
    if index.size and (index.min() < -motion.num_frames or index.max() >= motion.num_frames):
        raise ValueError(
            f"frames index {index.min()}..{index.max()} out of range for {motion.path} with "
            f"{motion.num_frames} frames"
        )
    return motion.motion[index]


def forward_kinematics(
    motion: BvhMotion,
    frames: np.ndarray | slice | Sequence[int] | None = None,
    unit_m: float = _CM_TO_M,
) -> np.ndarray:
    """World positions of every joint (End Sites included).

    Args:
        motion: a parsed BVH file.
        frames: frame indices or a slice; all frames when None.
        unit_m: metres per file unit (0.01: the CMU files are in centimetres).

    Returns:
        (F, J, 3) float64 positions in metres in the file's world frame (Y up for the CMU files).
    """
    values = _select_frames(motion, frames)
    count = values.shape[0]
    rotations = np.empty((count, motion.num_joints, 3, 3))
    positions = np.empty((count, motion.num_joints, 3))
    for j in range(motion.num_joints):
        local_r = np.broadcast_to(np.eye(3), (count, 3, 3))
        local_t = np.broadcast_to(motion.offsets_cm[j], (count, 3)).copy()
        start = int(motion.channel_start[j])
        for k, channel in enumerate(motion.channels[j]):
            column = values[:, start + k]
            if channel in _ROTATION_AXES:
                local_r = local_r @ _axis_rotations(column, _ROTATION_AXES[channel])
            else:
                local_t[:, _POSITION_AXES[channel]] += column
        parent = int(motion.parents[j])
        if parent < 0:
            rotations[:, j] = local_r
            positions[:, j] = local_t
        else:
            rotations[:, j] = rotations[:, parent] @ local_r
            positions[:, j] = positions[:, parent] + np.einsum(
                "fab,fb->fa", rotations[:, parent], local_t
            )
    return positions * unit_m


def rest_positions(motion: BvhMotion, unit_m: float = _CM_TO_M) -> np.ndarray:
    """(J, 3) joint positions in the rest pose (all channels zero), metres, root at the origin."""
    positions = np.zeros((motion.num_joints, 3))
    for j in range(motion.num_joints):
        parent = int(motion.parents[j])
        if parent >= 0:
            positions[j] = positions[parent] + motion.offsets_cm[j]
    return positions * unit_m


# ----------------------------------------------------------------------------- joint map


@dataclass(frozen=True)
class _Point:
    """The mean of ``joints``; or, with a rest offset, the head-frame point of the module docstring.

    With ``rest_offset_cm`` the joints are ``(origin, p1, p2)`` of one rigid bone and the point is
    ``origin + a u + b v + c w`` (``u = p1 - origin``, ``v = p2 - origin``,
    ``w = u x v / sqrt(|u x v|)``), ``(a, b, c)`` solved in the rest pose.
    """

    joints: tuple[str, ...]
    rest_offset_cm: tuple[float, float, float] | None = None


_MID_X = 0.5 * (4.14528 - 3.6576)  # midline of the Daz head: halfway between the eye offsets


def _head_point(x: float, y: float, z: float) -> _Point:
    return _Point(("head", "leftEye", "rightEye"), (_MID_X + x, y, z))


def _sides() -> dict[str, _Point]:
    table = {}
    for side, p in (("right", "r"), ("left", "l")):
        for ours, daz in (
            ("shoulder", "Shldr"), ("elbow", "ForeArm"), ("wrist", "Hand"), ("hand", "Mid1"),
            ("hip", "Thigh"), ("knee", "Shin"), ("ankle", "Foot"), ("toe", "Foot_end"),
        ):
            table[f"{side}_{ours}"] = _Point((p + daz,))
        table[f"{side}_eye"] = _Point((f"{side}Eye",))
    return table


DAZ_JOINT_MAP: dict[str, _Point] = {
    "pelvis": _Point(("hip",)),
    "spine": _Point(("abdomen", "chest")),
    "neck": _Point(("neck",)),
    "head": _head_point(0.0, 8.0, 1.0),
    "head_top": _head_point(0.0, 18.5, 1.0),
    "nose": _head_point(0.0, 4.3, 11.0),
    "left_ear": _head_point(7.0, 6.5, 0.5),
    "right_ear": _head_point(-7.0, 6.5, 0.5),
    **_sides(),
}


def _frame_vectors(positions: np.ndarray, o: int, a: int, b: int) -> np.ndarray:
    """(*, 3, 3) columns ``u, v, w`` of the frame of joints ``o, a, b`` (see :class:`_Point`)."""
    u = positions[..., a, :] - positions[..., o, :]
    v = positions[..., b, :] - positions[..., o, :]
    cross = np.cross(u, v)
    w = cross / np.sqrt(np.maximum(np.linalg.norm(cross, axis=-1, keepdims=True), 1e-300))
    return np.stack([u, v, w], axis=-1)


def _map_point(positions: np.ndarray, motion: BvhMotion, point: _Point) -> np.ndarray:
    index = [motion.index(n) for n in point.joints]
    if point.rest_offset_cm is None:
        return positions[..., index, :].mean(axis=-2)
    rest = _frame_vectors(rest_positions(motion, unit_m=1.0), *index)
    coefficients = np.linalg.solve(rest, np.asarray(point.rest_offset_cm))
    return positions[..., index[0], :] + _frame_vectors(positions, *index) @ coefficients


def to_joint_set(positions_m: np.ndarray, motion: BvhMotion, joint_set: JointSet) -> np.ndarray:
    """Joints of ``joint_set`` from BVH joint positions of the CMU Daz skeleton (module table).

    Args:
        positions_m: (*, J_bvh, 3) positions from :func:`forward_kinematics` (any uniform scale).
        motion: the file they came from (joint names and rest offsets).
        joint_set: target skeleton, e.g. ``MUCO_21``, ``MUPOTS_17``, ``COCO_17``.

    Returns:
        (*, J, 3) joints in ``joint_set`` order, same frame and unit as ``positions_m``.

    Raises:
        ValueError: when ``positions_m`` does not match ``motion``, the target has a joint this map
            lacks, or the file lacks a Daz joint the map needs.
    """
    positions_m = np.asarray(positions_m, dtype=np.float64)
    if positions_m.ndim < 2 or positions_m.shape[-2:] != (motion.num_joints, 3):
        raise ValueError(
            f"positions_m has shape {positions_m.shape}, expected (*, {motion.num_joints}, 3) for "
            f"{motion.path}"
        )
    missing = [n for n in joint_set.joints if n not in DAZ_JOINT_MAP]
    if missing:
        raise ValueError(f"joint set {joint_set.name}: no Daz BVH mapping for joints {missing}")
    points = [DAZ_JOINT_MAP[name] for name in joint_set.joints]
    needed = sorted({n for p in points for n in p.joints} - set(motion.names))
    if needed:
        raise ValueError(
            f"{motion.path} lacks the Daz joints {needed} that joint set {joint_set.name} needs"
        )
    return np.stack([_map_point(positions_m, motion, p) for p in points], axis=-2)


# ----------------------------------------------------------------------------- takes


@dataclass(frozen=True, eq=False)
class MocapTake:
    """One take in a joint set, resampled. F frames, J joints.

    Attributes:
        take: take name, the file stem (e.g. ``"02_01"``).
        subject: subject id, the name of the file's folder (e.g. ``"02"``).
        description: the take's description from ``takes.csv`` ("" without one).
        joints_m: (F, J, 3) float32 joints in metres in the file's world frame (Y up), root motion
            kept.
        valid: (F,) bool, False on frames next to a joint flip (a joint faster than
            ``max_speed_mps`` relative to the root in the source frames).
        fps: frame rate of ``joints_m``.
    """

    take: str
    subject: str
    description: str
    joints_m: np.ndarray
    valid: np.ndarray
    fps: float


def _resample(values: np.ndarray, source_fps: float, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation in time of (F, ...) ``values``; also the (F', 2) source frame pairs."""
    duration_s = (len(values) - 1) / source_fps
    times = np.arange(int(np.floor(duration_s * fps + 1e-9)) + 1) / fps
    position = np.minimum(times * source_fps, len(values) - 1)
    lower = np.floor(position + 1e-9).astype(np.int64)
    upper = np.minimum(lower + 1, len(values) - 1)
    t = np.clip(position - lower, 0.0, 1.0).reshape((-1,) + (1,) * (values.ndim - 1))
    return values[lower] * (1 - t) + values[upper] * t, np.stack([lower, upper], axis=1)


def _descriptions(mocap_dir: Path) -> dict[str, str]:
    table = mocap_dir / "takes.csv"
    if not table.is_file():
        return {}
    with open(table, newline="", encoding="utf-8") as f:
        return {row["take"]: row.get("description", "") for row in csv.DictReader(f)}


def load_mocap_poses(
    mocap_dir: str | Path,
    joint_set: JointSet,
    fps: float = 30.0,
    takes: Sequence[str] | None = None,
    skip_frames: int = 10,
    max_speed_mps: float = 20.0,
) -> list[MocapTake]:
    """Every BVH take under ``mocap_dir`` (searched recursively) in ``joint_set``, at ``fps``.

    The first ``skip_frames`` frames are dropped (the CMU files start with a T-pose and a blend
    into the motion). Joint positions are interpolated linearly in time; a resampled frame is
    invalid when either source frame it comes from is next to a joint flip.

    Args:
        mocap_dir: folder with ``*.bvh`` files (``../shared/mocap``; ``takes.csv`` is read for
            descriptions when present).
        joint_set: target skeleton.
        fps: output frame rate (> 0).
        takes: take names to load (file stems); all when None.
        skip_frames: leading frames to drop.
        max_speed_mps: root-relative joint speed above which a source frame counts as a flip.

    Returns:
        Takes sorted by name.
    """
    mocap_dir = Path(mocap_dir)
    if not mocap_dir.is_dir():
        raise ValueError(f"mocap_dir {mocap_dir} is not a folder")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    files = sorted(mocap_dir.rglob("*.bvh"), key=lambda p: p.stem)
    if takes is not None:
        wanted = set(takes)
        unknown = wanted - {p.stem for p in files}
        if unknown:
            raise ValueError(f"takes {sorted(unknown)} not found under {mocap_dir}")
        files = [p for p in files if p.stem in wanted]
    if not files:
        raise ValueError(f"no .bvh files under {mocap_dir}")
    descriptions = _descriptions(mocap_dir)
    out = []
    for path in files:
        motion = read_bvh(path)
        if motion.num_frames <= skip_frames + 1:
            raise ValueError(f"{path}: {motion.num_frames} frames, fewer than skip_frames + 2")
        positions = forward_kinematics(motion, slice(skip_frames, None))
        joints = to_joint_set(positions, motion, joint_set)
        relative = joints - joints[:, joint_set.root if joint_set.root >= 0 else 0][:, None]
        speed = np.linalg.norm(np.diff(relative, axis=0), axis=-1).max(axis=-1) * motion.fps
        fast = np.concatenate([[False], speed > max_speed_mps])
        fast[:-1] |= fast[1:]
        resampled, pairs = _resample(joints, motion.fps, fps)
        out.append(MocapTake(
            take=path.stem,
            subject=path.parent.name,
            description=descriptions.get(path.stem, ""),
            joints_m=resampled.astype(np.float32),
            valid=~fast[pairs].any(axis=1),
            fps=float(fps),
        ))
    return out
