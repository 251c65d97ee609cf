"""Checkpoints of a training run: what goes in, where, and the checks on resume and init.

A run checkpoint is an :class:`mp3d_ros.model.checkpoint.Checkpoint` (written atomically, loadable by
:func:`mp3d_ros.inference.pipelines.load_pipeline` for inference as it is) whose training part holds the
optimiser, the learning-rate scheduler, the AMP loss scaler, the step, the training config, the
number of processes and every process's random-number-generator states (torch, CUDA, numpy,
Python). Together with the step-determined data order (:mod:`mp3d_ros.training.data`) that makes a
resumed run continue exactly where the interrupted one stopped.

Resuming is refused, with a message naming the file and what differs, when the checkpoint is
corrupt, not a training checkpoint, for another model, another number of processes, or another
training setup (everything but the operational keys in :data:`RESUMABLE_CHANGES`).
"""

from __future__ import annotations

import logging
import random
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mp3d_ros.config import config_to_dict
from mp3d_ros.model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from mp3d_ros.model.config import ModelConfig
from mp3d_ros.resources import find_share_path

__all__ = [
    "RESUMABLE_CHANGES",
    "checkpoint_path",
    "find_resume_checkpoint",
    "get_rng_state",
    "list_checkpoints",
    "load_init_weights",
    "load_resume_checkpoint",
    "prune_checkpoints",
    "set_rng_state",
    "training_checkpoint",
    "without_optimizer",
    "write_checkpoint",
]

LOG = logging.getLogger("mp3d_ros.training")
CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"step_(\d+)\.pt")
# Training-config keys that may change between an interrupted run and its resumption: they change
# how the run is observed or fed, never what it computes.
RESUMABLE_CHANGES = ("workers", "device", "validation", "validate_every", "out_dir", "log_dir",
                     "log_every", "checkpoint_every", "keep_checkpoints", "progress")


def checkpoint_path(out_dir: str | Path, step: int) -> Path:
    """``<out_dir>/checkpoints/step_<step>.pt``."""
    return Path(out_dir) / CHECKPOINT_DIR / f"step_{step:08d}.pt"


