"""mp3d-study: variants trained in lockstep see exactly the batches a run of their own would, and
the released models load for inference with their decode switches."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mp3d_ros.cli.study import main
from mp3d_ros.inference.estimator import Estimator
from mp3d_ros.model.checkpoint import fits_float16, load_checkpoint, release_checkpoint
from mp3d_ros.model.codec.targets import (
    SceneAnnotation,
    TargetConfig,
    TargetGenerator,
    collate_targets,
    in_depth_units,
)
from mp3d_ros.model.config import lite_mobilenet_fpn_config
from mp3d_ros.synthetic.scenes import SceneConfig, generate_image, write_dataset
from mp3d_ros.training.config import load_train_config
from mp3d_ros.training.loop import train
from mp3d_ros.training.state import list_checkpoints
from mp3d_ros.training.study import StudyConfig, load_study, study_train_configs

REPO = Path(__file__).resolve().parents[1]
STEPS = 4
BASE = """
model: {{preset: lite, input_size: [128, 96]}}
datasets: [{{kind: synthetic, path: {scenes}}}]
batch_size: 2
workers: 0
schedule: {{steps: {steps}, warmup_steps: 1}}
augment: {{occluder_probability: 0.0}}
init: {{backbone_weights: {weights}}}
normalization: movenet
# The CPU: bit-identical runs are what the lockstep test asks for, and a GPU's kernels are not.
device: cpu
log_every: 1
checkpoint_every: 100
progress: false
"""


@pytest.fixture(scope="module")
def base_config(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("study")
    write_dataset(root / "scenes", SceneConfig(size=(128, 96), people=(1, 3)), 3, seed=2, progress=False)
    path = root / "base.yaml"
    path.write_text(BASE.format(scenes=root / "scenes", steps=STEPS,
                                weights=REPO / "models" / "movenet_multipose.safetensors"))
    return path


def _study_file(base: Path, out_dir: Path, variants: dict, decode_variants: dict | None = None) -> Path:
    path = out_dir.parent / f"{out_dir.name}.yaml"
    path.write_text(yaml.safe_dump({"base": str(base), "variants": variants,
                                    "decode_variants": decode_variants or {}, "out_dir": str(out_dir)}))
    return path


def test_targets_convert_exactly_between_depth_units() -> None:
    frame = generate_image(SceneConfig(size=(128, 96), people=(2, 3)), seed=7, index=0)
    focal = lite_mobilenet_fpn_config(input_size=(128, 96), joint_set="muco_21")
    metres = lite_mobilenet_fpn_config(input_size=(128, 96), joint_set="muco_21", focal_normalised_depth=False)
    everything = np.ones(frame.visible.shape, bool)
    annotation = SceneAnnotation(
        uv_px=frame.keypoints_img_px, labelled=everything, visible=frame.visible, K=frame.intrinsics.K,
        image_size=(128, 96), xyz_m=frame.keypoints_cam_m, labelled_3d=everything)
    drawn = {name: collate_targets([TargetGenerator(cfg, TargetConfig())(annotation)])
             for name, cfg in (("focal", focal), ("metres", metres))}
    assert drawn["focal"].root_depth_weight.sum() > 0
    configs = {"focal": focal, "metres": metres}
    for source, target in (("focal", "metres"), ("metres", "focal")):
        converted = in_depth_units(drawn[source], configs[source], configs[target])
        for f in fields(converted):
            torch.testing.assert_close(getattr(converted, f.name), getattr(drawn[target], f.name),
                                       rtol=1e-5, atol=1e-6, msg=f"{source}->{target}: {f.name}")


def test_lockstep_variants_train_as_their_own_runs_would(base_config: Path, tmp_path: Path) -> None:
    out = tmp_path / "study"
    variants = {"lite": {}, "lite_no_pdqm": {"model.pdqm": False},
                "lite_metres": {"model.focal_normalised_depth": False}}
    decode = {"lite_no_offsets": {"of": "lite", "model.snap_to_nearest_peak": True}}
    assert main(["--config", str(_study_file(base_config, out, variants, decode))]) == 0

    # Each variant alone, as mp3d-train would run it: bit-identical weights on the CPU.
    for name, overrides in variants.items():
        alone = tmp_path / f"alone_{name}"
        strings = [f"{k}={json.dumps(v)}" for k, v in overrides.items()] + [f"out_dir={alone}"]
        assert train(load_train_config(base_config, strings)).step == STEPS
        (step, mine), = list_checkpoints(out / name / "checkpoints")
        (_, theirs), = list_checkpoints(alone / "checkpoints")
        assert step == STEPS
        if name == "lite_metres":
            # Its depth targets are converted, equal to float32 rounding: the first step's losses
            # agree to rounding (later steps drift apart through the early, chaotic updates).
            first = [json.loads(line) for line in (out / name / "metrics.jsonl").open()][0]
            own = [json.loads(line) for line in (alone / "metrics.jsonl").open()][0]
            assert first["step"] == own["step"] == 1
            for term, value in own["loss"].items():
                assert first["loss"][term] == pytest.approx(value, rel=1e-5, abs=1e-6), term
            continue
        ours, reference = load_checkpoint(mine).model_state, load_checkpoint(theirs).model_state
        assert ours.keys() == reference.keys()
        for key in ours:
            assert torch.equal(ours[key], reference[key]), f"{name}: {key} differs from its own run"

    released = {path.stem: load_checkpoint(path) for path in (out / "models").glob("*.pt")}
    assert sorted(released) == sorted([*variants, *decode])
    lite, no_offsets = released["lite"], released["lite_no_offsets"]
    assert lite.optimizer_state is None and all(
        v.dtype == torch.float16 for v in lite.model_state.values() if v.is_floating_point())
    assert no_offsets.model_config["snap_to_nearest_peak"] is True and lite.model_config["snap_to_nearest_peak"] is False
    assert all(torch.equal(lite.model_state[k], no_offsets.model_state[k]) for k in lite.model_state)

    frame = generate_image(SceneConfig(size=(128, 96), people=(1, 2)), seed=3, index=0)
    for name in ("lite", "lite_no_offsets"):
        people = Estimator(str(out / "models" / f"{name}.pt"), device="cpu").estimate(frame.image, frame.intrinsics)
        assert people.skeleton == "mupots_17" and np.isfinite(people.keypoints_m).all()


def test_study_refuses_variants_that_would_see_other_batches(base_config: Path, tmp_path: Path) -> None:
    study = load_study(_study_file(base_config, tmp_path / "s", {"a": {}, "b": {"batch_size": 4}}))
    with pytest.raises(ValueError, match="batch_size"):
        study_train_configs(study)
    with pytest.raises(ValueError, match="snap_to_nearest_peak|decode switch|leave the weights"):
        StudyConfig(base=str(base_config), variants={"a": {}}, decode_variants={"b": {"of": "a", "model.pdqm": False}})
    with pytest.raises(ValueError, match="needs 'of'"):
        StudyConfig(base=str(base_config), variants={"a": {}}, decode_variants={"b": {"model.snap_to_nearest_peak": True}})


def test_release_checkpoint_keeps_what_inference_needs(base_config: Path, tmp_path: Path) -> None:
    config = load_train_config(base_config, [f"out_dir={tmp_path / 'run'}", "schedule.steps=2"])
    result = train(config)
    full = load_checkpoint(result.checkpoint)
    small = release_checkpoint(full)
    assert small.optimizer_state is None and small.scheduler_state is None and "rng" not in small.extra
    assert small.train_config == full.train_config and small.model_config == full.model_config
    for key, value in full.model_state.items():
        expected = value.half() if fits_float16(value) else value
        assert torch.equal(small.model_state[key], expected)
