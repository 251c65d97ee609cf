"""The CPU's fast path (issue 19): batch norms folded, only keepable people decoded, and
onnxruntime through a cached export under backend auto. Each gives the results of the plain path."""

from __future__ import annotations

import copy
import logging
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mp3d_ros.inference.estimator import Estimator
from mp3d_ros.inference.movenet_lift import MoveNetLiftConfig
from mp3d_ros.inference.onnx_cache import CACHE_ENV
from mp3d_ros.inference.pipelines import load_pipeline
from mp3d_ros.inference.preprocess import letterbox_tensors
from mp3d_ros.model.fold import fold_batch_norms
from mp3d_ros.model.mobilenet_fpn import ConvNormAct
from mp3d_ros.model.movenet import MoveNetMaps, MoveNetPeople, decode_movenet
from mp3d_ros.synthetic.scenes import SceneConfig, generate_image


def randomised_norms(module: nn.Module, seed: int = 0) -> nn.Module:
    """``module`` in eval mode with random batch-norm statistics and affine parameters."""
    generator = torch.Generator().manual_seed(seed)
    for layer in module.modules():
        if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
            size = layer.num_features
            layer.running_mean.copy_(torch.randn(size, generator=generator) * 3)
            layer.running_var.copy_(torch.rand(size, generator=generator) * 50 + 0.01)
            layer.weight.data.copy_(torch.randn(size, generator=generator))
            layer.bias.data.copy_(torch.randn(size, generator=generator))
    return module.eval()


def test_folded_batch_norms_give_the_same_outputs() -> None:
    torch.manual_seed(0)
    convolutions = randomised_norms(nn.Sequential(
        ConvNormAct(3, 8, 3, stride=2, tf_padding=True),            # TF "SAME" padding, no bias
        nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.ReLU6()),  # depthwise
        nn.Conv2d(8, 4, 1, bias=True), nn.BatchNorm2d(4),
    ))
    linear = randomised_norms(nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.ReLU()), seed=1)
    for module, batch in ((convolutions, torch.randn(2, 3, 17, 23) * 40), (linear, torch.randn(7, 6))):
        expected = module(batch)
        folded = fold_batch_norms(copy.deepcopy(module))
        assert not any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in folded.modules())
        torch.testing.assert_close(folded(batch), expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))
    with pytest.raises(ValueError, match="eval mode"):
        fold_batch_norms(nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)).train())


def test_movenet_network_folded_equals_the_converted_one() -> None:
    network = load_pipeline("movenet-lift").network().eval()
    images = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(2)) * 255
    with torch.inference_mode():
        expected = network(images)
        got = fold_batch_norms(copy.deepcopy(network))(images)
    for want, have in zip(expected, got):
        assert float((have - want).abs().max()) <= 1e-5 * float(want.abs().max())


@pytest.fixture(scope="module")
def rendered_maps() -> list[MoveNetMaps]:
    """MoveNet's maps of rendered 640x480 scenes of 1-10 people."""
    pipeline = load_pipeline("movenet-lift")
    network = pipeline.network().eval()
    config = SceneConfig(size=(640, 480), people=(1, 10))
    maps = []
    with torch.inference_mode():
        for index in range(6):
            frame = generate_image(config, 5, index)
            batch = letterbox_tensors([torch.from_numpy(frame.image)], pipeline.input_size,
                                      pipeline.normalization, torch.float32)
            maps.append(MoveNetMaps(*network(batch)))
    return maps


def test_decoding_only_keepable_people_gives_the_same_people(rendered_maps: list[MoveNetMaps]) -> None:
    """Snapping only people whose centre score reaches the person threshold changes nothing for
    the people kept: bit for bit, and the same people are kept."""
    pipeline = load_pipeline("movenet-lift")
    threshold = pipeline.model.cfg.min_person_score
    kept_people = 0
    for maps in rendered_maps:
        every = decode_movenet(maps, pipeline.model.decode_cfg)
        some = decode_movenet(maps, pipeline.model.decode_cfg, threshold)
        kept = every.scores >= threshold
        assert torch.equal(kept, some.scores >= threshold)
        for f in fields(MoveNetPeople):
            assert torch.equal(getattr(every, f.name)[kept], getattr(some, f.name)[kept]), f.name
        kept_people += int(kept.sum())
    assert kept_people >= 6


