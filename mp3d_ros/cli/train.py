"""``mp3d-train``: train the papers' network from a YAML config, on one process or many (torchrun).

    mp3d-train --config config/train/muco_coco.yaml [--set key.sub=value ...] [--resume PATH]
    torchrun --nproc_per_node 8 -m mp3d_ros.cli.train --config config/train/muco_coco.yaml

``--resume`` takes a checkpoint file or a run folder (its newest checkpoint) and continues the run
at its step with its schedule; see ``docs/training.md`` and :mod:`mp3d_ros.training`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from mp3d_ros.cli.errors import BAD_INPUT, report_bad_input
from mp3d_ros.training.config import load_train_config
from mp3d_ros.training.loop import train

__all__ = ["main", "parse_args"]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="mp3d-train",
        description="Train the papers' network (MAR + DRM heads) on MuCo-3DHP / Panoptic / COCO / "
                    "synthetic scenes; one process, or one per GPU with torchrun.",
    )
    parser.add_argument("--config", required=True, help="training config, e.g. config/train/muco_coco.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value (YAML syntax), e.g. --set optim.lr=5e-4; repeatable")
    parser.add_argument("--resume", default=None, metavar="PATH",
                        help="continue from a checkpoint file, or from the newest one of a run folder")
    parser.add_argument("--restart-optimizer", action="store_true",
                        help="with --resume: start the optimiser afresh (needed for a checkpoint saved "
                             "without its optimiser state)")
    parser.add_argument("--stop-after-min", type=float, default=None, metavar="MINUTES",
                        help="stop after this many minutes of training, with a checkpoint to --resume "
                             "from (for time-limited jobs); default: run to the last step")
    args = parser.parse_args(argv)
    if args.restart_optimizer and args.resume is None:
        parser.error("--restart-optimizer needs --resume")
    if args.stop_after_min is not None and not args.stop_after_min > 0:
        parser.error(f"--stop-after-min must be > 0, got {args.stop_after_min}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format=f"[rank {rank}] %(levelname)s %(message)s")
    try:
        config = load_train_config(args.config, args.overrides)
        stop_after_s = None if args.stop_after_min is None else 60.0 * args.stop_after_min
        result = train(config, args.resume, args.restart_optimizer, stop_after_s)
    except BAD_INPUT as error:
        return report_bad_input("mp3d-train", error)
    if rank == 0 and result.stopped_early:
        print(f"stopped at the time limit at step {result.step}; continue with --resume "
              f"{result.checkpoint}")
    elif rank == 0:
        print(f"done at step {result.step}; last checkpoint {result.checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
