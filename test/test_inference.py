"""inference.py: live intrinsics, both backends, clear refusals of bad models."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mp3d_ros.geometry.camera import Intrinsics, project
from mp3d_ros.geometry.floor import FloorPlane
from mp3d_ros.inference.estimator import Estimator, onnx_providers


@pytest.fixture(scope="module")
def coco_image() -> np.ndarray:
    path = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "coco" / "000000196141.jpg"
    if not path.is_file():
        pytest.skip(f"{path} is absent: it is the real multi-person image this test runs on")
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def estimator() -> Estimator:
    torch.set_num_threads(2)
    return Estimator(device="cpu")


def cameras(width: int, height: int) -> list[Intrinsics]:
    """A pinhole camera and a raw wide-angle one with another focal length and principal point."""
    return [
        Intrinsics.pinhole(0.8 * width, 0.8 * width, width / 2, height / 2, width, height),
        Intrinsics(np.array([[0.55 * width, 0, width / 2 + 25], [0, 0.56 * width, height / 2 - 18],
                             [0, 0, 1]]), width, height, "plumb_bob", [-0.25, 0.07, 1e-3, -1e-3, 0]),
    ]


def test_default_model_uses_the_live_intrinsics(coco_image, estimator) -> None:
    height, width = coco_image.shape[:2]
    found = [estimator.estimate(coco_image, intr) for intr in cameras(width, height)]
    assert all(len(people) >= 3 for people in found)  # the fixture shows 4 annotated people
    # The 2D detections do not depend on the camera; each 3D pose projects onto them through the
    # camera it was computed with (distortion included).
    seen = ~found[0].inferred
    np.testing.assert_allclose(found[0].uv_px[seen], found[1].uv_px[seen], atol=1e-6)
    for people, intr in zip(found, cameras(width, height)):
        np.testing.assert_allclose(project(people.keypoints_m, intr), people.uv_px, atol=1e-3)
    # A wider lens (shorter focal length) sees the same people closer.
    assert np.median(found[1].root_m[:, 2]) < np.median(found[0].root_m[:, 2])
    assert set(estimator.last_timings_ms) == {"preprocess", "network", "decode"}


def test_stage_timing_changes_no_result(coco_image, estimator) -> None:
    height, width = coco_image.shape[:2]
    intr = cameras(width, height)[1]
    floor = FloorPlane.from_height_pitch(1.4, 10.0)
    timed = [estimator.estimate(coco_image, intr), estimator.estimate(coco_image, intr, floor=floor)]
    assert set(estimator.last_timings_ms) == {"preprocess", "network", "decode", "floor"}
    estimator.stage_timing = False
    try:
        untimed = [estimator.estimate(coco_image, intr), estimator.estimate(coco_image, intr, floor=floor)]
        assert estimator.last_timings_ms == {}
    finally:
        estimator.stage_timing = True
    for a, b in zip(timed, untimed):
        assert len(a) == len(b) >= 3
        for name in ("keypoints_m", "uv_px", "confidence", "score", "root_sigma_m", "depth_cues", "height_m"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_batched_equals_single(coco_image, estimator) -> None:
    height, width = coco_image.shape[:2]
    small = cv2.resize(coco_image, (width // 2, height // 2), interpolation=cv2.INTER_AREA)
    intrinsics = [cameras(width, height)[0], cameras(width // 2, height // 2)[1]]
    batch = estimator.estimate_batch([coco_image, small], intrinsics)
    for people, image, intr in zip(batch, [coco_image, small], intrinsics):
        single = estimator.estimate(image, intr)
        assert len(single) == len(people)
        np.testing.assert_allclose(single.keypoints_m, people.keypoints_m, atol=1e-4)


def test_onnx_backend_matches_torch(coco_image, estimator, tmp_path) -> None:
    from mp3d_ros.inference.export import export_onnx
    from mp3d_ros.inference.pipelines import load_pipeline

    path = tmp_path / "movenet_lift.onnx"
    check = export_onnx(load_pipeline("movenet-lift"), path)
    assert max(check.values()) < 1e-3
    onnx_estimator = Estimator(str(path), device="cpu")
    assert onnx_estimator.backend_name == "onnxruntime:CPUExecutionProvider"
    intr = cameras(coco_image.shape[1], coco_image.shape[0])[1]
    expected, found = estimator.estimate(coco_image, intr), onnx_estimator.estimate(coco_image, intr)
    assert len(found) == len(expected)
    np.testing.assert_allclose(found.keypoints_m, expected.keypoints_m, atol=1e-3)  # within 1 mm
    with pytest.raises(ValueError, match="exported for input size"):
        Estimator(str(path), device="cpu", input_size=(320, 256))


def test_bad_models_and_inputs_are_refused(tmp_path, estimator) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        Estimator(str(tmp_path / "nowhere.pt"), device="cpu")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not a protobuf at all")
    with pytest.raises(ValueError, match="corrupt.onnx is corrupt or not an ONNX model"):
        Estimator(str(corrupt), device="cpu")
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"\x80\x02garbage")
    with pytest.raises(ValueError, match="broken.pt is corrupt"):
        Estimator(str(broken), device="cpu")
    with pytest.raises(ValueError, match="predicts joint set 'mupots_17', not 'muco_21'"):
        Estimator(device="cpu", joint_set="muco_21")
    with pytest.raises(ValueError, match="backend onnxruntime needs an .onnx model"):
        Estimator(device="cpu", backend="onnxruntime")
    image = np.zeros((240, 320, 3), np.uint8)
    with pytest.raises(ValueError, match="image 0 is 320x240 but its CameraInfo describes 640x480"):
        estimator.estimate(image, Intrinsics.pinhole(500, 500, 320, 240, 640, 480))
    with pytest.raises(ValueError, match=r"image 0 must be an \(H, W, 3\) uint8"):
        estimator.estimate(image[..., 0], Intrinsics.pinhole(500, 500, 160, 120, 320, 240))


def test_synthetic_scene_with_an_unseen_distorted_camera(estimator) -> None:
    """A rendered raw (distorted) wide-angle image: 3D joints project onto the reported pixels
    through the given camera, and seen joints lie on the people the renderer drew."""
    from mp3d_ros.synthetic.scenes import SceneConfig, generate_image

    config = SceneConfig(size=(640, 480), focal_range_px=(260.0, 300.0), people=(3, 3),
                         distortion="plumb_bob", depth_range_m=(2.0, 5.0))
    frame = generate_image(config, seed=3, index=0)
    people = estimator.estimate(frame.image, frame.intrinsics)
    assert frame.intrinsics.distortion_model == "plumb_bob" and len(people) >= 1
    np.testing.assert_allclose(project(people.keypoints_m, frame.intrinsics), people.uv_px, atol=1e-3)
    seen = ~people.inferred
    truth = frame.keypoints_img_px[frame.visible]
    distance = np.linalg.norm(people.uv_px[seen][:, None] - truth[None], axis=-1).min(1)
    assert np.median(distance) < 25.0  # px: seen joints are on the rendered bodies


def test_an_empty_batch_gives_no_people(estimator) -> None:
    assert estimator.estimate_batch([], []) == []
    with pytest.raises(ValueError, match="0 images but 1 intrinsics"):
        estimator.estimate_batch([], [Intrinsics.pinhole(500, 500, 320, 240, 640, 480)])


def test_onnx_providers_prefer_tensorrt_with_a_cached_engine_then_cuda_then_cpu(tmp_path) -> None:
    every = {"TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"}
    providers = onnx_providers(every, torch.device("cuda:1"), True, tmp_path)
    assert providers == [
        ("TensorrtExecutionProvider", {"device_id": 1, "trt_fp16_enable": True,
                                       "trt_engine_cache_enable": True, "trt_engine_cache_path": str(tmp_path)}),
        ("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    without_cache = onnx_providers(every, torch.device("cuda"), False, None)
    assert without_cache[0] == ("TensorrtExecutionProvider", {"device_id": 0, "trt_fp16_enable": False})
    # A GPU without TensorRT (onnxruntime-gpu alone), and the CPU, which never takes a GPU provider.
    assert [p[0] if isinstance(p, tuple) else p for p in onnx_providers(
        every - {"TensorrtExecutionProvider"}, torch.device("cuda"), True, None)] == [
        "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert onnx_providers(every, torch.device("cpu"), False, tmp_path) == ["CPUExecutionProvider"]


def test_tensorrt_engines_go_to_the_cache_folder_or_are_not_cached(tmp_path, monkeypatch, caplog) -> None:
    from mp3d_ros.inference import estimator as estimator_module
    from mp3d_ros.inference.onnx_cache import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    assert estimator_module._tensorrt_engine_cache() == tmp_path / "cache" / "tensorrt"
    assert (tmp_path / "cache" / "tensorrt").is_dir()
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "file"))
    with caplog.at_level("WARNING"):
        assert estimator_module._tensorrt_engine_cache() is None
    assert "TensorRT engines will not be cached" in caplog.text
