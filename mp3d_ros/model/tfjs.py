"""Read a TensorFlow.js graph model (``model.json`` + ``.bin`` shards) without TensorFlow.

A TF.js graph model is a JSON file with

- ``modelTopology``: a TensorFlow ``GraphDef`` as JSON (``node`` list with ``name``, ``op``, ``input``
  and ``attr``); weights appear in it as ``Const`` nodes without values;
- ``weightsManifest``: groups of ``{"paths": [shard files], "weights": [entries]}``; each entry has
  ``name``, ``shape``, ``dtype`` and optionally ``quantization``. The bytes of one group are the
  concatenation of its shards, and its weights follow each other in entry order.

Quantisation (as the TF.js runtime decodes it): ``float16`` stores IEEE half floats of float32
weights; ``uint8`` / ``uint16`` store ``q`` with ``value = q * scale + min`` (rounded for int32).

:func:`load_graph_model` returns the dequantised arrays by name and the decoded graph nodes.
:func:`run_graph` executes the graph in numpy (float32, NHWC, the op subset MoveNet uses): a reference
to check a PyTorch port against, not a runtime.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = ["WeightSpec", "GraphNode", "TFJSGraphModel", "load_graph_model", "run_graph"]

# Bytes per stored value of each manifest dtype.
_STORED_DTYPES: dict[str, np.dtype] = {
    "float32": np.dtype("<f4"),
    "int32": np.dtype("<i4"),
    "bool": np.dtype("u1"),
    "float16": np.dtype("<f2"),
    "uint8": np.dtype("u1"),
    "uint16": np.dtype("<u2"),
}
_GRAPH_DTYPES = {
    "DT_FLOAT": np.float32,
    "DT_INT32": np.int32,
    "DT_BOOL": np.bool_,
    "DT_INT64": np.int64,
}


@dataclass(frozen=True)
class WeightSpec:
    """One ``weightsManifest`` entry.

    Attributes:
        name: the graph's tensor name (``Const`` node name).
        shape: array shape.
        dtype: dtype of the dequantised value (``float32``, ``int32`` or ``bool``).
        quantization: ``None`` or the entry's quantization dict (``dtype`` and, for integer
            quantisation, ``scale`` and ``min``).
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    quantization: dict[str, Any] | None


@dataclass(frozen=True)
class GraphNode:
    """One ``GraphDef`` node; ``attr`` values decoded to Python ints, floats, bools, str, lists."""

    name: str
    op: str
    inputs: tuple[str, ...]
    attr: dict[str, Any]


@dataclass(frozen=True, eq=False)
class TFJSGraphModel:
    """A loaded TF.js graph model.

    Attributes:
        weights: dequantised arrays by manifest name, in manifest order.
        specs: the manifest entries, in file order.
        nodes: graph nodes in file order.
        signature: the model's input / output signature (raw JSON).
        meta: the remaining top-level fields (``format``, ``generatedBy``, ``convertedBy``).
    """

    weights: dict[str, np.ndarray]
    specs: tuple[WeightSpec, ...]
    nodes: tuple[GraphNode, ...]
    signature: dict[str, Any]
    meta: dict[str, Any]


def _decode_attr(value: dict[str, Any]) -> Any:
    """A JSON ``AttrValue`` as a Python value (``list`` entries become Python lists)."""
    if "list" in value:
        items = value["list"]
        for key in ("i", "f", "b", "s", "type"):
            if key in items:
                return [_decode_attr({key: item}) for item in items[key]]
        return []
    if "i" in value:
        return int(value["i"])
    if "f" in value:
        return float(value["f"])
    if "b" in value:
        return bool(value["b"])
    if "s" in value:
        return base64.b64decode(value["s"]).decode("utf-8")
    if "type" in value:
        return value["type"]
    return value  # shapes and tensors stay raw: nothing here reads them


