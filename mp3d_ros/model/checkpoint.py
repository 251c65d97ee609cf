"""Checkpoint files: written atomically, verified on load.

A checkpoint is a ``torch.save`` dict of plain data (loaded with ``weights_only=True``, so a file
can never run code) holding the model weights and everything needed to use them without guessing:
the model config, joint set, input size and normalisation, plus, for training, the optimiser,
scheduler, step and training config, and a SHA-256 of the weights (``model_sha256``) written at save
time. A file that is missing, truncated, not a checkpoint, of another format version, whose weights
are not finite or do not match their hash (flipped bytes), whose joint set, input size or
normalisation is malformed, or for another joint set / input size than asked is refused with a
:class:`ModelFileError` that names the file and what is wrong. Files written before the hash existed
(no ``model_sha256``) still load; their weights are still checked for non-finite values.

:class:`ModelFileError` and :func:`model_file_error` serve every model file (safetensors, ONNX too),
so callers catch one type.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch
from safetensors import SafetensorError

from mp3d_ros.geometry.skeleton import get_joint_set

__all__ = ["FORMAT_VERSION", "Checkpoint", "ModelFileError", "check_finite_weights", "fits_float16",
           "load_checkpoint", "load_model_file", "model_file_error", "release_checkpoint", "save_checkpoint",
           "weights_sha256"]

T = TypeVar("T")
FORMAT_VERSION = 1
_REQUIRED = ("format_version", "model_state", "model_config", "joint_set", "input_size",
             "normalization")


class ModelFileError(ValueError):
    """A model file (checkpoint, safetensors, ONNX) that cannot be used; the message names the
    file and what is wrong with it."""


def model_file_error(path: str | Path, problem: str) -> ModelFileError:
    """``ModelFileError("model file PATH: PROBLEM")``: one wording for every model file."""
    return ModelFileError(f"model file {path}: {problem}")


def weights_sha256(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order.

    Raw bytes rather than the pickle: the same weights give the same hash whatever torch version
    wrote the file.
    """
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        # Flattened to bytes through uint8 because numpy has no bfloat16.
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def check_finite_weights(state: dict[str, Any], path: str | Path) -> None:
    """``ModelFileError`` naming the first tensor of ``state`` with NaN or infinite values (or
    that is no tensor at all)."""
    for name, tensor in state.items():
        if not isinstance(tensor, torch.Tensor):
            raise model_file_error(path, f"weight {name!r} is a {type(tensor).__name__}, not a tensor")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise model_file_error(path, f"weight {name!r} has {bad} non-finite (NaN or infinite) "
                                         f"values of {tensor.numel()}: the file is corrupt")


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
        "model_sha256": weights_sha256(checkpoint.model_state),
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


def fits_float16(value: torch.Tensor) -> bool:
    """Whether a tensor is floating-point and every finite value stays finite in float16."""
    if not value.is_floating_point():
        return False
    return bool((torch.isfinite(value.half()) | ~torch.isfinite(value)).all())


def release_checkpoint(checkpoint: Checkpoint, half: bool = True) -> Checkpoint:
    """The part of a training checkpoint that inference needs: weights (floating-point ones in
    float16 when ``half``, which halves the file and is what the GPU runs anyway), the model config,
    normalisation, step, training config (provenance), validation figures and the sigma calibration
    (``extra["calibration"]``); no optimiser, scheduler or RNG state.

    A tensor with values beyond float16's range stays float32: batch-norm running variances of a
    trained network reach 7.7e4 (float16 ends at 6.55e4), and would otherwise become infinite."""
    state = {name: value.half() if half and fits_float16(value) else value
             for name, value in checkpoint.model_state.items()}
    kept = {key: checkpoint.extra[key] for key in ("validation", "calibration") if key in checkpoint.extra}
    return replace(checkpoint, model_state=state, optimizer_state=None, scheduler_state=None,
                   extra={"validation": {}, **kept})


