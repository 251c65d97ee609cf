"""model/: backbones' pyramids, TF.js name map, config round trip, output shapes at 832x512."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch
from test_targets_decode import ROOT, annotate, place_people, random_camera

from mp3d_ros.geometry.camera import letterbox_transform
from mp3d_ros.geometry.skeleton import MUPOTS_17
from mp3d_ros.model.codec.decode import DecodeConfig, decode
from mp3d_ros.model.codec.targets import TargetGenerator, collate_targets
from mp3d_ros.model.config import ModelConfig, lite_mobilenet_fpn_config, mar_hrnet_w32_config
from mp3d_ros.model.heads import PoseGuidedDepthQuery, sample_maps
from mp3d_ros.model.hrnet import hrnet_w32
from mp3d_ros.model.mobilenet_fpn import (
    _tf_same_padding,
    make_divisible,
    mobilenet_fpn_movenet,
    tfjs_to_torch,
    tfjs_weight_map,
)
from mp3d_ros.model.network import NetworkOutput, build_network
from mp3d_ros.training.losses import compute_losses


def test_mobilenet_fpn_pyramid_matches_movenet() -> None:
    """Channels and strides of MoveNet MultiPose's feature extractor (TF.js weight shapes)."""
    torch.manual_seed(0)
    model = mobilenet_fpn_movenet().eval()
    info = [(f.name, f.channels, f.stride) for f in model.feature_info]
    # block_2_add (40 @ 4), block_5_add (48 @ 8), block_9_add (96 @ 16), out_relu (1280 @ 32)
    assert info == [("blocks.2", 40, 4), ("blocks.5", 48, 8), ("blocks.9", 96, 16), ("head", 1280, 32)]
    assert (model.out_info.channels, model.out_info.stride) == (24, 4)
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        taps = model.encoder(x)
        out = model(x)
    for tap, f in zip(taps, model.feature_info):
        assert tap.shape == (2, f.channels, 96 // f.stride, 128 // f.stride)
    assert out.shape == (2, 24, 24, 32)
    # The widths of MobileNetV2 x1.5 as in the TF.js manifest (Conv1 48, block_1_project 40, ...).
    assert model.encoder.stem[0].weight.shape == (48, 3, 3, 3)
    assert [b.project[0].out_channels for b in model.encoder.blocks][:7] == [24, 40, 40, 48, 48, 48, 96]
    assert model.encoder.blocks[16].project[0].out_channels == 480
    assert [m.out_channels for m in model.fpn.laterals] == [64, 32, 24]
    assert [m.pointwise.out_channels for m in model.fpn.smooth] == [32, 24, 24]


def test_mobilenet_fpn_channels_last_and_odd_size() -> None:
    torch.manual_seed(0)
    model = mobilenet_fpn_movenet().eval()
    x = torch.randn(1, 3, 100, 70)  # not a multiple of 32: TF SAME gives ceil(size / stride)
    with torch.no_grad():
        out = model(x)
        out_cl = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    assert out.shape == (1, 24, 25, 18)
    torch.testing.assert_close(out, out_cl, atol=1e-5, rtol=1e-4)


def test_tf_same_padding_matches_tensorflow_rule() -> None:
    # TF: out = ceil(n / s); pad_total = max((out - 1) * s + k - n, 0); before = total // 2.
    assert _tf_same_padding(96, 3, 2) == (0, 1)
    assert _tf_same_padding(97, 3, 2) == (1, 1)
    assert _tf_same_padding(96, 3, 1) == (1, 1)
    assert make_divisible(24 * 1.5) == 40 and make_divisible(16 * 1.5) == 24 and make_divisible(32 * 1.5) == 48


def test_tfjs_weight_map_covers_every_parameter() -> None:
    model = mobilenet_fpn_movenet()
    state = model.state_dict()
    mapping = tfjs_weight_map()
    expected = {k for k in state if not k.endswith("num_batches_tracked")}
    assert set(mapping) == expected
    names = [name for name, _ in mapping.values() if name]
    assert len(names) == len(set(names))  # one TF.js array per parameter
    # A folded conv: HWIO (TF) -> OIHW; the BN becomes "add the shift".
    w = torch.randn(1, 1, 48, 288)
    out = tfjs_to_torch("conv", w, 1e-3, state["encoder.blocks.4.expand.0.weight"])
    assert torch.equal(out[:, :, 0, 0], w[0, 0].T)
    var = tfjs_to_torch("bn_var", None, 1e-3, state["encoder.stem.1.running_var"])
    bn = model.encoder.stem[1].eval()
    bn.running_var.copy_(var)
    bn.running_mean.zero_()
    bn.weight.data.fill_(1.0)
    bn.bias.data.copy_(torch.arange(48.0))
    x = torch.randn(1, 48, 2, 2)
    torch.testing.assert_close(bn(x), x + torch.arange(48.0).view(1, 48, 1, 1))
    with pytest.raises(ValueError, match="expected"):
        tfjs_to_torch("depthwise", torch.zeros(3, 3, 10, 1), 1e-3, state["encoder.stem.0.weight"])


def test_hrnet_w32_branches() -> None:
    torch.manual_seed(0)
    model = hrnet_w32().eval()
    assert [(f.channels, f.stride) for f in model.feature_info] == [(32, 4), (64, 8), (128, 16), (256, 32)]
    assert (model.out_info.channels, model.out_info.stride) == (480, 4)
    assert [len(s) for s in model.stages] == [1, 4, 3]
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        branches = model.forward_branches(x)
        out = model(x)
    for branch, f in zip(branches, model.feature_info):
        assert branch.shape == (1, f.channels, 96 // f.stride, 128 // f.stride)
    assert out.shape == (1, 480, 24, 32)
    params = sum(p.numel() for p in model.parameters())
    assert 28e6 < params < 30e6  # HRNet-W32 with all four stage-4 outputs (HRNetV2)


def test_config_round_trip_and_validation() -> None:
    cfg = lite_mobilenet_fpn_config(input_size=(416, 256), depth_head="log_bins", pdqm=False)
    data = cfg.to_dict()
    assert data["input_size"] == [416, 256]
    assert ModelConfig.from_dict(data) == cfg
    assert cfg.output_size == (104, 64)
    with pytest.raises(ValueError, match="multiples of 32"):
        ModelConfig(input_size=(830, 512))
    with pytest.raises(ValueError, match="backbone"):
        ModelConfig(backbone="resnet")
    with pytest.raises(ValueError, match="no fields"):
        ModelConfig.from_dict({**data, "bogus": 1})
    with pytest.raises(ValueError, match="root or no neck"):
        ModelConfig(joint_set="coco_17")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.backbone = "hrnet_w32"  # type: ignore[misc]
    assert cfg.depth_factor(400.0, 625.0) == pytest.approx(100.0 / 500.0)
    assert ModelConfig(focal_normalised_depth=False).depth_factor(400.0, 625.0) == 1.0


def _expected_shapes(cfg: ModelConfig, batch: int) -> dict[str, tuple[int, ...] | None]:
    w, h = cfg.output_size
    j = cfg.num_joints
    return {
        "center": (batch, 1, h, w),
        "heatmaps": (batch, j, h, w),
        "offsets": (batch, j, 2, h, w),
        "root_to_center": (batch, 2, h, w),
        "root_depth": (batch, 1, h, w),
        "root_sigma": (batch, 1, h, w),
        "geo_sigma": (batch, 1, h, w),
        "rel_depth": (batch, j, h, w),
        "root_depth_logits": (batch, cfg.depth_bins, h, w) if cfg.depth_head == "log_bins" else None,
    }


@pytest.mark.parametrize(
    "cfg",
    [
        lite_mobilenet_fpn_config(),
        lite_mobilenet_fpn_config(depth_head="log_bins", pdqm=False),
        mar_hrnet_w32_config(),
    ],
    ids=["lite", "lite-logbins-nopdqm", "hrnet_w32"],
)
def test_forward_shapes_832x512(cfg: ModelConfig) -> None:
    """Every configuration at 832x512 (batch 1, inference mode) gives the documented maps."""
    torch.manual_seed(0)
    model = build_network(cfg).eval()
    x = torch.randn(1, 3, cfg.input_size[1], cfg.input_size[0])
    with torch.inference_mode():
        features = model.forward_features(x)
        out = model.forward_head(features)
    assert features.shape == (1, model.out_info.channels, 128, 208)
    assert isinstance(out, NetworkOutput)
    shapes = {k: (tuple(v.shape) if v is not None else None) for k, v in out._asdict().items()}
    assert shapes == _expected_shapes(cfg, 1)
    j = cfg.num_joints
    root = 14  # mupots_17 pelvis
    assert torch.all(out.rel_depth[:, root] == 0)
    assert torch.all(out.root_sigma >= cfg.sigma_min) and torch.all(out.geo_sigma >= cfg.sigma_min)
    assert torch.isfinite(out.root_depth).all() and out.offsets.shape[1] == j


def test_pdqm_queries_features_along_the_pose() -> None:
    """A feature map that stores its own x coordinate returns the queried joint's x position."""
    b, j, h, w, c = 1, 3, 9, 12, 2
    root = 1
    query = PoseGuidedDepthQuery(j, root, c)
    root_to_center = torch.zeros(b, 2, h, w)
    root_to_center[:, 0] = 1.5  # the center is 1.5 px right of every pixel
    offsets = torch.zeros(b, j, 2, h, w)
    offsets[:, 0, 1] = 2.0  # joint 0 is 2 px below the center
    offsets[:, 2, 0] = -3.0  # joint 2 is 3 px left of the center
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    features = torch.stack([x, y] * j).unsqueeze(0)  # every joint's group holds (x, y)
    out = query(root_to_center, offsets, features)
    assert out.shape == (b, (j - 1) * c, h, w)
    q = (4, 5)  # (y, x) of a pixel in the interior
    torch.testing.assert_close(out[0, :, q[0], q[1]], torch.tensor([5 + 1.5, 4 + 2.0, 5 + 1.5 - 3.0, 4.0]))
    # Border replication: sampling outside the map reads the edge.
    edge = sample_maps(features[:, :1], torch.tensor([[[-5.0, 2.0], [40.0, 3.0]]]))
    torch.testing.assert_close(edge[0, 0], torch.tensor([0.0, w - 1.0]))


def _render(ann, rng: np.random.Generator) -> np.ndarray:
    """A synthetic image: noise, grey bones and one coloured disc per joint type (sub-pixel, cv2)."""
    w, h = ann.image_size
    image = (rng.integers(40, 80, (h, w, 3))).astype(np.uint8)
    shift = 4  # cv2 fixed-point bits
    for uv, visible in zip(ann.uv_px, ann.visible):
        points = np.round(uv * 2**shift).astype(int)
        for a, b in MUPOTS_17.bones:
            cv2.line(image, tuple(points[a]), tuple(points[b]), (200, 200, 200), 1, cv2.LINE_AA, shift)
        for j in range(len(points)):
            colour = (37 * j % 255, 91 * j % 255, 151 * j % 255)
            cv2.circle(image, tuple(points[j]), 2 << shift, colour, -1, cv2.LINE_AA, shift)
    return image


@pytest.mark.slow
def test_lite_network_overfits_synthetic_images() -> None:
    """Total loss falls >= 10x and decoded 3D roots come within 10 cm on two small images (CPU)."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    cfg = lite_mobilenet_fpn_config(input_size=(128, 96))
    generator = TargetGenerator(cfg)
    scenes = []
    for count in (1, 2):
        intr = random_camera(rng, size=(256, 192), focal_range=(230.0, 270.0))
        transform = letterbox_transform(intr.size, cfg.input_size)
        people = place_people(rng, intr, count, transform, depth_range=(2.5, 4.0), min_separation_map_px=4.0)
        ann, _, _ = annotate(people, intr, transform, rng, occlusion=0.0)
        scenes.append((intr, transform, people, ann, _render(ann, rng)))
    images = torch.tensor(np.stack([s[4] for s in scenes])).permute(0, 3, 1, 2).float()
    images = (images / 255 - 0.45) / 0.25
    targets = collate_targets([generator(s[3]) for s in scenes])

    model = build_network(cfg)
    steps = 200
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 1 - i / steps)
    totals = []
    for _ in range(steps):
        terms = compute_losses(model(images), targets, cfg)
        optimizer.zero_grad()
        terms["total"].backward()
        optimizer.step()
        schedule.step()
        totals.append(float(terms["total"].detach()))
    assert totals[0] / np.mean(totals[-10:]) >= 10, (totals[0], totals[-10:])

    model.eval()
    decode_cfg = DecodeConfig.from_model_config(cfg)
    with torch.no_grad():
        outputs = model(images)
    for i, (intr, transform, people, _, _) in enumerate(scenes):
        single = NetworkOutput(*(v[i:i + 1] if v is not None else None for v in outputs))
        found = decode(single, transform, intr, decode_cfg)
        assert len(found) == len(people)
        error = np.linalg.norm(found.root_m[:, None] - people[None, :, ROOT], axis=-1).min(1)
        assert error.max() < 0.10, error