def _dequantize(raw: bytes, spec: WeightSpec) -> np.ndarray:
    count = int(np.prod(spec.shape, dtype=np.int64))
    q = spec.quantization
    stored = _STORED_DTYPES[q["dtype"] if q else spec.dtype]
    values = np.frombuffer(raw, dtype=stored, count=count)
    if q is None:
        out = values.astype(
            np.bool_ if spec.dtype == "bool" else _STORED_DTYPES[spec.dtype].newbyteorder("=")
        )
    elif q["dtype"] == "float16":
        if spec.dtype != "float32":
            raise ValueError(f"weight {spec.name}: float16 quantisation of a {spec.dtype} weight")
        out = values.astype(np.float32)
    else:
        affine = values.astype(np.float64) * float(q["scale"]) + float(q["min"])
        out = (
            np.round(affine).astype(np.int32)
            if spec.dtype == "int32"
            else affine.astype(np.float32)
        )
    return out.reshape(spec.shape)


def _spec(entry: dict[str, Any]) -> WeightSpec:
    spec = WeightSpec(
        name=entry["name"],
        shape=tuple(int(d) for d in entry["shape"]),
        dtype=entry["dtype"],
        quantization=entry.get("quantization"),
    )
    q = spec.quantization
    if spec.dtype not in ("float32", "int32", "bool"):
        raise ValueError(f"weight {spec.name}: unsupported dtype {spec.dtype!r}")
    if q is not None:
        if q.get("dtype") not in ("float16", "uint8", "uint16"):
            raise ValueError(f"weight {spec.name}: unsupported quantization {q.get('dtype')!r}")
        if q["dtype"] != "float16" and not ("scale" in q and "min" in q):
            raise ValueError(f"weight {spec.name}: {q['dtype']} quantization without scale and min")
    return spec


def load_graph_model(model_json: str | Path) -> TFJSGraphModel:
    """Read ``model_json`` and its weight shards (looked up beside it).

    Raises:
        ValueError: the file is not a graph model, a shard is missing, its size disagrees with the
            manifest, or a dtype / quantisation is unsupported.
    """
    model_json = Path(model_json)
    document = json.loads(model_json.read_text())
    if document.get("format") != "graph-model" or "modelTopology" not in document:
        raise ValueError(
            f"{model_json} is not a TF.js graph model (format {document.get('format')!r})"
        )
    weights: dict[str, np.ndarray] = {}
    specs: list[WeightSpec] = []
    for group in document["weightsManifest"]:
        shard_paths = [model_json.parent / p for p in group["paths"]]
        missing = [str(p) for p in shard_paths if not p.is_file()]
        if missing:
            raise ValueError(f"{model_json}: weight shards not found: {missing}")
        data = b"".join(p.read_bytes() for p in shard_paths)
        offset = 0
        for entry in group["weights"]:
            spec = _spec(entry)
            stored = _STORED_DTYPES[spec.quantization["dtype"] if spec.quantization else spec.dtype]
            size = int(np.prod(spec.shape, dtype=np.int64)) * stored.itemsize
            if offset + size > len(data):
                raise ValueError(f"{model_json}: shards end inside weight {spec.name}")
            if spec.name in weights:
                raise ValueError(f"{model_json}: weight {spec.name} appears twice in the manifest")
            weights[spec.name] = _dequantize(data[offset : offset + size], spec)
            specs.append(spec)
            offset += size
        if offset != len(data):
            raise ValueError(
                f"{model_json}: shards {group['paths']} hold {len(data)} bytes, the manifest "
                f"describes {offset}"
            )
    nodes = tuple(
        GraphNode(
            name=n["name"],
            op=n["op"],
            inputs=tuple(n.get("input", ())),
            attr={k: _decode_attr(v) for k, v in n.get("attr", {}).items()},
        )
        for n in document["modelTopology"]["node"]
    )
    meta = {
        k: v
        for k, v in document.items()
        if k not in ("modelTopology", "weightsManifest", "signature")
    }
    return TFJSGraphModel(weights, tuple(specs), nodes, document.get("signature", {}), meta)


# ----------------------------------------------------------------------------- reference executor


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF ``SAME`` padding: the extra pixel goes after (bottom / right)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad_hw(
    x: np.ndarray, kernel: tuple[int, int], stride: int, padding: str, value: float = 0.0
) -> np.ndarray:
    if padding == "VALID":
        return x
    ph = _same_padding(x.shape[1], kernel[0], stride)
    pw = _same_padding(x.shape[2], kernel[1], stride)
    return np.pad(x, ((0, 0), ph, pw, (0, 0)), constant_values=value)