def list_checkpoints(folder: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of the checkpoints in a run folder (or its checkpoints/ folder), by step."""
    folder = Path(folder)
    if (folder / CHECKPOINT_DIR).is_dir():
        folder = folder / CHECKPOINT_DIR
    found = [(int(m.group(1)), p) for p in folder.glob("step_*.pt") if (m := _NAME.fullmatch(p.name))]
    return sorted(found)


def find_resume_checkpoint(path: str | Path) -> Path:
    """The checkpoint ``--resume PATH`` names: the file, or the newest one of a run folder."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        found = list_checkpoints(path)
        if not found:
            raise FileNotFoundError(f"--resume {path}: no step_*.pt checkpoint in this run folder")
        return found[-1][1]
    raise FileNotFoundError(f"--resume {path}: no such checkpoint file or run folder")


def prune_checkpoints(out_dir: str | Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints of a run (``keep`` 0: keep all)."""
    if keep > 0:
        for _, path in list_checkpoints(out_dir)[:-keep]:
            path.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- RNG states


def get_rng_state() -> dict[str, Any]:
    """This process's random states as plain data (checkpoints load with ``weights_only``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, python_state, python_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "state": list(python_state), "gauss": python_gauss},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`get_rng_state`."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


# ----------------------------------------------------------------------------- resume


def _differences(saved: Any, current: Any, where: str = "") -> list[str]:
    """Dotted keys where two plain config dicts differ."""
    if isinstance(saved, dict) and isinstance(current, dict):
        out = []
        for key in sorted(set(saved) | set(current), key=str):
            out += _differences(saved.get(key), current.get(key), f"{where}.{key}" if where else str(key))
        return out
    if isinstance(saved, (list, tuple)) and isinstance(current, (list, tuple)) and len(saved) == len(current):
        return [d for i, (a, b) in enumerate(zip(saved, current)) for d in _differences(a, b, f"{where}[{i}]")]
    return [] if saved == current else [f"{where} ({saved!r} -> {current!r})"]


def load_resume_checkpoint(path: str | Path, train_config: Any, model_cfg: ModelConfig,
                           world_size: int, restart_optimizer: bool = False) -> Checkpoint:
    """Read a run checkpoint and check it continues this run.

    With ``restart_optimizer`` the checkpoint may lack the optimiser state (:func:`without_optimizer`
    wrote it, a third of the size); the optimiser then starts afresh at the checkpoint's step.

    Raises:
        FileNotFoundError: no such file.
        ValueError: corrupt, not a training checkpoint, or another model / setup / process count.
    """
    checkpoint = load_checkpoint(path, joint_set=model_cfg.joint_set, input_size=model_cfg.input_size)
    if checkpoint.scheduler_state is None or checkpoint.train_config is None:
        raise ValueError(f"checkpoint {path} has no scheduler state: it is not a training checkpoint "
                         "(start from it with init.weights instead)")
    if checkpoint.optimizer_state is None and not restart_optimizer:
        raise ValueError(f"checkpoint {path} has no optimiser state: resume it with --restart-optimizer "
                         "(the optimiser's moments start again from zero), or start from it with "
                         "init.weights")
    model_diff = _differences(checkpoint.model_config, model_cfg.to_dict())
    if model_diff:
        raise ValueError(f"checkpoint {path} is for another model: {'; '.join(model_diff)}")
    saved = {k: v for k, v in checkpoint.train_config.items() if k not in RESUMABLE_CHANGES}
    current = {k: v for k, v in config_to_dict(train_config).items() if k not in RESUMABLE_CHANGES}
    setup_diff = _differences(saved, current)
    if setup_diff:
        raise ValueError(f"checkpoint {path} was trained with another setup: {'; '.join(setup_diff)}. "
                         "Resume with the same config, or start a new run with init.weights")
    saved_world = int(checkpoint.extra.get("world_size", 0))
    if saved_world != world_size:
        raise ValueError(f"checkpoint {path} was trained with {saved_world} processes, this run has "
                         f"{world_size}: the global batch and data order would change. Resume with "
                         f"{saved_world} processes, or start a new run with init.weights")
    if len(checkpoint.extra.get("rng", [])) != world_size:
        raise ValueError(f"checkpoint {path} lacks the random states of its {world_size} processes")
    return checkpoint


# ----------------------------------------------------------------------------- initial weights


def _weights_path(path: str) -> Path:
    """``path`` as given, or, when relative and absent, the file the package ships there (``models/``)."""
    given = Path(path)
    if given.is_file() or given.is_absolute():
        return given
    try:
        return find_share_path(path)
    except FileNotFoundError:
        return given


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file, a torch state dict, or a checkpoint holding one."""
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch / safetensors raise many types for foreign files
        raise ValueError(f"weights file {path} is corrupt or not a weights file: {error}") from error
    for key in ("model_state", "state_dict", "model"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ValueError(f"weights file {path} holds no state dict of tensors")
    return data


def _load_into(module: nn.Module, state: dict[str, torch.Tensor], strict: bool, what: str) -> None:
    """``load_state_dict`` with float tensors cast to float32; report (strict: refuse) key mismatches."""
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if strict and (missing or unexpected):
        raise ValueError(f"{what}: {len(missing)} missing keys {missing[:5]}, {len(unexpected)} "
                         f"unexpected keys {unexpected[:5]} (set init.strict: false to load the rest)")
    shapes = [k for k in state if k in expected and state[k].shape != expected[k].shape]
    if shapes:
        raise ValueError(f"{what}: shapes differ for {shapes[:5]}, e.g. {shapes[0]} "
                         f"{tuple(state[shapes[0]].shape)} vs {tuple(expected[shapes[0]].shape)}")
    module.load_state_dict(state, strict=False)
    for key in missing:
        LOG.warning("%s: missing key %s (keeps its initialisation)", what, key)
    for key in unexpected:
        LOG.warning("%s: unexpected key %s (ignored)", what, key)


def load_init_weights(model: nn.Module, init: Any, model_cfg: ModelConfig) -> None:
    """Apply ``init`` (:class:`~mp3d_ros.training.config.InitConfig`) to a freshly built network."""
    if init.weights:
        checkpoint = load_checkpoint(init.weights, joint_set=model_cfg.joint_set)
        diff = [d for d in _differences(checkpoint.model_config, model_cfg.to_dict())
                if not d.startswith("input_size")]
        if diff:
            raise ValueError(f"init.weights {init.weights} is for another model: {'; '.join(diff)}")
        _load_into(model, checkpoint.model_state, True, f"init.weights {init.weights}")
    if init.backbone_weights:
        state = _read_state_dict(_weights_path(init.backbone_weights))
        prefix = init.backbone_prefix
        picked = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not picked:
            raise ValueError(f"init.backbone_weights {init.backbone_weights} has no keys under "
                             f"prefix {prefix!r} (init.backbone_prefix)")
        _load_into(model.backbone, picked, init.strict, f"init.backbone_weights {init.backbone_weights}")


def training_checkpoint(model: nn.Module, model_cfg: ModelConfig, normalization: dict, step: int,
                        optimizer: torch.optim.Optimizer, scheduler: Any, train_config: Any,
                        extra: dict[str, Any]) -> Checkpoint:
    """A :class:`Checkpoint` of the unwrapped ``model`` and the training state (CPU tensors)."""
    return Checkpoint(
        model_state={k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        model_config=model_cfg.to_dict(), joint_set=model_cfg.joint_set,
        input_size=model_cfg.input_size, normalization=normalization, step=step,
        optimizer_state=optimizer.state_dict(), scheduler_state=scheduler.state_dict(),
        train_config=config_to_dict(train_config), extra=extra,
    )


def without_optimizer(path: str | Path, out: str | Path) -> Path:
    """Copy a run checkpoint without its optimiser state: weights, step, schedule, scaler and
    random states only, to carry a run where a full checkpoint (three times the weights' size
    with Adam) does not fit; resume it with ``restart_optimizer``."""
    checkpoint = load_checkpoint(path)
    if checkpoint.scheduler_state is None:
        raise ValueError(f"checkpoint {path} is not a training checkpoint")
    out = Path(out)
    save_checkpoint(out, replace(checkpoint, optimizer_state=None))
    return out


def write_checkpoint(out_dir: str | Path, checkpoint: Checkpoint, keep: int) -> Path:
    """Save atomically as ``step_<step>.pt`` and prune old ones; returns the path."""
    path = checkpoint_path(out_dir, checkpoint.step)
    save_checkpoint(path, checkpoint)
    prune_checkpoints(out_dir, keep)
    return path
