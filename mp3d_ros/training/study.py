"""Ablation studies: variants of one training config trained in lockstep on the very same batches.

A study (``config/study/*.yaml``, :class:`StudyConfig`) names a base training config,
overrides common to every variant, the **trained variants** (each a set of overrides of the base,
e.g. ``model.pdqm: false``) and the **decode variants** (the weights of a trained variant decoded
with other :data:`~mp3d_ros.model.config.DECODE_SWITCHES`, which no loss reads, so training them
again would reproduce the same weights).

:func:`train_study` builds one :class:`~mp3d_ros.training.loop.Trainer` per trained variant and
feeds every batch of one data loader to each in turn, so all variants see identical images,
augmentations and targets in the same order: the same budget by construction, at the cost of one
data pipeline (a variant's logged images/s counts the loading and the variants stepped before it
in each step, so the last variant's is the study's rate). Targets are drawn once and re-expressed
in each variant's depth units (:func:`~mp3d_ros.model.codec.targets.in_depth_units`). Each variant writes
its own run folder (``<out_dir>/<name>/``: checkpoints, metrics.jsonl, TensorBoard), and
:func:`release_models` writes the final weights of every variant, decode variants included, as
inference checkpoints (``<out_dir>/models/<name>.pt``) that ``mp3d-eval --checkpoint`` and the
``Estimator`` load.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mp3d_ros.config import load_config
from mp3d_ros.model.checkpoint import load_checkpoint, release_checkpoint, save_checkpoint
from mp3d_ros.model.codec.targets import in_depth_units
from mp3d_ros.model.config import DECODE_SWITCHES, ModelConfig
from mp3d_ros.training.config import TrainConfig, load_train_config, model_config
from mp3d_ros.training.distributed import init_distributed, shutdown_distributed
from mp3d_ros.training.loop import Trainer, TrainResult
from mp3d_ros.training.state import list_checkpoints

__all__ = ["StudyConfig", "load_study", "release_models", "study_train_configs", "train_study"]

# Training-config fields that decide which batches a run sees: equal across a study's variants.
_SHARED_DATA_FIELDS = ("datasets", "batch_size", "seed", "augment", "targets", "schedule")


@dataclass(frozen=True)
class StudyConfig:
    """A study: which variants of which training config, and where they go."""

    # The training config every variant starts from, e.g. config/train/synthetic.yaml.
    base: str = ""
    # Overrides (dotted keys as in ``mp3d-train --set``) applied to every variant.
    common: dict[str, Any] = field(default_factory=dict)
    # Trained variants: name -> overrides of the base (an empty mapping is the base itself).
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Decode variants: name -> {"of": a trained variant, "model.<decode switch>": value, ...}.
    decode_variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Study folder: one run folder per trained variant, models/ with every variant's weights.
    out_dir: str = "runs/study"

    def __post_init__(self) -> None:
        if not self.base or not self.variants:
            raise ValueError("study: base and at least one trained variant are needed")
        clash = sorted(set(self.variants) & set(self.decode_variants))
        if clash:
            raise ValueError(f"study: variant names {clash} are both trained and decode variants")
        for name, spec in self.decode_variants.items():
            if spec.get("of") not in self.variants:
                raise ValueError(f"study: decode variant {name!r} needs 'of': one of {sorted(self.variants)}")
            for key in spec:
                if key != "of" and key.removeprefix("model.") not in DECODE_SWITCHES:
                    raise ValueError(f"study: decode variant {name!r} sets {key!r}; only model.<switch> "
                                     f"for switches {DECODE_SWITCHES} leave the weights unchanged")


def _override_strings(overrides: dict[str, Any]) -> list[str]:
    """``{"model.pdqm": False}`` -> ``["model.pdqm=false"]`` (JSON is YAML)."""
    return [f"{key}={json.dumps(value)}" for key, value in overrides.items()]


def study_train_configs(study: StudyConfig, overrides: list[str] = ()) -> dict[str, TrainConfig]:
    """Every trained variant's :class:`TrainConfig` (base + common + variant + ``overrides``, in that
    order), its ``out_dir`` set to ``<study.out_dir>/<name>``.

    Raises:
        ValueError: a bad override, or variants that would not see the same batches (they differ
            in a data field, the joint set or the input size).
    """
    configs = {}
    for name, variant in study.variants.items():
        strings = [*_override_strings(study.common), *_override_strings(variant), *overrides,
                   f"out_dir={json.dumps(str(Path(study.out_dir) / name))}"]
        configs[name] = load_train_config(study.base, strings)
    first_name, first = next(iter(configs.items()))
    first_model = model_config(first)
    for name, config in configs.items():
        differing = [key for key in _SHARED_DATA_FIELDS if getattr(config, key) != getattr(first, key)]
        model = model_config(config)
        differing += [f"model.{key}" for key in ("joint_set", "input_size")
                      if getattr(model, key) != getattr(first_model, key)]
        if differing:
            raise ValueError(f"study: variant {name!r} differs from {first_name!r} in {differing}; "
                             "variants must see the same batches")
    return configs


def train_study(configs: dict[str, TrainConfig]) -> dict[str, TrainResult]:
    """Train every variant in lockstep (one process), each step on the same batch; returns each
    variant's result. The batches are those the first variant's loader draws."""
    context = init_distributed(next(iter(configs.values())).device)
    if context.distributed:
        shutdown_distributed()
        raise ValueError("a study trains in one process: run it without torchrun")
    try:
        trainers = {name: Trainer(config, context) for name, config in configs.items()}
        lead = next(iter(trainers.values()))
        progress = {name: trainer.start_progress() for name, trainer in trainers.items()}
        try:
            tick = time.perf_counter()
            for batch in lead.loader():
                batch = lead.prepared(batch.to(context.device))
                for name, trainer in trainers.items():
                    targets = in_depth_units(batch.targets, lead.model_cfg, trainer.model_cfg)
                    trainer.advance(replace(batch, targets=targets), progress[name], tick)
                tick = time.perf_counter()
        finally:
            for run in progress.values():
                run.logger.close()
        for name, trainer in trainers.items():
            progress[name].result.step = trainer.step
        return {name: run.result for name, run in progress.items()}
    finally:
        shutdown_distributed()


def release_models(study: StudyConfig, half: bool = True) -> dict[str, Path]:
    """Write every variant's final weights as an inference checkpoint ``<out_dir>/models/<name>.pt``
    (fp16 weights when ``half``); decode variants get their trained variant's weights with their
    switches in the model config. Returns name -> path.

    Raises:
        ValueError: a trained variant has no checkpoint yet.
    """
    out = Path(study.out_dir) / "models"
    written: dict[str, Path] = {}
    finals = {}
    for name in study.variants:
        found = list_checkpoints(Path(study.out_dir) / name / "checkpoints")
        if not found:
            raise ValueError(f"study variant {name!r} has no checkpoint in {Path(study.out_dir) / name}")
        finals[name] = release_checkpoint(load_checkpoint(found[-1][1]), half=half)
        written[name] = out / f"{name}.pt"
        save_checkpoint(written[name], finals[name])
    for name, spec in study.decode_variants.items():
        base = finals[spec["of"]]
        switches = {key.removeprefix("model."): value for key, value in spec.items() if key != "of"}
        model = ModelConfig.from_dict(base.model_config)
        decoded = replace(base, model_config=replace(model, **switches).to_dict(),
                          extra={**base.extra, "decode_variant_of": spec["of"]})
        written[name] = out / f"{name}.pt"
        save_checkpoint(written[name], decoded)
    return written


def load_study(path: str | Path, overrides: list[str] = ()) -> StudyConfig:
    """A :class:`StudyConfig` from its YAML file."""
    return load_config(StudyConfig, path, list(overrides))