def _windows(x: np.ndarray, kh: int, kw: int, stride: int) -> np.ndarray:
    """(N, H', W', C, kh, kw) strided windows of an NHWC array."""
    view = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))
    return view[:, ::stride, ::stride]


def _conv(x: np.ndarray, w: np.ndarray, node: GraphNode, depthwise: bool) -> np.ndarray:
    stride = node.attr["strides"][1]
    kh, kw = w.shape[:2]
    patches = _windows(_pad_hw(x, (kh, kw), stride, node.attr["padding"]), kh, kw, stride)
    if depthwise:  # w: (kh, kw, C, 1)
        return np.einsum("nhwcij,ijc->nhwc", patches, w[..., 0], optimize=True)
    return np.einsum("nhwcij,ijco->nhwo", patches, w, optimize=True)


def _fused(y: np.ndarray, bias: np.ndarray, node: GraphNode) -> np.ndarray:
    for op in node.attr.get("fused_ops", []):
        if op == "BiasAdd":
            y = y + bias
        elif op == "Relu":
            y = np.maximum(y, 0)
        elif op == "Relu6":
            y = np.clip(y, 0, 6)
        else:
            raise NotImplementedError(f"node {node.name}: fused op {op} is not supported")
    return y


def _resize_bilinear(x: np.ndarray, size: np.ndarray, node: GraphNode) -> np.ndarray:
    if node.attr.get("align_corners") or not node.attr.get("half_pixel_centers"):
        raise NotImplementedError(f"node {node.name}: only half-pixel-centre resizing is supported")
    out = x
    for axis, (new, old) in enumerate(zip(size, x.shape[1:3]), start=1):
        source = (np.arange(new) + 0.5) * (old / new) - 0.5
        floor = np.floor(source)
        lower = np.clip(floor, 0, old - 1).astype(int)
        upper = np.clip(np.ceil(source), 0, old - 1).astype(int)
        shape = [1, 1, 1, 1]
        shape[axis] = new
        frac = (source - floor).reshape(shape).astype(np.float32)
        out = np.take(out, lower, axis) * (1 - frac) + np.take(out, upper, axis) * frac
    return out


def _strided_slice(x: np.ndarray, begin, end, strides, attr: dict[str, Any]) -> np.ndarray:
    index: list[Any] = []
    for i, (b, e, s) in enumerate(zip(begin, end, strides)):
        bit = 1 << i
        if attr.get("ellipsis_mask", 0) & bit:
            index.append(Ellipsis)
        elif attr.get("new_axis_mask", 0) & bit:
            index.append(np.newaxis)
        elif attr.get("shrink_axis_mask", 0) & bit:
            index.append(int(b))
        else:
            index.append(
                slice(
                    None if attr.get("begin_mask", 0) & bit else int(b),
                    None if attr.get("end_mask", 0) & bit else int(e),
                    int(s),
                )
            )
    return np.asarray(x[tuple(index)])


def _max_pool(x: np.ndarray, node: GraphNode) -> np.ndarray:
    kh, kw = node.attr["ksize"][1:3]
    stride = node.attr["strides"][1]
    padded = _pad_hw(x, (kh, kw), stride, node.attr["padding"], value=-np.inf)
    return _windows(padded, kh, kw, stride).max(axis=(-2, -1))


def _top_k(x: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-x, axis=-1, kind="stable")[..., : int(k)]
    return np.take_along_axis(x, order, -1), order.astype(np.int32)


_ELEMENTWISE: dict[str, Callable[..., np.ndarray]] = {
    "AddV2": np.add,
    "Sub": np.subtract,
    "Mul": np.multiply,
    "RealDiv": np.divide,
    "FloorDiv": np.floor_divide,
    "Maximum": np.maximum,
    "Minimum": np.minimum,
    "Less": np.less,
    "Greater": np.greater,
    "GreaterEqual": np.greater_equal,
    "Equal": np.equal,
    "LogicalAnd": np.logical_and,
    "SquaredDifference": lambda a, b: (a - b) ** 2,
    "Abs": np.abs,
    "Exp": np.exp,
    "Sigmoid": lambda a: 1 / (1 + np.exp(-a)),
    "Reciprocal": np.reciprocal,
    "Identity": lambda a: a,
    "Select": np.where,
    "AddN": lambda *a: sum(a[1:], a[0]),
}


