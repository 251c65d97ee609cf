"""``mp3d-study``: train an ablation study's variants in lockstep, then write their models.

    mp3d-study --config config/study/synthetic_ablations.yaml [--set key.sub=value ...]

Every trained variant sees the same batches (:mod:`mp3d_ros.training.study`); at the end every
variant, decode variants included, is written as an inference checkpoint
``<out_dir>/models/<name>.pt`` (float16 weights) for ``mp3d-eval --checkpoint``. ``--set`` applies
to every variant, after the study's own overrides (e.g. ``--set schedule.steps=2000``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from mp3d_ros.cli.errors import BAD_INPUT, report_bad_input
from mp3d_ros.training.study import load_study, release_models, study_train_configs, train_study

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mp3d-study", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="study config, e.g. config/study/synthetic_ablations.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a training-config value of every variant (YAML syntax); repeatable")
    parser.add_argument("--out-dir", help="study folder (default: the study config's out_dir)")
    parser.add_argument("--release-only", action="store_true",
                        help="skip training: write models/ from the variants' newest checkpoints")
    parser.add_argument("--full-precision", action="store_true", help="write float32 weights, not float16")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        study = load_study(args.config, [f"out_dir={json.dumps(args.out_dir)}"] if args.out_dir else [])
        if not args.release_only:
            configs = study_train_configs(study, args.overrides)
            for name, result in train_study(configs).items():
                losses = ", ".join(f"{k} {v:.4g}" for k, v in result.losses.items() if k == "total")
                print(f"{name}: step {result.step}, {losses}, last checkpoint {result.checkpoint}")
        for name, path in release_models(study, half=not args.full_precision).items():
            print(f"{name}: {path}")
    except BAD_INPUT as error:
        return report_bad_input("mp3d-study", error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
