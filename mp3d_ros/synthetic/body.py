"""Articulated body model on the MuCo-3DHP 21-joint skeleton, its poses, and its solid primitives.

Frames: a body is built in its own frame (metres, Y up, facing +Z, its left at +X: the frame of the
CMU BVH rest pose), the pelvis at the origin; :func:`place` turns it about the vertical and moves it
onto the ground plane ``y = 0`` of the scene's world frame (also Y up).

Proportions (:class:`BodyShape`) are fractions of the stature taken from anthropometric tables
(Drillis & Contini; Winter, *Biomechanics and Motor Control of Human Movement*: thigh and shank
0.245 H, upper arm 0.172 H, forearm 0.15 H, shoulder height 0.82 H, eye height 0.94 H), varied per
person (limb, torso, shoulder and hip ratios, girth; larger heads for children), then scaled so that
the upright rest pose stands exactly ``height_m`` tall from the floor to the head top.

Poses come either from motion capture (:func:`retarget`: the bone directions of the captured pose,
the bone lengths of the person) or from :func:`sample_pose`, which draws joint angles for an
activity and clips them to anatomical ranges (:data:`JOINT_LIMITS_DEG`).

Solids (:func:`body_primitives`): capsules for the limbs, shoulders, hips, neck, hands and feet;
ellipsoids for the abdomen, chest and head (hair, with a face in front: a facing cue). Every joint
of the skeleton lies inside at least one primitive of its own body (visibility relies on it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mp3d_ros.geometry.skeleton import MUCO_21

__all__ = [
    "ACTIVITIES",
    "JOINT_LIMITS_DEG",
    "PART_SKIN",
    "PART_HAIR",
    "PART_TOP",
    "PART_BOTTOM",
    "PART_SHOES",
    "BodyShape",
    "Primitives",
    "sample_shape",
    "rest_pose",
    "pose_from_angles",
    "sample_angles",
    "sample_pose",
    "retarget",
    "lowest_point",
    "place",
    "yaw_rotation",
    "walking_angles",
    "clip_angles",
    "body_primitives",
    "concatenate_primitives",
]

ACTIVITIES = ("standing", "walking", "reaching", "crouching", "sitting", "arms_raised")

# Part labels of primitives: the renderer colours each person's parts.
PART_SKIN, PART_HAIR, PART_TOP, PART_BOTTOM, PART_SHOES = range(5)

_J = {name: i for i, name in enumerate(MUCO_21.joints)}
_PARENTS = MUCO_21.parents()


def _tree_order() -> list[int]:
    """Joint indices with every parent before its children."""
    depth = np.zeros(MUCO_21.num_joints, dtype=np.int64)
    for j in range(MUCO_21.num_joints):
        k = j
        while _PARENTS[k] >= 0:
            depth[j] += 1
            k = _PARENTS[k]
    return [int(j) for j in np.argsort(depth, kind="stable")]


_ORDER = _tree_order()

# Rest pose in the body frame: (length as a fraction of stature, direction) of the bone ending at
# each joint. Arms hang down, legs are straight, feet point forward.
_REST_BONES: dict[str, tuple[float, tuple[float, float, float]]] = {
    "spine": (0.135, (0.0, 1.0, 0.0)),
    "neck": (0.150, (0.0, 1.0, -0.05)),
    "head": (0.085, (0.0, 1.0, 0.15)),
    "head_top": (0.075, (0.0, 1.0, -0.05)),
    "left_shoulder": (0.115, (1.0, -0.2, -0.1)),
    "left_elbow": (0.172, (0.0, -1.0, 0.0)),
    "left_wrist": (0.150, (0.0, -1.0, 0.0)),
    "left_hand": (0.055, (0.0, -1.0, 0.0)),
    "left_hip": (0.058, (1.0, -0.25, 0.0)),
    "left_knee": (0.245, (0.0, -1.0, 0.0)),
    "left_ankle": (0.245, (0.0, -1.0, 0.0)),
    # 17 degrees below the horizontal: the Daz figure's foot (ankle to Foot_end) in its rest pose,
    # so a captured foot that is flat is flat here too (see _heel).
    "left_toe": (0.130, (0.0, -0.304, 1.0)),
}
for _name in list(_REST_BONES):
    if _name.startswith("left_"):
        _length, (_x, _y, _z) = _REST_BONES[_name]
        _REST_BONES["right_" + _name[5:]] = (_length, (-_x, _y, _z))

# Bone groups whose length ratio varies per person.
_GROUPS = {
    "legs": ("left_knee", "left_ankle", "right_knee", "right_ankle"),
    "arms": ("left_elbow", "left_wrist", "left_hand", "right_elbow", "right_wrist", "right_hand"),
    "torso": ("spine", "neck"),
    "shoulders": ("left_shoulder", "right_shoulder"),
    "hips": ("left_hip", "right_hip"),
    "head": ("head", "head_top"),
}

# Anatomical ranges in degrees; see _local_rotations for the sign of each angle.
JOINT_LIMITS_DEG: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "lumbar": ((-25.0, -35.0, -25.0), (70.0, 35.0, 25.0)),  # flexion, twist, lateral bend
    "thorax": ((-15.0, -30.0, -20.0), (40.0, 30.0, 20.0)),
    "neck": ((-45.0, -75.0, -35.0), (60.0, 75.0, 35.0)),
    "shoulder": ((-50.0, -25.0, -70.0), (180.0, 180.0, 90.0)),  # flexion, abduction, twist
    "elbow": ((0.0,), (145.0,)),
    "wrist": ((-70.0,), (70.0,)),
    "hip": ((-25.0, -25.0, -40.0), (130.0, 50.0, 40.0)),  # flexion, abduction, twist
    "knee": ((0.0,), (150.0,)),
    "ankle": ((-45.0,), (30.0,)),  # dorsiflexion
}


@dataclass(frozen=True, eq=False)
class BodyShape:
    """One person's proportions.

    Attributes:
        height_m: stature, floor to head top, standing upright.
        bone_lengths_m: (J,) length of the bone ending at each ``MUCO_21`` joint (0 at the pelvis).
        girth: multiplier of the limb and torso radii (1 = average build).
        head_scale: head size relative to an adult of the same height (children > 1).
    """

    height_m: float
    bone_lengths_m: np.ndarray
    girth: float
    head_scale: float


@dataclass(frozen=True, eq=False)
class Primitives:
    """Solid primitives of one or more bodies. N capsules, M ellipsoids; metres, any frame.

    Attributes:
        capsule_a_m, capsule_b_m: (N, 3) segment end points.
        capsule_radius_m: (N,) radii.
        capsule_part: (N,) int part labels (``PART_*``).
        capsule_person: (N,) int index of the person each capsule belongs to.
        ellipsoid_center_m: (M, 3) centres.
        ellipsoid_axes_m: (M, 3, 3) semi-axes as columns (lateral, up, forward) of the body part.
        ellipsoid_part: (M,) int part labels.
        ellipsoid_person: (M,) int person indices.
    """

    capsule_a_m: np.ndarray
    capsule_b_m: np.ndarray
    capsule_radius_m: np.ndarray
    capsule_part: np.ndarray
    capsule_person: np.ndarray
    ellipsoid_center_m: np.ndarray
    ellipsoid_axes_m: np.ndarray
    ellipsoid_part: np.ndarray
    ellipsoid_person: np.ndarray

    def transformed(self, R: np.ndarray, t: np.ndarray) -> "Primitives":
        """The primitives moved by ``x -> R x + t`` (R a (3, 3) rotation)."""
        R, t = np.asarray(R, dtype=np.float64), np.asarray(t, dtype=np.float64)
        return Primitives(
            self.capsule_a_m @ R.T + t, self.capsule_b_m @ R.T + t, self.capsule_radius_m,
            self.capsule_part, self.capsule_person, self.ellipsoid_center_m @ R.T + t,
            R @ self.ellipsoid_axes_m, self.ellipsoid_part, self.ellipsoid_person,
        )


# ----------------------------------------------------------------------------- shape


def _rest_directions() -> np.ndarray:
    directions = np.zeros((MUCO_21.num_joints, 3))
    for name, (_, direction) in _REST_BONES.items():
        directions[_J[name]] = np.asarray(direction) / np.linalg.norm(direction)
    return directions


_REST_DIRECTIONS = _rest_directions()


def _chain(lengths: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """(*, J, 3) joints from (J,) bone lengths and (*, J, 3) world bone directions, pelvis at 0."""
    joints = np.zeros(directions.shape)
    for j in _ORDER:
        parent = _PARENTS[j]
        if parent >= 0:
            joints[..., j, :] = joints[..., parent, :] + lengths[j] * directions[..., j, :]
    return joints


def rest_pose(shape: BodyShape) -> np.ndarray:
    """(J, 3) upright rest pose of ``shape`` in the body frame, pelvis at the origin."""
    return _chain(shape.bone_lengths_m, _REST_DIRECTIONS)


# Adult stature, mean and sd in metres (ANSUR II, Gordon et al. 2014).
_MEN_STATURE_M = (1.756, 0.071)
_WOMEN_STATURE_M = (1.629, 0.064)


def sample_shape(
    rng: np.random.Generator,
    height_m: float | None = None,
    height_range_m: tuple[float, float] = (1.0, 2.0),
    child_fraction: float = 0.25,
) -> BodyShape:
    """A random person: stature, proportions and girth (``child_fraction`` children, the rest
    adults).

    Adults are half men, half women, with the stature distributions of adult anthropometric
    surveys (men 1.756 +- 0.071 m, women 1.629 +- 0.064 m: ANSUR II, Gordon et al. 2014), and
    women's shoulders narrower and hips wider relative to stature (biacromial / bi-iliac breadth
    ratios, same survey); segment proportions vary by about 2.5 % (1 sd) around the mean body.

    Args:
        rng: random generator.
        height_m: stature to use; drawn within ``height_range_m`` when None.
        height_range_m: (min, max) stature in metres.
        child_fraction: probability of a child (stature up to 1.5 m, larger head) when
            ``height_m`` is None.
    """
    low, high = height_range_m
    if not 0.5 <= low <= high <= 2.5:
        raise ValueError(
            f"height_range_m must satisfy 0.5 <= min <= max <= 2.5, got {height_range_m}"
        )
    if height_m is None:
        child = rng.random() < child_fraction
        woman = rng.random() < 0.5
        if child:
            height_m = rng.uniform(low, min(high, max(low, 1.5)))
        else:
            height_m = rng.normal(*(_WOMEN_STATURE_M if woman else _MEN_STATURE_M))
        height_m = float(np.clip(height_m, low, high))
    else:
        woman = rng.random() < 0.5
    if not 0.5 <= height_m <= 2.5:
        raise ValueError(f"height_m must be within 0.5..2.5 m, got {height_m}")
    fractions = np.zeros(MUCO_21.num_joints)
    for name, (fraction, _) in _REST_BONES.items():
        fractions[_J[name]] = fraction
    head_scale = 1.0 + 0.45 * float(np.clip((1.6 - height_m) / 0.6, 0.0, 1.0))
    shoulders, hips = (0.94, 1.06) if woman else (1.03, 0.97)
    ratios = {
        "legs": rng.normal(1.0, 0.025), "arms": rng.normal(1.0, 0.025),
        "torso": rng.normal(1.0, 0.025), "shoulders": shoulders * rng.normal(1.0, 0.05),
        "hips": hips * rng.normal(1.0, 0.06), "head": head_scale * rng.normal(1.0, 0.025),
    }
    for group, names in _GROUPS.items():
        for name in names:
            fractions[_J[name]] *= ratios[group]
    girth = float(rng.uniform(0.85, 1.25))
    # Stature is affine in the bone scale k for fixed radii (which scale with height_m): two
    # evaluations give the k at which the rest pose stands exactly height_m tall.
    k0, k1 = height_m, 1.05 * height_m
    s0 = _stature(BodyShape(height_m, fractions * k0, girth, head_scale))
    s1 = _stature(BodyShape(height_m, fractions * k1, girth, head_scale))
    k = k0 + (height_m - s0) * (k1 - k0) / (s1 - s0)
    return BodyShape(height_m, fractions * k, girth, head_scale)


def _stature(shape: BodyShape) -> float:
    joints = rest_pose(shape)
    return float(joints[_J["head_top"], 1] - lowest_point(joints, shape))


# ----------------------------------------------------------------------------- poses


def _rx(deg: float) -> np.ndarray:
    c, s = np.cos(np.deg2rad(deg)), np.sin(np.deg2rad(deg))
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _ry(deg: float) -> np.ndarray:
    c, s = np.cos(np.deg2rad(deg)), np.sin(np.deg2rad(deg))
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rz(deg: float) -> np.ndarray:
    c, s = np.cos(np.deg2rad(deg)), np.sin(np.deg2rad(deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def yaw_rotation(yaw_deg: float) -> np.ndarray:
    """(3, 3) rotation about the vertical (Y): yaw 0 keeps +Z, yaw 90 turns +Z into +X."""
    return _ry(yaw_deg)


def clip_angles(angles: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Angles (``<joint>`` or ``left_/right_<joint>`` keys) clipped to :data:`JOINT_LIMITS_DEG`."""
    out = {}
    for key, value in angles.items():
        low, high = JOINT_LIMITS_DEG[key.replace("left_", "").replace("right_", "")]
        out[key] = np.clip(np.asarray(value, dtype=np.float64), low, high)
    return out