def _run_node(node: GraphNode, args: list[Any]) -> Any:
    """The output (an array, or a tuple for multi-output ops) of ``node`` on evaluated inputs."""
    op, attr = node.op, node.attr
    if op in _ELEMENTWISE:
        return np.asarray(_ELEMENTWISE[op](*args))
    if op == "_FusedConv2D":
        return _fused(_conv(args[0], args[1], node, depthwise=False), args[2], node)
    if op == "FusedDepthwiseConv2dNative":
        return _fused(_conv(args[0], args[1], node, depthwise=True), args[2], node)
    if op == "DepthwiseConv2dNative":
        return _conv(args[0], args[1], node, depthwise=True)
    simple: dict[str, Callable[[], Any]] = {
        "Cast": lambda: args[0].astype(_GRAPH_DTYPES[attr["DstT"]]),
        "Shape": lambda: np.array(args[0].shape, dtype=np.int32),
        "Size": lambda: np.array(args[0].size, dtype=np.int32),
        "Reshape": lambda: args[0].reshape([int(d) for d in np.ravel(args[1])]),
        "Squeeze": lambda: np.squeeze(args[0], axis=tuple(attr["squeeze_dims"])),
        "ExpandDims": lambda: np.expand_dims(args[0], int(args[1])),
        "StridedSlice": lambda: _strided_slice(args[0], *args[1:4], attr),
        "Pack": lambda: np.stack(args, axis=attr.get("axis", 0)),
        "Unpack": lambda: tuple(np.moveaxis(args[0], attr.get("axis", 0), 0)),
        "ConcatV2": lambda: np.concatenate(args[:-1], axis=int(args[-1])),
        "Split": lambda: tuple(np.split(args[1], attr["num_split"], axis=int(args[0]))),
        "Tile": lambda: np.tile(args[0], args[1]),
        "Range": lambda: np.arange(args[0], args[1], args[2], dtype=np.float32),
        "Fill": lambda: np.full(args[0], args[1]),
        "Sum": lambda: args[0].sum(axis=int(args[1]), keepdims=attr.get("keep_dims", False)),
        "Max": lambda: args[0].max(axis=int(args[1]), keepdims=attr.get("keep_dims", False)),
        "ArgMax": lambda: args[0].argmax(axis=int(args[1])).astype(np.int32),
        "TopKV2": lambda: _top_k(args[0], args[1]),
        "GatherNd": lambda: args[0][tuple(np.moveaxis(args[1], -1, 0))],
        "MaxPool": lambda: _max_pool(args[0], node),
        "ResizeBilinear": lambda: _resize_bilinear(args[0], args[1], node),
    }
    if op not in simple:
        raise NotImplementedError(
            f"node {node.name}: op {op} is not supported by the reference executor"
        )
    return simple[op]()


def run_graph(
    model: TFJSGraphModel, feeds: dict[str, np.ndarray], fetches: list[str]
) -> dict[str, np.ndarray]:
    """Evaluate ``fetches`` (``"node"`` or ``"node:k"``) given ``feeds`` for the placeholders.

    Only the nodes the fetches depend on are evaluated, in float32 / int32 like TF.js.
    """
    nodes = {n.name: n for n in model.nodes}
    values: dict[str, Any] = {}

    def tensor(ref: str) -> np.ndarray:
        name, _, slot = ref.partition(":")
        value = evaluate(name)
        return value[int(slot or 0)] if isinstance(value, tuple) else value

    def evaluate(name: str) -> Any:
        if name in values:
            return values[name]
        stack = [name]
        while stack:  # iterative post-order: the graph is deeper than Python's recursion limit
            current = stack[-1]
            pending = [
                i.partition(":")[0]
                for i in nodes[current].inputs
                if not i.startswith("^") and i.partition(":")[0] not in values
            ]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            if current in values:
                continue
            node = nodes[current]
            if node.op == "Const":
                values[current] = model.weights[current]
            elif node.op == "Placeholder":
                values[current] = np.asarray(feeds[current])
            else:
                args = [tensor(i) for i in node.inputs if not i.startswith("^")]
                values[current] = _run_node(node, args)
        return values[name]

    return {ref: tensor(ref) for ref in fetches}
