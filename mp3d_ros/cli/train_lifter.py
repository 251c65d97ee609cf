"""``mp3d-train-lifter``: train the 2D -> 3D lifter on CMU mocap seen through random cameras.

Prints the MPJPE on held-out mocap subjects (root-relative, canonical body size) before and after
training, and writes the weights with a record of the data, command, result, time and hardware.

    mp3d-train-lifter --mocap ../shared/mocap --out models/lifter.safetensors --steps 20000
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from mp3d_ros.data.lifting import (
    LiftingDataConfig,
    load_pose_bank,
    sample_lifting_batch,
    split_subjects,
)
from mp3d_ros.model.lifter import Lifter, LifterConfig, lift, lifter_mpjpe_mm, save_lifter

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mp3d-train-lifter", description=__doc__.splitlines()[0])
    p.add_argument(
        "--mocap", type=Path, required=True, help="folder of CMU BVH takes (../shared/mocap)"
    )
    p.add_argument(
        "--out", type=Path, default=Path("models/lifter.safetensors"), help="weights file"
    )
    p.add_argument("--steps", type=int, default=20000, help="optimiser steps")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (Adam, cosine decay)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--held-out", nargs="+", default=["02", "09"], help="subject ids kept for testing"
    )
    p.add_argument("--takes", nargs="*", default=None, help="only these takes (file stems)")
    p.add_argument("--fps", type=float, default=30.0, help="mocap frames per second to sample")
    p.add_argument("--bodies", type=int, default=4096,
                   help="adult bodies the poses are retargeted to (0: the mocap figure's proportions)")
    p.add_argument("--eval-samples", type=int, default=20000, help="held-out pairs for the MPJPE")
    p.add_argument("--width", type=int, default=LifterConfig.width)
    p.add_argument("--blocks", type=int, default=LifterConfig.num_blocks)
    p.add_argument("--dropout", type=float, default=LifterConfig.dropout)
    p.add_argument("--log-dir", type=Path, default=None, help="TensorBoard log folder")
    return p


def _hardware(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    torch.manual_seed(args.seed)
    cfg = LifterConfig(width=args.width, num_blocks=args.blocks, dropout=args.dropout)
    bank = load_pose_bank(args.mocap, cfg.canonical_height_m, fps=args.fps, takes=args.takes,
                          bodies=args.bodies, seed=args.seed)
    train_bank, test_bank = split_subjects(bank, args.held_out)
    train_bank, test_bank = train_bank.to(args.device), test_bank.to(args.device)
    model = Lifter(cfg).to(args.device)
    optimiser = torch.optim.Adam(model.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser,
        lambda step: 0.5 * (1 + math.cos(math.pi * min(step, args.steps) / max(args.steps, 1))),
    )
    writer = None
    if args.log_dir is not None:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(args.log_dir))
    initial = lifter_mpjpe_mm(model, test_bank, args.eval_samples, args.seed + 1)
    generator = torch.Generator(args.device).manual_seed(args.seed)
    data_cfg = LiftingDataConfig()
    started = time.time()
    for step in tqdm(range(args.steps), desc="lifter", unit="step", disable=None):
        batch = sample_lifting_batch(train_bank, args.batch_size, data_cfg, generator)
        loss = (lift(model, batch.rays, batch.confidence) - batch.target_m).norm(dim=-1).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        if writer is not None and step % 100 == 0:
            writer.add_scalar("train/mpjpe_m", float(loss.detach()), step)
    seconds = time.time() - started
    final = lifter_mpjpe_mm(model, test_bank, args.eval_samples, args.seed + 1)
    if writer is not None:
        writer.add_scalar("held_out/mpjpe_mm", final, args.steps)
        writer.close()
    record = {
        "data": {
            "mocap": str(args.mocap),
            "fps": args.fps,
            "takes": args.takes or "all",
            "train_poses": len(train_bank),
            "held_out_poses": len(test_bank),
            "train_subjects": sorted(set(train_bank.subjects.tolist())),
            "held_out_subjects": args.held_out,
            "bodies": args.bodies,
        },
        "command": "mp3d-train-lifter " + " ".join(sys.argv[1:] if argv is None else argv),
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "held_out_mpjpe_mm": round(final, 2),
        "initial_mpjpe_mm": round(initial, 2),
        "eval_samples": args.eval_samples,
        "train_seconds": round(seconds, 1),
        "hardware": _hardware(args.device),
        "torch": torch.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_lifter(args.out, model.cpu(), record)
    print(
        f"held-out MPJPE: {final:.1f} mm (subjects {', '.join(args.held_out)}; untrained {initial:.1f} mm; "
        f"{args.eval_samples} pairs) after {args.steps} steps in {seconds:.0f} s; wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
