"""mp3d-train on the CPU: two gloo processes under torchrun learn, and a killed run resumes exactly.

The runs train the lite network at 128x96 on four generated scenes (batch 2 per process, so every
step sees the whole set under fresh augmentation) for 24 steps, with checkpoints every 8 steps.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mp3d_ros.cli.train import main
from mp3d_ros.data.mppe import read_3dmppe_json
from mp3d_ros.inference.estimator import Estimator
from mp3d_ros.model.checkpoint import Checkpoint, save_checkpoint
from mp3d_ros.model.network import build_network
from mp3d_ros.synthetic.scenes import SceneConfig, write_dataset
from mp3d_ros.training.config import NORMALIZATIONS, load_train_config, model_config
from mp3d_ros.training.data import read_rgb
from mp3d_ros.training.state import list_checkpoints, load_init_weights, load_resume_checkpoint

REPO = Path(__file__).resolve().parents[1]
STEPS = 24
CONFIG = """
model: {{preset: lite, input_size: [128, 96]}}
datasets: [{{kind: synthetic, path: {scenes}}}]
batch_size: 2
workers: 0
schedule: {{steps: {steps}, warmup_steps: 3}}
optim: {{lr: 2.0e-3}}
augment: {{scale_range: [0.9, 1.1], rotation_deg: 10.0, occluder_probability: 0.0}}
init: {{backbone_weights: {weights}}}
normalization: movenet
validation: {{kind: synthetic, path: {scenes}, max_images: 4, batch_size: 4}}
log_every: 1
checkpoint_every: 8
keep_checkpoints: 0
progress: false
"""


@pytest.fixture(scope="module")
def config_path(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("training")
    write_dataset(root / "scenes", SceneConfig(size=(128, 96), people=(1, 3)), 4, seed=5, progress=False)
    path = root / "train.yaml"
    path.write_text(CONFIG.format(scenes=root / "scenes", steps=STEPS,
                                  weights=REPO / "models" / "movenet_multipose.safetensors"))
    return path


def torchrun(config: Path, out_dir: Path, *extra: str, device: str = "cpu") -> subprocess.Popen:
    """``torchrun --standalone --nproc_per_node 2 -m mp3d_ros.cli.train`` (gloo on the CPU, NCCL on GPUs)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "mp3d_ros.cli.train", "--config", str(config), "--set", f"out_dir={out_dir}",
               "--set", f"device={device}", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def finish(process: subprocess.Popen) -> None:
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-4000:]


def records(out_dir: Path) -> tuple[dict[int, dict], list[dict]]:
    """metrics.jsonl as ({step: training record}, [validation records]); later lines win."""
    train, validation = {}, []
    for line in (out_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "validation" in record:
            validation.append(record)
        else:
            train[record["step"]] = record
    return train, validation


@pytest.fixture(scope="module")
def uninterrupted(config_path: Path) -> Path:
    out_dir = config_path.parent / "uninterrupted"
    finish(torchrun(config_path, out_dir))
    return out_dir


def test_two_processes_lower_the_loss_and_log_everything(uninterrupted: Path) -> None:
    train, validation = records(uninterrupted)
    assert sorted(train) == list(range(1, STEPS + 1))
    total = np.array([train[s]["loss"]["total"] for s in range(1, STEPS + 1)])
    assert total[-6:].mean() < 0.8 * total[:6].mean(), total  # measured: 0.67
    lr = np.array([train[s]["lr"] for s in range(1, STEPS + 1)])
    # DRM §4.1: linear warm-up over 3 steps to the peak, then linear decay reaching 0 after the end.
    expected = [(s + 1) / 3 if s < 3 else (STEPS - s) / (STEPS - 3) for s in range(STEPS)]
    np.testing.assert_allclose(lr, 2e-3 * np.array(expected))
    assert {"center", "heatmap", "offset", "root_depth", "geometric", "total"} <= set(train[1]["loss"])
    assert [r["step"] for r in validation] == [STEPS] and 0 <= validation[0]["validation"]["pck_rel"] <= 100
    assert [s for s, _ in list_checkpoints(uninterrupted)] == [8, 16, 24]
    assert list((uninterrupted / "tensorboard").glob("events.out.tfevents.*"))


def test_killed_run_resumes_at_its_step_with_the_same_schedule_and_weights(
        config_path: Path, uninterrupted: Path) -> None:
    out_dir = config_path.parent / "killed"
    process = torchrun(config_path, out_dir)
    deadline = time.monotonic() + 240
    while not (out_dir / "checkpoints" / "step_00000008.pt").exists():
        assert process.poll() is None and time.monotonic() < deadline, "no checkpoint at step 8"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)  # torchrun stops its workers mid-run
    process.communicate(timeout=60)
    kept = [s for s, _ in list_checkpoints(out_dir)]
    assert kept and kept[-1] < STEPS, "the run finished before it was killed"

    finish(torchrun(config_path, out_dir, "--resume", str(out_dir)))
    resumed, _ = records(out_dir)
    reference, _ = records(uninterrupted)
    for step in range(kept[-1] + 1, STEPS + 1):
        assert resumed[step]["lr"] == reference[step]["lr"]
        assert resumed[step]["loss"] == reference[step]["loss"]  # bit for bit on the CPU
    final = torch.load(out_dir / "checkpoints" / "step_00000024.pt", weights_only=True)
    expected = torch.load(uninterrupted / "checkpoints" / "step_00000024.pt", weights_only=True)
    assert final["step"] == STEPS and final["scheduler_state"]["last_epoch"] == STEPS
    for name, tensor in expected["model_state"].items():
        assert torch.equal(final["model_state"][name], tensor), name


