"""Synthetic sequences as rosbag2 bags: camera images, CameraInfo and ground-truth poses.

People walk (or play mocap takes) through the view with stable identities
(:func:`mp3d_ros.synthetic.scenes.generate_sequence`); each frame is written by
:func:`mp3d_ros.messages.bags.write_bag` with its ground truth as a ``PoseArray3D`` in MuPoTS-17 (the
joint set the estimators output), so ``mp3d-replay`` can score the bag; the camera's pose over the
floor goes in as ``/tf_static`` (``ground`` -> the optical frame), so the floor cue can be scored too.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from mp3d_ros.geometry.people import People
from mp3d_ros.geometry.skeleton import MUCO_21, MUPOTS_17, convert_joints
from mp3d_ros.messages.bags import BagFrame, write_bag
from mp3d_ros.messages.conversions import RigidTransform
from mp3d_ros.synthetic.bvh import load_mocap_poses
from mp3d_ros.synthetic.scenes import SceneConfig, SyntheticFrame, generate_sequence, ground_from_camera

__all__ = ["ground_truth_people", "write_synthetic_bag"]


def ground_truth_people(frame: SyntheticFrame) -> People:
    """The frame's annotated people as MuPoTS-17 :class:`People` (hidden joints ``inferred``)."""
    joints, _ = convert_joints(frame.keypoints_cam_m, MUCO_21, MUPOTS_17)
    uv, _ = convert_joints(frame.keypoints_img_px, MUCO_21, MUPOTS_17)
    visible, _ = convert_joints(frame.visible.astype(float)[..., None], MUCO_21, MUPOTS_17)
    count = len(joints)
    return People(
        MUPOTS_17.name, uv_px=uv, keypoints_m=joints, confidence=np.ones((count, 17)),
        inferred=~(visible[..., 0] > 0), score=np.ones(count), root_sigma_m=np.zeros(count),
        track_id=np.asarray(frame.track_ids, dtype=np.int64),
    )


def _bag_frames(frames: Iterator[SyntheticFrame]) -> Iterator[BagFrame]:
    for frame in frames:
        yield BagFrame(frame.stamp_ns, frame.image, frame.intrinsics, ground_truth_people(frame))


def write_synthetic_bag(
    path: str | Path, config: SceneConfig, seed: int, num_frames: int, storage: str = "mcap",
    encoding: str = "jpeg", mocap_dir: str | Path | None = None, progress: bool = True,
    device: torch.device | str = "cpu",
) -> int:
    """Render one sequence of ``num_frames`` frames on ``device`` into the bag ``path``; returns
    frames written."""
    from tqdm import tqdm

    mocap = load_mocap_poses(mocap_dir, MUCO_21, fps=config.fps) if mocap_dir else None
    frames = iter(tqdm(generate_sequence(config, seed, 0, num_frames, mocap=mocap, device=device),
                       total=num_frames, desc="synthetic bag", unit="frame", disable=not progress))
    first = next(frames, None)
    if first is None:
        return write_bag(path, iter(()), storage=storage, encoding=encoding)
    # A sequence's camera does not move: its pose over the floor is one static transform.
    pose = RigidTransform(*ground_from_camera(first.R_cam_world, first.camera_height_m))
    return write_bag(path, _bag_frames(itertools.chain([first], frames)), storage=storage, encoding=encoding,
                     ground_from_camera=pose)