def _local_rotations(angles: dict[str, np.ndarray]) -> np.ndarray:
    """(J, 3, 3) rotation of each bone relative to its parent bone (identity where no angle).

    Signs: spine/neck flexion bends forward (+Z), twist turns left, lateral bends to the left;
    shoulder/hip flexion swings the limb forward, abduction away from the body, twist turns it
    about its own axis; elbow flexion brings the forearm forward, knee flexion the shank backward;
    ankle dorsiflexion lifts the toes.
    """
    q = np.broadcast_to(np.eye(3), (MUCO_21.num_joints, 3, 3)).copy()
    get = lambda key: np.asarray(angles.get(key, np.zeros(3)), dtype=np.float64)  # noqa: E731
    for bone, key in (("spine", "lumbar"), ("neck", "thorax"), ("head", "neck")):
        flexion, twist, lateral = get(key)
        q[_J[bone]] = _ry(twist) @ _rx(flexion) @ _rz(-lateral)
    for side, sign in (("left", 1.0), ("right", -1.0)):
        flexion, abduction, twist = get(f"{side}_shoulder")
        q[_J[f"{side}_elbow"]] = _rz(sign * abduction) @ _rx(-flexion) @ _ry(sign * twist)
        q[_J[f"{side}_wrist"]] = _rx(-float(get(f"{side}_elbow")[0]))
        q[_J[f"{side}_hand"]] = _rx(-float(get(f"{side}_wrist")[0]))
        flexion, abduction, twist = get(f"{side}_hip")
        q[_J[f"{side}_knee"]] = _rz(sign * abduction) @ _rx(-flexion) @ _ry(sign * twist)
        q[_J[f"{side}_ankle"]] = _rx(float(get(f"{side}_knee")[0]))
        q[_J[f"{side}_toe"]] = _rx(-float(get(f"{side}_ankle")[0]))
    return q


