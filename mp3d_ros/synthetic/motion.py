"""People of synthetic scenes over time: a body, clothes and a motion giving world joints at time t.

World frame as in :mod:`mp3d_ros.synthetic.scenes`: metres, Y up, ground ``y = 0``, the camera above
the origin looking along +Z before pitch and roll. A ground point at distance ``d`` and azimuth
``a`` (positive to the camera's right) is ``(x, z) = (-d sin a, d cos a)``; a body with yaw ``h``
faces ``(sin h, cos h)`` in (x, z).

Motions (each a frozen dataclass with ``joints_at(t_s, shape) -> (J, 3)``):

- :class:`StaticPose`: one posed body (independent images);
- :class:`KeyframedPose`: joint angles of one activity blended with a smoothstep between random
  keyframes, in place (someone standing, reaching, crouching, sitting over a sequence);
- :class:`Walk`: constant speed along a circular arc (constant turn rate), the gait phase advancing
  with the distance walked (one stride per ``stride_m``);
- :class:`MocapPlayback`: a motion-capture take retargeted to the body and played at the frame
  rate, its root motion turned by the yaw and moved to the start position; one floor height for
  the whole take keeps jumps in the air.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from mp3d_ros.geometry.skeleton import MUCO_21
from mp3d_ros.synthetic import body as bodies
from mp3d_ros.synthetic.bvh import MocapTake

__all__ = [
    "Motion",
    "Person",
    "StaticPose",
    "KeyframedPose",
    "Walk",
    "MocapPlayback",
    "ground_point",
    "sample_activity",
    "mocap_window",
    "sample_motion",
]

# How often each activity is drawn for a pose sampled without motion capture.
ACTIVITY_WEIGHTS = {"standing": 0.25, "walking": 0.3, "reaching": 0.12, "crouching": 0.1,
                    "sitting": 0.1, "arms_raised": 0.13}


class Motion(Protocol):
    def joints_at(self, t_s: float, shape: bodies.BodyShape) -> np.ndarray: ...


@dataclass(frozen=True, eq=False)
class Person:
    """One person: body proportions, clothes (long or short sleeves and trousers) and a motion."""

    shape: bodies.BodyShape
    long_sleeves: bool
    long_trousers: bool
    motion: Motion

    def joints_at(self, t_s: float) -> np.ndarray:
        """(J, 3) MuCo-21 world joints at time ``t_s`` (seconds from the start)."""
        return self.motion.joints_at(t_s, self.shape)


@dataclass(frozen=True, eq=False)
class StaticPose:
    joints_world_m: np.ndarray  # (J, 3)

    def joints_at(self, t_s: float, shape: bodies.BodyShape) -> np.ndarray:
        return self.joints_world_m


@dataclass(frozen=True, eq=False)
class KeyframedPose:
    """Joint angles blended (smoothstep) between keyframes ``period_s`` apart, in one place."""

    angles: tuple[dict, ...]
    period_s: float
    yaw_deg: float
    position_xz_m: tuple[float, float]

    def joints_at(self, t_s: float, shape: bodies.BodyShape) -> np.ndarray:
        k = min(int(t_s // self.period_s), len(self.angles) - 2)
        w = float(np.clip(t_s / self.period_s - k, 0.0, 1.0))
        w = w * w * (3 - 2 * w)
        first, second = self.angles[k], self.angles[k + 1]
        angles = {key: (1 - w) * first[key] + w * second[key] for key in first}
        pose = bodies.pose_from_angles(shape, angles)
        return bodies.place(pose, shape, self.yaw_deg, self.position_xz_m)


@dataclass(frozen=True, eq=False)
class Walk:
    """A walk at constant speed along a circular arc (constant turn rate), gait in step."""

    start_xz_m: tuple[float, float]
    heading_deg: float
    turn_deg_s: float
    speed_mps: float
    stride_m: float
    phase_rad: float
    amplitude_deg: float
    upper: dict  # angles of the trunk, neck and wrists, kept through the walk

    def joints_at(self, t_s: float, shape: bodies.BodyShape) -> np.ndarray:
        h0, w = np.deg2rad(self.heading_deg), np.deg2rad(self.turn_deg_s)
        h = h0 + w * t_s
        if abs(w) > 1e-9:  # the integral of speed * (sin h, cos h) dt
            dx = self.speed_mps / w * (np.cos(h0) - np.cos(h))
            dz = self.speed_mps / w * (np.sin(h) - np.sin(h0))
        else:
            dx, dz = self.speed_mps * t_s * np.sin(h0), self.speed_mps * t_s * np.cos(h0)
        phase = self.phase_rad + 2 * np.pi * self.speed_mps * t_s / self.stride_m
        angles = {**self.upper, **bodies.walking_angles(phase, self.amplitude_deg)}
        position = (self.start_xz_m[0] + dx, self.start_xz_m[1] + dz)
        return bodies.place(bodies.pose_from_angles(shape, angles), shape, np.rad2deg(h), position)


@dataclass(frozen=True, eq=False)
class MocapPlayback:
    """A retargeted take played from its first frame; root motion turned and moved."""

    joints_m: np.ndarray  # (F, J, 3) retargeted take in its own world frame (Y up)
    fps: float
    yaw_deg: float
    position_xz_m: tuple[float, float]
    floor_y_m: float | None  # the take's floor height; None: each frame on its lowest point

    def joints_at(self, t_s: float, shape: bodies.BodyShape) -> np.ndarray:
        frame = min(int(round(t_s * self.fps)), len(self.joints_m) - 1)
        origin = self.joints_m[0, MUCO_21.root]
        start = np.array([origin[0], 0.0, origin[2]])
        turned = (self.joints_m[frame] - start) @ bodies.yaw_rotation(self.yaw_deg).T
        floor = bodies.lowest_point(turned, shape) if self.floor_y_m is None else self.floor_y_m
        return turned + [self.position_xz_m[0], -floor, self.position_xz_m[1]]


def ground_point(distance_m: float, azimuth_rad: float) -> tuple[float, float]:
    """World (x, z) at a ground distance and azimuth (> 0 to the right of the unrotated camera)."""
    return -distance_m * np.sin(azimuth_rad), distance_m * np.cos(azimuth_rad)


def sample_activity(rng: np.random.Generator, moving: bool = True) -> str:
    """An activity drawn with :data:`ACTIVITY_WEIGHTS` (no walking when ``moving`` is False)."""
    names = [a for a in ACTIVITY_WEIGHTS if moving or a != "walking"]
    weights = np.array([ACTIVITY_WEIGHTS[a] for a in names])
    return names[int(rng.choice(len(names), p=weights / weights.sum()))]


def mocap_window(rng: np.random.Generator, mocap: Sequence[MocapTake], count: int) -> np.ndarray:
    """(count, J, 3) consecutive frames of a random take; one frame is drawn among the valid ones.

    Takes with ``count`` valid frames are preferred; a shorter take repeats its last frame.
    """
    if not mocap:
        raise ValueError("mocap has no takes")
    long_enough = [t for t in mocap if t.valid.sum() >= count]
    candidates = long_enough or [max(mocap, key=lambda t: len(t.valid))]
    take = candidates[int(rng.integers(len(candidates)))]
    if count == 1:
        starts = np.nonzero(take.valid)[0]
        start = int(starts[rng.integers(len(starts))])
    else:
        start = int(rng.integers(0, max(1, len(take.valid) - count + 1)))
    index = np.minimum(np.arange(start, start + count), len(take.valid) - 1)
    return take.joints_m[index].astype(np.float64)


def sample_motion(
    rng: np.random.Generator,
    shape: bodies.BodyShape,
    position_xz_m: tuple[float, float],
    duration_s: float,
    fps: float,
    mocap: Sequence[MocapTake] | None = None,
    half_fov_rad: float = 0.6,
    depth_range_m: tuple[float, float] = (1.0, 15.0),
) -> Motion:
    """A random motion for a person at ``position_xz_m`` lasting ``duration_s`` (0: one image).

    With ``mocap``: a take played in time. Otherwise a static pose (``duration_s`` 0), a walk
    (60 %; half of the walkers start beside the field of view, ``half_fov_rad`` wide, and cross it
    toward a point inside) or keyframed poses of one activity in place.
    """
    yaw = rng.uniform(0, 360)
    num_frames = int(round(duration_s * fps)) + 1
    if mocap:
        joints = bodies.retarget(mocap_window(rng, mocap, num_frames), shape)
        floor = None if num_frames == 1 else float(np.percentile(
            [bodies.lowest_point(j, shape) for j in joints], 10))
        return MocapPlayback(joints, fps, yaw, position_xz_m, floor)
    if duration_s <= 0:
        pose = bodies.sample_pose(rng, sample_activity(rng), shape)
        return StaticPose(bodies.place(pose, shape, yaw, position_xz_m))
    if rng.random() < 0.6:
        start, heading, turn = position_xz_m, yaw, rng.normal(0, 10)
        if rng.random() < 0.5:  # start beside the view and cross it
            near, far = depth_range_m
            side = rng.choice([-1.0, 1.0])
            beside = side * (half_fov_rad + rng.uniform(0.1, 0.35))
            start = ground_point(rng.uniform(near + 1, far), beside)
            target = ground_point(rng.uniform(near + 1, far), rng.uniform(-0.6, 0.6) * half_fov_rad)
            heading = np.rad2deg(np.arctan2(target[0] - start[0], target[1] - start[1]))
            turn = rng.normal(0, 4)
        upper = {k: v for k, v in bodies.sample_angles(rng, "standing").items()
                 if k in ("lumbar", "thorax", "neck", "left_wrist", "right_wrist")}
        scale = shape.height_m / 1.7
        speed, stride = rng.uniform(0.6, 1.6) * scale, 1.45 * scale * rng.uniform(0.9, 1.1)
        return Walk(start, heading, turn, speed, stride, rng.uniform(0, 2 * np.pi),
                    rng.uniform(15, 28), upper)
    activity = sample_activity(rng, moving=False)
    period = rng.uniform(1.5, 3.0)
    keys = tuple(bodies.sample_angles(rng, activity) for _ in range(int(duration_s / period) + 2))
    return KeyframedPose(keys, period, yaw, position_xz_m)
