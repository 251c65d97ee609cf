"""Root depth from the floor: the rays of a standing person's seen ankles meet the floor plane.

A mobile robot knows where its floor is: tf2 gives the camera's pose in a ground frame whose z = 0
plane is the floor (``base_footprint``), or a fixed camera has a known height and pitch. In the
camera optical frame the floor is ``{p : n . p = -h}`` with ``n`` the unit "up" vector and ``h``
the camera's height over the floor. A person's lowest standing ankle stands ``a`` (the ankle
height) above it, so that ankle's undistorted ray ``r = [x, y, 1]`` meets the raised plane at depth

    t = (a - h) / (n . r)        (valid where n . r < 0: the ray points down, and t > 0).

A walker's other ankle is often a few centimetres higher (the heel rises before the toe leaves the
floor). The lifted pose gives that rise, ``Delta``, at its own scale: at depth ``t`` instead of the
lifted ankle's ``Z_a`` the rise is ``Delta t / Z_a``, so that ankle's ray meets its plane at

    t = (a - h) / (n . r - Delta / Z_a),

which is the formula above with ``n . r`` shifted; the sigma below uses the shifted value.

Its standard deviation follows by first-order propagation from the 2D keypoint noise
(``sigma_px`` across the ray), the plane's tilt (``tilt_sigma_rad`` about both horizontal axes),
the camera height (``height_sigma_m``) and the ankle height (``ankle_height_sigma_m``):

    var(t) = (var(a) + var(h)) / (n . r)^2 + (t / (n . r))^2 [var_px(n . r) + var_tilt(n . r)],

with ``var_px(n . r) = (n_x sigma_px / f_x)^2 + (n_y sigma_px / f_y)^2`` and
``var_tilt(n . r) = tilt_sigma^2 |r - (n . r) n|^2``: as the ray grazes the floor (``n . r -> 0``) the
sigma grows like ``t^2``, so far people get little weight from this cue. The person's two terms
(``sigma_px`` and ``ankle_height_sigma_m``) are multiplied by ``FloorConfig.sigma_inflation``, one
factor measured on rendered scenes for what this noise model leaves out (the detector's ankle is
biased and heavy-tailed); the plane's terms, which come from tf or the user, are not.

The floor depth of the ankle rescales the whole person about the camera centre (its pose from the
other cues is ``P_j = (Z + d_j) r_j`` with the relative depths ``d_j`` proportional to the body
size, so a person at depth ``kZ`` is ``k P_j``): ``k = t / Z_ankle``. It is fused with the body-size
depth by MAR Eq. 12 (:func:`mp3d_ros.geometry.depth.fuse_depths`), and since the floor fixes the
scale it also measures the person's stature (top of head over the floor).

The cue is used only for people who stand: both a seen ankle and a lifted pose whose ankles are its
lowest joints and whose legs are close to vertical. Sitting, lying, cut-off (ankles not seen) and
floating people keep the other cues' depth.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from mp3d_ros.geometry.camera import Intrinsics, pixel_rays
from mp3d_ros.geometry.depth import fuse_depths
from mp3d_ros.geometry.people import DEPTH_CUE_FLOOR, People

__all__ = ["FloorConfig", "FloorDepth", "FloorPlane", "apply_floor", "floor_depth", "ray_floor_depth"]


def _unit(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float64)
    return vector / np.linalg.norm(vector)


@dataclass(frozen=True)
class FloorPlane:
    """The floor in the camera optical frame: the points ``p`` with ``up_cam . p = -camera_height_m``.

    Attributes:
        up_cam: (3,) unit vector pointing up, away from the floor, in the optical frame.
        camera_height_m: height of the camera centre over the floor (> 0).
        tilt_sigma_rad: standard deviation of the plane's orientation about each horizontal axis.
        height_sigma_m: standard deviation of ``camera_height_m``.
    """

    up_cam: np.ndarray
    camera_height_m: float
    tilt_sigma_rad: float = 0.01
    height_sigma_m: float = 0.02

    def __post_init__(self) -> None:
        up = np.asarray(self.up_cam, dtype=np.float64)
        if up.shape != (3,) or not np.all(np.isfinite(up)) or np.linalg.norm(up) < 1e-9:
            raise ValueError(f"FloorPlane.up_cam must be a finite non-zero 3-vector, got {self.up_cam!r}")
        if not np.isfinite(self.camera_height_m):
            raise ValueError(f"FloorPlane.camera_height_m must be finite, got {self.camera_height_m}")
        object.__setattr__(self, "up_cam", _unit(up))

    @classmethod
    def from_camera_pose(cls, rotation_ground_from_camera: np.ndarray,
                         translation_ground_from_camera_m: np.ndarray, **noise: float) -> "FloorPlane":
        """The floor z = 0 of a ground frame (z up) from the camera's pose in it.

        ``p_ground = R p_cam + t``; the floor's up axis in the camera frame is ``R^T e_z`` and the
        camera's height is ``t_z`` (what tf2 gives for ``ground_frame <- camera optical frame``).
        """
        rotation = np.asarray(rotation_ground_from_camera, dtype=np.float64).reshape(3, 3)
        translation = np.asarray(translation_ground_from_camera_m, dtype=np.float64).reshape(3)
        return cls(up_cam=rotation.T @ np.array([0.0, 0.0, 1.0]), camera_height_m=float(translation[2]),
                   **noise)

    @classmethod
    def from_height_pitch(cls, camera_height_m: float, pitch_deg: float, roll_deg: float = 0.0,
                          **noise: float) -> "FloorPlane":
        """A camera ``camera_height_m`` over the floor, pitched down by ``pitch_deg`` (0: level,
        90: looking straight down) and rolled by ``roll_deg`` about its optical axis."""
        pitch, roll = np.radians(pitch_deg), np.radians(roll_deg)
        up_level = np.array([0.0, -np.cos(pitch), -np.sin(pitch)])  # y points down in the optical frame
        cos_r, sin_r = np.cos(roll), np.sin(roll)
        rolled = np.array([[cos_r, -sin_r, 0.0], [sin_r, cos_r, 0.0], [0.0, 0.0, 1.0]]) @ up_level
        return cls(up_cam=rolled, camera_height_m=float(camera_height_m), **noise)


@dataclass(frozen=True)
class FloorConfig:
    """Anthropometric defaults and the standing test of the floor cue.

    ``ankle_height_m``: height of the lowest standing ankle keypoint (lateral malleolus) over the
    floor (a raised ankle adds its rise in the lifted pose, see the module docstring): 0.039 of
    stature in Drillis and Contini's segment proportions (6.6 cm at 1.70 m) plus about 2.5 cm of
    shoe sole; the sd covers statures and shoes. ``sigma_px``: 2D ankle keypoint noise across the
    ray in source pixels (``Estimator`` replaces it by a fixed error in network-input pixels divided
    by the image-to-network zoom); 5.67 px: the robust sd of the ankle keypoint's vertical error,
    2.55 px at movenet-lift's 288 x 224 input on 640 x 480 renders (zoom 0.45), measured by
    ``benchmarks/calibrate_depth_sigma.py`` on 2026-12-03 (5.2 px before the renders' feet had
    heels; 6.0 px at 256 x 256; 6.4 px at first, from ``benchmarks/depth_by_distance.py``).
    ``lowest_margin_m``: how far above the lowest joint of the lifted pose an ankle may be and still
    carry the weight (a raised foot while walking does not). ``min_leg_verticality``: (hip - ankle)
    height over its length, below which the person is taken to sit, kneel or lie.
    ``max_relative_sigma``: floor depths less certain than this fraction are not used (rays that
    nearly graze the floor). ``max_disagreement``: a floor depth further than this many combined
    sigmas from the other cues' depth is an outlier (a misplaced ankle, a raised floor) and is not
    used. ``sigma_inflation``: measured inflation factor of the person's terms of the sigma
    (``sigma_px`` and ``ankle_height_sigma_m``), 1 for the noise model's own sigma; 1.29 puts 68.3 %
    of the floor cue's own depth errors within 1 sigma on renders with an exact floor plane
    (``benchmarks/calibrate_depth_sigma.py``, 2026-12-03, with a raised ankle's rise taken from
    the lifted pose; 1.42 while every standing ankle was put at ``ankle_height_m``). It was 1.91
    while the renders' feet had no heel and stood on their toes, the lowest ankle 0.117 m over the
    floor (0.109 m now, walking and stepping included): a bias the noise model lacks.
    """

    ankle_height_m: float = 0.09
    ankle_height_sigma_m: float = 0.02
    sigma_px: float = 5.67
    min_confidence: float = 0.3
    lowest_margin_m: float = 0.05
    min_leg_verticality: float = 0.8
    max_relative_sigma: float = 0.5
    max_disagreement: float = 3.0
    sigma_inflation: float = 1.29
    ankles: tuple[str, str] = ("left_ankle", "right_ankle")
    hips: tuple[str, str] = ("left_hip", "right_hip")
    head: str = "head_top"


@dataclass(frozen=True)
class FloorDepth:
    """Per person: scale ``k`` that puts the person on the floor, its sigma, and validity.

    ``scale * Z`` is the floor's root depth for a person now at root depth ``Z``; ``scale_sigma``
    its standard deviation in the same units. ``valid`` is False where the cue does not apply.
    """

    scale: np.ndarray
    scale_sigma: np.ndarray
    valid: np.ndarray
    ankle: np.ndarray


def ray_floor_depth(rays: np.ndarray, plane: FloorPlane, fx_px: float, fy_px: float,
                    config: FloorConfig, rise_per_depth: np.ndarray | float = 0.0
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Depth ``t`` (along z) where rays ``(*, 3)`` ``[x, y, 1]`` meet the floor raised by the ankle height.

    ``rise_per_depth`` (broadcast against the rays' ``*``): each ray's ankle rise over the lowest
    standing ankle divided by its depth, both in the lifted pose (``Delta / Z_a`` of the module
    docstring); 0 for the lowest ankle.

    Returns ``(t, sigma_independent, sigma_common)``: the 2D-noise part of the sigma, independent
    between rays, and the part common to every ray of the frame (plane height, tilt, ankle height).
    Rays that do not point down to the raised plane get ``t = nan``.
    """
    rays = np.asarray(rays, dtype=np.float64)
    up = plane.up_cam
    along = rays @ up - rise_per_depth  # n . r, shifted by a raised ankle's rise
    offset = config.ankle_height_m - plane.camera_height_m
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = offset / along
        hits = (along < 0) & (depth > 0) & np.isfinite(depth)
        depth = np.where(hits, depth, np.nan)
        lever = depth / along
        sigma_px = config.sigma_px * config.sigma_inflation
        var_px = (up[0] * sigma_px / fx_px) ** 2 + (up[1] * sigma_px / fy_px) ** 2
        across = rays - along[..., None] * up
        var_tilt = plane.tilt_sigma_rad ** 2 * np.sum(across ** 2, axis=-1)
        var_offset = (config.ankle_height_sigma_m * config.sigma_inflation) ** 2 + plane.height_sigma_m ** 2
        sigma_independent = np.abs(lever) * np.sqrt(var_px)
        sigma_common = np.sqrt(var_offset / along ** 2 + lever ** 2 * var_tilt)
    return depth, sigma_independent, sigma_common