def pose_from_angles(shape: BodyShape, angles: dict[str, np.ndarray]) -> np.ndarray:
    """(J, 3) joints in the body frame (pelvis at the origin) for joint ``angles`` in degrees.

    ``angles`` maps ``lumbar``, ``thorax``, ``neck`` (flexion, twist, lateral bend) and
    ``left_/right_`` + ``shoulder``, ``hip`` (flexion, abduction, twist), ``elbow``, ``wrist``,
    ``knee``, ``ankle`` (one angle) to values; missing entries are zero. Values are clipped to
    :data:`JOINT_LIMITS_DEG` first.
    """
    local = _local_rotations(clip_angles(angles))
    world = np.empty_like(local)
    directions = np.zeros((MUCO_21.num_joints, 3))
    for j in _ORDER:
        parent = _PARENTS[j]
        if parent < 0:
            world[j] = np.eye(3)
            continue
        parent_bone = world[parent] if _PARENTS[parent] >= 0 else np.eye(3)
        world[j] = parent_bone @ local[j]
        directions[j] = world[j] @ _REST_DIRECTIONS[j]
    return _chain(shape.bone_lengths_m, directions)


def _pair(left: np.ndarray, right: np.ndarray, key: str) -> dict:
    return {f"left_{key}": np.atleast_1d(left), f"right_{key}": np.atleast_1d(right)}


