"""Network input from a camera image: letterbox, normalise, and the transform that was applied.

The letterbox (:func:`mp3d_ros.geometry.camera.letterbox_transform`) keeps the aspect ratio and pads; its
:class:`~mp3d_ros.geometry.camera.ImageTransform` goes with the batch so decoding can map the network's pixels
back to the source image and :func:`~mp3d_ros.geometry.camera.transform_intrinsics` can give the camera of the
network input. On a GPU the uint8 image is uploaded as is and converted there (4x less to copy than
float32); resizing uses ``F.interpolate`` with half-pixel centres (antialiased when shrinking), which
is the coordinate convention of the transform.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from mp3d_ros.geometry.camera import ImageTransform, letterbox_layout, letterbox_transform

__all__ = ["Normalization", "IMAGENET", "check_rgb_image", "letterbox_batch", "letterbox_tensors"]


@dataclass(frozen=True)
class Normalization:
    """Per-channel ``(pixel - mean) / std`` on 0-255 RGB values; padding is ``mean`` (0 after)."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def from_dict(cls, data: dict) -> "Normalization":
        return cls(tuple(float(v) for v in data["mean"]), tuple(float(v) for v in data["std"]))

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}


IMAGENET = Normalization((123.675, 116.28, 103.53), (58.395, 57.12, 57.375))


def check_rgb_image(image: np.ndarray, name: str = "image") -> None:
    """Raise ``ValueError`` unless ``image`` is a non-empty (H, W, 3) uint8 array."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 \
            or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"{name} must be an (H, W, 3) uint8 RGB array, got shape {shape} {dtype}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{name} is empty ({image.shape[1]}x{image.shape[0]})")


def letterbox_tensors(images: Sequence[torch.Tensor], input_size: tuple[int, int],
                      normalization: Normalization, dtype: torch.dtype) -> torch.Tensor:
    """Letterbox (H_i, W_i, 3) uint8 RGB images on the device into one normalised batch.

    The device half of :func:`letterbox_batch`, for images already uploaded; capturable in a CUDA
    graph: the normalisation constants are Python numbers, because a tensor built from them would
    be a host-to-device copy, which graph capture forbids.

    Returns:
        (B, 3, H, W) channels-last batch of ``dtype``; the padding is 0 (the mean, normalised).
    """
    width, height = input_size
    batch = torch.empty((len(images), 3, height, width), dtype=dtype, device=images[0].device,
                        memory_format=torch.channels_last).zero_()
    constants = list(zip(normalization.mean, normalization.std))
    for index, image in enumerate(images):
        source_size = (image.shape[1], image.shape[0])
        (new_w, new_h), (left, top) = letterbox_layout(source_size, input_size)
        pixels = image.permute(2, 0, 1).unsqueeze(0).float()
        if (new_w, new_h) != source_size:
            shrinking = new_w < source_size[0] or new_h < source_size[1]
            pixels = F.interpolate(pixels, size=(new_h, new_w), mode="bilinear",
                                   align_corners=False, antialias=shrinking)
        window = batch[index, :, top:top + new_h, left:left + new_w]
        if any(pair != (0.0, 1.0) for pair in constants):  # MoveNet takes raw pixels as they are
            for channel, (mean, std) in enumerate(constants):
                window[channel] = (pixels[0, channel] - mean) / std
        else:
            window.copy_(pixels[0])
    return batch


def letterbox_batch(
    images: list[np.ndarray],
    input_size: tuple[int, int],
    normalization: Normalization,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, list[ImageTransform]]:
    """Letterbox RGB uint8 images of any sizes into one normalised ``(B, 3, H, W)`` batch.

    Args:
        images: B arrays of shape (H_i, W_i, 3), uint8 RGB.
        input_size: (W, H) of the network input.
        normalization: mean and std applied after resizing.
        device: where to convert and resize (the upload is uint8).
        dtype: dtype of the returned batch.

    Returns:
        ``(batch, transforms)``: the channels-last-contiguous batch and, per image, the pixel map
        from the source image into the network input.
    """
    transforms = []
    uploaded = []
    for index, image in enumerate(images):
        check_rgb_image(image, f"image {index}")
        transforms.append(letterbox_transform((image.shape[1], image.shape[0]), input_size))
        uploaded.append(torch.from_numpy(np.ascontiguousarray(image)).to(device, non_blocking=True))
    batch = letterbox_tensors(uploaded, input_size, normalization, dtype)
    return batch, transforms
