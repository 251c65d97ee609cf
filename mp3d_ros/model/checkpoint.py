"""Checkpoint files: written atomically, verified on load.

A checkpoint is a ``torch.save`` dict of plain data (loaded with ``weights_only=True``, so a file
can never run code) holding the model weights and everything needed to use them without guessing:
the model config, joint set, input size and normalisation, plus, for training, the optimiser,
scheduler, step and training config. A file that is missing, truncated, not a checkpoint, of another
format version, or for another joint set / input size than asked is refused with a message that
names the file and what is wrong.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

__all__ = ["FORMAT_VERSION", "Checkpoint", "load_checkpoint", "release_checkpoint", "save_checkpoint"]

FORMAT_VERSION = 1
_REQUIRED = ("format_version", "model_state", "model_config", "joint_set", "input_size",
             "normalization")


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """Contents of a checkpoint file.

    Attributes:
        model_state: the network's ``state_dict``.
        model_config: the model config as a plain dict (``mp3d_ros.config.config_to_dict``).
        joint_set: joint set name the network predicts.
        input_size: (width, height) of the network input in pixels.
        normalization: ``{"mean": [r, g, b], "std": [r, g, b]}`` on 0-255 pixel values.
        step: optimisation steps done.
        optimizer_state / scheduler_state: for resuming training (None in exported models).
        train_config: the training config as a plain dict (None in exported models).
        extra: anything else worth keeping (metrics, provenance), plain data only.
    """

    model_state: dict[str, torch.Tensor]
    model_config: dict[str, Any]
    joint_set: str
    input_size: tuple[int, int]
    normalization: dict[str, list[float]]
    step: int = 0
    optimizer_state: dict[str, Any] | None = None
    scheduler_state: dict[str, Any] | None = None
    train_config: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(path: str | Path, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` to ``path`` atomically (temporary file in the same folder + rename).

    A crash while writing leaves the previous file intact, never a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format_version": FORMAT_VERSION,
        "model_state": checkpoint.model_state,
        "model_config": checkpoint.model_config,
        "joint_set": checkpoint.joint_set,
        "input_size": list(checkpoint.input_size),
        "normalization": checkpoint.normalization,
        "step": int(checkpoint.step),
        "optimizer_state": checkpoint.optimizer_state,
        "scheduler_state": checkpoint.scheduler_state,
        "train_config": checkpoint.train_config,
        "extra": checkpoint.extra,
    }
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(payload, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def release_checkpoint(checkpoint: Checkpoint, half: bool = True) -> Checkpoint:
    """The part of a training checkpoint that inference needs: weights (floating-point ones in
    float16 when ``half``, which halves the file and is what the GPU runs anyway), the model config,
    normalisation, step and training config (provenance); no optimiser, scheduler or RNG state."""
    state = {name: value.half() if half and value.is_floating_point() else value
             for name, value in checkpoint.model_state.items()}
    return replace(checkpoint, model_state=state, optimizer_state=None, scheduler_state=None,
                   extra={"validation": checkpoint.extra.get("validation", {})})


def load_checkpoint(
    path: str | Path,
    map_location: str | torch.device = "cpu",
    joint_set: str | None = None,
    input_size: tuple[int, int] | None = None,
) -> Checkpoint:
    """Read and verify a checkpoint; ``joint_set`` / ``input_size`` are checked when given.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is corrupt, not a checkpoint, of another format version, or does not
            match the requested joint set or input size.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types for truncated or foreign files
        raise ValueError(f"checkpoint {path} is corrupt or not a checkpoint: {error}") from error
    if not isinstance(payload, dict):
        raise ValueError(f"checkpoint {path} is not a checkpoint (top level is {type(payload)})")
    missing = [key for key in _REQUIRED if key not in payload]
    if missing:
        raise ValueError(f"checkpoint {path} lacks {missing}: not an mp3d_ros checkpoint")
    if payload["format_version"] != FORMAT_VERSION:
        raise ValueError(
            f"checkpoint {path} has format version {payload['format_version']}, this mp3d_ros "
            f"reads version {FORMAT_VERSION}"
        )
    found_size = tuple(int(v) for v in payload["input_size"])
    if joint_set is not None and payload["joint_set"] != joint_set:
        raise ValueError(
            f"checkpoint {path} predicts joint set {payload['joint_set']!r}, expected {joint_set!r}"
        )
    if input_size is not None and found_size != tuple(input_size):
        raise ValueError(
            f"checkpoint {path} was made for input size {found_size[0]}x{found_size[1]}, "
            f"expected {input_size[0]}x{input_size[1]}"
        )
    return Checkpoint(
        model_state=payload["model_state"],
        model_config=payload["model_config"],
        joint_set=payload["joint_set"],
        input_size=found_size,
        normalization=payload["normalization"],
        step=int(payload.get("step", 0)),
        optimizer_state=payload.get("optimizer_state"),
        scheduler_state=payload.get("scheduler_state"),
        train_config=payload.get("train_config"),
        extra=payload.get("extra") or {},
    )