def _standing_ankles(people: People, plane: FloorPlane, config: FloorConfig) -> np.ndarray:
    """(P, 2) bool: the ankle is seen, confident, and carries a standing lifted pose."""
    joints = people.joint_set
    ankles = [joints.index(name) for name in config.ankles]
    hips = [joints.index(name) for name in config.hips]
    heights = people.keypoints_m @ plane.up_cam  # (P, J) up coordinate of every joint
    ankle_heights = heights[:, ankles]
    lowest = np.min(heights, axis=1, keepdims=True)
    hip_mid = people.keypoints_m[:, hips].mean(axis=1)
    leg = hip_mid[:, None, :] - people.keypoints_m[:, ankles]
    leg_length = np.linalg.norm(leg, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        verticality = (leg @ plane.up_cam) / leg_length
    seen = ~people.inferred[:, ankles] & (people.confidence[:, ankles] >= config.min_confidence)
    return (seen & (ankle_heights <= lowest + config.lowest_margin_m)
            & (verticality >= config.min_leg_verticality) & (leg_length > 0))


def _rise_over_lowest(ankles_m: np.ndarray, standing: np.ndarray, plane: FloorPlane) -> np.ndarray:
    """(P, 2) height of each ankle over the lowest standing ankle of its person, lifted pose, metres
    (0 where the ankle does not stand)."""
    heights = ankles_m @ plane.up_cam
    lowest = np.min(np.where(standing, heights, np.inf), axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):
        return np.where(standing, heights - lowest, 0.0)


def floor_depth(people: People, intrinsics: Intrinsics, plane: FloorPlane,
                config: FloorConfig = FloorConfig()) -> FloorDepth:
    """The floor cue for every person (see the module docstring).

    The standing ankles' depths are averaged with inverse-variance weights on their independent
    sigma; the common part (plane and ankle height) does not average out and is added after.
    """
    count = len(people)
    if count == 0:
        empty = np.zeros(0)
        return FloorDepth(empty, empty, np.zeros(0, dtype=bool), np.zeros((0, 2), dtype=bool))
    joints = people.joint_set
    ankles = [joints.index(name) for name in config.ankles]
    rays = pixel_rays(people.uv_px[:, ankles], intrinsics)  # (P, 2, 3)
    ankle_z = people.keypoints_m[:, ankles, 2]
    standing = _standing_ankles(people, plane, config)
    with np.errstate(divide="ignore", invalid="ignore"):
        rise_per_depth = np.where(standing, _rise_over_lowest(people.keypoints_m[:, ankles], standing, plane)
                                  / ankle_z, 0.0)
        depth, sigma_ind, sigma_com = ray_floor_depth(rays, plane, intrinsics.K[0, 0], intrinsics.K[1, 1],
                                                      config, rise_per_depth)
        usable = standing & np.isfinite(depth) & (ankle_z > 0)
        usable &= np.hypot(sigma_ind, sigma_com) <= config.max_relative_sigma * depth
        scale = depth / ankle_z
        weight = np.where(usable, 1.0 / np.maximum(sigma_ind / ankle_z, 1e-12) ** 2, 0.0)
        total = weight.sum(axis=1)
        valid = total > 0
        mean_scale = np.where(valid, np.nansum(weight * np.nan_to_num(scale), axis=1) / total, 1.0)
        independent = np.where(valid, 1.0 / np.sqrt(total), 0.0)
        common = np.where(valid, np.nansum(weight * np.nan_to_num(sigma_com / ankle_z), axis=1) / total, 0.0)
    return FloorDepth(scale=mean_scale, scale_sigma=np.hypot(independent, common), valid=valid, ankle=usable)


def _stature_m(keypoints_m: np.ndarray, used_ankles: np.ndarray, ankles: list[int], head: int,
               up: np.ndarray, ankle_height_m: float) -> np.ndarray:
    """(P,) top of head over the floor: head height over the lowest used ankle plus the ankle height."""
    heights = keypoints_m @ up
    lowest = np.min(np.where(used_ankles, heights[:, ankles], np.inf), axis=1)
    with np.errstate(invalid="ignore"):
        return np.where(used_ankles.any(axis=1), heights[:, head] - lowest + ankle_height_m, 0.0)


def apply_floor(people: People, intrinsics: Intrinsics, plane: FloorPlane | None,
                config: FloorConfig = FloorConfig()) -> People:
    """``people`` with the floor cue fused into their root depth (MAR Eq. 12) where it applies.

    Each person the cue applies to is rescaled about the camera centre to the fused depth, gets
    ``DEPTH_CUE_FLOOR`` in its cues, the fused sigma, and its stature measured at the floor's scale
    (with the sigma of that scale). Everybody else is returned unchanged; so is everyone when
    ``plane`` is None.
    """
    if plane is None or len(people) == 0:
        return people
    cue = floor_depth(people, intrinsics, plane, config)
    if not cue.valid.any():
        return people
    root_z = people.root_m[:, 2]
    floor_z = cue.scale * root_z
    floor_sigma = cue.scale_sigma * root_z
    # The other cues' sigma must be positive for Eq. 12's weights; a zero there means "unknown".
    other_sigma = np.where(people.root_sigma_m > 0, people.root_sigma_m, np.inf)
    agrees = np.abs(floor_z - root_z) <= config.max_disagreement * np.hypot(floor_sigma, other_sigma)
    cue = replace(cue, valid=cue.valid & agrees, ankle=cue.ankle & agrees[:, None])
    if not cue.valid.any():
        return people
    fused_z, fused_sigma = (value.numpy() for value in fuse_depths(
        torch.from_numpy(root_z), torch.from_numpy(other_sigma), torch.from_numpy(floor_z),
        torch.from_numpy(np.maximum(floor_sigma, 1e-9)), torch.from_numpy(cue.valid)))
    unknown_other = cue.valid & ~np.isfinite(other_sigma)
    fused_z = np.where(unknown_other, floor_z, fused_z)
    fused_sigma = np.where(unknown_other, floor_sigma, fused_sigma)
    with np.errstate(divide="ignore", invalid="ignore"):
        rescale = np.where(cue.valid & (root_z > 0), fused_z / root_z, 1.0)
    joints = people.joint_set
    ankles = [joints.index(name) for name in config.ankles]
    stature = _stature_m(people.keypoints_m * cue.scale[:, None, None], cue.ankle, ankles,
                         joints.index(config.head), plane.up_cam, config.ankle_height_m)
    with np.errstate(invalid="ignore"):
        stature_sigma = np.hypot(stature * cue.scale_sigma / cue.scale, config.ankle_height_sigma_m)
    return replace(
        people,
        keypoints_m=people.keypoints_m * rescale[:, None, None],
        root_sigma_m=np.where(cue.valid, fused_sigma, people.root_sigma_m),
        depth_cues=np.where(cue.valid, people.depth_cues | DEPTH_CUE_FLOOR, people.depth_cues).astype(np.uint8),
        height_m=np.where(cue.valid, stature, people.height_m),
        height_sigma_m=np.where(cue.valid, stature_sigma, people.height_sigma_m),
    )
