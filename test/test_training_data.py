"""training config, ratio batch sampler, schedule and the training dataset (no processes started)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mp3d_ros.geometry.skeleton import COCO_17, MUCO_21, convert_joints
from mp3d_ros.synthetic.scenes import SceneConfig, write_dataset
from mp3d_ros.training.config import ScheduleConfig, load_train_config, model_config
from mp3d_ros.training.data import (
    MixedBatchSampler,
    SampleKey,
    TrainingDataset,
    batch_counts,
    collate_batch,
    load_sources,
)
from mp3d_ros.training.optim import WarmupLinearDecay, schedule_lengths

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- fixtures in the real layouts


def write_coco_from_synthetic(synthetic_dir: Path, out: Path) -> Path:
    """A COCO person-keypoints file (17 x (x, y, v), v = 0/1/2) over the synthetic images' 2D joints."""
    data = json.loads((synthetic_dir / "annotations.json").read_text())
    annotations = []
    for ann in data["annotations"]:
        uv, _ = convert_joints(np.asarray(ann["keypoints_img"], float), MUCO_21, COCO_17)
        vis, _ = convert_joints(np.asarray(ann["keypoints_vis"], float)[:, None], MUCO_21, COCO_17)
        v = np.where(np.isnan(uv[:, 0]), 0, np.where(np.nan_to_num(vis[:, 0]) > 0, 2, 1))
        keypoints = np.concatenate([np.nan_to_num(uv), v[:, None]], axis=1).ravel().tolist()
        annotations.append({"id": ann["id"], "image_id": ann["image_id"], "category_id": 1, "iscrowd": 0,
                            "keypoints": keypoints, "num_keypoints": int((v > 0).sum()), "bbox": ann["bbox"]})
    images = [{k: im[k] for k in ("id", "file_name", "width", "height")} for im in data["images"]]
    out.write_text(json.dumps({"images": images, "annotations": annotations,
                               "categories": [{"id": 1, "name": "person"}]}))
    return out


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("scenes")
    write_dataset(out, SceneConfig(size=(128, 96), people=(1, 3)), 4, seed=3, progress=False)
    return out


def config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "train.yaml"
    path.write_text(text)
    return path


BASE = """
model: {preset: lite, input_size: [128, 96]}
datasets: [{kind: synthetic, path: data/synthetic}]
schedule: {steps: 10, warmup_steps: 2}
"""


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize("name", ["muco_coco", "lite_muco_coco", "panoptic_coco", "synthetic"])
def test_shipped_configs_load(name: str) -> None:
    config = load_train_config(REPO / "config" / "train" / f"{name}.yaml")
    model = model_config(config)
    assert model.input_size == (832, 512) and model.joint_set == "mupots_17"
    assert model.backbone == ("hrnet_w32" if name in ("muco_coco", "panoptic_coco") else "mobilenet_fpn")
    if "coco" in name:
        assert [d.ratio for d in config.datasets] == [0.5, 0.5] and config.datasets[1].kind == "coco"
    assert config.schedule.warmup_epochs == 1 and config.optim.name == "adam"


def test_overrides_reach_nested_sections(tmp_path: Path) -> None:
    config = load_train_config(config_file(tmp_path, BASE),
                               ["optim.lr=3e-4", "model.head_width=64", "loss.hmor=0.1", "batch_size=4"])
    assert config.optim.lr == 3e-4 and config.loss.hmor == 0.1 and config.batch_size == 4
    assert model_config(config).head_width == 64 and model_config(config).separable_heads  # lite preset


