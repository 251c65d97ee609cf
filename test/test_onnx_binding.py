"""onnxruntime writing into torch tensors (IO binding), TensorRT only where its library loads, and
the onnxruntime GPU path: letterbox, bound network and decoding on the GPU, as CUDA graphs."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from mp3d_ros.inference import estimator as estimator_module  # noqa: E402
from mp3d_ros.inference.estimator import Estimator, OnnxRunner, open_onnx_session  # noqa: E402
from mp3d_ros.inference.export import export_onnx  # noqa: E402
from mp3d_ros.inference.onnx_binding import BoundSession, tensorrt_libraries_found  # noqa: E402
from mp3d_ros.inference.pipelines import load_pipeline  # noqa: E402

INPUT_SIZE = (192, 160)  # small: the export and every run stay fast


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple:
    pipeline = load_pipeline("movenet-lift", input_size=INPUT_SIZE)
    path = tmp_path_factory.mktemp("onnx") / "movenet_lift.onnx"
    export_onnx(pipeline, path)
    return pipeline, path


def _batch(seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.normal(0, 1, (1, 3, INPUT_SIZE[1], INPUT_SIZE[0])).astype(np.float32))


def test_bound_outputs_equal_plain_runs_and_are_written_in_place(exported) -> None:
    pipeline, path = exported
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = list(pipeline.output_names)
    first = _batch(0)
    bound = BoundSession(session, names, first)
    addresses = [t.data_ptr() for t in bound.outputs]
    for seed in (1, 2):
        batch = _batch(seed)
        plain = session.run(names, {session.get_inputs()[0].name: batch.numpy()})
        found = bound.run(batch)
        assert [t.data_ptr() for t in found] == addresses  # the same tensors, overwritten
        for a, b in zip(found, plain):
            assert tuple(a.shape) == b.shape
            np.testing.assert_array_equal(a.numpy(), b)
    with pytest.raises(ValueError, match=r"bound for inputs of shape \(1, 3, 160, 192\)"):
        bound.run(torch.zeros(2, 3, INPUT_SIZE[1], INPUT_SIZE[0]))
    with pytest.raises(ValueError, match="contiguous"):
        bound.run(first.to(memory_format=torch.channels_last))


def test_tensorrt_library_probe() -> None:
    assert tensorrt_libraries_found(("libmp3d_ros_no_such_library.so.99",)) is False
    assert tensorrt_libraries_found(("libmp3d_ros_no_such_library.so.99", "libc.so.6")) is True


def test_tensorrt_is_not_asked_for_without_its_library(exported, monkeypatch, caplog) -> None:
    """onnxruntime-gpu lists TensorRT whether or not TensorRT is installed; asked for it without
    the library, a session prints an error and starts again. The probe keeps it out."""
    _, path = exported
    asked: list = []

    class Session:
        def __init__(self, file, sess_options=None, providers=None) -> None:
            asked.append(providers)

        def get_providers(self) -> list[str]:
            return [p[0] if isinstance(p, tuple) else p for p in asked[-1]]

    every = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: every)
    monkeypatch.setattr(onnxruntime, "InferenceSession", Session)
    monkeypatch.setattr(estimator_module, "tensorrt_libraries_found", lambda: False)
    with caplog.at_level(logging.INFO, logger=estimator_module.__name__):
        open_onnx_session(path, torch.device("cuda"))
    assert [p[0] if isinstance(p, tuple) else p for p in asked[-1]] == every[1:]
    assert "TensorRT is not tried" in caplog.text
    monkeypatch.setattr(estimator_module, "tensorrt_libraries_found", lambda: True)
    open_onnx_session(path, torch.device("cuda"))
    assert asked[-1][0][0] == "TensorrtExecutionProvider"


def test_a_cpu_session_on_a_cuda_device_decodes_on_the_cpu(exported, caplog) -> None:
    pipeline, path = exported
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with caplog.at_level(logging.WARNING, logger=estimator_module.__name__):
        runner = OnnxRunner(session, pipeline, torch.device("cuda"), cuda_graph=True)
    assert runner.device == torch.device("cpu") and not runner.cuda_graph
    assert runner.name == "onnxruntime:CPUExecutionProvider"
    assert "started no GPU provider" in caplog.text


def _cuda_provider() -> bool:
    return torch.cuda.is_available() and "CUDAExecutionProvider" in onnxruntime.get_available_providers()


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda_provider(), reason="needs a CUDA GPU and onnxruntime-gpu's CUDA provider")
def test_onnxruntime_on_the_gpu_graph_equals_eager_and_torch(tmp_path) -> None:
    from mp3d_ros.synthetic.scenes import SceneConfig, generate_image

    path = tmp_path / "movenet_lift_gpu.onnx"
    export_onnx(load_pipeline("movenet-lift", cuda=True), path)
    graph = Estimator(str(path), device="cuda")
    eager = Estimator(str(path), device="cuda", cuda_graph=False)
    torch_eager = Estimator(device="cuda", precision="fp32", cuda_graph=False)
    assert graph.runner.cuda_graph and graph.runner.device.type == "cuda"
    assert eager.runner.device.type == "cuda" and not eager.runner.cuda_graph
    frames = [generate_image(SceneConfig(size=size, people=(3, 3), depth_range_m=(2.0, 6.0)), 0, 0)
              for size in ((640, 480), (320, 240))]
    for frame in frames * 2:
        a, b, c = (e.estimate(frame.image, frame.intrinsics) for e in (graph, eager, torch_eager))
        assert len(a) == len(b) == len(c) >= 1
        np.testing.assert_allclose(a.keypoints_m, b.keypoints_m, atol=1e-4)
        np.testing.assert_allclose(a.keypoints_m, c.keypoints_m, atol=2e-3)
    assert len(graph.runner._graphs) == 2


def test_export_for_the_gpu_takes_the_models_gpu_input(tmp_path, capsys) -> None:
    from mp3d_ros.cli import export
    from mp3d_ros.inference.movenet_lift import MoveNetLiftConfig

    path = tmp_path / "movenet_lift_gpu.onnx"
    assert export.main(["--model", "movenet-lift", "--gpu", "--out", str(path)]) == 0
    gpu_size = load_pipeline("movenet-lift", cuda=True).input_size
    assert gpu_size != MoveNetLiftConfig().input_size  # the CPU's differs, so the flag did something
    assert Estimator(str(path), device="cpu").input_size == gpu_size
    assert f"{gpu_size[0]}x{gpu_size[1]}" in capsys.readouterr().out
