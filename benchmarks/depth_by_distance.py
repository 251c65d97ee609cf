"""Depth ratio and sigma coverage by distance for the real pipeline on rendered scenes, with and
without the floor cue.

    python benchmarks/depth_by_distance.py --images 60 [--model movenet-lift] [--mocap ../shared/mocap]

Scenes are ``mp3d-synth``'s (people 2-10 m, cameras 0.8-1.8 m high); each image is estimated twice,
once without and once with the floor plane the scene's camera pose gives.
"""

from __future__ import annotations

import argparse

from mp3d_ros.evaluation.depth_bias import DepthMatches, depth_bias_table
from mp3d_ros.geometry.floor import FloorPlane
from mp3d_ros.inference import Estimator
from mp3d_ros.messages.synthetic_bag import ground_truth_people
from mp3d_ros.synthetic.bvh import load_mocap_poses
from mp3d_ros.geometry.skeleton import MUCO_21
from mp3d_ros.synthetic.scenes import SceneConfig, generate_image, ground_from_camera
from mp3d_ros.evaluation.evaluate import format_table


def measure(model: str, images: int, seed: int, mocap_dir: str | None, size=(640, 480)) -> dict[str, DepthMatches]:
    config = SceneConfig(size=size, focal_range_px=(450.0, 650.0), people=(1, 4), depth_range_m=(2.0, 10.0),
                         camera_height_m=(0.8, 1.8), pitch_deg=(-15.0, 5.0))
    mocap = load_mocap_poses(mocap_dir, MUCO_21, fps=config.fps) if mocap_dir else None
    estimator = Estimator(model)
    results = {"without floor": DepthMatches(), "with floor": DepthMatches()}
    for index in range(images):
        frame = generate_image(config, seed, index, mocap)
        truth = ground_truth_people(frame)
        plane = FloorPlane.from_camera_pose(*ground_from_camera(frame.R_cam_world, frame.camera_height_m))
        results["without floor"].add(estimator.estimate(frame.image, frame.intrinsics), truth)
        results["with floor"].add(estimator.estimate(frame.image, frame.intrinsics, floor=plane), truth)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--model", default="movenet-lift")
    parser.add_argument("--mocap", default=None)
    args = parser.parse_args()
    for name, matches in measure(args.model, args.images, args.seed, args.mocap).items():
        rows = depth_bias_table(matches)
        print(f"\n{args.model}, {name}, {args.images} images")
        print(format_table(["band (m)", "matched", "missed", "median Z/Z_true", "in 1 sigma", "in 2 sigma"],
                           [[r["band_m"], r["matched"], r["missed"], r["median_ratio"], r["within_1_sigma"],
                             r["within_2_sigma"]] for r in rows], digits=3))


if __name__ == "__main__":
    main()
