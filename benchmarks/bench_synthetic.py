"""Synthetic scene generation speed: images per second at 832x512, CPU and CUDA.

    python benchmarks/bench_synthetic.py [--images 20] [--runs 5] [--batch 64] [--people 2,8]

Rows (median over ``--runs`` runs of ``--images`` images each, after a warm-up run):

- ``cpu, 1 process x 2 threads``: :func:`generate_image` end to end (scene sampling, rendering,
  visibility, annotation) with ``torch.set_num_threads(2)``;
- ``cpu, 2 processes x 1 thread``: the same in two worker processes, as ``mp3d-synth --workers 2``
  runs (one image per process at a time);
- ``cuda, end to end``: :func:`generate_image` with ``device="cuda"``, one image at a time;
- ``cuda, batched render``: :func:`render_batch` of ``--batch`` scenes sampled beforehand (the
  renderer alone);
- ``cpu, scene sampling only``: :func:`sample_scene` per image, the CPU-side work that feeds a GPU.

Images/s is images divided by wall time. The target is >= 5 images/s on 2 CPU cores and >= 200 on
one H100 (DESIGN.md "Performance targets").
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time
from typing import Callable

import torch

from mp3d_ros.data.render import render_batch
from mp3d_ros.data.synthetic import SceneConfig, generate_image, sample_scene

SIZE = (832, 512)


def _median_rate(run: Callable[[int], None], images: int, runs: int) -> float:
    """Median images/s of ``runs`` calls ``run(first_index)``, each making ``images`` images."""
    run(10_000)  # warm-up: imports, allocator, kernels
    rates = []
    for k in range(runs):
        start = time.perf_counter()
        run(k * images)
        rates.append(images / (time.perf_counter() - start))
    return statistics.median(rates)


def _cpu_worker(task: tuple[SceneConfig, int, int]) -> int:
    config, first, count = task
    torch.set_num_threads(1)
    for index in range(first, first + count):
        generate_image(config, 0, index)
    return count


def _rows(args: argparse.Namespace) -> list[tuple[str, float]]:
    config = SceneConfig(size=SIZE, people=args.people)
    rows = []
    torch.set_num_threads(2)
    rows.append(("cpu, 1 process x 2 threads", _median_rate(
        lambda first: [generate_image(config, 0, first + i) for i in range(args.images)],
        args.images, args.runs)))
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        half = args.images // 2
        rows.append(("cpu, 2 processes x 1 thread", _median_rate(
            lambda first: pool.map(
                _cpu_worker, [(config, first, half), (config, first + half, half)]),
            2 * half, args.runs)))
    torch.set_num_threads(1)
    rows.append(("cpu, scene sampling only (1 thread)", _median_rate(
        lambda first: [sample_scene(config, 0, first + i) for i in range(args.images)],
        args.images, args.runs)))
    if torch.cuda.is_available():
        device = torch.device("cuda")

        def end_to_end(first: int) -> None:
            for i in range(args.images):
                generate_image(config, 0, first + i, device=device)
            torch.cuda.synchronize()

        rows.append(("cuda, end to end", _median_rate(end_to_end, args.images, args.runs)))
        scenes = [sample_scene(config, 0, i) for i in range(args.batch)]

        def batched(_: int) -> None:
            render_batch(scenes, device).image.cpu()
            torch.cuda.synchronize()

        rate = _median_rate(batched, args.batch, args.runs)
        rows.append((f"cuda, batched render (batch {args.batch})", rate))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20, help="images per run")
    parser.add_argument("--runs", type=int, default=5, help="timed runs (median reported)")
    parser.add_argument("--batch", type=int, default=64, help="scenes per batched CUDA render")
    parser.add_argument("--people", type=lambda t: tuple(int(v) for v in t.split(",")),
                        default=(2, 8), help="P0,P1 people per scene")
    args = parser.parse_args()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device"
    print(f"synthetic scenes {SIZE[0]}x{SIZE[1]}, people {args.people[0]}-{args.people[1]}; "
          f"torch {torch.__version__}; {os.cpu_count()} CPUs; {device}; "
          f"load average {os.getloadavg()[0]:.1f}")
    rows = _rows(args)
    width = max(len(name) for name, _ in rows)
    print(f"| {'configuration':<{width}} | images/s |")
    print(f"|{'-' * (width + 2)}|---------:|")
    for name, rate in rows:
        print(f"| {name:<{width}} | {rate:8.1f} |")


if __name__ == "__main__":
    main()