@pytest.mark.parametrize("override, message", [
    (["bogus=1"], "unknown key(s) ['bogus']"),
    (["model.bogus=1"], "model: unknown key(s) ['bogus']"),
    (["model.preset=big"], "model.preset is 'big'"),
    (["model.input_size=[100, 96]"], "multiples of 32"),
    (["datasets=[]"], "at least one training dataset"),
    (["datasets=[{kind: imagenet, path: x}]"], "datasets[].kind is 'imagenet'"),
    (["datasets=[{kind: coco, path: x, ratio: 0}]"], "ratio of the coco dataset must be > 0"),
    (["datasets=[{kind: coco}]"], "path of the coco dataset is empty"),
    (["schedule.epochs=2"], "exactly one of schedule.steps and schedule.epochs"),
    (["optim.name=sgd"], "optim.name is 'sgd'"),
    (["amp=fp8"], "amp is 'fp8'"),
    (["batch_size=0"], "batch_size must be >= 1"),
    (["validation.kind=coco", "validation.path=x"], "validation.kind is 'coco'"),
    (["schedule.epoch_dataset=3"], "schedule.epoch_dataset 3"),
    (["validate_every=100"], "validate_every is set but validation.kind is empty"),
])
def test_bad_configs_are_refused_naming_file_and_key(tmp_path: Path, override, message) -> None:
    path = config_file(tmp_path, BASE)
    with pytest.raises(ValueError) as error:
        load_train_config(path, override)
    assert str(error.value).startswith(str(path)) and message in str(error.value)


def test_missing_config_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_train_config(tmp_path / "nope.yaml")


# ----------------------------------------------------------------------------- batch composition


def test_batch_counts_follow_the_ratios() -> None:
    assert batch_counts([0.5, 0.5], 8) == (4, 4)
    assert batch_counts([3, 1], 8) == (6, 2)
    assert batch_counts([1, 1, 1], 8) == (3, 3, 2)
    assert batch_counts([2, 1], 5) == (3, 2)
    with pytest.raises(ValueError, match="dataset 1 .* gets no image"):
        batch_counts([0.95, 0.05], 8)


@given(sizes=st.lists(st.integers(1, 12), min_size=1, max_size=3), world=st.integers(1, 4),
       seed=st.integers(0, 2**16), data=st.data())