def test_trained_checkpoint_serves_inference(config_path: Path, uninterrupted: Path) -> None:
    checkpoint = uninterrupted / "checkpoints" / "step_00000024.pt"
    estimator = Estimator(checkpoint, device="cpu", threads=1)
    assert estimator.pipeline.normalization == NORMALIZATIONS["movenet"]
    image = read_3dmppe_json(config_path.parent / "scenes" / "annotations.json", "muco_21")[0]
    people = estimator.estimate(read_rgb(config_path.parent / "scenes" / image.file_name), image.intrinsics)
    assert people.skeleton == "mupots_17" and np.isfinite(people.keypoints_m).all()


def test_resume_refuses_corrupt_and_mismatched_checkpoints(
        config_path: Path, uninterrupted: Path, tmp_path: Path, capsys) -> None:
    good = uninterrupted / "checkpoints" / "step_00000008.pt"
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert main(["--config", str(config_path), "--set", f"out_dir={tmp_path / 'run'}",
                 "--resume", str(corrupt)]) == 2
    assert f"checkpoint {corrupt} is corrupt" in capsys.readouterr().err

    config = load_train_config(config_path)
    cases = {
        "another model: head_width (96 -> 64)": (["model.head_width=64"], 2),
        "another setup: optim.lr (0.002 -> 0.001)": (["optim.lr=1e-3"], 2),
        "trained with 2 processes, this run has 1": ([], 1),
    }
    for message, (overrides, world_size) in cases.items():
        changed = load_train_config(config_path, overrides)
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            load_resume_checkpoint(good, changed, model_config(changed), world_size)
    assert load_resume_checkpoint(good, config, model_config(config), 2).step == 8
    with pytest.raises(ValueError, match="input size 128x96, expected 160x96"):
        changed = load_train_config(config_path, ["model.input_size=[160, 96]"])
        load_resume_checkpoint(good, changed, model_config(changed), 2)

    exported = tmp_path / "exported.pt"
    network = build_network(model_config(config))
    save_checkpoint(exported, Checkpoint(network.state_dict(), model_config(config).to_dict(), "mupots_17",
                                         (128, 96), NORMALIZATIONS["movenet"].to_dict()))
    with pytest.raises(ValueError, match="not a training checkpoint"):
        load_resume_checkpoint(exported, config, model_config(config), 2)


def test_backbone_starts_from_movenet_weights(config_path: Path) -> None:
    config = load_train_config(config_path)
    network = build_network(model_config(config))
    load_init_weights(network, config.init, model_config(config))
    from safetensors.torch import load_file

    movenet = load_file(str(REPO / "models" / "movenet_multipose.safetensors"))
    for name, tensor in network.backbone.state_dict().items():
        assert torch.equal(tensor, movenet[f"backbone.{name}"].float()), name
    wrong = load_train_config(config_path, ["init.backbone_prefix=encoder."])
    with pytest.raises(ValueError, match="no keys under prefix 'encoder.'"):
        load_init_weights(network, wrong.init, model_config(wrong))
    strict = load_train_config(config_path, ["init.backbone_prefix=backbone.encoder."])
    with pytest.raises(ValueError, match="missing keys"):
        load_init_weights(network, strict.init, model_config(strict))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_cuda_training_with_amp_workers_and_resume(config_path: Path, tmp_path: Path, amp: str) -> None:
    overrides = [f"amp={amp}", "device=cuda", "workers=2", "schedule.steps=6", "checkpoint_every=3",
                 f"out_dir={tmp_path}"]
    assert main(["--config", str(config_path), *[f"--set={o}" for o in overrides]]) == 0
    train, validation = records(tmp_path)
    assert sorted(train) == list(range(1, 7)) and all(np.isfinite(r["loss"]["total"]) for r in train.values())
    assert [r["step"] for r in validation] == [6]
    estimator = Estimator(tmp_path / "checkpoints" / "step_00000006.pt", device="cuda")
    assert estimator.pipeline.input_size == (128, 96)
    again = tmp_path / "again"
    again.mkdir()
    (again / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "step_00000003.pt").rename(again / "checkpoints" / "step_00000003.pt")
    overrides[-1] = f"out_dir={again}"
    assert main(["--config", str(config_path), *[f"--set={o}" for o in overrides], "--resume", str(again)]) == 0
    resumed, _ = records(again)
    assert sorted(resumed) == [4, 5, 6] and all(resumed[s]["lr"] == train[s]["lr"] for s in (4, 5, 6))


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_two_gpus_with_nccl(config_path: Path, tmp_path: Path) -> None:
    finish(torchrun(config_path, tmp_path, "--set", "schedule.steps=6", "--set", "checkpoint_every=3",
                    device="cuda"))
    train, _ = records(tmp_path)
    assert sorted(train) == list(range(1, 7)) and all(np.isfinite(r["loss"]["total"]) for r in train.values())