def load_checkpoint(
    path: str | Path,
    map_location: str | torch.device = "cpu",
    joint_set: str | None = None,
    input_size: tuple[int, int] | None = None,
) -> Checkpoint:
    """Read and verify a checkpoint; ``joint_set`` / ``input_size`` are checked when given.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ModelFileError: the file is corrupt (unreadable, non-finite weights, weights that do not
            match their hash), not a checkpoint, of another format version, has a malformed joint
            set, input size or normalisation, or does not match the requested joint set or input
            size.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types for truncated or foreign files
        raise ModelFileError(f"checkpoint {path} is corrupt or not a checkpoint: {error}") from error
    if not isinstance(payload, dict):
        raise model_file_error(path, f"not a checkpoint (top level is {type(payload).__name__})")
    missing = [key for key in _REQUIRED if key not in payload]
    if missing:
        raise model_file_error(path, f"lacks {missing}: not an mp3d_ros checkpoint")
    if payload["format_version"] != FORMAT_VERSION:
        raise model_file_error(path, f"format version {payload['format_version']!r}, this mp3d_ros "
                                     f"reads version {FORMAT_VERSION}")
    state = payload["model_state"]
    if not isinstance(state, dict) or not state:
        raise model_file_error(path, "model_state is not a non-empty mapping of weights")
    check_finite_weights(state, path)
    stored_hash = payload.get("model_sha256")
    if stored_hash is not None and stored_hash != weights_sha256(state):
        raise model_file_error(path, "weights do not match the model_sha256 written when the file "
                                     "was saved: the file is corrupt (changed bytes)")
    found_joint_set = _checked_joint_set(payload["joint_set"], path)
    found_size = _checked_input_size(payload["input_size"], path)
    normalization = _checked_normalization(payload["normalization"], path)
    if not isinstance(payload["model_config"], dict):
        raise model_file_error(path, f"model_config is a {type(payload['model_config']).__name__}, "
                                     "expected a mapping")
    if joint_set is not None and found_joint_set != joint_set:
        raise model_file_error(path, f"predicts joint set {found_joint_set!r}, expected {joint_set!r}")
    if input_size is not None and found_size != tuple(input_size):
        raise model_file_error(path, f"was made for input size {found_size[0]}x{found_size[1]}, "
                                     f"expected {input_size[0]}x{input_size[1]}")
    return Checkpoint(
        model_state=state,
        model_config=payload["model_config"],
        joint_set=found_joint_set,
        input_size=found_size,
        normalization=normalization,
        step=int(payload.get("step", 0)),
        optimizer_state=payload.get("optimizer_state"),
        scheduler_state=payload.get("scheduler_state"),
        train_config=payload.get("train_config"),
        extra=payload.get("extra") or {},
    )


def _checked_joint_set(value: Any, path: Path) -> str:
    try:
        get_joint_set(value)
    except (KeyError, TypeError) as error:
        raise model_file_error(path, f"joint_set: {str(error).strip(chr(34))}") from None
    return value


def _checked_input_size(value: Any, path: Path) -> tuple[int, int]:
    """(W, H) of positive integers (bool is no integer here)."""
    if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        raise model_file_error(path, f"input_size is {value!r}, expected [width, height] of "
                                     "positive integers")
    return int(value[0]), int(value[1])


def _checked_normalization(value: Any, path: Path) -> dict[str, list[float]]:
    """``{"mean": 3 finite numbers, "std": 3 finite numbers > 0}`` (a zero std divides by zero)."""
    if not isinstance(value, dict) or set(value) != {"mean", "std"}:
        raise model_file_error(path, f"normalization is {value!r}, expected {{'mean': [r, g, b], "
                                     "'std': [r, g, b]}")
    out = {}
    for key in ("mean", "std"):
        numbers = value[key]
        if not isinstance(numbers, (list, tuple)) or len(numbers) != 3 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                for v in numbers):
            raise model_file_error(path, f"normalization.{key} is {numbers!r}, expected 3 finite "
                                         "numbers")
        out[key] = [float(v) for v in numbers]
    if min(out["std"]) <= 0:
        raise model_file_error(path, f"normalization.std is {out['std']}, every value must be > 0")
    return out


def load_model_file(path: str | Path, load: Callable[[Path], T]) -> T:
    """``load(path)`` with every way a weights file can be bad turned into a :class:`ModelFileError`
    naming ``path``: missing, truncated or foreign (``SafetensorError``, ``OSError``, JSON or key
    errors from its metadata), for another architecture (``RuntimeError`` of ``load_state_dict``),
    and, when ``load`` returns a module, NaN or infinite weights."""
    path = Path(path)
    if not path.is_file():
        raise model_file_error(path, "does not exist")
    try:
        loaded = load(path)
    except ModelFileError:
        raise
    except SafetensorError as error:
        raise model_file_error(path, f"truncated or not a safetensors file: {error}") from error
    except (ValueError, RuntimeError, OSError, KeyError, TypeError) as error:
        raise model_file_error(path, f"cannot be loaded: {error}") from error
    if isinstance(loaded, torch.nn.Module):
        check_finite_weights(loaded.state_dict(), path)
    return loaded
