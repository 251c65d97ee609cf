"""preprocess.py: the letterboxed batch puts source pixels where the transform says."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mp3d_ros.geometry.camera import transform_points_px
from mp3d_ros.inference.preprocess import IMAGENET, Normalization, letterbox_batch


@pytest.mark.parametrize("source_size", [(640, 480), (480, 640), (1920, 1080), (200, 120)])
def test_bright_square_lands_at_transformed_pixel(source_size) -> None:
    width, height = source_size
    image = np.zeros((height, width, 3), np.uint8)
    u, v = int(width * 0.3), int(height * 0.6)
    half = max(2, width // 40)
    image[v - half:v + half + 1, u - half:u + half + 1] = 255
    batch, (transform,) = letterbox_batch([image], (416, 256), Normalization((0, 0, 0), (1, 1, 1)))
    assert batch.shape == (1, 3, 256, 416) and batch.is_contiguous(memory_format=torch.channels_last)
    weights = batch[0, 0].numpy()
    ys, xs = np.mgrid[:256, :416]
    centre = [(weights * xs).sum() / weights.sum(), (weights * ys).sum() / weights.sum()]
    np.testing.assert_allclose(centre, transform_points_px(np.array([u, v], float), transform),
                               atol=0.05)


def test_normalisation_and_padding() -> None:
    image = np.full((100, 300, 3), (123, 116, 103), np.uint8)
    batch, _ = letterbox_batch([image, image[:, :150]], (160, 160), IMAGENET)
    # 300x100 fits as 160x53 with rows 53..105 filled; the rest is padding (0 after normalising).
    assert torch.allclose(batch[0, :, 60, 80], (torch.tensor([123, 116, 103.]) - torch.tensor(
        IMAGENET.mean)) / torch.tensor(IMAGENET.std), atol=1e-5)
    assert float(batch[0, :, :53].abs().max()) == 0.0 and float(batch[0, :, 107:].abs().max()) == 0.0


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32),
                                 np.zeros((0, 4, 3), np.uint8)])
def test_bad_images_are_refused(bad) -> None:
    with pytest.raises(ValueError, match="image 0"):
        letterbox_batch([bad], (64, 64), IMAGENET)
