"""checkpoint.py: atomic round trip and clear refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mp3d_ros.inference.estimator import network_at
from mp3d_ros.model.checkpoint import Checkpoint, load_checkpoint, release_checkpoint, save_checkpoint


def make_checkpoint(step: int = 3) -> Checkpoint:
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.ones(1, 4)).sum().backward()
    optimizer.step()
    return Checkpoint(
        model_state=model.state_dict(), model_config={"backbone": "mobilenet_fpn", "width": 1.0},
        joint_set="mupots_17", input_size=(416, 256),
        normalization={"mean": [123.7, 116.3, 103.5], "std": [58.4, 57.1, 57.4]}, step=step,
        optimizer_state=optimizer.state_dict(), train_config={"steps": 10},
        extra={"note": "test"},
    )


def test_round_trip(tmp_path) -> None:
    path = tmp_path / "run" / "last.pt"
    original = make_checkpoint()
    save_checkpoint(path, original)
    loaded = load_checkpoint(path, joint_set="mupots_17", input_size=(416, 256))
    assert loaded.step == 3 and loaded.input_size == (416, 256)
    assert loaded.model_config == original.model_config and loaded.extra == {"note": "test"}
    for name, tensor in original.model_state.items():
        assert torch.equal(loaded.model_state[name], tensor)
    assert loaded.optimizer_state["state"][0]["step"] == original.optimizer_state["state"][0]["step"]
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary left behind


def test_overwrite_is_atomic_when_writing_fails(tmp_path, monkeypatch) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, make_checkpoint(step=1))

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", fail)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, make_checkpoint(step=2))
    monkeypatch.undo()
    assert load_checkpoint(path).step == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_refusals(tmp_path) -> None:
    path = tmp_path / "c.pt"
    save_checkpoint(path, make_checkpoint())
    with pytest.raises(ValueError, match="joint set 'mupots_17', expected 'muco_21'"):
        load_checkpoint(path, joint_set="muco_21")
    with pytest.raises(ValueError, match="input size 416x256, expected 832x512"):
        load_checkpoint(path, input_size=(832, 512))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="truncated.pt is corrupt"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ValueError, match="not an mp3d_ros checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")


def conv_norm(variance: float) -> torch.nn.Sequential:
    """Conv -> batch norm whose running variance is ``variance`` (7.7e4 in the trained lite net)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).eval()
    model[1].running_var.fill_(variance)
    model[1].running_mean.fill_(40.0)
    return model


def test_release_keeps_values_beyond_float16_in_float32(tmp_path) -> None:
    """Halving a running variance of 7.7e4 (float16 ends at 6.55e4) would store infinity and
    the release would be refused as corrupt; that tensor stays float32, the rest is halved."""
    checkpoint = make_checkpoint()
    state = {**{f"norm.{k}": v for k, v in conv_norm(7.7e4)[1].state_dict().items()}, **checkpoint.model_state}
    released = release_checkpoint(Checkpoint(**{**checkpoint.__dict__, "model_state": state}))
    assert released.model_state["norm.running_var"].dtype == torch.float32
    assert released.model_state["norm.running_mean"].dtype == torch.float16
    assert released.model_state["weight"].dtype == torch.float16
    assert released.model_state["norm.num_batches_tracked"].dtype == torch.int64
    save_checkpoint(tmp_path / "release.pt", released)
    loaded = load_checkpoint(tmp_path / "release.pt")
    assert torch.equal(loaded.model_state["norm.running_var"], state["norm.running_var"])


@pytest.mark.parametrize("variance", [7.7e4, 4.0])
def test_float16_network_keeps_only_out_of_range_norms_float32(variance: float) -> None:
    model = conv_norm(variance)
    images = torch.randn(2, 3, 8, 8) * 300 + 100
    expected = model(images)
    half = network_at(conv_norm(variance), torch.device("cpu"), torch.float16)
    assert half[0].weight.dtype == torch.float16
    assert half[1].running_var.dtype == (torch.float32 if variance > 65504 else torch.float16)
    got = half(images.half())
    assert got.dtype == torch.float16 and torch.isfinite(got).all()
    # float16's rounding of the convolution: 1e-3 of the largest output
    torch.testing.assert_close(got.float(), expected, atol=1e-3 * float(expected.abs().max()), rtol=0)


def test_onnx_float16_weights_keep_values_beyond_float16_in_float32() -> None:
    """The ONNX export's float16 storage leaves an initializer of 7.7e4 in float32 (as the
    released checkpoint does) and reads the others through Casts: the graph computes as before."""
    onnx = pytest.importorskip("onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    from mp3d_ros.inference.export import store_weights_in_float16

    big = numpy_helper.from_array(np.full(3, 7.7e4, dtype=np.float32), "variance")
    small = numpy_helper.from_array(np.array([0.5, -2.0, 3.25], dtype=np.float32), "scale")
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "scale"], ["scaled"]), helper.make_node("Add", ["scaled", "variance"], ["y"])],
        "float16_storage", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])], initializer=[big, small])
    # The IR version of opset 17, not the installed onnx's newest, which an older onnxruntime refuses.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    store_weights_in_float16(model)
    onnx.checker.check_model(model, full_check=True)
    kinds = {i.name: i.data_type for i in model.graph.initializer}
    assert kinds == {"variance": TensorProto.FLOAT, "scale__fp16": TensorProto.FLOAT16}
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.array([1.0, 2.0, 4.0], dtype=np.float32)
    np.testing.assert_array_equal(session.run(None, {"x": x})[0], x * np.array([0.5, -2.0, 3.25]) + 7.7e4)