def test_sampler_reads_every_image_once_per_epoch_across_ranks(sizes, world, seed, data) -> None:
    counts = data.draw(st.lists(st.integers(1, 3), min_size=len(sizes), max_size=len(sizes)))
    steps = 1 + max(s // (c * world) for s, c in zip(sizes, counts)) * 2
    samplers = [MixedBatchSampler(sizes, counts, seed, r, world, 0, steps) for r in range(world)]
    drawn: dict[int, dict[int, int]] = {d: {} for d in range(len(sizes))}
    for sampler in samplers:
        for batch in sampler:
            assert Counter(k.source for k in batch) == dict(enumerate(counts))  # ratio in every batch
            for key in batch:
                assert key.position not in drawn[key.source]  # no two ranks / steps share a slot
                drawn[key.source][key.position] = key.index
    for source, size in enumerate(sizes):
        positions = drawn[source]
        for epoch in range(max(positions) // size):  # every complete epoch is a permutation
            assert sorted(positions[epoch * size + i] for i in range(size)) == list(range(size))


def test_sampler_is_deterministic_and_resumable() -> None:
    def run(seed: int, start: int, rank: int = 0) -> list:
        return list(MixedBatchSampler([10, 7], [2, 2], seed, rank, 2, start, 12))

    full = run(0, 0)
    assert full == run(0, 0) and run(0, 5) == full[5:] and len(run(0, 5)) == 7
    assert run(1, 0) != full and run(0, 0, rank=1) != full


def test_warmup_then_linear_decay_to_zero() -> None:
    schedule = WarmupLinearDecay(warmup_steps=4, total_steps=12)
    factors = [schedule(s) for s in range(13)]
    np.testing.assert_allclose(factors[:4], [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(factors[4:], [(12 - s) / 8 for s in range(4, 13)])
    assert factors[-1] == 0 and np.all(np.diff(factors[4:]) < 0)


def test_an_optimiser_restart_warms_up_again_then_rejoins_the_decay() -> None:
    schedule = WarmupLinearDecay(warmup_steps=4, total_steps=12, rewarm_from=6)
    plain = WarmupLinearDecay(warmup_steps=4, total_steps=12)
    factors = [schedule(s) for s in range(6, 13)]
    np.testing.assert_allclose(factors[:4], [plain(6 + k) * (k + 1) / 4 for k in range(4)])
    np.testing.assert_allclose(factors[4:], [plain(s) for s in range(10, 13)])


def test_schedule_in_epochs_counts_the_epoch_dataset() -> None:
    config = load_train_config(None, [
        "datasets=[{kind: muco, path: a}, {kind: coco, path: b}]",
        "schedule={epochs: 15, warmup_epochs: 1}"])
    # MuCo's 1000 images at 4 per process per step on 2 processes: 125 steps per epoch.
    assert schedule_lengths(config.schedule, [1000, 5000], (4, 4), 2) == (15 * 125, 125)
    with pytest.raises(ValueError, match="warm-up of 125 steps is not shorter"):
        schedule_lengths(ScheduleConfig(steps=100, warmup_epochs=1), [1000, 5000], (4, 4), 2)


# ----------------------------------------------------------------------------- the dataset


def test_dataset_items_are_deterministic_and_mask_2d_only_depth(scenes: Path, tmp_path: Path) -> None:
    coco = write_coco_from_synthetic(scenes, tmp_path / "person_keypoints.json")
    datasets = f"[{{kind: synthetic, path: {scenes}}}, {{kind: coco, path: {coco}, image_root: {scenes}}}]"
    config = load_train_config(None, ["model={preset: lite, input_size: [128, 96]}", "schedule.steps=4",
                                      f"datasets={datasets}"])
    sources = load_sources(config.datasets, config.seed)
    assert [len(s.images) for s in sources] == [4, 4] and sources[1].images[0].has_3d is False
    dataset = TrainingDataset(sources, model_config(config), config.augment, config.targets, seed=0)
    keys = MixedBatchSampler([4, 4], batch_counts([1, 1], 4), 0, 0, 1, 0, 1).keys(0)
    batch = collate_batch([dataset[k] for k in keys])
    again = collate_batch([dataset[k] for k in keys])
    assert batch.images.shape == (4, 96, 128, 3) and batch.images.dtype == torch.uint8
    assert np.array_equal(batch.images.numpy(), again.images.numpy())
    assert batch.source.tolist() == [0, 0, 1, 1]
    t = dataset.generator.maps(batch.targets)  # the trainer draws the maps on its device
    assert t.center.shape == (4, 1, 24, 32)
    depth_weight = t.root_depth_weight.flatten(1).sum(1) + t.rel_depth_weight.flatten(1).sum(1)
    assert (depth_weight[:2] > 0).all() and (depth_weight[2:] == 0).all()  # COCO: no depth targets
    assert (t.center.flatten(1).amax(1) > 0.5).all()  # but everybody has 2D targets
    other = dataset[SampleKey(keys[0].source, keys[0].index, keys[0].position + 100)]
    assert not np.array_equal(other.image, batch.images[0].numpy())  # new position, new augmentation


def test_missing_dataset_files_are_named(scenes: Path, tmp_path: Path) -> None:
    config = load_train_config(None, [f"datasets=[{{kind: muco, path: {tmp_path / 'MuCo-3DHP.json'}}}]"])
    with pytest.raises(ValueError, match="MuCo-3DHP.json does not exist"):
        load_sources(config.datasets, config.seed)
    dataset = f"{{kind: synthetic, path: {scenes}, image_root: {tmp_path / 'nowhere'}}}"
    config = load_train_config(None, [f"datasets=[{dataset}]"])
    with pytest.raises(ValueError, match="image folder .*nowhere does not exist"):
        load_sources(config.datasets, config.seed)
