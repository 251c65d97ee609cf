"""absolute_depth.py: exact recovery, calibrated uncertainty, the scale assumption, degenerate input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mp3d_ros.geometry.absolute_depth import (
    SEGMENTS,
    BodyPrior,
    estimate_root_depth,
    estimate_root_depth_px,
    segment_root_depths,
)
from mp3d_ros.geometry.camera import Intrinsics, pixel_rays, project
from mp3d_ros.geometry.skeleton import MUPOTS_17

# A standing body, y up, x to the person's left, metres: joint -> (parent, offset from the parent).
REST = {
    "spine": ("pelvis", (0, 0.22, 0)),
    "neck": ("spine", (0, 0.30, 0)),
    "head": ("neck", (0, 0.12, 0.03)),
    "head_top": ("head", (0, 0.12, 0)),
    "left_shoulder": ("neck", (0.18, -0.03, 0)),
    "left_elbow": ("left_shoulder", (0, -0.28, 0)),
    "left_wrist": ("left_elbow", (0, -0.26, 0)),
    "right_shoulder": ("neck", (-0.18, -0.03, 0)),
    "right_elbow": ("right_shoulder", (0, -0.28, 0)),
    "right_wrist": ("right_elbow", (0, -0.26, 0)),
    "left_hip": ("pelvis", (0.10, -0.06, 0)),
    "left_knee": ("left_hip", (0, -0.43, 0)),
    "left_ankle": ("left_knee", (0, -0.42, 0)),
    "right_hip": ("pelvis", (-0.10, -0.06, 0)),
    "right_knee": ("right_hip", (0, -0.43, 0)),
    "right_ankle": ("right_knee", (0, -0.42, 0)),
}
HEIGHT_M = 1.70  # the canonical height the poses below are treated as


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def random_pose(seed: int, bone_scale: np.ndarray | None = None) -> np.ndarray:
    """(17, 3) root-relative MuPoTS-17 pose in a camera frame (y down), random limbs and heading.

    The same seed gives the same directions; ``bone_scale`` (17,) stretches each joint's bone.
    """
    rng = np.random.default_rng(seed)
    pose = np.zeros((17, 3))
    for name, (parent, offset) in REST.items():
        turn = rotation(rng.normal(size=3), rng.uniform(0, 0.7))
        scale = 1.0 if bone_scale is None else bone_scale[MUPOTS_17.index(name)]
        pose[MUPOTS_17.index(name)] = pose[MUPOTS_17.index(parent)] + scale * turn @ np.array(
            offset
        )
    heading = rotation(np.array([0.0, 1.0, 0.0]), rng.uniform(0, 2 * math.pi))
    return pose @ heading.T * np.array([1.0, -1.0, 1.0])


def random_camera(rng: np.random.Generator, distorted: bool) -> Intrinsics:
    f = rng.uniform(300, 1500)
    K = np.array(
        [
            [f, 0, rng.uniform(300, 340)],
            [0, f * rng.uniform(0.95, 1.05), rng.uniform(220, 260)],
            [0, 0, 1],
        ]
    )
    if not distorted:
        return Intrinsics(K, 640, 480)
    return Intrinsics(K, 640, 480, "plumb_bob", rng.normal(0, 0.05, 5) * [1, 1, 0.1, 0.1, 0.1])


def random_root(rng: np.random.Generator) -> np.ndarray:
    z = rng.uniform(1, 15)
    return np.array([rng.uniform(-0.3, 0.3) * z, rng.uniform(-0.2, 0.2) * z, z])


@given(seed=st.integers(0, 2**31 - 1), drop=st.integers(0, 3))
def test_exact_pose_gives_the_root_within_a_millimetre(seed: int, drop: int) -> None:
    """Exact 2D (through a random distorted camera, no 2D noise expected) and exact relative
    depths: root within 1 mm."""
    rng = np.random.default_rng(seed)
    intr = random_camera(rng, distorted=True)
    pose, root = random_pose(seed), random_root(rng)
    uv = project(pose + root, intr)
    seen = np.ones(17, dtype=bool)
    seen[[MUPOTS_17.index(n) for n in ("pelvis", "neck", "spine", "head", "head_top")]] = False
    # Hide one limb (or none): each estimate must stay exact with fewer segments.
    limbs = [(), ("left_wrist", "left_elbow"), ("right_knee", "right_ankle"), ("left_ankle",)]
    seen[[MUPOTS_17.index(n) for n in limbs[drop]]] = False
    depth = estimate_root_depth_px(
        uv[None], seen[None], pose[None], intr, MUPOTS_17, HEIGHT_M,
        BodyPrior(height_m=HEIGHT_M, torso_keypoint_scale=1.0), keypoint_sigma_px=0.0)
    assert bool(depth.valid[0]) and bool(depth.torso_valid[0]) and bool(depth.bones_valid[0])
    for estimate in (depth.depth_m, depth.torso_depth_m, depth.bones_depth_m):
        assert abs(float(estimate[0]) - root[2]) < 1e-3


def _noisy_people(count: int, seed: int, prior: BodyPrior):
    """Realistic noise as the prior describes it: heights, proportions, lifted depths, 2D."""
    rng = np.random.default_rng(seed)
    cameras = []
    for _ in range(count // 25):
        intr = random_camera(rng, distorted=False)
        uv, seen, lifted, truth_z = [], [], [], []
        for _ in range(25):
            pose_seed = int(rng.integers(2**31))
            bones = 1 + rng.normal(0, prior.segment_rel_sigma, 17)
            height = rng.normal(prior.height_m, prior.height_sigma_m)
            truth = random_pose(pose_seed, bones) * height / HEIGHT_M
            guess = random_pose(pose_seed)
            guess[:, 2] += rng.normal(0, prior.rel_depth_sigma_m, 17)
            root = random_root(rng)
            uv.append(project(truth + root, intr) + rng.normal(0, prior.keypoint_sigma_px, (17, 2)))
            seen.append(rng.uniform(size=17) > 0.2)
            lifted.append(guess - guess[MUPOTS_17.root])
            truth_z.append(root[2])
        cameras.append((intr, np.array(uv), np.array(seen), np.array(lifted), np.array(truth_z)))
    return cameras


def test_one_sigma_covers_about_68_percent() -> None:
    # The shipped noise levels, without the inflation measured for what real errors add to them:
    # the noise drawn here is exactly the prior's own.
    prior = BodyPrior(sigma_inflation=1.0, torso_keypoint_scale=1.0)
    errors, sigmas = [], []
    for intr, uv, seen, lifted, truth_z in _noisy_people(600, 7, prior):
        depth = estimate_root_depth_px(uv, seen, lifted, intr, MUPOTS_17, HEIGHT_M, prior)
        valid = depth.valid.numpy()
        errors.append(np.abs(depth.depth_m.numpy() - truth_z)[valid])
        sigmas.append(depth.sigma_m.numpy()[valid])
    errors, sigmas = np.concatenate(errors), np.concatenate(sigmas)
    assert len(errors) > 550
    coverage = float(np.mean(errors < sigmas))
    assert 0.55 <= coverage <= 0.80, coverage
    assert 0.88 <= float(np.mean(errors < 2 * sigmas)) <= 0.99


@pytest.mark.parametrize("near_m, far_m", [(7.0, 10.0), (10.0, 14.0)])
def test_2d_noise_on_small_people_does_not_pull_them_near(near_m: float, far_m: float) -> None:
    """Errors in variables: exact lengths and relative depths, 3 px of 2D noise on people whose
    forearms are 9-19 px long. A least-squares fit of plain lengths put them at 0.96 and 0.92 of
    their depth (noise-lengthened segments weigh more); the medians of the bones and of their
    fusion with the torso must stay within 2 %."""
    rng = np.random.default_rng(11)
    intr = Intrinsics.pinhole(500, 500, 320, 240, 640, 480)
    poses = np.array([random_pose(int(rng.integers(2**31))) for _ in range(200)])
    depth_m = rng.uniform(near_m, far_m, 200)
    roots = np.stack([rng.uniform(-0.2, 0.2, 200) * depth_m, 0.1 * depth_m, depth_m], axis=1)
    uv = np.stack([project(p + r, intr) for p, r in zip(poses, roots)]) + rng.normal(0, 3.0, (200, 17, 2))
    seen = np.ones((200, 17), dtype=bool)
    seen[:, [MUPOTS_17.index(n) for n in ("pelvis", "neck", "spine", "head", "head_top")]] = False
    depth = estimate_root_depth_px(uv, seen, poses, intr, MUPOTS_17, HEIGHT_M,
                                   BodyPrior(torso_keypoint_scale=1.0), keypoint_sigma_px=3.0)
    for estimate, valid in ((depth.bones_depth_m, depth.bones_valid), (depth.depth_m, depth.valid)):
        valid = valid.numpy()
        assert valid.sum() > 190
        ratio = float(np.median(estimate.numpy()[valid] / depth_m[valid]))
        assert abs(ratio - 1) < 0.02, ratio


def test_the_fusion_weighs_a_cue_the_same_whether_it_errs_near_or_far() -> None:
    """Each cue's sigma grows with depth. Evaluated at the cue's own estimate, a torso 25 % too far
    got 0.77 of the weight the same torso 25 % too near got, which pulls the fusion near on
    average; taken at one depth, the two weights agree within 10 % (exact 2D at 12 m)."""
    intr = Intrinsics.pinhole(500, 500, 320, 240, 640, 480)
    seen = np.ones((1, 17), dtype=bool)
    seen[:, [MUPOTS_17.index(n) for n in ("pelvis", "neck", "spine", "head", "head_top")]] = False
    for seed in range(10):
        pose = random_pose(seed)
        uv = project(pose + np.array([0.3, 1.0, 12.0]), intr)[None]
        weights = []
        for torso_scale in (1.25, 1 / 1.25):
            depth = estimate_root_depth_px(uv, seen, pose[None], intr, MUPOTS_17, HEIGHT_M,
                                           BodyPrior(torso_keypoint_scale=torso_scale), keypoint_sigma_px=3.0)
            bones, torso = float(depth.bones_depth_m[0]), float(depth.torso_depth_m[0])
            weights.append((float(depth.depth_m[0]) - bones) / (torso - bones))
        assert 0.9 < weights[0] / weights[1] < 1.1, weights


def test_sigma_grows_with_fewer_and_shorter_bones() -> None:
    rng = np.random.default_rng(3)
    intr = random_camera(rng, distorted=False)
    pose = random_pose(11)
    seen = np.ones(17, dtype=bool)
    sigmas = []
    for hidden in (
        (),
        ("left_wrist",),
        ("left_wrist", "right_wrist"),
        ("left_wrist", "right_wrist", "left_ankle"),
    ):
        mask = seen.copy()
        mask[[MUPOTS_17.index(n) for n in hidden]] = False
        root = np.array([0.1, 0.2, 5.0])
        depth = estimate_root_depth_px(
            project(pose + root, intr)[None], mask[None], pose[None], intr, MUPOTS_17, HEIGHT_M
        )
        sigmas.append(float(depth.bones_sigma_m[0]))
    assert all(a < b for a, b in zip(sigmas, sigmas[1:])), sigmas
    # Farther away the bones are shorter in pixels: the relative uncertainty grows.
    relative = []
    for z in (2.0, 6.0, 14.0):
        depth = estimate_root_depth_px(
            project(pose + [0, 0, z], intr)[None], seen[None], pose[None], intr, MUPOTS_17, HEIGHT_M
        )
        relative.append(float(depth.bones_sigma_m[0]) / z)
    assert relative[0] < relative[1] < relative[2], relative


def test_a_child_is_placed_farther_along_the_same_rays() -> None:
    """The documented scale assumption: a 1.2 m person is taken for a 1.7 m one."""
    rng = np.random.default_rng(5)
    intr = random_camera(rng, distorted=False)
    pose, root = random_pose(21), np.array([0.3, 0.1, 3.0])
    child = pose * 1.2 / HEIGHT_M
    seen = np.ones((1, 17), dtype=bool)
    depth = estimate_root_depth_px(
        project(child + root, intr)[None],
        seen,
        pose[None],
        intr,
        MUPOTS_17,
        HEIGHT_M,
        BodyPrior(height_m=1.7, torso_keypoint_scale=1.0),
    )
    assert abs(float(depth.depth_m[0]) - 3.0 * 1.7 / 1.2) < 1e-3


def test_nothing_measurable_is_invalid_not_nan() -> None:
    rays = torch.from_numpy(
        pixel_rays(np.zeros((2, 17, 2)), Intrinsics.pinhole(500, 500, 320, 240, 640, 480))
    )
    seen = torch.zeros(2, 17, dtype=torch.bool)
    seen[1, MUPOTS_17.index("left_wrist")] = True  # one joint: no segment
    depth = estimate_root_depth(
        rays, seen, torch.from_numpy(np.stack([random_pose(1)] * 2)), MUPOTS_17, 500.0, HEIGHT_M
    )
    assert not depth.valid.any()
    assert torch.all(depth.depth_m == 0) and torch.all(torch.isinf(depth.sigma_m))
    assert not torch.isnan(depth.bones_depth_m).any() and not torch.isnan(depth.torso_depth_m).any()


def test_sigma_inflation_scales_the_measured_part_only() -> None:
    """Depths are unchanged; torso and bones sigmas scale by the factor; the stature part stays."""
    intr, uv, seen, lifted, _ = _noisy_people(25, 3, BodyPrior())[0]
    plain = BodyPrior(sigma_inflation=1.0, torso_keypoint_scale=1.0)
    wide = BodyPrior(sigma_inflation=2.5, torso_keypoint_scale=1.0)
    a = estimate_root_depth_px(uv, seen, lifted, intr, MUPOTS_17, HEIGHT_M, plain)
    b = estimate_root_depth_px(uv, seen, lifted, intr, MUPOTS_17, HEIGHT_M, wide)
    valid = a.valid.numpy()
    assert valid.sum() > 20 and np.array_equal(valid, b.valid.numpy())
    for name in ("depth_m", "torso_depth_m", "bones_depth_m"):
        np.testing.assert_allclose(getattr(b, name).numpy(), getattr(a, name).numpy(), rtol=1e-9)
    for name, ok in (("torso_sigma_m", a.torso_valid), ("bones_sigma_m", a.bones_valid)):
        ok = ok.numpy()
        np.testing.assert_allclose(getattr(b, name).numpy()[ok], 2.5 * getattr(a, name).numpy()[ok], rtol=1e-9)
    stature = (a.depth_m.numpy() * plain.height_sigma_m / plain.height_m)[valid]
    own = np.sqrt(a.sigma_m.numpy()[valid] ** 2 - stature**2)
    np.testing.assert_allclose(b.sigma_m.numpy()[valid], np.hypot(2.5 * own, stature), rtol=1e-9)


@given(seed=st.integers(0, 2**31 - 1))
def test_each_segment_alone_gives_the_root_of_an_exact_pose(seed: int) -> None:
    rng = np.random.default_rng(seed)
    intr = random_camera(rng, distorted=True)
    pose, root = random_pose(seed), random_root(rng)
    seen = np.ones(17, dtype=bool)
    seen[MUPOTS_17.index("left_wrist")] = False
    rays = torch.from_numpy(pixel_rays(project(pose + root, intr), intr))
    depths = segment_root_depths(rays[None], torch.from_numpy(seen)[None], torch.from_numpy(pose)[None],
                                 MUPOTS_17, HEIGHT_M, HEIGHT_M)[0].numpy()
    assert depths.shape == (len(SEGMENTS) + 1,)
    hidden = SEGMENTS.index(("left_elbow", "left_wrist"))
    assert np.isnan(depths[hidden])
    segments = [k for k in range(len(SEGMENTS)) if k != hidden]
    # Most segments give the true root. One seen nearly end-on may have no solution, or the true
    # root as the smaller solution of MAR Eq. 8's quadratic, which takes the larger one.
    exact = np.abs(depths[segments] - root[2]) < 1e-6 * root[2]
    assert exact.sum() >= len(segments) - 2
    assert abs(np.nanmedian(depths[segments]) - root[2]) < 1e-6 * root[2]
    # The torso closed form on image midpoints: off by the midpoint's depth spread only.
    assert abs(depths[-1] - root[2]) < 0.03 * root[2]


def test_a_segment_lifted_too_short_puts_the_person_too_near() -> None:
    intr = Intrinsics(np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]]), 640, 480)
    pose, root = random_pose(3), np.array([0.2, 0.1, 5.0])
    rays = torch.from_numpy(pixel_rays(project(pose + root, intr), intr))
    lifted = pose.copy()
    shoulder = MUPOTS_17.index("left_shoulder")
    lifted[shoulder] = pose[MUPOTS_17.index("neck")] + 0.7 * (pose[shoulder] - pose[MUPOTS_17.index("neck")])
    seen = torch.ones(1, 17, dtype=torch.bool)
    depths = segment_root_depths(rays[None], seen, torch.from_numpy(lifted)[None], MUPOTS_17, HEIGHT_M)[0]
    width = SEGMENTS.index(("left_shoulder", "right_shoulder"))
    assert float(depths[width]) < 0.95 * root[2]
    right_arm = SEGMENTS.index(("right_elbow", "right_wrist"))
    assert float(depths[right_arm]) == pytest.approx(root[2], rel=1e-6)


def test_the_torso_keypoint_scale_takes_the_detectors_longer_torso() -> None:
    """A person facing the camera whose marked hips and shoulders span a 12 % longer torso than
    the lifted joints: the torso estimate is exact with the scale 1.12, 1 / 1.12 too near at 1."""
    intr = Intrinsics(np.array([[600.0, 0, 320], [0, 600.0, 240], [0, 0, 1]]), 640, 480)
    joints = {"left_hip": (0.10, 0.06), "right_hip": (-0.10, 0.06),
              "left_shoulder": (0.18, -0.49), "right_shoulder": (-0.18, -0.49)}
    lifted = np.zeros((17, 3))
    for name, (x, y) in joints.items():
        lifted[MUPOTS_17.index(name)] = (x, y, 0.0)
    marked = lifted.copy()
    stretch = 0.06 * 0.55  # half of the 12 % of the 0.55 m torso, at each end
    for name in ("left_hip", "right_hip"):
        marked[MUPOTS_17.index(name), 1] += stretch
    for name in ("left_shoulder", "right_shoulder"):
        marked[MUPOTS_17.index(name), 1] -= stretch
    root = np.array([0.4, -0.1, 6.0])
    seen = np.zeros(17, dtype=bool)
    seen[[MUPOTS_17.index(n) for n in joints]] = True
    uv = project(marked + root, intr)
    torso = [float(estimate_root_depth_px(uv[None], seen[None], lifted[None], intr, MUPOTS_17, HEIGHT_M,
                                          BodyPrior(height_m=HEIGHT_M, torso_keypoint_scale=scale)
                                          ).torso_depth_m[0]) for scale in (1.0, 1.12)]
    assert torso[1] == pytest.approx(root[2], rel=1e-6)
    assert torso[0] == pytest.approx(root[2] / 1.12, rel=1e-6)
