"""Lifter: input normalisation, training pairs, tiny training, committed weights, movenet-lift."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mp3d_ros.cli.train_lifter import main as train_lifter_main
from mp3d_ros.data.lifting import (
    LIFTING_JOINTS,
    LiftingDataConfig,
    bone_lengths,
    load_pose_bank,
    retarget_lifting_poses,
    sample_bodies,
    sample_lifting_batch,
    split_subjects,
)
from mp3d_ros.geometry.camera import Intrinsics, project
from mp3d_ros.geometry.skeleton import COCO_17, MUCO_21, MUPOTS_17
from mp3d_ros.inference.movenet_lift import MoveNetLift
from mp3d_ros.model.lifter import (
    Lifter,
    LifterConfig,
    lift,
    load_lifter,
    prepare_lifter_input,
    save_lifter,
    virtual_camera_rotation,
)
from mp3d_ros.synthetic.body import sample_shape

REPO = Path(__file__).resolve().parents[1]
LIFTER = REPO / "models" / "lifter.safetensors"
MOVENET = REPO / "models" / "movenet_multipose.safetensors"
FEW_TAKES = ["02_01", "02_02", "07_01", "07_02", "08_01"]  # subject 02 is held out
NO_ERRORS = LiftingDataConfig(
    noise_fraction=(0.0, 0.0),
    noise_floor_px=(0.0, 0.0),
    outlier_probability=0.0,
    missing_probability=(0.0, 0.0),
    part_missing_probability=0.0,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _random_rays(generator: torch.Generator, batch: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Keypoints of a random 3D cloud 2-10 m in front of the camera, with a few missing."""
    points = torch.randn(batch, 17, 3, generator=generator) * 0.4
    points[..., 2] += torch.empty(batch, 1).uniform_(2, 10, generator=generator)
    points[..., :2] += torch.empty(batch, 1, 2).uniform_(-1.5, 1.5, generator=generator)
    confidence = torch.rand(batch, 17, generator=generator) * 0.7 + 0.3
    confidence[:, :3] = 0.0
    return points / points[..., 2:], confidence


def test_normalisation_ignores_distance_and_zeroes_missing_joints() -> None:
    generator = torch.Generator().manual_seed(0)
    points = torch.randn(4, 17, 3, generator=generator, dtype=torch.float64) * 0.4
    points[..., 2] += 4.0
    points[..., 0] += 1.0
    confidence = torch.ones(4, 17, dtype=torch.float64)
    confidence[:, 5] = 0
    near, _ = prepare_lifter_input(points / points[..., 2:], confidence)
    far_points = points * 2.5  # the same person 2.5 times farther along the same rays
    far, _ = prepare_lifter_input(far_points / far_points[..., 2:], confidence)
    torch.testing.assert_close(near, far)
    features = near.view(4, 17, 3)
    assert torch.all(features[:, 5] == 0)
    seen_xy = features[:, confidence[0] > 0, :2]
    torch.testing.assert_close(seen_xy.mean(1), torch.zeros(4, 2, dtype=torch.float64))
    torch.testing.assert_close((seen_xy**2).sum(-1).mean(1), torch.ones(4, dtype=torch.float64))


