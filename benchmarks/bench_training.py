"""Training throughput: images/s per GPU and the scaling from 1 to N processes (torchrun, DDP).

    python benchmarks/bench_training.py [--presets lite,hrnet_w32] [--procs 1,2] [--size 832x512]
        [--batch-size 16] [--steps 60] [--skip 20] [--images 96] [--workers -1] [--device auto]
    # CPU smoke run (gloo):
    python benchmarks/bench_training.py --device cpu --procs 1,2 --size 128x96 --images 8 \\
        --batch-size 2 --steps 6 --skip 2 --workers 0 --presets lite

Run it with mp3d_ros installed, or from the checkout's root with ``PYTHONPATH=.``; the torchrun
processes it starts import this checkout's ``mp3d_ros``.

Data: ``--images`` synthetic scenes (:func:`mp3d_ros.synthetic.scenes.write_dataset`) of ``--size``
in a temporary folder, trained at that size. For every preset and process count N (up to the GPUs
present) two figures, each from ``torchrun --standalone --nproc_per_node N``:

- ``end to end``: ``mp3d_ros.cli.train`` itself (loader workers doing augmentation and targets on the
  CPU, DDP, AMP, channels_last), images/s from its ``metrics.jsonl`` after the first ``--skip``
  steps (warm-up, cuDNN autotuning);
- ``step only``: the same :class:`~mp3d_ros.training.loop.Trainer` stepping on one batch kept on the
  GPU: the network, losses, backward, all-reduce and optimiser without the data pipeline.

Images/s is the global rate (all processes); per GPU divides by N; scaling is the per-GPU rate
relative to one process. A line before the table gives the CPU data pipeline's rate per loader
worker: end-to-end figures far below step-only ones mean the CPU feeds the GPUs too slowly.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from mp3d_ros.evaluation.evaluate import format_table
from mp3d_ros.synthetic.scenes import SceneConfig, write_dataset
from mp3d_ros.training.config import load_train_config, model_config, normalization
from mp3d_ros.training.data import MixedBatchSampler, TrainingDataset, load_sources

REPO = Path(__file__).resolve().parents[1]

PRESETS = {  # preset -> (initial backbone weights, normalisation)
    "lite": (str(REPO / "models" / "movenet_multipose.safetensors"), "movenet"),
    "hrnet_w32": ("", "imagenet"),
}


def _config(args: argparse.Namespace, preset: str, scenes: Path, out_dir: Path, steps: int,
            workers: int) -> dict:
    weights, normalization = PRESETS[preset]
    return {
        "model": {"preset": preset, "input_size": list(args.size)},
        "datasets": [{"kind": "synthetic", "path": str(scenes)}],
        "batch_size": args.batch_size, "workers": workers, "device": args.device, "amp": args.amp,
        "schedule": {"steps": steps, "warmup_steps": 1},
        "init": {"backbone_weights": weights}, "normalization": normalization,
        "out_dir": str(out_dir), "log_every": args.log_every, "checkpoint_every": 10 * steps,
        "keep_checkpoints": 1, "progress": False,
    }


def _torchrun(procs: int, target: list[str], env_threads: bool) -> None:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
               str(procs), *target]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    if env_threads:
        env["OMP_NUM_THREADS"] = "1"  # CPU smoke runs: one thread per process, no oversubscription
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def end_to_end(args, preset: str, procs: int, scenes: Path, work: Path) -> float:
    """Global images/s of ``mp3d_ros.cli.train`` after the first ``--skip`` steps."""
    out_dir = work / f"{preset}_{procs}_e2e"
    config = work / f"{preset}_{procs}_e2e.yaml"
    workers = args.workers if args.workers >= 0 else max(1, ((os.cpu_count() or 2) - 1) // procs)
    config.write_text(yaml.safe_dump(_config(args, preset, scenes, out_dir, args.skip + args.steps, workers)))
    _torchrun(procs, ["-m", "mp3d_ros.cli.train", "--config", str(config)], args.device == "cpu")
    rates = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    rates = [r["images_per_s"] for r in rates if "images_per_s" in r and r["step"] > args.skip]
    return len(rates) / sum(1.0 / r for r in rates)  # equal images per interval: harmonic mean


def step_only(args, preset: str, procs: int, scenes: Path, work: Path) -> float:
    """Global images/s of :meth:`Trainer.train_step` on one batch kept on the device."""
    config = work / f"{preset}_{procs}_step.yaml"
    result = work / f"{preset}_{procs}_step.json"
    # One batch is all it needs: load it in the process itself.
    config.write_text(yaml.safe_dump(_config(args, preset, scenes, work / "unused", args.skip + args.steps, 0)))
    _torchrun(procs, [str(Path(__file__).resolve()), "--worker", str(config), "--worker-out", str(result),
                      "--steps", str(args.steps), "--skip", str(args.skip)], args.device == "cpu")
    return json.loads(result.read_text())["images_per_s"]


def step_only_worker(args: argparse.Namespace) -> None:
    """One torchrun process of :func:`step_only`; rank 0 writes the rate."""
    from mp3d_ros.training.distributed import init_distributed, mean_over_processes, shutdown_distributed
    from mp3d_ros.training.loop import Trainer

    config = load_train_config(args.worker)
    context = init_distributed(config.device)
    try:
        trainer = Trainer(config, context)
        batch = next(iter(trainer.loader())).to(context.device)
        for step in range(args.skip + args.steps):
            if step == args.skip:
                _synchronize(context.device)
                start = time.perf_counter()
            trainer.train_step(batch)
        _synchronize(context.device)
        rate = args.steps * config.batch_size * context.world_size / (time.perf_counter() - start)
        rate = float(mean_over_processes(context, torch.tensor(rate, device=context.device)))
        if context.is_main:
            Path(args.worker_out).write_text(json.dumps({"images_per_s": rate}))
    finally:
        shutdown_distributed()


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def loader_rate(args, scenes: Path, preset: str, samples: int = 24) -> float:
    """Images/s of the CPU data pipeline (read, augment, targets) in one process."""
    config = load_train_config(None, [f"datasets=[{{kind: synthetic, path: {scenes}}}]",
                                      f"model={{preset: {preset}, input_size: {list(args.size)}}}"])
    sources = load_sources(config.datasets, config.seed)
    dataset = TrainingDataset(sources, model_config(config), config.augment, config.targets, 0,
                              normalization(config).mean)
    keys = MixedBatchSampler([sources[0].size], [samples], 0, 0, 1, 0, 1).keys(0)
    dataset[keys[0]]  # warm-up
    start = time.perf_counter()
    for key in keys:
        dataset[key]
    return samples / (time.perf_counter() - start)


def _machine(args) -> str:
    if args.device != "cpu" and torch.cuda.is_available():
        name = f"{torch.cuda.get_device_name(0)} x {torch.cuda.device_count()}"
    else:
        name = f"CPU ({os.cpu_count()} cores, gloo)"
    return (f"{name}; {platform.node()}; torch {torch.__version__}; "
            f"{datetime.datetime.now().astimezone().isoformat(timespec='minutes')}")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="lite,hrnet_w32", help="comma-separated: lite, hrnet_w32")
    parser.add_argument("--procs", default="1,2", help="process counts to try (capped at the GPUs present)")
    parser.add_argument("--size", default="832x512", type=lambda t: tuple(int(v) for v in t.split("x")),
                        help="WxH of the scenes and the network input")
    parser.add_argument("--batch-size", type=int, default=16, help="images per process per step")
    parser.add_argument("--steps", type=int, default=60, help="measured steps")
    parser.add_argument("--skip", type=int, default=20, help="warm-up steps before measuring")
    parser.add_argument("--log-every", type=int, default=10, help="end-to-end logging interval (steps)")
    parser.add_argument("--images", type=int, default=96, help="synthetic scenes to generate")
    parser.add_argument("--workers", type=int, default=-1,
                        help="loader workers per process (-1: the CPU cores less one, shared by the processes)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--amp", default="bf16", choices=("bf16", "fp16", "none"))
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        step_only_worker(args)
        return 0
    gpus = torch.cuda.device_count() if args.device != "cpu" else 0
    procs = [int(p) for p in args.procs.split(",")]
    if gpus:
        skipped = [p for p in procs if p > gpus]
        procs = [p for p in procs if p <= gpus]
        if skipped:
            print(f"skipping {skipped} processes: only {gpus} GPU(s)")
    presets = args.presets.split(",")
    with tempfile.TemporaryDirectory(prefix="bench_training_") as tmp:
        work = Path(tmp)
        scenes = work / "scenes"
        write_dataset(scenes, SceneConfig(size=tuple(args.size)), args.images, seed=0,
                      workers=max(1, min(8, (os.cpu_count() or 2) - 1)), progress=False)
        workers = "auto" if args.workers < 0 else args.workers
        print(f"{_machine(args)}\n{args.images} synthetic scenes {args.size[0]}x{args.size[1]}, batch "
              f"{args.batch_size} per process, amp {args.amp}, loader workers per process {workers}, "
              f"{args.steps} steps measured after {args.skip}")
        print(f"CPU data pipeline: {loader_rate(args, scenes, presets[0]):.1f} images/s per loader worker")
        rows = []
        for preset in presets:
            base: dict[str, float] = {}
            for n in procs:
                rates = {"e2e": end_to_end(args, preset, n, scenes, work),
                         "step": step_only(args, preset, n, scenes, work)}
                base = base or {k: v / n for k, v in rates.items()}
                rows.append([preset, n, rates["e2e"], rates["e2e"] / n, rates["e2e"] / n / base["e2e"],
                             rates["step"], rates["step"] / n, rates["step"] / n / base["step"]])
        unit = "GPU" if gpus else "proc"
        print(format_table(["model", "procs", "e2e img/s", f"e2e img/s/{unit}", "e2e scaling",
                            "step img/s", f"step img/s/{unit}", "step scaling"], rows, digits=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
