"""Periodic validation during training: predict a 3D set with the network, score it with the evaluator.

Images are letterboxed to the network input (:func:`mp3d_ros.geometry.camera.letterbox_transform`, moved with
:func:`mp3d_ros.data.augment.apply_transform`, as at inference), the maps decoded with
:func:`mp3d_ros.model.codec.decode.decode_batch` and :func:`~mp3d_ros.model.codec.decode.to_people` into the source image
and its camera, and scored as ``mp3d-eval`` does: the MuPoTS-3D protocol
(:func:`mp3d_ros.evaluation.metrics.evaluate_mupots`: PCK_abs, PCK_rel, PCK_root, PCOD, AP_root^25, MRPE) for
MuPoTS-3D, MuCo-3DHP, Human3.6M and synthetic scenes, MPJPE / RtError
(:func:`~mp3d_ros.evaluation.metrics.evaluate_panoptic`) for CMU Panoptic. A subset spread evenly over the set
keeps this quick; ``mp3d-eval`` scores the full benchmark.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mp3d_ros.data.augment import apply_transform
from mp3d_ros.data.mppe import AnnotatedImage
from mp3d_ros.data.panoptic import panoptic_activity
from mp3d_ros.evaluation.evaluate import ground_truth_frames, prediction_frames
from mp3d_ros.evaluation.metrics import evaluate_mupots, evaluate_panoptic
from mp3d_ros.geometry.camera import letterbox_transform
from mp3d_ros.geometry.camera_torch import CameraBatch
from mp3d_ros.geometry.people import People
from mp3d_ros.inference.preprocess import Normalization
from mp3d_ros.model.codec.decode import DecodeConfig, decode_batch, to_people
from mp3d_ros.model.config import ModelConfig
from mp3d_ros.training.data import annotated_sample, load_source, read_rgb

__all__ = ["ValidationSet", "load_validation_set", "normalize_images", "predict", "validate"]


@dataclass(frozen=True, eq=False)
class ValidationSet:
    """The validation images (an evenly spread subset) and where their pixels are."""

    kind: str
    images: tuple[AnnotatedImage, ...]
    image_root: Path


def load_validation_set(config) -> ValidationSet | None:
    """The set ``config`` (:class:`~mp3d_ros.training.config.ValidationConfig`) names, or None."""
    if not config.kind:
        return None
    source = load_source(config.kind, (config.path,), config.image_root, skip_empty=False)
    images = source.images
    if config.max_images and len(images) > config.max_images:
        picked = np.unique(np.linspace(0, len(images) - 1, config.max_images).round().astype(int))
        images = tuple(images[i] for i in picked)
    return ValidationSet(config.kind, images, source.image_root)


def normalize_images(images: torch.Tensor, normalization: Normalization, channels_last: bool) -> torch.Tensor:
    """(B, H, W, 3) uint8 on the device -> (B, 3, H, W) float32 ``(x - mean) / std``."""
    mean = torch.tensor(normalization.mean, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(normalization.std, device=images.device).view(1, 3, 1, 1)
    x = (images.permute(0, 3, 1, 2).float() - mean) / std
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    return x.contiguous(memory_format=memory_format)


@torch.no_grad()
def predict(network: nn.Module, images: Sequence[AnnotatedImage], image_root: Path, model_cfg: ModelConfig,
            normalization: Normalization, device: torch.device, batch_size: int,
            autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
            channels_last: bool = False) -> list[People]:
    """The network's people of every image, in its source image and camera."""
    decode_cfg = DecodeConfig.from_model_config(model_cfg)
    found: list[People] = []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        transforms, inputs = [], []
        for image in chunk:
            sample = annotated_sample(image, read_rgb(image_root / image.file_name), model_cfg.joint_set)
            transform = letterbox_transform(image.intrinsics.size, model_cfg.input_size)
            moved = apply_transform(sample, transform)
            transforms.append(transform)
            inputs.append(moved.image)
        pixels = torch.from_numpy(np.stack(inputs)).to(device)
        with autocast():
            outputs = network(normalize_images(pixels, normalization, channels_last))
        outputs = type(outputs)(*(o.float() if o is not None else None for o in outputs))
        cameras = CameraBatch.build(transforms, [image.intrinsics for image in chunk], device)
        decoded = decode_batch(outputs, cameras, decode_cfg)
        found += [to_people(decoded, transform, image.intrinsics, model_cfg.joint_set, index)
                  for index, (transform, image) in enumerate(zip(transforms, chunk))]
    return found


def _summary(kind: str, predictions: list, ground_truth: list) -> dict[str, float]:
    """The headline figures of the evaluator's result, flat (percent, millimetres)."""
    if kind == "panoptic":
        mean = evaluate_panoptic(predictions, ground_truth, panoptic_activity)["mean"]
        return {"mpjpe_mm": mean["mpjpe_mm"], "rt_error_mm": mean["rt_error_mm"], "recall": mean["recall"]}
    result = evaluate_mupots(predictions, ground_truth)
    summary = {key: result["all"].get(key, float("nan"))
               for key in ("pck_abs", "pck_rel", "pck_root", "auc_rel", "pcod")}
    summary.update({f"matched_{key}": result["matched"].get(key, float("nan"))
                    for key in ("pck_abs", "pck_rel")})
    summary["ap_root_25"] = result["ap_root_25"]
    summary["mrpe_mm"] = result["mrpe_mm"]["total"]
    return summary


def validate(network: nn.Module, validation_set: ValidationSet, model_cfg: ModelConfig,
             normalization: Normalization, device: torch.device, batch_size: int,
             autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
             channels_last: bool = False) -> dict[str, float]:
    """Predict the validation set in eval mode (restoring the mode after) and score it."""
    was_training = network.training
    network.eval()
    try:
        people = predict(network, validation_set.images, validation_set.image_root, model_cfg,
                         normalization, device, batch_size, autocast, channels_last)
    finally:
        network.train(was_training)
    return _summary(validation_set.kind, prediction_frames(people),
                    ground_truth_frames(validation_set.images))
