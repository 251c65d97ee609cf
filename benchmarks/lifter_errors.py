"""MPJPE of the committed lifter (``models/lifter.safetensors``) on four sets of simulated pairs.

The parameter count and the rows of ``models/LIFTER.md``: held-out subjects with the training distribution of cameras and
2D errors (the figure ``mp3d-train-lifter`` records), held-out subjects with exact 2D (only
joints outside the image missing), the training subjects with training-like 2D errors, and the
held-out subjects on the one mocap figure's proportions instead of the survey adults' (``--bodies
0``: what a lifter trained before the bodies were varied was trained and scored on). Pairs come
from :func:`mp3d_ros.data.lifting.sample_lifting_batch` with seed ``record.seed + 1``, as the
training command evaluates. Run:

    python benchmarks/lifter_errors.py --mocap ../shared/mocap [--samples 20000]

and it prints a Markdown table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from mp3d_ros.data.lifting import LiftingDataConfig, PoseBank, load_pose_bank, split_subjects
from mp3d_ros.model.lifter import lifter_mpjpe_mm, load_lifter

# 2D exactly as projected: no noise, outliers or dropped joints (joints outside the image stay missing).
EXACT_2D = LiftingDataConfig(noise_fraction=(0.0, 0.0), noise_floor_px=(0.0, 0.0), outlier_probability=0.0,
                             missing_probability=(0.0, 0.0), part_missing_probability=0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mocap", type=Path, required=True, help="folder of CMU BVH takes (../shared/mocap)")
    parser.add_argument("--weights", type=Path, default=Path("models/lifter.safetensors"))
    parser.add_argument("--samples", type=int, default=20000, help="pairs per row")
    parser.add_argument("--bodies", type=int, default=None,
                        help="bodies to retarget the pairs to (default: as the lifter was trained)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, record = load_lifter(args.weights)
    data = record["data"]
    takes = None if data["takes"] == "all" else data["takes"]
    bank = load_pose_bank(args.mocap, model.cfg.canonical_height_m, fps=data["fps"], takes=takes,
                          bodies=data.get("bodies", 0) if args.bodies is None else args.bodies,
                          seed=record["seed"])
    train_bank, test_bank = split_subjects(bank, data["held_out_subjects"])
    _, figure_bank = split_subjects(PoseBank(bank.poses_m, bank.subjects), data["held_out_subjects"])
    held_out = " + ".join(data["held_out_subjects"])
    seed = record["seed"] + 1
    rows = [
        (f"subjects {held_out}, training-like 2D errors", test_bank, LiftingDataConfig()),
        (f"subjects {held_out}, exact 2D (only joints outside the image missing)", test_bank, EXACT_2D),
        ("training subjects, training-like 2D errors", train_bank, LiftingDataConfig()),
        (f"subjects {held_out}, the mocap figure's proportions, training-like 2D errors", figure_bank,
         LiftingDataConfig()),
    ]
    parameters = sum(p.numel() for p in model.parameters())
    print(f"{args.weights}: {parameters / 1e6:.1f} M parameters; {args.samples} pairs per row, seed {seed}\n")
    print("| held-out pairs | MPJPE |\n|---|---:|")
    for name, pairs, data_cfg in rows:
        print(f"| {name} | {lifter_mpjpe_mm(model, pairs, args.samples, seed, data_cfg):.1f} mm |")


if __name__ == "__main__":
    main()
