"""Scenes rendered during training: letterboxed cameras, padding, endless sampling, a run that learns."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from mp3d_ros.cli.train import parse_args
from mp3d_ros.config import load_config
from mp3d_ros.geometry.camera import letterbox_layout, project
from mp3d_ros.model.codec.targets import PersonTables, TargetMaps
from mp3d_ros.synthetic.render import render_batch
from mp3d_ros.synthetic.scenes import SceneConfig, prepare_image
from mp3d_ros.training.config import load_train_config
from mp3d_ros.training.data import MixedBatchSampler, collate_batch
from mp3d_ros.training.distributed import DistContext
from mp3d_ros.training.loop import Trainer
from mp3d_ros.training.losses import compute_losses
from mp3d_ros.training.optim import schedule_lengths
from mp3d_ros.training.scene_stream import (
    SceneStream,
    letterboxed_scene,
    load_scene_stream,
    render_scene_images,
    scene_stream_seed,
)
from mp3d_ros.training.state import without_optimizer
from mp3d_ros.training.study import StudyConfig, study_train_configs
from mp3d_ros.training.validation import normalize_images

REPO = Path(__file__).resolve().parents[1]
PORTRAIT_DISTORTED = SceneConfig(size=(240, 320), focal_range_px=(200.0, 260.0), people=(2, 3),
                                 distortion="plumb_bob", depth_range_m=(1.5, 6.0))
LANDSCAPE = SceneConfig(size=(320, 240), focal_range_px=(220.0, 300.0), people=(1, 2),
                        depth_range_m=(1.5, 5.0))


def stream(scene: SceneConfig, seed: int = 3) -> SceneStream:
    return SceneStream("scenes (test)", scene, seed, None)


@pytest.mark.parametrize("scene", [PORTRAIT_DISTORTED, LANDSCAPE], ids=["portrait-plumb-bob", "landscape"])
def test_letterboxed_joints_are_the_moved_cameras_projections(scene: SceneConfig) -> None:
    input_size = (192, 128)
    for position in range(3):
        job, annotation = letterboxed_scene(stream(scene), position, input_size, "mupots_17")
        intrinsics = job.scene.intrinsics
        assert intrinsics.size == input_size and intrinsics.distortion_model == scene.distortion
        (width, height), (left, top) = letterbox_layout(scene.size, input_size)
        assert job.content_px == (left, top, left + width, top + height)
        expected = project(annotation.xyz_m, intrinsics)
        np.testing.assert_allclose(annotation.uv_px, expected, atol=1e-6)
        np.testing.assert_array_equal(annotation.K, intrinsics.K)
        u, v = annotation.uv_px[annotation.visible].T
        assert ((u >= left - 0.5) & (u <= left + width - 0.5) & (v >= top - 0.5)
                & (v <= top + height - 0.5)).all()
        assert annotation.labelled.all() and annotation.labelled_3d.all()


def test_moved_camera_renders_the_letterboxed_source_image() -> None:
    """The person mask rendered with the camera moved into the letterbox equals the source
    render's mask resized into the letterbox, but for pixels on the outlines."""
    input_size = (160, 160)
    (width, height), (left, top) = letterbox_layout(LANDSCAPE.size, input_size)
    agreement = []
    for position in range(3):
        source = prepare_image(LANDSCAPE, 3, position).scene
        job, _ = letterboxed_scene(stream(LANDSCAPE), position, input_size, "mupots_17")
        full = render_batch([source]).person[0].numpy() >= 0
        moved = render_batch([job.scene]).person[0].numpy() >= 0
        resized = cv2.resize(full.astype(np.uint8), (width, height), interpolation=cv2.INTER_AREA) > 0
        inside = moved[top:top + height, left:left + width]
        assert resized.sum() > 50  # somebody is in view
        agreement.append((inside == resized).mean())
    assert min(agreement) > 0.97


