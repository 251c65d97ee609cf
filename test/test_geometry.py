"""geometry.py: MAR's closed-form root depth against brute force, gradients, fusion, bins."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.optimize import minimize_scalar

from mp3d_ros.geometry.depth import (
    decode_log_depth_bins,
    encode_log_depth_bins,
    fuse_depths,
    geometric_root_depth,
    k_value_depth,
    laplace_nll,
)


def random_torso(seed: int):
    """A camera and a pelvis-neck pair of random length and orientation, 1-15 m away."""
    rng = np.random.default_rng(seed)
    fx = rng.uniform(300, 2000)
    K = np.array([[fx, rng.uniform(-2, 2), rng.uniform(200, 1000)],
                  [0, fx * rng.uniform(0.9, 1.1), rng.uniform(150, 700)], [0, 0, 1]])
    root = np.array([rng.uniform(-3, 3), rng.uniform(-1, 1.5), rng.uniform(1, 15)])
    omega = rng.uniform(0.35, 0.65)
    direction = rng.normal(size=3)
    direction[1] = -abs(direction[1]) - 0.5  # the neck is above the pelvis, give or take a lean
    neck = root + omega * direction / np.linalg.norm(direction)
    project = lambda p: (K @ (p / p[2]))[:2]  # noqa: E731
    return K, project(root), project(neck), neck[2] - root[2], omega, root[2]


def brute_force_depth(K, uv_root, uv_neck, rel, omega) -> float:
    """Minimise Eq. 7, (|P_neck(Z) - P_root(Z)| - Omega)^2, over Z in (0, 100] m."""
    K_inv = np.linalg.inv(K)
    r, q = K_inv @ [*uv_root, 1.0], K_inv @ [*uv_neck, 1.0]
    cost = lambda z: (np.linalg.norm((z + rel) * q - z * r) - omega) ** 2  # noqa: E731
    grid = np.linspace(1e-3, 100, 200001)
    costs = [(np.linalg.norm((grid[:, None] + rel) * q - grid[:, None] * r, axis=1) - omega) ** 2]
    start = grid[int(np.argmin(costs[0]))]
    result = minimize_scalar(cost, bounds=(start - 1e-3, start + 1e-3), method="bounded",
                             options={"xatol": 1e-12})
    return float(result.x)


@given(seed=st.integers(0, 2**31 - 1))
def test_closed_form_matches_brute_force_minimiser(seed: int) -> None:
    K, uv_root, uv_neck, rel, omega, true_depth = random_torso(seed)
    depth, valid = geometric_root_depth(
        torch.tensor(uv_root), torch.tensor(uv_neck), torch.tensor(rel), torch.tensor(K), omega
    )
    assert bool(valid)
    assert abs(float(depth) - brute_force_depth(K, uv_root, uv_neck, rel, omega)) < 1e-6
    assert abs(float(depth) - true_depth) < 1e-6  # the exact 2.5D pose gives the exact depth


def test_batched_broadcasting() -> None:
    cases = [random_torso(s) for s in range(6)]
    K = torch.tensor(np.stack([c[0] for c in cases])).reshape(2, 3, 3, 3)
    uv_root = torch.tensor(np.stack([c[1] for c in cases])).reshape(2, 3, 2)
    uv_neck = torch.tensor(np.stack([c[2] for c in cases])).reshape(2, 3, 2)
    rel = torch.tensor([c[3] for c in cases]).reshape(2, 3)
    omega = torch.tensor([c[4] for c in cases]).reshape(2, 3)
    depth, valid = geometric_root_depth(uv_root, uv_neck, rel, K, omega)
    assert depth.shape == (2, 3) and bool(valid.all())
    np.testing.assert_allclose(depth.reshape(-1).numpy(), [c[5] for c in cases], atol=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_gradient_matches_finite_differences(seed: int) -> None:
    K, uv_root, uv_neck, rel, omega, _ = random_torso(seed)
    inputs = tuple(torch.tensor(x, dtype=torch.float64, requires_grad=True)
                   for x in (uv_root, uv_neck, rel, K))
    assert torch.autograd.gradcheck(
        lambda a, b, c, k: geometric_root_depth(a, b, c, k, omega)[0], inputs, eps=1e-6, atol=1e-7
    )


def test_degenerate_inputs_are_invalid_and_finite() -> None:
    K = torch.tensor([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]], dtype=torch.float64)
    uv_root = torch.tensor([[320.0, 240.0], [320.0, 240.0], [320.0, 240.0]], dtype=torch.float64,
                           requires_grad=True)
    # Same pixel (a = 0); neck depth offset longer than the torso (no real root); NaN-free zero.
    uv_neck = torch.tensor([[320.0, 240.0], [320.0, 200.0], [320.0, 239.0]], dtype=torch.float64,
                           requires_grad=True)
    rel = torch.tensor([0.1, 2.0, -5.0], dtype=torch.float64, requires_grad=True)
    depth, valid = geometric_root_depth(uv_root, uv_neck, rel, K, 0.5)
    assert valid.tolist() == [False, False, False]
    assert torch.isfinite(depth).all()
    depth.sum().backward()
    for tensor in (uv_root, uv_neck, rel):
        assert torch.isfinite(tensor.grad).all()


def test_fusion_is_eq12_and_its_sigma_is_the_weighted_mean_std() -> None:
    z_reg, s_reg = torch.tensor(4.0), torch.tensor(0.5)
    z_geo, s_geo = torch.tensor(5.0), torch.tensor(1.5)
    fused, sigma = fuse_depths(z_reg, s_reg, z_geo, s_geo)
    # (4 / 0.5 + 5 / 1.5) / (1 / 0.5 + 1 / 1.5) = (8 + 3.333) / 2.667 = 4.25
    assert float(fused) == pytest.approx(4.25)
    rng = np.random.default_rng(0)
    samples = (rng.normal(0, 0.5, 200000) / 0.5 + rng.normal(0, 1.5, 200000) / 1.5) / (2 + 2 / 3)
    assert float(sigma) == pytest.approx(samples.std(), rel=0.01)
    fused, sigma = fuse_depths(z_reg, s_reg, z_geo, s_geo, valid_geo=torch.tensor(False))
    assert (float(fused), float(sigma)) == (4.0, 0.5)


def test_laplace_nll_minimised_at_target_with_sigma_equal_to_error() -> None:
    target = torch.tensor(3.0)
    assert float(laplace_nll(torch.tensor(3.0), target, torch.tensor(1.0))) == 0.0
    sigmas = torch.linspace(0.05, 2.0, 400)
    best = sigmas[torch.argmin(laplace_nll(torch.tensor(3.4), target, sigmas))]
    assert float(best) == pytest.approx(0.4, abs=0.01)  # d/ds (e/s + log s) = 0 at s = e


def test_k_value_rootnet_eq1() -> None:
    # A 100x200 px box seen with fx = fy = 1000 px: sqrt(1000 * 1000 * 4 / 20000) = 14.14 m
    assert float(k_value_depth(1000.0, 1000.0, torch.tensor(20000.0))) == pytest.approx(
        math.sqrt(200.0))


@given(depth_n=st.floats(1e-3, 8e-3))
def test_log_bins_round_trip_and_hdnet_example(depth_n: float) -> None:
    bins = encode_log_depth_bins(torch.tensor([depth_n], dtype=torch.float64), 71, 1e-3, 8e-3)
    assert float(bins.sum()) == pytest.approx(1.0) and int((bins > 0).sum()) <= 2
    assert float(decode_log_depth_bins(bins, 1e-3, 8e-3)) == pytest.approx(depth_n, rel=1e-9)


def test_log_bins_paper_example() -> None:
    # HDNet: N_B = 5 and b = 2.4 give B = [0, 0, 0.6, 0.4, 0]; b = 2.4 at z = alpha (beta/alpha)^0.6
    depth_n = torch.tensor(1.0 * 8.0 ** 0.6, dtype=torch.float64)
    bins = encode_log_depth_bins(depth_n, 5, 1.0, 8.0)
    np.testing.assert_allclose(bins.numpy(), [0, 0, 0.6, 0.4, 0], atol=1e-12)
