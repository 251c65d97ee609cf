"""``People``: the one output every model produces and every consumer reads.

The node, replay, tracking and evaluation only see this type, so they never care which model ran
(the papers' network or the real-camera ``movenet-lift`` default).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from mp3d_ros.geometry.skeleton import JointSet, get_joint_set

__all__ = ["DEPTH_CUE_BODY_SIZE", "DEPTH_CUE_FLOOR", "DEPTH_CUE_NETWORK", "People"]


# Bits of People.depth_cues (the same values as Person3D.DEPTH_CUE_* in msg/Person3D.msg).
DEPTH_CUE_NETWORK = 1  # the network's regressed root depth (the papers' network)
DEPTH_CUE_BODY_SIZE = 2  # MAR Eq. 7-8 and the segment fit from a stature prior
DEPTH_CUE_FLOOR = 4  # the seen ankles' rays meeting the floor plane


@dataclass(frozen=True, eq=False)
class People:
    """Everybody found in one image. P people, J joints of ``skeleton``.

    Attributes:
        skeleton: joint set name (:mod:`mp3d_ros.geometry.skeleton`), e.g. ``"mupots_17"``.
        uv_px: (P, J, 2) joint pixels in the source image (distorted, as observed).
        keypoints_m: (P, J, 3) joints in metres in the camera optical frame (x right, y down, z fwd).
        confidence: (P, J) joint confidence in [0, 1].
        inferred: (P, J) bool, True where the joint was not seen (occluded or outside the image) and
            its position comes from offsets / lifting instead of a heatmap peak.
        score: (P,) person score in [0, 1], sorted descending.
        root_sigma_m: (P,) standard deviation of the root depth (metres, along the viewing ray).
        track_id: (P,) int64 track ids, 0 when tracking is off or the track is not confirmed.
        track_age: (P,) int64 number of frames the track has existed, 0 when untracked.
        velocity_mps: (P, 3) root velocity in the optical frame, m/s (zeros when unknown).
        velocity_cov: (P, 3, 3) its covariance, (m/s)^2 (zeros when unknown).
        depth_cues: (P,) uint8 bit mask of the cues the root depth came from (``DEPTH_CUE_*``:
            the network's regression, body size, the floor); 0 when unknown.
        height_m: (P,) stature in metres, measured when the depth came from the floor; 0 when
            unknown (a body-size depth assumes the stature instead of measuring it).
        height_sigma_m: (P,) standard deviation of ``height_m``, 0 when unknown.
    """

    skeleton: str
    uv_px: np.ndarray
    keypoints_m: np.ndarray
    confidence: np.ndarray
    inferred: np.ndarray
    score: np.ndarray
    root_sigma_m: np.ndarray
    track_id: np.ndarray = field(default=None)  # type: ignore[assignment]
    track_age: np.ndarray = field(default=None)  # type: ignore[assignment]
    velocity_mps: np.ndarray = field(default=None)  # type: ignore[assignment]
    velocity_cov: np.ndarray = field(default=None)  # type: ignore[assignment]
    depth_cues: np.ndarray = field(default=None)  # type: ignore[assignment]
    height_m: np.ndarray = field(default=None)  # type: ignore[assignment]
    height_sigma_m: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        joint_set = get_joint_set(self.skeleton)
        count = len(np.asarray(self.score))
        defaults = {
            "track_id": np.zeros(count, dtype=np.int64),
            "track_age": np.zeros(count, dtype=np.int64),
            "velocity_mps": np.zeros((count, 3)),
            "velocity_cov": np.zeros((count, 3, 3)),
            "depth_cues": np.zeros(count, dtype=np.uint8),
            "height_m": np.zeros(count),
            "height_sigma_m": np.zeros(count),
        }
        for name, default in defaults.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, default)
        shapes = {
            "uv_px": (count, joint_set.num_joints, 2),
            "keypoints_m": (count, joint_set.num_joints, 3),
            "confidence": (count, joint_set.num_joints),
            "inferred": (count, joint_set.num_joints),
            "score": (count,),
            "root_sigma_m": (count,),
            "track_id": (count,),
            "track_age": (count,),
            "velocity_mps": (count, 3),
            "velocity_cov": (count, 3, 3),
            "depth_cues": (count,),
            "height_m": (count,),
            "height_sigma_m": (count,),
        }
        for name, shape in shapes.items():
            value = np.asarray(getattr(self, name))
            if value.shape != shape:
                raise ValueError(
                    f"People.{name} has shape {value.shape}, expected {shape} "
                    f"({count} people, skeleton {self.skeleton} with {joint_set.num_joints} joints)"
                )
            object.__setattr__(self, name, value)

    def __len__(self) -> int:
        return len(self.score)

    @property
    def joint_set(self) -> JointSet:
        return get_joint_set(self.skeleton)

    @property
    def root_m(self) -> np.ndarray:
        """(P, 3) root (pelvis) positions in metres."""
        return self.keypoints_m[:, self.joint_set.root]

    @classmethod
    def empty(cls, skeleton: str) -> "People":
        """No people (an image with nobody in it)."""
        joints = get_joint_set(skeleton).num_joints
        return cls(
            skeleton,
            uv_px=np.zeros((0, joints, 2)),
            keypoints_m=np.zeros((0, joints, 3)),
            confidence=np.zeros((0, joints)),
            inferred=np.zeros((0, joints), dtype=bool),
            score=np.zeros(0),
            root_sigma_m=np.zeros(0),
        )

    def select(self, index: np.ndarray) -> "People":
        """The people at ``index`` (an integer array or a boolean mask)."""
        return replace(
            self,
            **{
                name: np.asarray(getattr(self, name))[index]
                for name in (
                    "uv_px", "keypoints_m", "confidence", "inferred", "score", "root_sigma_m",
                    "track_id", "track_age", "velocity_mps", "velocity_cov", "depth_cues",
                    "height_m", "height_sigma_m",
                )
            },
        )
