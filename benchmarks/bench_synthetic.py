"""Synthetic scene generation speed: images per second at 832x512, CPU and CUDA.

    python benchmarks/bench_synthetic.py [--images 20] [--runs 5] [--batch 64] [--people 2,8]
        [--gpu-images 1024] [--workers N]

Rows (median over ``--runs`` runs of ``--images`` images each, after a warm-up run):

- ``cpu, 1 process x 2 threads``: :func:`generate_image` end to end (scene sampling, rendering,
  visibility, annotation) with ``torch.set_num_threads(2)``;
- ``cpu, 2 processes x 1 thread``: the same in two worker processes, as ``mp3d-synth --workers 2``
  runs (one image per process at a time);
- ``cuda, generate_image one at a time``: :func:`generate_image` with ``device="cuda"`` (scene
  sampling, rendering, visibility, annotation; no files);
- ``cuda, batched render``: :func:`render_frames` of ``--batch`` frames prepared beforehand (the
  renderer alone, images copied to the host);
- ``cuda, mp3d-synth --batch B --workers N``: :func:`write_dataset` exactly as ``mp3d-synth
  --device cuda --batch B --workers N`` runs it, writing ``--gpu-images`` JPEGs and the JSON to a
  temporary folder: N processes sample scenes and ground truth, the GPU renders, N threads write.
  ``(whole run)`` divides by the wall time of the call, worker start-up included; ``(steady
  state)`` is the rate of a second call of twice the images beyond the first
  (``--gpu-images / (t(2 n) - t(n))``), start-up excluded;
- ``cpu, scene sampling only``: :func:`prepare_image` per image (scene and ground truth, not
  rendered), the CPU-side work that feeds a GPU.

Images/s is images divided by wall time. The target is >= 5 images/s on 2 CPU cores and >= 200 on
one H100 (DESIGN.md "Performance targets").
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
import time
from typing import Callable

import torch

from mp3d_ros.synthetic.scenes import (
    SceneConfig,
    generate_image,
    prepare_image,
    render_frames,
    write_dataset,
)

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


def _write_seconds(config: SceneConfig, images: int, workers: int, batch: int) -> float:
    """Wall time of :func:`write_dataset` of ``images`` images on the GPU into a temporary
    folder."""
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        write_dataset(out, config, images, seed=0, workers=workers, progress=False,
                      device="cuda", batch=batch)
        return time.perf_counter() - start


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
        lambda first: [prepare_image(config, 0, first + i) for i in range(args.images)],
        args.images, args.runs)))
    if torch.cuda.is_available():
        device = torch.device("cuda")

        def one_at_a_time(first: int) -> None:
            for i in range(args.images):
                generate_image(config, 0, first + i, device=device)
            torch.cuda.synchronize()

        rows.append(("cuda, generate_image one at a time",
                     _median_rate(one_at_a_time, args.images, args.runs)))
        prepared = [prepare_image(config, 0, i) for i in range(args.batch)]

        def batched(_: int) -> None:
            render_frames(prepared, device)

        rate = _median_rate(batched, args.batch, args.runs)
        rows.append((f"cuda, batched render (batch {args.batch})", rate))
        name = f"cuda, mp3d-synth --batch {args.batch} --workers {args.workers}"
        _write_seconds(config, args.batch, args.workers, args.batch)  # warm-up
        once = _write_seconds(config, args.gpu_images, args.workers, args.batch)
        twice = _write_seconds(config, 2 * args.gpu_images, args.workers, args.batch)
        rows.append((f"{name} (whole run)", args.gpu_images / once))
        rows.append((f"{name} (steady state)", args.gpu_images / (twice - once)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20, help="images per run")
    parser.add_argument("--runs", type=int, default=5, help="timed runs (median reported)")
    parser.add_argument("--batch", type=int, default=64, help="scenes per batched CUDA render")
    parser.add_argument("--people", type=lambda t: tuple(int(v) for v in t.split(",")),
                        default=(2, 8), help="P0,P1 people per scene")
    parser.add_argument("--gpu-images", type=int, default=1024,
                        help="images of the end-to-end mp3d-synth rows on the GPU")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 1) - 2),
                        help="mp3d-synth --workers of the end-to-end GPU rows (default: CPUs - 2)")
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