def _relaxed_angles(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Standing at ease: small random angles everywhere, arms a little away from the body."""
    n = rng.normal
    shoulder = lambda: np.array([n(0, 12), rng.uniform(5, 25), n(0, 15)])  # noqa: E731
    hip = lambda: np.array([n(0, 6), rng.uniform(0, 10), n(0, 8)])  # noqa: E731
    return {
        "lumbar": np.array([n(0, 5), n(0, 8), n(0, 4)]),
        "thorax": np.array([n(3, 4), n(0, 6), n(0, 3)]),
        "neck": np.array([n(0, 12), n(0, 25), n(0, 8)]),
        **_pair(shoulder(), shoulder(), "shoulder"),
        **_pair(rng.uniform(5, 50), rng.uniform(5, 50), "elbow"),
        **_pair(n(0, 15), n(0, 15), "wrist"),
        **_pair(hip(), hip(), "hip"),
        **_pair(rng.uniform(0, 15), rng.uniform(0, 15), "knee"),
        **_pair(n(0, 5), n(0, 5), "ankle"),
    }


def _reach(rng: np.random.Generator, a: dict[str, np.ndarray]) -> None:
    """One or both arms forward or up, the trunk bending toward the target, a step."""
    for side in ("left", "right") if rng.random() < 0.4 else (rng.choice(["left", "right"]),):
        flexion, abduction = rng.uniform(45, 170), rng.uniform(-10, 60)
        a[f"{side}_shoulder"] = np.array([flexion, abduction, rng.normal(0, 20)])
        a[f"{side}_elbow"] = np.atleast_1d(rng.uniform(0, 40))
    a["lumbar"] = np.array([rng.uniform(-5, 35), rng.normal(0, 15), rng.normal(0, 8)])
    a["left_hip"][0], a["right_hip"][0] = rng.uniform(-10, 30, size=2)


def _fold_legs(rng: np.random.Generator, a: dict[str, np.ndarray], sitting: bool) -> None:
    """Crouching (a squat) or sitting on the floor; both legs share one posture (small
    differences) so that both feet reach the floor."""
    n = rng.normal
    if sitting:
        # Thighs up and shanks forward-down, with the feet about as low as the buttocks (equal
        # thigh and shank: cos(shank from down) ~ -cos(hip flexion)).
        hip = rng.uniform(90, 130) + n(0, 4, size=2)
        reach = np.clip(-np.cos(np.deg2rad(hip)) + rng.uniform(0.0, 0.15), 0.0, 1.0)
        tilt = -np.rad2deg(np.arccos(reach))
    else:
        hip = rng.uniform(80, 125) + n(0, 4, size=2)
        tilt = rng.uniform(-5, 40) + n(0, 4, size=2)  # shank leans back: knees over the toes
    knee = np.maximum(hip + tilt, 0.0)
    for k, side in enumerate(("left", "right")):
        a[f"{side}_hip"] = np.array([hip[k], rng.uniform(5, 30), n(0, 10)])
        a[f"{side}_knee"] = np.atleast_1d(knee[k])
        a[f"{side}_ankle"] = np.atleast_1d(knee[k] - hip[k])  # keeps the sole level
        a[f"{side}_shoulder"][0] = rng.uniform(0, 70)
        a[f"{side}_elbow"] = np.atleast_1d(rng.uniform(20, 100))
    a["lumbar"][0] = rng.uniform(-10, 25) if sitting else rng.uniform(15, 50)


def _raise_arms(rng: np.random.Generator, a: dict[str, np.ndarray]) -> None:
    for side in ("left", "right"):
        if rng.random() < 0.5:  # forward and up
            flexion, abduction = rng.uniform(120, 180), rng.uniform(0, 40)
        else:  # sideways and up
            flexion, abduction = rng.uniform(-10, 30), rng.uniform(110, 175)
        a[f"{side}_shoulder"] = np.array([flexion, abduction, rng.normal(0, 20)])
        a[f"{side}_elbow"] = np.atleast_1d(rng.uniform(0, 60))


def sample_angles(rng: np.random.Generator, activity: str) -> dict[str, np.ndarray]:
    """Joint angles (degrees, unclipped) of a random pose of ``activity`` (see ACTIVITIES).

    Every activity returns the same keys, so poses of one person can be blended.
    """
    if activity not in ACTIVITIES:
        raise ValueError(f"activity {activity!r} is not one of {ACTIVITIES}")
    a = _relaxed_angles(rng)
    if activity == "walking":
        a.update(walking_angles(rng.uniform(0, 2 * np.pi), rng.uniform(15, 30)))
    elif activity == "reaching":
        _reach(rng, a)
    elif activity in ("crouching", "sitting"):
        _fold_legs(rng, a, sitting=activity == "sitting")
    elif activity == "arms_raised":
        _raise_arms(rng, a)
    return a


def walking_angles(phase_rad: float, amplitude_deg: float) -> dict[str, np.ndarray]:
    """Leg and arm angles at ``phase_rad`` of a gait cycle (left hip most flexed at pi / 2).

    Hips swing by ``amplitude_deg`` around 5 deg of flexion in opposite phase; each knee flexes
    most in its leg's swing; arms swing against the legs.
    """
    swing = np.sin(phase_rad)
    out = {}
    for side, sign in (("left", 1.0), ("right", -1.0)):
        hip = 5.0 + sign * amplitude_deg * swing
        swing_phase = np.sin(phase_rad - sign * np.pi / 2 + np.pi)
        knee = 5.0 + 2.0 * amplitude_deg * max(0.0, swing_phase) ** 2
        out[f"{side}_hip"] = np.array([hip, 3.0, 0.0])
        out[f"{side}_knee"] = np.atleast_1d(knee)
        out[f"{side}_ankle"] = np.atleast_1d(0.3 * (knee - hip))
        out[f"{side}_shoulder"] = np.array([-0.8 * sign * amplitude_deg * swing, 8.0, 0.0])
        out[f"{side}_elbow"] = np.atleast_1d(20.0 + 0.5 * amplitude_deg * max(0.0, -sign * swing))
    return out


def sample_pose(rng: np.random.Generator, activity: str, shape: BodyShape) -> np.ndarray:
    """(J, 3) random pose of ``activity`` for ``shape``, body frame, pelvis at the origin."""
    return pose_from_angles(shape, sample_angles(rng, activity))


def retarget(joints_m: np.ndarray, shape: BodyShape) -> np.ndarray:
    """Give a captured ``(*, J, 3)`` MuCo-21 pose the bone lengths of ``shape``.

    Every bone keeps its direction; the pelvis stays where it is.
    """
    joints_m = np.asarray(joints_m, dtype=np.float64)
    if joints_m.shape[-2:] != (MUCO_21.num_joints, 3):
        raise ValueError(
            f"joints_m has shape {joints_m.shape}, expected (*, {MUCO_21.num_joints}, 3)"
        )
    bones = joints_m - joints_m[..., np.maximum(_PARENTS, 0), :]
    length = np.linalg.norm(bones, axis=-1, keepdims=True)
    if np.any(length[..., _PARENTS >= 0, :] < 1e-9):
        raise ValueError("joints_m has a bone of zero length: its direction is undefined")
    directions = bones / np.maximum(length, 1e-12)
    root = joints_m[..., MUCO_21.root : MUCO_21.root + 1, :]
    return _chain(shape.bone_lengths_m, directions) + root


# ----------------------------------------------------------------------------- solids

# Capsules: (joint a, joint b, radius as a fraction of stature, part; None = chosen by clothing).
_CAPSULES = [
    ("left_shoulder", "left_elbow", 0.026, PART_TOP),
    ("right_shoulder", "right_elbow", 0.026, PART_TOP),
    ("left_elbow", "left_wrist", 0.021, None),
    ("right_elbow", "right_wrist", 0.021, None),
    ("left_hip", "left_knee", 0.042, PART_BOTTOM),
    ("right_hip", "right_knee", 0.042, PART_BOTTOM),
    ("left_knee", "left_ankle", 0.030, None),
    ("right_knee", "right_ankle", 0.030, None),
    ("neck", "left_shoulder", 0.034, PART_TOP),
    ("neck", "right_shoulder", 0.034, PART_TOP),
    ("left_hip", "right_hip", 0.052, PART_BOTTOM),
    ("neck", "head", 0.027, PART_SKIN),
]
# A flat foot puts the ankle joint 0.054 of stature over the floor: the lateral malleolus at 0.039
# (Drillis and Contini's segment proportions) plus a 2.5 cm sole at 1.70 m, what FloorConfig
# assumes; the toe's drop at the rest pitch (0.038) plus the foot's radius (0.016).
_HAND_RADIUS, _FOOT_RADIUS = 0.016, 0.016
# The hand reaches past its knuckle joint (fingers); the heel's centre lies this fraction of
# stature behind the ankle (the heel bone, about a fifth of the foot's length).
_HAND_EXTENT, _HEEL_BACK = 1.6, 0.020
# Sine and cosine of the toe's rest angle below the horizontal.
_REST_FOOT_SINE = -_REST_BONES["left_toe"][1][1] / float(np.linalg.norm(_REST_BONES["left_toe"][1]))
_REST_FOOT_COSINE = float(np.sqrt(1.0 - _REST_FOOT_SINE ** 2))


def _heel(ankle: np.ndarray, toe: np.ndarray, knee: np.ndarray, back_m: float) -> np.ndarray:
    """Centre of the foot capsule's heel end: fixed in the foot (the toe's direction and the shank's
    plane), level with the toe when the foot has its rest pitch, ``back_m`` behind the ankle.

    So a foot with its sole on the floor stands on heel and toe with the ankle at its anthropometric
    height; a foot on its toes or heel tilts about them (without the heel, a captured flat foot,
    17 degrees toe down, stood on the toe with the ankle 0.12 m up).
    """
    forward = toe - ankle
    length = float(np.linalg.norm(forward))
    along = forward / max(length, 1e-12)
    up = knee - ankle
    up = up - np.dot(up, along) * along
    if np.linalg.norm(up) < 1e-9:  # the foot points along the shank: any perpendicular will do
        up = np.cross(along, [1.0, 0.0, 0.0] if abs(along[0]) < 0.9 else [0.0, 0.0, 1.0])
    up = up / np.linalg.norm(up)
    sine, cosine = _REST_FOOT_SINE, _REST_FOOT_COSINE
    # The rest offset (0, -length sin, -back) in the foot's (along, up) axes at the rest pitch.
    return ankle + (length * sine * sine - back_m * cosine) * along - (
        length * sine * cosine + back_m * sine) * up


def _frame(up: np.ndarray, lateral: np.ndarray) -> np.ndarray:
    """(3, 3) orthonormal columns (lateral, up, forward) from an up and a rough lateral vector."""
    up = up / max(np.linalg.norm(up), 1e-12)
    lateral = lateral - np.dot(lateral, up) * up
    if np.linalg.norm(lateral) < 1e-9:  # lateral along up: any perpendicular will do
        lateral = np.cross(up, [0.0, 0.0, 1.0] if abs(up[2]) < 0.9 else [1.0, 0.0, 0.0])
    lateral = lateral / np.linalg.norm(lateral)
    return np.stack([lateral, up, np.cross(lateral, up)], axis=1)


def body_primitives(
    joints_m: np.ndarray,
    shape: BodyShape,
    long_sleeves: bool = True,
    long_trousers: bool = True,
    person: int = 0,
) -> Primitives:
    """Solid primitives of one body posed at ``joints_m`` ((J, 3) MuCo-21, any frame, metres).

    Forearms and shanks are clothed (``PART_TOP`` / ``PART_BOTTOM``) or bare (``PART_SKIN``) by
    ``long_sleeves`` and ``long_trousers``.
    """
    joints_m = np.asarray(joints_m, dtype=np.float64)
    if joints_m.shape != (MUCO_21.num_joints, 3):
        raise ValueError(f"joints_m has shape {joints_m.shape}, expected ({MUCO_21.num_joints}, 3)")
    H, g = shape.height_m, shape.girth
    p = {name: joints_m[i] for name, i in _J.items()}
    a, b, r, part = [], [], [], []
    for ja, jb, fraction, label in _CAPSULES:
        if label is None:
            bare = (not long_sleeves) if "elbow" in ja else (not long_trousers)
            label = PART_SKIN if bare else (PART_TOP if "elbow" in ja else PART_BOTTOM)
        a.append(p[ja]), b.append(p[jb]), r.append(fraction * H * g), part.append(label)
    for side in ("left", "right"):
        wrist, hand = p[f"{side}_wrist"], p[f"{side}_hand"]
        a.append(wrist), b.append(wrist + _HAND_EXTENT * (hand - wrist))
        r.append(_HAND_RADIUS * H), part.append(PART_SKIN)
        ankle, toe = p[f"{side}_ankle"], p[f"{side}_toe"]
        a.append(_heel(ankle, toe, p[f"{side}_knee"], _HEEL_BACK * H)), b.append(toe)
        r.append(_FOOT_RADIUS * H), part.append(PART_SHOES)

    hips_lateral = p["left_hip"] - p["right_hip"]
    shoulders_lateral = p["left_shoulder"] - p["right_shoulder"]
    centers, axes, eparts = [], [], []
    # Abdomen and chest overlap by ~0.08 H around the spine joint so the waist does not pinch.
    for low, high, lateral, half_width, half_depth, reach in (
        ("pelvis", "spine", hips_lateral, 0.088, 0.060, 0.045),
        ("spine", "neck", shoulders_lateral, 0.100, 0.066, 0.035),
    ):
        up = p[high] - p[low]
        half_height = 0.5 * np.linalg.norm(up) + reach * H
        centers.append(0.5 * (p[low] + p[high]))
        semi_axes = np.array([half_width * H * g, half_height, half_depth * H * g])
        axes.append(_frame(up, lateral) * semi_axes)
        eparts.append(PART_TOP)
    # Head: its top joint lies inside (0.85 of the up semi-axis from the centre).
    up = p["head_top"] - p["head"]
    length = np.linalg.norm(up)
    head_frame = _frame(up, shoulders_lateral)
    head_center = p["head"] + 0.15 * up
    centers.append(head_center)
    axes.append(head_frame * np.array([0.62 * length, 0.9 * length, 0.75 * length]))
    eparts.append(PART_HAIR)  # the renderer draws the face (front, lower part) in skin
    return Primitives(
        np.array(a), np.array(b), np.array(r), np.array(part, dtype=np.int64),
        np.full(len(a), person, dtype=np.int64), np.array(centers), np.array(axes),
        np.array(eparts, dtype=np.int64), np.full(len(centers), person, dtype=np.int64),
    )


def concatenate_primitives(parts: list[Primitives]) -> Primitives:
    """One set of primitives holding all of ``parts`` (person indices kept)."""
    if not parts:
        empty3 = np.zeros((0, 3))
        none = np.zeros(0, dtype=np.int64)
        return Primitives(
            empty3, empty3, np.zeros(0), none, none, empty3, np.zeros((0, 3, 3)), none, none
        )
    fields = Primitives.__dataclass_fields__
    return Primitives(**{f: np.concatenate([getattr(q, f) for q in parts]) for f in fields})


def lowest_point(joints_m: np.ndarray, shape: BodyShape) -> float:
    """Lowest y (the body frame's up axis) of the body's solid at ``joints_m`` ((J, 3), metres)."""
    prims = body_primitives(joints_m, shape)
    capsule_ends = np.minimum(prims.capsule_a_m[:, 1], prims.capsule_b_m[:, 1])
    capsule_low = capsule_ends - prims.capsule_radius_m
    # Support of an ellipsoid along -y: centre_y - |row y of its axes matrix|.
    support = np.linalg.norm(prims.ellipsoid_axes_m[:, 1, :], axis=-1)
    ellipsoid_low = prims.ellipsoid_center_m[:, 1] - support
    return float(min(capsule_low.min(), ellipsoid_low.min()))


def place(
    joints_m: np.ndarray,
    shape: BodyShape,
    yaw_deg: float,
    position_xz_m: tuple[float, float],
    floor_y_m: float | None = None,
) -> np.ndarray:
    """(J, 3) world joints: the body turned by ``yaw_deg`` about the vertical (0 faces +Z, 90 faces
    +X) with its pelvis above ``position_xz_m`` and standing on the ground ``y = 0``.

    The body is lowered by ``floor_y_m`` (the height of its floor in its own frame, e.g. one value
    for a whole mocap take so that jumps stay jumps), or by its lowest point when None.
    """
    joints_m = np.asarray(joints_m, dtype=np.float64)
    rotated = joints_m @ _ry(yaw_deg).T
    floor = lowest_point(rotated, shape) if floor_y_m is None else floor_y_m
    pelvis = rotated[MUCO_21.root]
    return rotated - np.array([pelvis[0] - position_xz_m[0], floor, pelvis[2] - position_xz_m[1]])
