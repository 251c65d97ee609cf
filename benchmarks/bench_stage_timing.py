"""What the Estimator's own stage timing costs per frame: ``stage_timing`` on against off.

    python benchmarks/bench_stage_timing.py [--device cuda|cpu] [--cuda-graph auto|on|off]
        [--frames 3000] [--people 3]

One rendered 640x480 scene of ``--people`` people; frames alternate between timing on and off (so
clock drift and thermal state hit both alike) after a warm-up; prints the median, p90 and mean
wall time per ``estimate`` call of each, their difference, and one frame's ``last_timings_ms``.
The node's ``stage_timing: auto`` leaves the estimator's stages untimed on a GPU because of this
difference (docs/ros.md).
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--cuda-graph", choices=("auto", "on", "off"), default="auto")
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--people", type=int, default=3)
    args = parser.parse_args()

    from mp3d_ros.inference.estimator import Estimator
    from mp3d_ros.synthetic.scenes import SceneConfig, generate_image

    scene = generate_image(SceneConfig(size=(640, 480), people=(args.people, args.people),
                                       depth_range_m=(2.0, 6.0)), 0, 0)
    graph = {"auto": "auto", "on": True, "off": False}[args.cuda_graph]
    estimator = Estimator(device=args.device, cuda_graph=graph)
    estimator.warmup((640, 480), scene.intrinsics, runs=10)
    spent_ms: dict[bool, list[float]] = {True: [], False: []}
    for index in range(args.frames):
        timed = index % 2 == 0
        estimator.stage_timing = timed
        started = time.perf_counter()
        estimator.estimate(scene.image, scene.intrinsics)
        spent_ms[timed].append(1e3 * (time.perf_counter() - started))
    print(f"{estimator.backend_name}, input {estimator.input_size}, {args.frames} frames, "
          f"{args.people} rendered people")
    medians = {}
    for timed in (True, False):
        ms = np.asarray(spent_ms[timed][min(50, len(spent_ms[timed]) // 4):])  # first frames settle
        medians[timed] = float(np.median(ms))
        print(f"  stage_timing={timed!s:5s}  median {medians[timed]:.3f} ms  "
              f"p90 {np.percentile(ms, 90):.3f} ms  mean {ms.mean():.3f} ms")
    print(f"  cost of timing: {medians[True] - medians[False]:+.3f} ms per frame (median)")
    estimator.stage_timing = True
    estimator.estimate(scene.image, scene.intrinsics)
    print("  last_timings_ms:", {name: round(ms, 3) for name, ms in estimator.last_timings_ms.items()})


if __name__ == "__main__":
    main()
