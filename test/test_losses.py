"""losses.py: zero at the ground truth, masks, Eq. 10 gradients, no NaN without people, HMOR, DAPL."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar
from test_targets_decode import annotate, place_people, random_camera

from mp3d_ros.geometry.camera import letterbox_transform
from mp3d_ros.geometry.camera_torch import pinhole_rays
from mp3d_ros.geometry.depth import geometric_root_depth
from mp3d_ros.geometry.skeleton import MUPOTS_17
from mp3d_ros.model.codec.targets import TargetGenerator, collate_targets, targets_as_outputs
from mp3d_ros.model.config import ModelConfig
from mp3d_ros.model.network import NetworkOutput
from mp3d_ros.training.losses import LossConfig, compute_losses, hmor_loss, torso_depth_argmin

CFG = ModelConfig(input_size=(128, 96))
ALL_ON = LossConfig(hmor=1.0)


def batch(counts=(2, 0), seed: int = 0, coco_like: bool = False, distorted: tuple[bool, ...] = ()):
    """Targets of small 128x96 scenes with ``counts`` people each (``distorted[i]``: image i is
    seen through a plumb_bob lens)."""
    rng = np.random.default_rng(seed)
    gen = TargetGenerator(CFG)
    items = []
    for i, count in enumerate(counts):
        lens = distorted[i] if i < len(distorted) else False
        intr = random_camera(rng, size=(256, 192), distorted=lens, focal_range=(230.0, 270.0))
        transform = letterbox_transform(intr.size, CFG.input_size)
        people = place_people(rng, intr, count, transform, depth_range=(3.0, 5.0)) if count else np.zeros((0, 17, 3))
        ann, _, _ = annotate(people, intr, transform, rng)
        if coco_like:
            ann = dataclasses.replace(ann, xyz_m=None)
        items.append(gen(ann))
    return collate_targets(items)


def leaf_outputs(outputs: NetworkOutput) -> NetworkOutput:
    """The same maps as leaves that record gradients."""
    return NetworkOutput(*(v.detach().clone().requires_grad_(True) if v is not None else None for v in outputs))


def noisy(outputs: NetworkOutput, seed: int = 0, scale: float = 0.3) -> NetworkOutput:
    g = torch.Generator().manual_seed(seed)
    return NetworkOutput(*(
        (v + scale * torch.randn(v.shape, generator=g)).abs() if v is not None else None for v in outputs
    ))


def test_every_term_vanishes_at_the_ground_truth() -> None:
    """Targets fed back as predictions (sigma at its floor) cost nothing: signs and units agree."""
    targets = batch((2, 3, 1))
    out = targets_as_outputs(targets, sigma=CFG.sigma_min, geo_sigma=CFG.sigma_min)
    terms = compute_losses(out, targets, CFG, ALL_ON)
    for name, value in terms.items():
        assert float(value) == pytest.approx(0.0, abs=2e-3), name
    # ... and a perturbation costs something in every term that sees it.
    bad = compute_losses(noisy(out), targets, CFG, ALL_ON)
    for name in ("center", "heatmap", "offset", "root_to_center", "root_depth", "rel_depth", "dapl", "geometric"):
        assert float(bad[name]) > 10 * float(terms[name]) + 1e-3, name


def test_geometric_term_undistorts_the_torso() -> None:
    """Through a k1 = -0.08 lens the ground-truth torso still gives its depth exactly (MAR Eq. 7-8
    on the undistorted rays): the geometric NLL at its floor stays 0 in a batch mixing lenses."""
    targets = batch((2, 3), seed=1, distorted=(True, False))
    assert targets.distortion[0, 0] == pytest.approx(-0.08) and not targets.distortion[1].any()
    out = targets_as_outputs(targets, sigma=CFG.sigma_min, geo_sigma=CFG.sigma_min)
    terms = compute_losses(out, targets, CFG, ALL_ON)
    for name in ("geometric", "dapl", "hmor"):
        assert float(terms[name]) == pytest.approx(0.0, abs=2e-3), name


@pytest.mark.parametrize("depth_head", ["regression", "log_bins"])
def test_no_nan_without_people(depth_head: str) -> None:
    cfg = dataclasses.replace(CFG, depth_head=depth_head)
    for counts in ((0,), (0, 2)):
        targets = batch(counts)
        h, w = 24, 32
        g = torch.Generator().manual_seed(1)
        out = leaf_outputs(NetworkOutput(
            center=torch.rand(len(counts), 1, h, w, generator=g),
            heatmaps=torch.rand(len(counts), 17, h, w, generator=g),
            offsets=torch.randn(len(counts), 17, 2, h, w, generator=g),
            root_to_center=torch.randn(len(counts), 2, h, w, generator=g),
            root_depth=torch.rand(len(counts), 1, h, w, generator=g) + 0.5,
            root_sigma=torch.rand(len(counts), 1, h, w, generator=g) + 0.1,
            geo_sigma=torch.rand(len(counts), 1, h, w, generator=g) + 0.1,
            rel_depth=torch.randn(len(counts), 17, h, w, generator=g) * 0.1,
            root_depth_logits=torch.randn(len(counts), cfg.depth_bins, h, w, generator=g) if depth_head == "log_bins" else None,
        ))
        terms = compute_losses(out, targets, cfg, ALL_ON)
        assert all(torch.isfinite(v) for v in terms.values()), terms
        if counts == (0,):
            person_terms = ("offset", "root_to_center", "root_depth", "rel_depth", "dapl", "geometric", "hmor")
            assert all(float(terms[k].detach()) == 0 for k in person_terms)
        terms["total"].backward()
        assert all(torch.isfinite(v.grad).all() for v in out if v is not None and v.grad is not None)


def test_geometric_loss_trains_offsets_and_relative_depths() -> None:
    """MAR Eq. 10: the geometry loss alone puts gradient on the 2.5D pose (offsets, neck depth)."""
    targets = batch((2,))
    only_geo = LossConfig(**{f.name: 0.0 for f in dataclasses.fields(LossConfig) if f.name in (
        "center", "heatmap", "offset", "root_to_center", "root_depth", "rel_depth", "dapl", "depth_bins")})
    out = leaf_outputs(noisy(targets_as_outputs(targets), scale=0.05))
    terms = compute_losses(out, targets, CFG, only_geo)
    assert {k for k, v in terms.items() if float(v.detach()) != 0} == {"geometric", "total"}
    terms["total"].backward()
    root, neck = MUPOTS_17.root, MUPOTS_17.neck
    center_grad = out.offsets.grad.flatten(3)[0, :, :, targets.center_index[0, :2]]  # (J, 2, P)
    assert center_grad[[root, neck]].abs().min() > 0
    assert out.rel_depth.grad.flatten(2)[0, neck, targets.root_index[0, :2]].abs().min() > 0
    assert out.geo_sigma.grad.abs().sum() > 0
    # Switched off (ablation), the pose gets no gradient from it, sigma2 still learns.
    frozen = dataclasses.replace(CFG, geometry_backward=False)
    out2 = leaf_outputs(out)
    compute_losses(out2, targets, frozen, only_geo)["total"].backward()
    assert out2.offsets.grad is None or out2.offsets.grad.abs().sum() == 0
    assert out2.geo_sigma.grad.abs().sum() > 0


def test_2d_only_samples_mask_depth_losses() -> None:
    targets = batch((2, 1), coco_like=True)
    out = noisy(targets_as_outputs(targets))
    terms = compute_losses(out, targets, CFG, ALL_ON)
    for name in ("root_depth", "rel_depth", "dapl", "geometric", "hmor"):
        assert float(terms[name]) == 0.0, name
    assert float(terms["offset"]) > 0 and float(terms["root_to_center"]) > 0


def test_dapl_matches_drm_eq_11() -> None:
    """A root depth too far by delta (m) costs lambda_p * sum |(u - cx) / fx| delta / B (+ y)."""
    targets = batch((1,))
    delta_m = 0.2
    out = targets_as_outputs(targets)
    factor = float(targets.depth_factor[0])
    shifted = out._replace(root_depth=out.root_depth + delta_m * factor)
    dapl = float(compute_losses(shifted, targets, CFG)["dapl"])
    mask = targets.root_depth_weight[0, 0] > 0
    pixels = int(mask.sum())
    uv = (targets.joints_xy[0, 0] + 0.5) * 4 - 0.5
    K = targets.K[0]
    per_joint = ((uv[:, 0] - K[0, 2]).abs() / K[0, 0] + (uv[:, 1] - K[1, 2]).abs() / K[1, 1]) * delta_m
    expected = 0.003 * pixels * float(per_joint.sum()) / float(targets.size_px[0, 0])
    assert dapl == pytest.approx(expected, rel=1e-4)


def test_torso_depth_argmin_is_eq_7() -> None:
    rng = np.random.default_rng(2)
    K = torch.tensor([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]], dtype=torch.float64)
    for _ in range(20):
        uv_root = torch.tensor(rng.uniform([100, 100], [500, 400]))
        uv_neck = uv_root + torch.tensor(rng.uniform([-30, -80], [30, -10]))
        rel = torch.tensor(rng.uniform(-0.3, 0.3), dtype=torch.float64)
        omega = float(rng.choice([0.5, 0.05]))  # 0.05 m: shorter than the torso at any depth
        depth, valid = torso_depth_argmin(pinhole_rays(uv_root, K), pinhole_rays(uv_neck, K), rel, omega)
        strict, strict_valid = geometric_root_depth(uv_root, uv_neck, rel, K, omega)
        if strict_valid:
            assert float(depth) == pytest.approx(float(strict), rel=1e-9)
        Ki = torch.linalg.inv(K).numpy()
        q = Ki @ np.append(uv_neck.numpy(), 1.0)
        r = Ki @ np.append(uv_root.numpy(), 1.0)
        def cost(z: float, q=q, r=r, rel=float(rel), omega=omega) -> float:
            return (np.linalg.norm((z + rel) * q - z * r) - omega) ** 2

        best = minimize_scalar(cost, bounds=(0.01, 100.0), method="bounded", options={"xatol": 1e-10})
        if valid:
            assert cost(float(depth)) <= best.fun + 1e-9


def test_hmor_penalises_only_wrong_orders() -> None:
    g = torch.Generator().manual_seed(0)
    truth = torch.randn(1, 3, 17, 3, generator=g, dtype=torch.float64) * 0.3
    truth[..., 2] += torch.tensor([3.0, 5.0, 7.0], dtype=torch.float64).view(1, 3, 1)
    known = torch.ones(1, 3, 17, dtype=torch.bool)
    person = torch.ones(1, 3, dtype=torch.bool)
    assert float(hmor_loss(truth, truth, known, person, MUPOTS_17.bones)) == 0.0
    swapped = truth.clone()
    swapped[0, [0, 2], :, 2] = truth[0, [2, 0], :, 2]  # nearest and farthest person exchange depths
    assert float(hmor_loss(swapped, truth, known, person, MUPOTS_17.bones)) > 0.1
    mirrored = truth.clone()
    mirrored[..., 0] *= -1  # mirrors every part's angle: part-level relations flip
    part_only = hmor_loss(mirrored, truth, known, person, MUPOTS_17.bones)
    assert float(part_only) > 0
    assert float(hmor_loss(swapped, truth, known, torch.zeros_like(person), MUPOTS_17.bones)) == 0.0
