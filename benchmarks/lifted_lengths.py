"""How long the lifter makes each segment, fed MoveNet's keypoints or the true joints' pixels.

    python benchmarks/lifted_lengths.py --mocap ../shared/mocap [--images 60] [--seed 31]
        [--max-depth-m 14]

The bones fit of ``movenet-lift`` compares each segment's image length with the lifter's length
for it, so a segment the lifter makes short places the person near. Renders of
``config/synth/depth_scenes.yaml`` (everybody 1.70 m tall, the size prior, so every segment's
true length at the prior's scale is known; people 2 m to ``--max-depth-m`` away). Each person
MoveNet finds (matched to the truth by keypoints) is lifted twice, with the same camera: from
MoveNet's keypoints, and from the true joints' pixels with every renderer joint seen. Printed per
distance band: the median lifted over true length of each limb and width segment and of
neck-to-pelvis, so the lifter's own error (true 2D) and what MoveNet's keypoints add to it can be
read apart.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import torch

from mp3d_ros.config import load_config
from mp3d_ros.evaluation.depth_calibration import match_keypoints
from mp3d_ros.evaluation.evaluate import format_table
from mp3d_ros.geometry.absolute_depth import SEGMENTS
from mp3d_ros.geometry.skeleton import COCO_17, MUCO_21, MUPOTS_17, JointSet
from mp3d_ros.inference import Estimator
from mp3d_ros.inference.movenet_lift import MoveNetLift
from mp3d_ros.model.movenet import MoveNetPeople
from mp3d_ros.resources import find_share_path
from mp3d_ros.synthetic.bvh import load_mocap_poses
from mp3d_ros.synthetic.scenes import SynthRecipe, SyntheticFrame, generate_image

HEIGHT_M = 1.70
KEYPOINT_GATE_PX = 40.0  # median keypoint distance of a detection to its true person
LENGTHS = SEGMENTS + (("neck", "pelvis"),)
COCO_WITH_JOINT = tuple(name for name in COCO_17.joints if name in MUCO_21.joints)
BANDS_M = ((2.0, 6.0), (6.0, 10.0), (10.0, np.inf))


def segment_lengths(pose_m: np.ndarray, joints: JointSet) -> np.ndarray:
    """(S,) lengths of :data:`LENGTHS` in a (J, 3) pose."""
    return np.array([np.linalg.norm(pose_m[joints.index(a)] - pose_m[joints.index(b)]) for a, b in LENGTHS])


def true_joint_detection(frame: SyntheticFrame, person: int, letterbox: np.ndarray) -> MoveNetPeople:
    """Person ``person``'s true joint pixels as one decoded MoveNet person (network-input px)."""
    uv = np.zeros((COCO_17.num_joints, 2))
    scores = np.zeros(COCO_17.num_joints)
    for name in COCO_WITH_JOINT:
        uv[COCO_17.index(name)] = frame.keypoints_img_px[person, MUCO_21.index(name)]
        scores[COCO_17.index(name)] = 0.9
    uv_input = uv @ letterbox[:2, :2].T + letterbox[:2, 2]
    one = torch.full((1, 1), 0.8)
    return MoveNetPeople(torch.tensor(uv_input[None, None], dtype=torch.float32),
                         torch.tensor(scores[None, None], dtype=torch.float32), torch.zeros(1, 1, 4), one, one)


def measure(model: MoveNetLift, frames: list[SyntheticFrame]) -> dict[str, np.ndarray]:
    """Per matched person: true root depth and lifted / true length of each of :data:`LENGTHS`,
    lifted from MoveNet's keypoints and from the true joints."""
    coco = [COCO_17.index(n) for n in COCO_WITH_JOINT]
    muco = [MUCO_21.index(n) for n in COCO_WITH_JOINT]
    scale = model.lifter.cfg.canonical_height_m / HEIGHT_M
    out: dict[str, list] = {"depth_m": [], "movenet": [], "true": []}
    for frame in frames:
        lifted, letterbox, cameras = model.lift_image(frame.image, frame.intrinsics)
        uv, seen, poses = (t.numpy() for t in (lifted.uv_px, lifted.seen, lifted.pose_m))
        for p, t in match_keypoints(uv[:, coco], seen[:, coco], frame.keypoints_img_px[:, muco], KEYPOINT_GATE_PX):
            from_truth = model.lift_people(true_joint_detection(frame, t, letterbox.A), cameras).pose_m
            true_lengths = segment_lengths(frame.keypoints_cam_m[t], MUCO_21) * scale
            out["depth_m"].append(frame.keypoints_cam_m[t, MUCO_21.root, 2])
            out["movenet"].append(segment_lengths(poses[p], MUPOTS_17) / true_lengths)
            out["true"].append(segment_lengths(from_truth[0, 0].numpy(), MUPOTS_17) / true_lengths)
    return {name: np.asarray(values) for name, values in out.items()}


def table(measured: dict[str, np.ndarray]) -> str:
    """Median lifted / true length per segment (rows) and distance band and 2D source (columns)."""
    columns, cells = [], []
    for low, high in BANDS_M:
        band = (measured["depth_m"] >= low) & (measured["depth_m"] < high)
        name = f"{low:g}-{high:g} m" if np.isfinite(high) else f"> {low:g} m"
        for source in ("true", "movenet"):
            columns.append(f"{name}, {source} 2D ({int(band.sum())})")
            cells.append(np.median(measured[source][band], axis=0) if band.any() else np.full(len(LENGTHS), np.nan))
    rows = [[f"{a} - {b}"] + [float(c[k]) for c in cells] for k, (a, b) in enumerate(LENGTHS)]
    return format_table(["segment"] + columns, rows, digits=3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mocap", required=True, help="BVH folder (../shared/mocap)")
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--seed", type=int, default=31)
    parser.add_argument("--max-depth-m", type=float, default=14.0)
    args = parser.parse_args()
    recipe = load_config(SynthRecipe, find_share_path("config/synth/depth_scenes.yaml")).scene
    config = replace(recipe, height_range_m=(HEIGHT_M, HEIGHT_M),
                     depth_range_m=(recipe.depth_range_m[0], args.max_depth_m))
    mocap = load_mocap_poses(args.mocap, MUCO_21, fps=config.fps)
    model = Estimator("movenet-lift", device="cpu").pipeline.model
    frames = [generate_image(config, args.seed, index, mocap) for index in range(args.images)]
    measured = measure(model, frames)
    print(f"movenet-lift at {model.cfg.input_size[0]} x {model.cfg.input_size[1]}, {args.images} renders of "
          f"{HEIGHT_M:g} m people, {len(measured['depth_m'])} matched; median lifted / true length\n")
    print(table(measured))


if __name__ == "__main__":
    main()
