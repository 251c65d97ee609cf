"""ONNX export (``mp3d-export``'s library): write a model's network as ONNX, verified against torch before it is kept.

The exported graph is the network alone (batch of normalised images in, the named maps out, batch
size dynamic); decoding stays in torch (:mod:`mp3d_ros.inference.pipelines`), because its top-K and gathers
are cheap there and export poorly. The file carries the metadata the
:class:`~mp3d_ros.inference.estimator.Estimator` checks on load (kind, joint set, input size, normalisation,
output names, and the model config for the papers' network). Before the file is written it passes
``onnx.checker`` and onnxruntime (CPU) must reproduce torch's maps on a random and on a synthetic
input within the tolerance; otherwise nothing is written.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from mp3d_ros.inference.pipelines import Pipeline
from mp3d_ros.inference.preprocess import letterbox_batch
from mp3d_ros.model.checkpoint import fits_float16

__all__ = ["ExportCheck", "export_onnx", "store_weights_in_float16", "synthetic_test_image"]

DEFAULT_OPSET = 17


class ExportCheck(dict):
    """Worst relative difference per output name between onnxruntime and torch."""


def synthetic_test_image(width: int, height: int, seed: int = 0) -> np.ndarray:
    """An (H, W, 3) uint8 image with structure at every scale (gradients, discs, bars, noise).

    Random noise alone leaves activations near their means; structure drives the network through
    its non-linear range as a real image does.
    """
    import cv2

    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[:height, :width]
    image = np.stack([xs * 255 / width, ys * 255 / height, (xs + ys) * 127 / (width + height)], -1)
    image = image.astype(np.uint8)
    for _ in range(12):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.circle(image, centre, int(rng.integers(4, max(5, min(width, height) // 4))), colour, -1)
        cv2.line(image, centre, (int(rng.integers(0, width)), int(rng.integers(0, height))), colour,
                 int(rng.integers(2, 12)))
    noise = rng.normal(0, 6, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def _relative_difference(reference: np.ndarray, other: np.ndarray) -> float:
    """max |a - b| / max(|a|), the scale of the map (so near-zero entries do not dominate)."""
    scale = max(float(np.abs(reference).max()), 1e-6)
    return float(np.abs(reference - other).max()) / scale


def _check_with_onnxruntime(path: Path, network: torch.nn.Module, inputs: Sequence[torch.Tensor],
                            names: Sequence[str], tolerance: float) -> ExportCheck:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = ExportCheck({name: 0.0 for name in names})
    for batch in inputs:
        with torch.inference_mode():
            expected = [t.numpy() for t in network(batch)]
        found = session.run(list(names), {"images": batch.numpy()})
        for name, want, got in zip(names, expected, found):
            if want.shape != got.shape:
                raise ValueError(f"ONNX output {name} has shape {got.shape}, torch gives {want.shape}")
            worst[name] = max(worst[name], _relative_difference(want, got))
    bad = {name: value for name, value in worst.items() if not value <= tolerance}
    if bad:
        raise ValueError(f"onnxruntime differs from torch beyond {tolerance:g} (relative): {bad}")
    return worst


def store_weights_in_float16(model) -> None:
    """Turn ``model``'s float32 initializers into float16 ones, each read through a Cast back to
    float32: half the file, the same float32 arithmetic when the weights came from float16 (a
    released checkpoint) and batch norms were not folded into convolutions. Initializers with
    values beyond float16's range (a batch norm's running variance can be) stay float32, as the
    released checkpoint keeps them."""
    import onnx
    from onnx import numpy_helper

    casts = []
    for initializer in model.graph.initializer:
        if initializer.data_type != onnx.TensorProto.FLOAT:
            continue
        values = numpy_helper.to_array(initializer)
        if not fits_float16(torch.from_numpy(values)):
            continue
        name = initializer.name
        half = numpy_helper.from_array(values.astype(np.float16), f"{name}__fp16")
        initializer.CopyFrom(half)
        casts.append(onnx.helper.make_node("Cast", [half.name], [name], to=onnx.TensorProto.FLOAT,
                                           name=f"{name}__to_fp32"))
    # Casts first: nodes must come after the values they read (topological order).
    nodes = casts + list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def export_onnx(pipeline: Pipeline, out: str | Path, opset: int = DEFAULT_OPSET,
                tolerance: float = 1e-3, seed: int = 0, float16_weights: bool = False) -> ExportCheck:
    """Export ``pipeline``'s network to ``out`` (atomically, only if verification passes);
    ``float16_weights`` stores the weights in half precision (:func:`store_weights_in_float16`)."""
    import onnx

    out = Path(out)
    network = pipeline.network().float().eval()
    width, height = pipeline.input_size
    torch.manual_seed(seed)
    random_batch = torch.randn(2, 3, height, width)
    if pipeline.normalization.std[0] == 1.0:  # raw 0-255 pixels (MoveNet normalises inside)
        random_batch = random_batch.mul(64).add(128).clamp(0, 255)
    synthetic, _ = letterbox_batch([synthetic_test_image(width + 40, height - 24, seed)],
                                   pipeline.input_size, pipeline.normalization)
    names = list(pipeline.output_names)
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(handle)
    try:
        torch.onnx.export(
            network, (random_batch[:1],), temporary, input_names=["images"], output_names=names,
            opset_version=opset, dynamo=False,
            # Folding batch norms into convolutions makes weights that float16 cannot hold.
            do_constant_folding=not float16_weights,
            dynamic_axes={"images": {0: "batch"}, **{n: {0: "batch"} for n in names}},
        )
        model = onnx.load(temporary)
        onnx.helper.set_model_props(model, pipeline.onnx_metadata())
        if float16_weights:
            store_weights_in_float16(model)
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, temporary)
        check = _check_with_onnxruntime(Path(temporary), network,
                                        [random_batch, synthetic.contiguous()], names, tolerance)
        os.replace(temporary, out)
    finally:
        Path(temporary).unlink(missing_ok=True)
    return check