def test_padding_outside_the_content_is_the_normalisation_mean() -> None:
    jobs = [letterboxed_scene(stream(PORTRAIT_DISTORTED), p, (128, 96), "mupots_17")[0] for p in range(2)]
    images = render_scene_images(jobs, torch.device("cpu"), (123.675, 116.28, 103.53)).numpy()
    left, top, right, bottom = jobs[0].content_px
    assert images.shape == (2, 96, 128, 3) and (left, right) != (0, 128)
    outside = np.ones((96, 128), dtype=bool)
    outside[top:bottom, left:right] = False
    np.testing.assert_array_equal(images[:, outside], np.broadcast_to([124, 116, 104], (2, outside.sum(), 3)))
    assert images[:, ~outside].std() > 5  # the content is the render, not padding


def test_stream_positions_are_fresh_and_deterministic() -> None:
    samplers = [MixedBatchSampler([None, 5], [3, 1], seed=0, rank=r, world_size=2, start_step=0,
                                  total_steps=4) for r in range(2)]
    keys = [k for s in samplers for batch in s for k in batch]
    streamed = [k for k in keys if k.source == 0]
    assert all(k.index == k.position for k in streamed)
    assert sorted(k.position for k in streamed) == list(range(24))  # every position once
    resumed = MixedBatchSampler([None, 5], [3, 1], 0, 1, 2, 2, 4)
    assert list(resumed) == list(samplers[1])[2:]
    first = letterboxed_scene(stream(LANDSCAPE), 7, (128, 96), "mupots_17")[1]
    again = letterboxed_scene(stream(LANDSCAPE), 7, (128, 96), "mupots_17")[1]
    np.testing.assert_array_equal(first.uv_px, again.uv_px)


def test_stream_seed_follows_both_seeds_and_recipes_load() -> None:
    assert len({scene_stream_seed(0, 0), scene_stream_seed(0, 1), scene_stream_seed(1, 0)}) == 3
    loaded = load_scene_stream(REPO / "config" / "synth" / "train.yaml", "", 0)
    assert loaded.scene.focal_range_px == (400.0, 1200.0) and loaded.mocap_dir is None
    with pytest.raises(ValueError, match="recipe file .*missing.yaml does not exist"):
        load_scene_stream(REPO / "missing.yaml", "", 0)
    with pytest.raises(ValueError, match="mocap folder /nowhere does not exist"):
        load_scene_stream(REPO / "config" / "synth" / "train.yaml", "/nowhere", 0)


def test_a_stream_has_no_epochs() -> None:
    config = load_train_config(None, ["datasets=[{kind: scenes, path: config/synth/train.yaml}]",
                                      "schedule={epochs: 2}"])
    with pytest.raises(ValueError, match="endless scene stream.*schedule.steps"):
        schedule_lengths(config.schedule, [None], [4], 1)


def write_config(tmp_path: Path, steps: int) -> Path:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"images": 1, "seed": 4, "scene": {
        "size": [160, 120], "focal_range_px": [110.0, 150.0], "people": [1, 2],
        "depth_range_m": [1.5, 4.0]}}))
    config = {
        "model": {"preset": "lite", "input_size": [128, 96]},
        "datasets": [{"kind": "scenes", "path": str(recipe)}],
        "batch_size": 4, "workers": 0, "device": "cpu", "seed": 0,
        "schedule": {"steps": steps, "warmup_steps": 2}, "optim": {"lr": 2.0e-3},
        "init": {"backbone_weights": str(REPO / "models" / "movenet_multipose.safetensors")},
        "normalization": "movenet", "out_dir": str(tmp_path / "run"), "log_every": 1,
        "checkpoint_every": steps, "keep_checkpoints": 1, "progress": False,
    }
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def detection_loss(trainer: Trainer, batch, render: bool = True) -> float:
    """Center + heatmap loss of the network (eval mode) on a batch it never trains on, its scenes
    rendered or left blank."""
    trainer.network.eval()
    with torch.no_grad():
        if render:
            batch = trainer.prepared(batch)
        else:
            width, height = trainer.model_cfg.input_size
            blank = torch.zeros((len(batch.render), height, width, 3), dtype=torch.uint8)
            batch = replace(batch, images=blank, targets=trainer.dataset.generator.maps(batch.targets))
        images = normalize_images(batch.images, trainer.normalization, False)
        loss = compute_losses(trainer.network(images), batch.targets, trainer.model_cfg, trainer.config.loss)
    trainer.network.train()
    return float(loss["center"] + loss["heatmap"])


