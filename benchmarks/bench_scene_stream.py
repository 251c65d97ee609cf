"""Training on scenes rendered in the run: images/s of the data alone and of training, GPU busy %.

    python benchmarks/bench_scene_stream.py [--config config/train/synthetic_scenes.yaml]
        [--sizes 416x256,832x512] [--batch-size 32] [--workers 15] [--steps 60] [--skip N]
        [--set KEY=VALUE ...]

For every input size, with the config's ``scenes`` dataset (fresh scenes and their person tables
in the loader workers; rendering and target maps on the training device):

- ``data``: the loader, the render and the target maps of each batch on the device, nothing else;
- ``train``: :meth:`~mp3d_ros.training.loop.Trainer.advance` on those batches (forward, losses,
  backward, optimiser), i.e. a training run as ``mp3d-train`` runs it.

Images/s counts the ``--steps`` batches after the first ``--skip`` (worker start, mocap loading,
cuDNN autotuning). The loader prepares 4 batches per worker ahead, so ``--skip`` defaults to more
than that: batches prepared while the workers started would otherwise make the data look faster
than it is sustained. GPU busy is the mean of ``nvidia-smi``'s utilisation sampled every 200 ms over
the measured steps (``-`` without nvidia-smi).
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import tempfile
import time

import numpy as np
import torch

from mp3d_ros.config import size_wxh
from mp3d_ros.evaluation.evaluate import format_table
from mp3d_ros.training.config import load_train_config
from mp3d_ros.training.distributed import DistContext
from mp3d_ros.training.loop import Trainer


class GpuBusy:
    """``nvidia-smi`` sampling the GPU's utilisation in the background while in the block."""

    def __enter__(self) -> GpuBusy:
        self.samples: list[float] = []
        try:
            self.process = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "200"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        except FileNotFoundError:
            self.process = None
        return self

    def __exit__(self, *_) -> None:
        if self.process is None:
            return
        self.process.terminate()
        out, _ = self.process.communicate()
        self.samples = [float(line.split(",")[0]) for line in out.split() if line.strip().isdigit()]

    @property
    def mean(self) -> str:
        return f"{np.mean(self.samples):.0f}" if self.samples else "-"


def _trainer(args: argparse.Namespace, size: tuple[int, int], out_dir: str) -> Trainer:
    overrides = [f"model.input_size=[{size[0]}, {size[1]}]", f"batch_size={args.batch_size}",
                 f"workers={args.workers}", f"out_dir={out_dir}", "progress=false", "validation={}",
                 "validate_every=0", f"checkpoint_every={10**9}", f"log_every={10**9}",
                 f"schedule={{steps: {args.skip + args.steps + 1}, warmup_steps: 1}}", *args.overrides]
    config = load_train_config(args.config, overrides)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return Trainer(config, DistContext(0, 1, 0, device))


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def measure(args: argparse.Namespace, size: tuple[int, int], train: bool) -> tuple[float, str]:
    """(images/s, GPU busy %) over ``--steps`` batches after ``--skip``."""
    with tempfile.TemporaryDirectory() as out_dir:
        trainer = _trainer(args, size, out_dir)
        progress = trainer.start_progress()
        batches = iter(trainer.loader())

        def step() -> None:
            batch = next(batches)
            if train:
                trainer.advance(batch, progress, time.perf_counter())
            else:
                trainer.prepared(batch.to(trainer.context.device))

        for _ in range(args.skip):
            step()
        _synchronize()
        with GpuBusy() as busy:
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            _synchronize()
            elapsed = time.perf_counter() - start
        progress.logger.close()
    return args.steps * args.batch_size / elapsed, busy.mean


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="config/train/synthetic_scenes.yaml")
    parser.add_argument("--sizes", default="416x256,832x512", help="comma-separated WxH network inputs")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=15)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--skip", type=int, default=None,
                        help="batches not measured; default 4 x workers + 5 (the loader's prefetch)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a value of the training config (as mp3d-train --set)")
    args = parser.parse_args()
    if args.skip is None:
        args.skip = 4 * args.workers + 5
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device"
    rows = []
    for text in args.sizes.split(","):
        size = size_wxh(text)
        for train in (False, True):
            rate, busy = measure(args, size, train)
            rows.append([f"{size[0]}x{size[1]}", "train" if train else "data", f"{rate:.1f}", busy])
            print(rows[-1], flush=True)
    print(f"\nscene stream ({args.config}), batch {args.batch_size}, {args.workers} loader workers; "
          f"torch {torch.__version__}; {device}; {platform.node()}")
    print(format_table(["input", "measured", "images/s", "GPU busy %"], rows))


if __name__ == "__main__":
    main()