def test_virtual_camera_looks_at_the_person() -> None:
    generator = torch.Generator().manual_seed(1)
    rays, confidence = _random_rays(generator)
    _, rotation = prepare_lifter_input(rays, confidence)
    seen = confidence > 0
    units = rays / rays.norm(dim=-1, keepdim=True)
    mean = (units * seen[..., None]).sum(1)
    turned = (rotation @ (mean / mean.norm(dim=-1, keepdim=True))[..., None])[..., 0]
    torch.testing.assert_close(
        turned, torch.tensor([0.0, 0.0, 1.0]).expand(8, 3), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(
        rotation @ rotation.transpose(-1, -2), torch.eye(3).expand(8, 3, 3), atol=1e-6, rtol=0
    )
    assert torch.allclose(torch.linalg.det(rotation), torch.ones(8))
    direction = torch.nn.functional.normalize(torch.tensor([[0.3, -0.2, 1.0]]), dim=-1)
    torch.testing.assert_close(
        virtual_camera_rotation(direction)[0] @ direction[0], torch.tensor([0.0, 0.0, 1.0])
    )


def test_lift_rotates_back_to_the_camera_and_is_root_relative() -> None:
    generator = torch.Generator().manual_seed(2)
    torch.manual_seed(2)
    model = Lifter(LifterConfig(width=32)).eval()
    rays, confidence = _random_rays(generator)
    features, rotation = prepare_lifter_input(rays, confidence)
    pose = lift(model, rays, confidence)
    assert pose.shape == (8, 17, 3)
    torch.testing.assert_close(pose[:, MUPOTS_17.root], torch.zeros(8, 3))
    virtual = (rotation[:, None] @ pose[..., None])[..., 0]
    torch.testing.assert_close(virtual, model(features), atol=1e-5, rtol=1e-5)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(3)
    model = Lifter(LifterConfig(width=32, num_blocks=1)).eval()
    save_lifter(tmp_path / "l.safetensors", model, {"held_out_mpjpe_mm": 1.0})
    loaded, record = load_lifter(tmp_path / "l.safetensors")
    assert loaded.cfg == model.cfg and record == {"held_out_mpjpe_mm": 1.0}
    x = torch.randn(4, model.cfg.num_inputs)
    torch.testing.assert_close(loaded(x), model(x))


def test_training_pairs_project_onto_their_targets(mocap_dir: Path) -> None:
    bank = load_pose_bank(mocap_dir, 1.7, fps=10, takes=FEW_TAKES[:2])
    batch = sample_lifting_batch(bank, 64, NO_ERRORS, torch.Generator().manual_seed(4))
    assert batch.rays.shape == (64, 17, 3) and batch.target_m.shape == (64, 17, 3)
    torch.testing.assert_close(batch.target_m[:, MUPOTS_17.root], torch.zeros(64, 3))
    # Joints both sets share lie on their rays for one root position T: r_j x (target_j + T) = 0.
    shared = [n for n in COCO_17.joints if n in MUPOTS_17.joints]
    seen = batch.confidence[:, [COCO_17.index(n) for n in shared]] > 0
    rays = batch.rays[:, [COCO_17.index(n) for n in shared]].double()
    target = batch.target_m[:, [MUPOTS_17.index(n) for n in shared]].double()
    x, y = rays[..., 0], rays[..., 1]
    # Linear in T: x (t_z + T_z) - (t_x + T_x) = 0 and y (t_z + T_z) - (t_y + T_y) = 0.
    zeros, ones = torch.zeros_like(x), torch.ones_like(x)
    rows = torch.cat([torch.stack([-ones, zeros, x], -1), torch.stack([zeros, -ones, y], -1)], 1)
    rhs = torch.cat([target[..., 0] - x * target[..., 2], target[..., 1] - y * target[..., 2]], 1)
    weight = torch.cat([seen, seen], 1).double()[..., None]
    root = torch.linalg.lstsq(rows * weight, (rhs * weight[..., 0])[..., None]).solution
    residual = ((rows @ root)[..., 0] - rhs) * weight[..., 0]
    assert residual.abs().max() < 1e-4
    assert ((root[:, 2, 0] > 0.9) & (root[:, 2, 0] < 15.1)).all()  # depths 1-15 m


def test_retargeting_sets_every_bone_length_and_keeps_its_direction(mocap_dir: Path) -> None:
    bank = load_pose_bank(mocap_dir, 1.7, fps=10, takes=FEW_TAKES[:1], bodies=0)
    poses = bank.poses_m[:20].double()
    lengths = torch.rand(20, LIFTING_JOINTS.num_joints, generator=torch.Generator().manual_seed(2),
                         dtype=torch.float64) * 0.4 + 0.05
    lengths[:, LIFTING_JOINTS.root] = 0.0
    moved = retarget_lifting_poses(poses, lengths)
    torch.testing.assert_close(bone_lengths(moved), lengths)
    torch.testing.assert_close(moved[:, LIFTING_JOINTS.root], poses[:, LIFTING_JOINTS.root])
    # Same lengths as the pose has: the pose itself comes back.
    torch.testing.assert_close(retarget_lifting_poses(poses, bone_lengths(poses)), poses)


def test_bodies_are_survey_adults_at_the_canonical_stature(mocap_dir: Path) -> None:
    bank = load_pose_bank(mocap_dir, 1.7, fps=10, takes=FEW_TAKES[:1], bodies=0)
    bodies = sample_bodies(300, 1.7, bank.poses_m[0], seed=5).double()
    # Row 0 is the first adult that sample_shape draws from the same seed, scaled to 1.70 m.
    shape = sample_shape(np.random.default_rng(5), child_fraction=0.0)
    for name in ("left_knee", "right_elbow", "spine", "head_top", "left_hip"):
        expected = shape.bone_lengths_m[MUCO_21.index(name)] * 1.7 / shape.height_m
        assert float(bodies[0, LIFTING_JOINTS.index(name)]) == pytest.approx(expected, rel=1e-6)
    # Proportions vary between bodies (a 2.5 % sd for the legs, 5 % for the shoulders) ...
    shin = bodies[:, LIFTING_JOINTS.index("left_ankle")]
    shoulder = bodies[:, LIFTING_JOINTS.index("left_shoulder")]
    assert 0.015 < float(shin.std() / shin.mean()) < 0.04
    assert 0.04 < float(shoulder.std() / shoulder.mean()) < 0.1
    # ... around the anthropometric table (shank 0.245 of the stature), not the mocap figure's.
    assert float(shin.mean()) == pytest.approx(0.245 * 1.7, rel=0.03)
    figure_shin = float(bone_lengths(bank.poses_m[:1].double())[0, LIFTING_JOINTS.index("left_ankle")])
    assert abs(figure_shin - float(shin.mean())) > 0.03


def test_training_targets_take_the_banks_bodies(mocap_dir: Path) -> None:
    bank = load_pose_bank(mocap_dir, 1.7, fps=10, takes=FEW_TAKES[:2], bodies=16, seed=1)
    batch = sample_lifting_batch(bank, 256, NO_ERRORS, torch.Generator().manual_seed(3))
    lengths = (batch.target_m[:, MUPOTS_17.index("left_knee")]
               - batch.target_m[:, MUPOTS_17.index("left_ankle")]).norm(dim=-1)
    shins = bank.bodies_m[:, LIFTING_JOINTS.index("left_ankle")]
    mirrored = bank.bodies_m[:, LIFTING_JOINTS.index("right_ankle")]
    distance = (lengths[:, None] - torch.cat([shins, mirrored])[None]).abs().min(dim=1).values
    assert float(distance.max()) < 1e-5  # every target's shin is one of the bodies'
    assert len(torch.unique(lengths.round(decimals=4))) > 8  # and many bodies are drawn


def test_tiny_training_lowers_the_held_out_error(mocap_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "tiny.safetensors"
    train_lifter_main(
        [
            "--mocap",
            str(mocap_dir),
            "--out",
            str(out),
            "--takes",
            *FEW_TAKES,
            "--held-out",
            "02",
            "--steps",
            "150",
            "--batch-size",
            "128",
            "--width",
            "128",
            "--eval-samples",
            "1500",
            "--fps",
            "10",
        ]
    )
    assert "held-out MPJPE" in capsys.readouterr().out
    _, record = load_lifter(out)
    assert record["held_out_mpjpe_mm"] < 0.6 * record["initial_mpjpe_mm"], record


def test_committed_lifter_matches_its_card(mocap_dir: Path) -> None:
    model, record = load_lifter(LIFTER)
    card = (REPO / "models" / "LIFTER.md").read_text()
    assert f"{record['held_out_mpjpe_mm']:.1f} mm" in card
    assert "02" in record["data"]["held_out_subjects"]
    bank = load_pose_bank(
        mocap_dir, model.cfg.canonical_height_m, fps=10, takes=["02_01", "02_05", "07_01"]
    )
    _, held_out = split_subjects(bank, ["02"])
    assert set(held_out.subjects) == {"02"}
    batch = sample_lifting_batch(held_out, 2000, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        error_mm = 1000 * float(
            (lift(model, batch.rays, batch.confidence) - batch.target_m).norm(dim=-1).mean()
        )
    assert error_mm < 1.5 * record["held_out_mpjpe_mm"], (error_mm, record["held_out_mpjpe_mm"])


def test_movenet_lift_gives_consistent_people(shared_dir: Path) -> None:
    image = cv2.imread(str(shared_dir / "fixtures/coco/000000197388.jpg"))[:, :, ::-1].copy()
    height, width = image.shape[:2]
    intrinsics = Intrinsics(
        np.array([[600.0, 0, 330], [0, 610, 190], [0, 0, 1]]),
        width,
        height,
        "plumb_bob",
        np.array([-0.05, 0.01, 0, 0, 0]),
    )
    model = MoveNetLift.from_files(MOVENET, LIFTER)
    people = model.estimate(image, intrinsics)
    assert people.skeleton == "mupots_17" and 3 <= len(people) <= 6
    assert np.all(np.diff(people.score) <= 0) and np.all(people.root_sigma_m > 0)
    assert np.all(people.keypoints_m[..., 2] > 0.5) and np.all(np.isfinite(people.keypoints_m))
    absent = [MUPOTS_17.index(n) for n in ("pelvis", "neck", "spine", "head", "head_top")]
    assert people.inferred[:, absent].all() and not people.inferred.all(axis=1).any()
    # Every joint's pixel is the projection of its 3D position (seen ones onto their detections).
    np.testing.assert_allclose(project(people.keypoints_m, intrinsics), people.uv_px, atol=1e-3)
    with pytest.raises(ValueError, match="CameraInfo"):
        model.estimate(image[:100], intrinsics)
    annotated = json.loads((shared_dir / "fixtures/coco/test_coco.json").read_text())["annotations"]
    assert sum(a["image_id"] == 197388 for a in annotated) == 5