def test_training_on_rendered_scenes_learns_from_the_images(tmp_path: Path) -> None:
    steps = 30
    config = load_train_config(write_config(tmp_path, steps))
    trainer = Trainer(config, DistContext(0, 1, 0, torch.device("cpu")))
    batch = collate_batch([trainer.dataset[k] for k in trainer.sampler.keys(0)])
    # Only the scenes and their person tables come through the loader: no images, no maps.
    assert all(job is not None for job in batch.render) and batch.images.numel() == 0
    assert isinstance(batch.targets, PersonTables) and not isinstance(batch.targets, TargetMaps)
    rendered = trainer.prepared(batch)
    assert rendered.images.shape == (4, 96, 128, 3) and rendered.images.float().std() > 5
    assert rendered.render == () and isinstance(rendered.targets, TargetMaps)
    assert trainer.prepared(rendered) is rendered  # a study's trainers share it, prepared once
    unseen = collate_batch([trainer.dataset[k] for step in (10_000, 10_001) for k in trainer.sampler.keys(step)])
    before = detection_loss(trainer, unseen)
    result = trainer.run()
    assert result.step == steps and result.checkpoint is not None
    after = detection_loss(trainer, unseen)
    # Lower on new scenes, and lower than on the same batch without its images: it reads them.
    assert after < 0.9 * before and after < 0.9 * detection_loss(trainer, unseen, render=False)


def test_time_limited_run_stops_with_a_checkpoint_that_resumes_without_its_optimiser(tmp_path: Path) -> None:
    config = load_train_config(write_config(tmp_path, 6))
    context = DistContext(0, 1, 0, torch.device("cpu"))
    first = Trainer(config, context).run(stop_after_s=0.0)
    assert first.stopped_early and first.step == 1 and first.checkpoint.is_file()
    slim = without_optimizer(first.checkpoint, tmp_path / "slim.pt")
    assert slim.stat().st_size < 0.5 * first.checkpoint.stat().st_size
    with pytest.raises(ValueError, match="no optimiser state: resume it with --restart-optimizer"):
        Trainer(config, context, slim)
    resumed = Trainer(config, context, slim, restart_optimizer=True)
    assert resumed.step == 1 and resumed.scheduler.last_epoch == 1
    # The learning rate warms up again from the restart, starting at once (not at step 0's value).
    schedule = resumed.scheduler.lr_lambdas[0]
    assert schedule.rewarm_from == 1
    peak = config.optim.lr
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(peak * schedule(1))
    full = Trainer(config, context, first.checkpoint)
    assert schedule(1) < full.scheduler.lr_lambdas[0](1)
    for a, b in zip(resumed.network.parameters(), full.network.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not resumed.optimizer.state and full.optimizer.state
    result = resumed.run()
    assert result.step == 6 and not result.stopped_early


def test_train_command_line_checks_its_time_options(capsys) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--config", "x.yaml", "--restart-optimizer"])
    assert "--restart-optimizer needs --resume" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--config", "x.yaml", "--stop-after-min", "0"])
    assert "--stop-after-min must be > 0" in capsys.readouterr().err


def test_scene_ablation_study_trains_every_variant_on_the_same_scenes() -> None:
    study = load_config(StudyConfig, REPO / "config" / "study" / "scene_ablations.yaml")
    configs = study_train_configs(study, ["seed=1"])
    assert {c.datasets[0].kind for c in configs.values()} == {"scenes"}
    assert {c.seed for c in configs.values()} == {1}
    assert {name: c.loss.hmor > 0 for name, c in configs.items()} == {
        name: name != "lite_no_hmor" for name in configs}


def test_a_time_limit_on_a_checkpoint_step_saves_it_once(tmp_path: Path, monkeypatch) -> None:
    config = load_train_config(write_config(tmp_path, 6), ["checkpoint_every=1"])
    trainer = Trainer(config, DistContext(0, 1, 0, torch.device("cpu")))
    saves = []
    save = trainer._save
    monkeypatch.setattr(trainer, "_save", lambda: saves.append(trainer.step) or save())
    result = trainer.run(stop_after_s=0.0)
    assert result.stopped_early and saves == [1] and result.checkpoint.name == "step_00000001.pt"
