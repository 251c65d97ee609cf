"""HRNet-W32 backbone (Sun et al., "Deep High-Resolution Representation Learning", CVPR 2019).

The published W32 layout used by MAR (§4.2) and DRM (§4.1): a stride-4 stem (two 3x3 stride-2
convs), stage 1 of four bottlenecks (64 -> 256 channels), then stages 2-4 with 1, 4 and 3
multi-resolution modules of four basic blocks per branch; branch widths 32, 64, 128, 256 at strides
4, 8, 16, 32. Each module ends with a fuse layer (upsample: 1x1 conv + BN + nearest upsampling;
downsample: chains of 3x3 stride-2 conv + BN). The output is the HRNetV2 representation
(HigherHRNet / DEKR): all four branches bilinearly upsampled to stride 4 and concatenated
(32 + 64 + 128 + 256 = 480 channels).

Parameter names follow the official repository (``conv1``, ``layer1``, ``transition1``,
``stage2``, ...) so ImageNet checkpoints map by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mp3d_ros.model.mobilenet_fpn import FeatureInfo

__all__ = ["BasicBlock", "Bottleneck", "HRNet", "HRNetConfig", "HighResolutionModule", "hrnet_w32"]

NormLayer = Callable[[int], nn.Module]
ActLayer = Callable[[], nn.Module]


@dataclass(frozen=True)
class HRNetConfig:
    """Stage layout of an HRNet (defaults: W32)."""

    # Channels of the two stem convolutions and of stage 1's bottleneck (expansion 4 -> 4x this).
    stem_channels: int = 64
    # Bottleneck blocks in stage 1.
    stage1_blocks: int = 4
    # Branch widths at strides 4, 8, 16, 32 (W32: 32, 64, 128, 256).
    widths: tuple[int, ...] = (32, 64, 128, 256)
    # Number of multi-resolution modules in stages 2, 3, 4.
    modules_per_stage: tuple[int, ...] = (1, 4, 3)
    # Basic blocks per branch in every module.
    blocks_per_branch: int = 4


def _projection(in_ch: int, out_ch: int, norm_layer: NormLayer) -> nn.Module | None:
    """1x1 conv + norm matching a residual block's skip to its output channels (None if equal)."""
    if in_ch == out_ch:
        return None
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, bias=False), norm_layer(out_ch))


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv-BN with a skip connection."""

    expansion = 1

    def __init__(self, in_ch: int, out_ch: int, norm_layer: NormLayer, act_layer: ActLayer) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=False)
        self.bn1 = norm_layer(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = norm_layer(out_ch)
        self.act = act_layer()
        self.downsample = _projection(in_ch, out_ch, norm_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.downsample is None else self.downsample(x)
        y = self.act(self.bn1(self.conv1(x)))
        return self.act(self.bn2(self.conv2(y)) + skip)


class Bottleneck(nn.Module):
    """ResNet bottleneck: 1x1 -> 3x3 -> 1x1 (x4 channels) with a skip connection."""

    expansion = 4

    def __init__(self, in_ch: int, width: int, norm_layer: NormLayer, act_layer: ActLayer) -> None:
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = norm_layer(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = norm_layer(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = norm_layer(out_ch)
        self.act = act_layer()
        self.downsample = _projection(in_ch, out_ch, norm_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.downsample is None else self.downsample(x)
        y = self.act(self.bn1(self.conv1(x)))
        y = self.act(self.bn2(self.conv2(y)))
        return self.act(self.bn3(self.conv3(y)) + skip)


def _conv_bn(in_ch: int, out_ch: int, stride: int, norm_layer: NormLayer, act: ActLayer | None) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False), norm_layer(out_ch)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """Parallel branches of basic blocks, then every branch receives the sum of all resolutions."""

    def __init__(
        self, widths: tuple[int, ...], num_blocks: int, norm_layer: NormLayer, act_layer: ActLayer
    ) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(*(BasicBlock(w, w, norm_layer, act_layer) for _ in range(num_blocks)))
            for w in widths
        )
        self.fuse_layers = nn.ModuleList()
        for i, w_out in enumerate(widths):
            row = nn.ModuleList()
            for j, w_in in enumerate(widths):
                if j > i:  # coarser source: 1x1 conv, then nearest upsampling in forward
                    row.append(nn.Sequential(nn.Conv2d(w_in, w_out, 1, bias=False), norm_layer(w_out)))
                elif j == i:
                    row.append(nn.Identity())
                else:  # finer source: i - j stride-2 3x3 convs, the last one changes width
                    steps = [_conv_bn(w_in, w_in, 2, norm_layer, act_layer) for _ in range(i - j - 1)]
                    steps.append(_conv_bn(w_in, w_out, 2, norm_layer, None))
                    row.append(nn.Sequential(*steps))
            self.fuse_layers.append(row)
        self.act = act_layer()

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        out = []
        for i, row in enumerate(self.fuse_layers):
            total = xs[i]
            for j, layer in enumerate(row):
                if j == i:
                    continue
                y = layer(xs[j])
                if j > i:
                    y = F.interpolate(y, size=xs[i].shape[-2:], mode="nearest")
                total = total + y
            out.append(self.act(total))
        return out


class HRNet(nn.Module):
    """HRNet backbone: (B, 3, H, W) -> (B, sum(widths), H/4, W/4) (HRNetV2 concatenation).

    Attributes:
        feature_info: the four branches (stride 4, 8, 16, 32) of the last stage.
        out_info: the concatenated stride-4 output.
    """

    def __init__(
        self,
        cfg: HRNetConfig = HRNetConfig(),
        norm_layer: NormLayer = nn.BatchNorm2d,
        act_layer: ActLayer = nn.ReLU,
    ) -> None:
        super().__init__()
        stem = cfg.stem_channels
        self.conv1 = nn.Conv2d(3, stem, 3, 2, 1, bias=False)
        self.bn1 = norm_layer(stem)
        self.conv2 = nn.Conv2d(stem, stem, 3, 2, 1, bias=False)
        self.bn2 = norm_layer(stem)
        self.act = act_layer()
        blocks = [Bottleneck(stem, stem, norm_layer, act_layer)]
        blocks += [Bottleneck(stem * 4, stem, norm_layer, act_layer) for _ in range(cfg.stage1_blocks - 1)]
        self.layer1 = nn.Sequential(*blocks)

        self.transitions = nn.ModuleList()
        self.stages = nn.ModuleList()
        previous = (stem * Bottleneck.expansion,)
        for stage, num_modules in enumerate(cfg.modules_per_stage):
            widths = cfg.widths[: stage + 2]
            self.transitions.append(self._transition(previous, widths, norm_layer, act_layer))
            self.stages.append(nn.Sequential(*(
                HighResolutionModule(widths, cfg.blocks_per_branch, norm_layer, act_layer)
                for _ in range(num_modules)
            )))
            previous = widths
        self.feature_info = [FeatureInfo(f"branch{i}", w, 4 * 2**i) for i, w in enumerate(cfg.widths)]
        self.out_info = FeatureInfo("hrnetv2", sum(cfg.widths), 4)
        self._init_weights()

    @staticmethod
    def _transition(
        previous: tuple[int, ...], widths: tuple[int, ...], norm_layer: NormLayer, act_layer: ActLayer
    ) -> nn.ModuleList:
        """Per new branch: identity, a 3x3 width change, or a 3x3 stride-2 from the coarsest branch."""
        layers = nn.ModuleList()
        for i, w in enumerate(widths):
            if i < len(previous):
                layers.append(
                    nn.Identity() if previous[i] == w else _conv_bn(previous[i], w, 1, norm_layer, act_layer)
                )
            else:
                layers.append(_conv_bn(previous[-1], w, 2, norm_layer, act_layer))
        return layers

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # Residual branches start as the identity (zero-init of the last BN), as in timm's ResNets.
        for m in self.modules():
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)
            elif isinstance(m, Bottleneck):
                nn.init.zeros_(m.bn3.weight)

    def forward_branches(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) -> the four branch maps at strides 4, 8, 16, 32."""
        x = self.act(self.bn1(self.conv1(x)))
        x = self.act(self.bn2(self.conv2(x)))
        xs = [self.layer1(x)]
        for transition, stage in zip(self.transitions, self.stages):
            xs = [layer(xs[min(i, len(xs) - 1)]) for i, layer in enumerate(transition)]
            xs = stage(xs)
        return xs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xs = self.forward_branches(x)
        size = xs[0].shape[-2:]
        ups = [xs[0]] + [F.interpolate(y, size=size, mode="bilinear", align_corners=False) for y in xs[1:]]
        return torch.cat(ups, dim=1)


def _create(cfg: HRNetConfig, **kwargs) -> HRNet:
    return HRNet(cfg, **kwargs)


def hrnet_w32(**kwargs) -> HRNet:
    """HRNet-W32 as published (branch widths 32/64/128/256), stride-4 480-channel output."""
    return _create(HRNetConfig(), **kwargs)
