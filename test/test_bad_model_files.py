"""Bad model files and model settings are refused at load with a ModelFileError (a ValueError)
naming the file and what is wrong: non-finite or changed weights, another architecture, missing
keys, truncated safetensors, malformed ONNX metadata, bad input size / normalisation / max_people."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from mp3d_ros.inference import pipelines
from mp3d_ros.inference.estimator import check_onnx_session
from mp3d_ros.inference.movenet_lift import MOVENET_LIFT_GPU_INPUT
from mp3d_ros.inference.pipelines import PaperPipeline, load_pipeline, pipeline_from_onnx_metadata
from mp3d_ros.inference.preprocess import IMAGENET
from mp3d_ros.model.checkpoint import (
    FORMAT_VERSION,
    Checkpoint,
    ModelFileError,
    load_checkpoint,
    load_model_file,
    release_checkpoint,
    save_checkpoint,
)
from mp3d_ros.model.config import lite_mobilenet_fpn_config
from mp3d_ros.model.lifter import load_lifter

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "models" / "synthetic_lite.pt"
MARKER = 1.2345  # a weight value whose bytes are easy to find in the file


def small_checkpoint(**changes) -> Checkpoint:
    checkpoint = Checkpoint(
        model_state={"layer.weight": torch.full((8, 4), MARKER), "layer.bias": torch.zeros(8)},
        model_config={}, joint_set="mupots_17", input_size=(64, 64),
        normalization={"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]})
    return replace(checkpoint, **changes)


def raw_payload(**changes) -> dict:
    """What save_checkpoint writes, for files it would never write."""
    payload = {"format_version": FORMAT_VERSION, "model_state": {"w": torch.ones(3)},
               "model_config": {}, "joint_set": "mupots_17", "input_size": [64, 64],
               "normalization": {"mean": [0, 0, 0], "std": [1, 1, 1]}}
    payload.update(changes)
    return payload


def test_nan_weights_are_refused_naming_file_and_weight(tmp_path) -> None:
    path = tmp_path / "nan.pt"
    weight = torch.ones(8, 4)
    weight[2, 1] = float("nan")
    save_checkpoint(path, small_checkpoint(model_state={"layer.weight": weight}))
    with pytest.raises(ModelFileError, match=r"nan\.pt: weight 'layer\.weight' has 1 non-finite"):
        load_checkpoint(path)


def test_flipped_bytes_fail_the_content_hash(tmp_path) -> None:
    path = tmp_path / "flipped.pt"
    save_checkpoint(path, small_checkpoint())
    data = bytearray(path.read_bytes())
    offset = data.find(torch.full((4,), MARKER).numpy().tobytes())
    assert offset > 0
    data[offset] ^= 0x01  # still a finite float: only the hash can tell
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=r"flipped\.pt: weights do not match the model_sha256"):
        load_checkpoint(path)


def test_files_without_a_hash_still_load(tmp_path) -> None:
    path = tmp_path / "old.pt"
    torch.save(raw_payload(), path)
    assert "model_sha256" not in torch.load(path, weights_only=True)
    assert load_checkpoint(path).input_size == (64, 64)


def test_shipped_model_carries_its_content_hash() -> None:
    assert "model_sha256" in torch.load(SHIPPED, weights_only=True)
    assert load_checkpoint(SHIPPED).joint_set == "mupots_17"  # and it matches


@pytest.mark.parametrize("changes, message", [
    ({"joint_set": "mupots_99"}, r"joint_set: unknown joint set 'mupots_99'"),
    ({"input_size": [0, 256]}, r"input_size is \[0, 256\], expected \[width, height\] of positive"),
    ({"input_size": [True, 256]}, r"input_size is \[True, 256\]"),
    ({"normalization": {"mean": [0, 0, 0], "std": [58.0, 0.0, 57.0]}},
     r"normalization\.std is \[58\.0, 0\.0, 57\.0\], every value must be > 0"),
    ({"normalization": {"mean": [0, 0], "std": [1, 1, 1]}}, r"normalization\.mean is \[0, 0\]"),
    ({"model_state": {}}, "model_state is not a non-empty mapping"),
    ({"model_state": {"w": [1.0, 2.0]}}, "weight 'w' is a list, not a tensor"),
])
def test_malformed_fields_name_file_and_field(tmp_path, changes, message) -> None:
    path = tmp_path / "bad.pt"
    torch.save(raw_payload(**changes), path)
    with pytest.raises(ModelFileError, match=r"bad\.pt: " + message):
        load_checkpoint(path)


@pytest.fixture(scope="module")
def shipped() -> Checkpoint:
    return load_checkpoint(SHIPPED)


def test_missing_key_and_wrong_architecture_are_refused_at_load(tmp_path, shipped) -> None:
    state = dict(shipped.model_state)
    removed = sorted(state)[0]
    del state[removed]
    missing = tmp_path / "missing_key.pt"
    save_checkpoint(missing, replace(shipped, model_state=state))
    with pytest.raises(ModelFileError, match=rf"missing_key\.pt: weights do not fit .*{removed}"):
        load_pipeline(str(missing))
    other = tmp_path / "other_arch.pt"
    config = {**shipped.model_config, "head_width": 64}  # the weights are for 96
    save_checkpoint(other, replace(shipped, model_config=config))
    with pytest.raises(ModelFileError, match=r"other_arch\.pt: weights do not fit .*size mismatch"):
        load_pipeline(str(other))
    broken = tmp_path / "bad_config.pt"
    save_checkpoint(broken, replace(shipped, model_config={**shipped.model_config, "backbone": "vgg"}))
    with pytest.raises(ModelFileError, match=r"bad_config\.pt: model_config: .*backbone 'vgg'"):
        load_pipeline(str(broken))


def test_truncated_safetensors_name_the_file(tmp_path, monkeypatch) -> None:
    truncated = tmp_path / "lifter.safetensors"
    truncated.write_bytes((REPO / pipelines.LIFTER_WEIGHTS).read_bytes()[:5000])
    with pytest.raises(ModelFileError, match=r"lifter\.safetensors: truncated or not a safetensors"):
        load_model_file(truncated, lambda path: load_lifter(path)[0])
    # The same through the pipeline that loads the shipped files.
    movenet = tmp_path / "movenet.safetensors"
    shutil.copy(REPO / pipelines.MOVENET_WEIGHTS, movenet)
    files = {pipelines.LIFTER_WEIGHTS: truncated, pipelines.MOVENET_WEIGHTS: movenet}
    monkeypatch.setattr(pipelines, "find_share_path", lambda name: files[name])
    with pytest.raises(ModelFileError, match=r"lifter\.safetensors: truncated"):
        load_pipeline("movenet-lift")
    with pytest.raises(ModelFileError, match=r"nowhere\.safetensors: does not exist"):
        load_model_file(tmp_path / "nowhere.safetensors", torch.load)


def test_nan_weights_in_a_safetensors_file_are_refused(tmp_path) -> None:
    from mp3d_ros.model.lifter import save_lifter

    lifter, record = load_lifter(REPO / pipelines.LIFTER_WEIGHTS)
    name, parameter = next(iter(lifter.named_parameters()))
    with torch.no_grad():
        parameter.view(-1)[0] = float("inf")
    path = tmp_path / "inf_lifter.safetensors"
    save_lifter(path, lifter, record)
    with pytest.raises(ModelFileError, match=rf"inf_lifter\.safetensors: weight '{name}' has 1 non-finite"):
        load_model_file(path, lambda p: load_lifter(p)[0])


@pytest.mark.parametrize("input_size, max_people, message", [
    ((100, 100), 6, r"input_size must be \(width, height\), positive multiples of 32, got \(100, 100\)"),
    ((256, -32), 6, r"input_size must be .* got \(256, -32\)"),
    (None, 0, "max_people must be a positive integer, got 0"),
    (None, True, "max_people must be a positive integer, got True"),
])
def test_bad_requests_fail_before_any_file_is_read(input_size, max_people, message) -> None:
    with pytest.raises(ValueError, match=message):
        load_pipeline("movenet-lift", input_size=input_size, max_people=max_people)


def paper_metadata() -> dict[str, str]:
    config = lite_mobilenet_fpn_config(input_size=(128, 96))
    return PaperPipeline(config, IMAGENET, None).onnx_metadata()


@pytest.mark.parametrize("change, message", [
    ({"mp3d_ros.input_size": None}, r"metadata lacks \['mp3d_ros\.input_size'\]"),
    ({"mp3d_ros.input_size": "128by96"}, r"metadata mp3d_ros\.input_size is '128by96'"),
    ({"mp3d_ros.input_size": "100x96"}, r"metadata mp3d_ros\.input_size is '100x96'"),
    ({"mp3d_ros.model_config": "{not json"}, r"metadata mp3d_ros\.model_config is not JSON"),
    ({"mp3d_ros.model_config": json.dumps({"backbone": "vgg"})}, r"metadata mp3d_ros\.model_config: "),
    ({"mp3d_ros.normalization": json.dumps({"mean": [0, 0, 0], "std": [0, 1, 1]})},
     r"metadata mp3d_ros\.normalization is .* 3 positive stds"),
    ({"mp3d_ros.kind": "yolo"}, r"metadata mp3d_ros\.kind is 'yolo'"),
    ({"mp3d_ros.format": "7"}, r"not an mp3d_ros export \(metadata mp3d_ros\.format is '7'"),
    ({"mp3d_ros.sigma_inflation": "nan"}, r"metadata mp3d_ros\.sigma_inflation is 'nan', expected a finite"),
    ({"mp3d_ros.sigma_inflation": "-2"}, r"metadata mp3d_ros\.sigma_inflation is '-2'"),
])
def test_bad_onnx_metadata_names_file_and_key(change, message) -> None:
    metadata = paper_metadata()
    for key, value in change.items():
        if value is None:
            del metadata[key]
        else:
            metadata[key] = value
    with pytest.raises(ModelFileError, match=r"model\.onnx: " + message):
        pipeline_from_onnx_metadata(metadata, Path("model.onnx"))
    with pytest.raises(ValueError, match="max_people must be a positive integer"):
        pipeline_from_onnx_metadata(paper_metadata(), Path("model.onnx"), max_people=0)


def test_the_sigma_calibration_travels_with_the_checkpoint_and_its_export(tmp_path, shipped) -> None:
    calibrated = tmp_path / "calibrated.pt"
    save_checkpoint(calibrated, release_checkpoint(replace(
        shipped, extra={**shipped.extra, "calibration": {"sigma_inflation": 1.7}})))
    pipeline = load_pipeline(str(calibrated))
    assert pipeline.decode_config.sigma_inflation == 1.7
    metadata = pipeline.onnx_metadata()
    assert pipeline_from_onnx_metadata(metadata, Path("m.onnx")).decode_config.sigma_inflation == 1.7
    del metadata["mp3d_ros.sigma_inflation"]  # an export from before the calibration: factor 1
    assert pipeline_from_onnx_metadata(metadata, Path("m.onnx")).decode_config.sigma_inflation == 1.0
    for bad in ({"sigma_inflation": 0.0}, {"sigma_inflation": "wide"}, [1.7]):
        broken = tmp_path / "broken.pt"
        save_checkpoint(broken, replace(shipped, extra={"calibration": bad}))
        with pytest.raises(ModelFileError, match=r'broken\.pt: extra\["calibration"\]'):
            load_pipeline(str(broken))


def test_a_checkpoint_runs_at_its_gpu_input_on_cuda_only(tmp_path, shipped) -> None:
    hinted = tmp_path / "hinted.pt"
    save_checkpoint(hinted, replace(shipped, extra={**shipped.extra, "cuda_input_size": [640, 384]}))
    assert load_pipeline(str(hinted)).input_size == shipped.input_size
    assert load_pipeline(str(hinted), cuda=True).input_size == (640, 384)
    assert load_pipeline(str(hinted), input_size=(320, 192), cuda=True).input_size == (320, 192)
    plain = tmp_path / "plain.pt"
    save_checkpoint(plain, replace(shipped, extra={}))
    assert load_pipeline(str(plain), cuda=True).input_size == shipped.input_size
    assert load_pipeline("movenet-lift", cuda=True).input_size == MOVENET_LIFT_GPU_INPUT
    assert load_pipeline("movenet-lift").input_size != MOVENET_LIFT_GPU_INPUT
    for bad in ([640, 380], [640], "640x384", [True, 384]):
        broken = tmp_path / "broken.pt"
        save_checkpoint(broken, replace(shipped, extra={"cuda_input_size": bad}))
        with pytest.raises(ModelFileError, match=r'broken\.pt: extra\["cuda_input_size"\] is'):
            load_pipeline(str(broken), cuda=True)


def fake_session(outputs, input_shape) -> SimpleNamespace:
    """What check_onnx_session reads of an onnxruntime session."""
    return SimpleNamespace(get_outputs=lambda: [SimpleNamespace(name=n) for n in outputs],
                           get_inputs=lambda: [SimpleNamespace(name="images", shape=input_shape)])


def test_onnx_graph_that_disagrees_with_its_metadata_is_refused_at_load() -> None:
    pipeline = pipeline_from_onnx_metadata(paper_metadata(), Path("model.onnx"))
    names = list(pipeline.output_names)
    check_onnx_session(fake_session(names, ["batch", 3, 96, 128]), pipeline, Path("model.onnx"))
    with pytest.raises(ModelFileError, match=rf"model\.onnx: the graph lacks the outputs \['{names[-1]}'\]"):
        check_onnx_session(fake_session(names[:-1], ["batch", 3, 96, 128]), pipeline, Path("model.onnx"))
    with pytest.raises(ModelFileError, match=r"model\.onnx: the graph's inputs .* not one \(B, 3, 96, 128\)"):
        check_onnx_session(fake_session(names, [1, 3, 256, 256]), pipeline, Path("model.onnx"))