def frames(count: int = 3) -> list:
    config = SceneConfig(size=(640, 480), people=(2, 4))
    return [generate_image(config, 1, index) for index in range(count)]


def test_lifting_only_keepable_slots_gives_the_same_people(monkeypatch: pytest.MonkeyPatch) -> None:
    """On the CPU the 3D stage runs on the slots that can be kept only; every slot gives the
    same people (to float rounding: the lifter's matrix products then have fewer rows)."""
    estimator = Estimator(device="cpu", backend="torch")
    model = estimator.pipeline.model
    found = 0
    for frame in frames():
        fast = estimator.estimate(frame.image, frame.intrinsics)
        with monkeypatch.context() as patch:
            patch.setattr(model, "people_tensors", model._all_slots)
            every = estimator.estimate(frame.image, frame.intrinsics)
        assert len(fast.score) == len(every.score)
        np.testing.assert_array_equal(fast.score, every.score)
        np.testing.assert_array_equal(fast.inferred, every.inferred)
        np.testing.assert_allclose(fast.uv_px, every.uv_px, rtol=0, atol=1e-3)
        for name in ("keypoints_m", "confidence", "root_sigma_m"):
            np.testing.assert_allclose(getattr(fast, name), getattr(every, name), rtol=0, atol=1e-5, err_msg=name)
        found += len(fast.score)
    assert found >= 4


def test_auto_backend_on_a_cpu_exports_once_and_finds_what_torch_finds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    automatic = Estimator(device="cpu")
    assert automatic.backend_name == "onnxruntime:CPUExecutionProvider"
    exported = sorted((tmp_path / "onnx").iterdir())
    width, height = MoveNetLiftConfig().input_size  # the CPU default
    assert len(exported) == 1 and exported[0].name.startswith(f"movenet-lift-{width}x{height}-")
    written = exported[0].stat().st_mtime_ns
    again = Estimator(device="cpu")
    assert again.backend_name == automatic.backend_name
    assert sorted((tmp_path / "onnx").iterdir()) == exported and exported[0].stat().st_mtime_ns == written
    plain = Estimator(device="cpu", backend="torch")
    assert plain.backend_name == "torch:cpu:fp32"
    found = 0
    for frame in frames():
        want, got = plain.estimate(frame.image, frame.intrinsics), automatic.estimate(frame.image, frame.intrinsics)
        assert len(got.score) == len(want.score)
        np.testing.assert_allclose(got.keypoints_m, want.keypoints_m, atol=1e-4)
        found += len(got.score)
    assert found > 0
    other_size = Estimator(device="cpu", input_size=(192, 192))
    assert len(list((tmp_path / "onnx").iterdir())) == 2 and other_size.input_size == (192, 192)


def test_auto_backend_replaces_a_damaged_export_and_falls_back_to_torch_without_a_cache(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    Estimator(device="cpu")
    (exported,) = (tmp_path / "onnx").iterdir()
    exported.write_bytes(b"not an onnx graph")
    with caplog.at_level(logging.WARNING):
        repaired = Estimator(device="cpu")
    assert repaired.backend_name.startswith("onnxruntime") and exported.stat().st_size > 10**6
    assert "exporting it again" in caplog.text
    blocked = tmp_path / "a file"
    blocked.write_text("the cache folder cannot be created under a file")
    monkeypatch.setenv(CACHE_ENV, str(blocked))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        fallback = Estimator(device="cpu")
    assert fallback.backend_name == "torch:cpu:fp32" and "running torch on the CPU" in caplog.text
    frame = frames(3)[2]
    assert len(fallback.estimate(frame.image, frame.intrinsics).score) > 0
