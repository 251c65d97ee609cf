"""Depth ratio and sigma coverage by distance for the real pipeline on rendered scenes, with and
without the floor cue.

    python benchmarks/depth_by_distance.py --images 60 [--model movenet-lift] [--mocap ../shared/mocap]
        [--input-size 256x256,512x384] [--device cuda] [--height-m 1.70]

Scenes are ``mp3d-synth``'s (people 2-10 m, cameras 0.8-1.8 m high); each image is estimated twice,
once without and once with the floor plane the scene's camera pose gives.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np

from mp3d_ros.config import load_config
from mp3d_ros.evaluation.depth_bias import DepthMatches, depth_bias_table
from mp3d_ros.evaluation.evaluate import format_table
from mp3d_ros.geometry.floor import FloorPlane
from mp3d_ros.geometry.skeleton import MUCO_21
from mp3d_ros.inference import Estimator
from mp3d_ros.messages.synthetic_bag import ground_truth_people
from mp3d_ros.resources import find_share_path
from mp3d_ros.synthetic.bvh import load_mocap_poses
from mp3d_ros.synthetic.scenes import SynthRecipe, generate_image, ground_from_camera


def measure(model: str, images: int, seed: int, mocap_dir: str | None, size=(640, 480),
            input_size: tuple[int, int] | None = None, device: str | None = None,
            height_m: float | None = None) -> tuple[dict[str, DepthMatches], float]:
    """Matches without and with the floor, and the median ms per estimate (with the floor).
    ``height_m`` gives everybody that stature (None: survey adults and children)."""
    config = load_config(SynthRecipe, find_share_path("config/synth/depth_scenes.yaml")).scene
    config = replace(config, size=size) if height_m is None else replace(
        config, size=size, height_range_m=(height_m, height_m))
    mocap = load_mocap_poses(mocap_dir, MUCO_21, fps=config.fps) if mocap_dir else None
    estimator = Estimator(model, input_size=input_size, device=device)
    results = {"without floor": DepthMatches(), "with floor": DepthMatches()}
    times_ms = []
    for index in range(images):
        frame = generate_image(config, seed, index, mocap)
        truth = ground_truth_people(frame)
        plane = FloorPlane.from_camera_pose(*ground_from_camera(frame.R_cam_world, frame.camera_height_m))
        results["without floor"].add(estimator.estimate(frame.image, frame.intrinsics), truth)
        start = time.perf_counter()
        found = estimator.estimate(frame.image, frame.intrinsics, floor=plane)
        times_ms.append(1000.0 * (time.perf_counter() - start))
        results["with floor"].add(found, truth)
    return results, float(np.median(times_ms[1:] or times_ms))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--model", default="movenet-lift")
    parser.add_argument("--mocap", default=None)
    parser.add_argument("--input-size", default=None, help="comma-separated WxH network inputs")
    parser.add_argument("--device", default=None)
    parser.add_argument("--height-m", type=float, default=None,
                        help="everybody this tall (e.g. 1.70, the size prior's, so that the ratio shows "
                             "the pipeline's bias alone); default survey adults and a quarter children")
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.input_size.split(",")] if args.input_size else [None]
    for input_size in sizes:
        results, ms = measure(args.model, args.images, args.seed, args.mocap, input_size=input_size,
                              device=args.device, height_m=args.height_m)
        print(f"\n## input {input_size or 'default'}: median {ms:.1f} ms per estimate (with the floor)")
        _print(args, results)


def _print(args: argparse.Namespace, results: dict[str, DepthMatches]) -> None:
    for name, matches in results.items():
        rows = depth_bias_table(matches)
        print(f"\n{args.model}, {name}, {args.images} images")
        print(format_table(["band (m)", "matched", "missed", "median Z/Z_true", "in 1 sigma", "in 2 sigma"],
                           [[r["band_m"], r["matched"], r["missed"], r["median_ratio"], r["within_1_sigma"],
                             r["within_2_sigma"]] for r in rows], digits=3))


if __name__ == "__main__":
    main()
