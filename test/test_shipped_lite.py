"""The shipped lite model (models/synthetic_lite.pt and its ONNX export): small, self-describing,
the same through both backends, and it finds the people of the benchmark's seen-camera test scenes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mp3d_ros.config import load_config
from mp3d_ros.geometry.skeleton import convert_joints, get_joint_set
from mp3d_ros.inference.estimator import Estimator
from mp3d_ros.model.checkpoint import load_checkpoint
from mp3d_ros.synthetic.scenes import SynthRecipe, generate_image

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = REPO / "models" / "synthetic_lite.pt"
ONNX = REPO / "models" / "synthetic_lite.onnx"
SCENES = 6


@pytest.fixture(scope="module")
def scenes() -> list:
    recipe = load_config(SynthRecipe, REPO / "config" / "synth" / "test_seen.yaml")
    return [generate_image(recipe.scene, recipe.seed, index) for index in range(SCENES)]


def test_files_are_small_and_describe_themselves() -> None:
    for path in (CHECKPOINT, ONNX):
        assert path.stat().st_size <= 16 * 2**20, f"{path.name} is over 16 MiB"
    checkpoint = load_checkpoint(CHECKPOINT, joint_set="mupots_17", input_size=(416, 256))
    assert checkpoint.optimizer_state is None and checkpoint.train_config["datasets"][0]["kind"] == "scenes"
    assert checkpoint.model_config["backbone"] == "mobilenet_fpn"
    with pytest.raises(ValueError, match="input size 416x256, expected 832x512"):
        load_checkpoint(CHECKPOINT, input_size=(832, 512))


def test_onnx_export_gives_the_same_people(scenes: list) -> None:
    torch_model, onnx_model = Estimator(str(CHECKPOINT), device="cpu"), Estimator(str(ONNX), device="cpu")
    assert onnx_model.backend_name == "onnxruntime:CPUExecutionProvider"
    found = 0
    for frame in scenes:
        expected = torch_model.estimate(frame.image, frame.intrinsics)
        got = onnx_model.estimate(frame.image, frame.intrinsics)
        assert len(got.score) == len(expected.score)
        np.testing.assert_allclose(got.keypoints_m, expected.keypoints_m, atol=1e-3)
        found += len(got.score)
    assert found > 0


def test_finds_the_people_of_seen_camera_scenes(scenes: list) -> None:
    """Over 6 test scenes (34 people), most roots are found within 5 % of the image diagonal, and
    their 3D roots lie within metres, not tens of metres (measured: 68 %, median 0.64 m)."""
    estimator = Estimator(str(CHECKPOINT), device="cpu")
    muco, mupots = get_joint_set("muco_21"), get_joint_set("mupots_17")
    hits, errors_m = [], []
    for frame in scenes:
        people = estimator.estimate(frame.image, frame.intrinsics)
        truth_m, _ = convert_joints(frame.keypoints_cam_m, muco, mupots)
        truth_px, _ = convert_joints(frame.keypoints_img_px.astype(np.float64), muco, mupots)
        diagonal_px = float(np.hypot(*frame.image.shape[:2]))
        for person in range(len(truth_m)):
            if not len(people.score):
                hits.append(False)
                continue
            distance_px = np.linalg.norm(people.uv_px[:, mupots.root] - truth_px[person, mupots.root], axis=-1)
            nearest = int(distance_px.argmin())
            hits.append(bool(distance_px[nearest] < 0.05 * diagonal_px))
            if hits[-1]:
                errors_m.append(np.linalg.norm(people.keypoints_m[nearest, mupots.root] - truth_m[person, mupots.root]))
    assert np.mean(hits) >= 0.5, f"found {np.mean(hits):.0%} of the people"
    assert np.median(errors_m) <= 1.2, f"median root error {np.median(errors_m):.2f} m"
