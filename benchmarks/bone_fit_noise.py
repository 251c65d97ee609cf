"""Does 2D noise alone bias the body-size root depth? Exact bodies, noisy pixels, median ratio.

    python benchmarks/bone_fit_noise.py --mocap ../shared/mocap [--noise-px 3] [--focal-px 500]

Mocap poses retargeted to survey adults (:func:`~mp3d_ros.data.lifting.sample_bodies`) stand at
random headings and positions in a pinhole camera; their joints are projected and given Gaussian
pixel noise, and :func:`~mp3d_ros.geometry.absolute_depth.estimate_root_depth_px` gets the exact
root-relative pose and the 12 joints a COCO detector marks. Lengths and relative depths are exact,
so any departure of the median ratio from 1 comes from the 2D noise through the fit (errors in
variables: a noisy regressor), not from the body model. Printed per distance band: the median
predicted / true root depth of the bones fit, the torso closed form and their fusion.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch

from mp3d_ros.data.lifting import load_pose_bank, retarget_lifting_poses
from mp3d_ros.evaluation.evaluate import format_table
from mp3d_ros.geometry.absolute_depth import BodyPrior, estimate_root_depth_px
from mp3d_ros.geometry.camera import Intrinsics, project
from mp3d_ros.geometry.skeleton import MUPOTS_17

HEIGHT_M = 1.70
UNSEEN = ("pelvis", "spine", "neck", "head", "head_top")  # not COCO keypoints


def parse_bands(text: str) -> list[tuple[float, float]]:
    """``"2-4,4-7"`` -> ``[(2.0, 4.0), (4.0, 7.0)]``."""
    return [tuple(float(v) for v in band.split("-")) for band in text.split(",")]  # type: ignore[misc]


def camera_poses(bank_poses_m: torch.Tensor, bodies_m: torch.Tensor, count: int,
                 rng: np.random.Generator) -> np.ndarray:
    """(count, 17, 3) MuPoTS-17 root-relative poses in the optical frame (y down), random
    mocap frame, adult body and heading."""
    frames = torch.from_numpy(rng.integers(len(bank_poses_m), size=count))
    bodies = torch.from_numpy(rng.integers(len(bodies_m), size=count))
    poses = retarget_lifting_poses(bank_poses_m[frames].double(), bodies_m[bodies].double()).numpy()
    poses = poses[:, : MUPOTS_17.num_joints]
    heading = rng.uniform(0, 2 * math.pi, count)
    cos, sin = np.cos(heading), np.sin(heading)
    x = cos[:, None] * poses[..., 0] + sin[:, None] * poses[..., 2]
    z = -sin[:, None] * poses[..., 0] + cos[:, None] * poses[..., 2]
    return np.stack([x, -poses[..., 1], z], axis=-1)


def band_ratios(poses_m: np.ndarray, near_m: float, far_m: float, intrinsics: Intrinsics,
                noise_px: float, rng: np.random.Generator) -> dict[str, float]:
    """Median predicted / true root depth of each cue for people between ``near_m`` and ``far_m``."""
    count = len(poses_m)
    depth_m = rng.uniform(near_m, far_m, count)
    roots = np.stack([rng.uniform(-0.2, 0.2, count) * depth_m, 0.1 * depth_m, depth_m], axis=1)
    uv = np.stack([project(p + r, intrinsics) for p, r in zip(poses_m, roots)])
    uv = uv + rng.normal(0.0, noise_px, uv.shape)
    seen = np.ones(uv.shape[:2], dtype=bool)
    seen[:, [MUPOTS_17.index(name) for name in UNSEEN]] = False
    depth = estimate_root_depth_px(uv, seen, poses_m, intrinsics, MUPOTS_17, HEIGHT_M,
                                   BodyPrior(torso_keypoint_scale=1.0), keypoint_sigma_px=noise_px)
    ratios = {}
    for cue, values, valid in (("bones", depth.bones_depth_m, depth.bones_valid),
                               ("torso", depth.torso_depth_m, depth.torso_valid),
                               ("fused", depth.depth_m, depth.valid)):
        keep = valid.numpy()
        ratios[cue] = float(np.median(values.numpy()[keep] / depth_m[keep])) if keep.any() else math.nan
    return ratios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mocap", required=True, help="CMU BVH folder (../shared/mocap)")
    parser.add_argument("--people", type=int, default=400, help="people per distance band")
    parser.add_argument("--noise-px", type=float, default=3.0, help="2D noise sd per axis, pixels")
    parser.add_argument("--focal-px", type=float, default=500.0, help="focal length of a 640 x 480 camera")
    parser.add_argument("--bands", default="2-4,4-7,7-10,10-14", help="distance bands, metres")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    bank = load_pose_bank(args.mocap, HEIGHT_M, fps=2.0, bodies=1024, seed=args.seed)
    intrinsics = Intrinsics.pinhole(args.focal_px, args.focal_px, 320, 240, 640, 480)
    rows = []
    for near_m, far_m in parse_bands(args.bands):
        poses = camera_poses(bank.poses_m, bank.bodies_m, args.people, rng)
        ratios = band_ratios(poses, near_m, far_m, intrinsics, args.noise_px, rng)
        forearm_px = args.focal_px * 0.26 / (0.5 * (near_m + far_m))
        rows.append([f"{near_m:g}-{far_m:g}", f"{forearm_px:.0f}",
                     *(f"{ratios[cue]:.3f}" for cue in ("bones", "torso", "fused"))])
    print(f"{args.people} people per band, {args.noise_px:g} px noise, f = {args.focal_px:g} px, "
          f"exact lengths and relative depths; median predicted / true root depth")
    print(format_table(["band (m)", "forearm px", "bones", "torso", "fused"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
