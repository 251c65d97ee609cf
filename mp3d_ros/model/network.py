"""The papers' network: backbone -> stride-4 features -> MAR / DRM heads.

Combines (see DESIGN.md): DRM's decoupled representation (2D pose regressed from the person
*center*, the mean of the visible joints; depths read at the *root*, the pelvis) with disentangled
per-joint offset and relative-depth branches (DRM Eq. 3) and PDQM (Eq. 4); MAR's per-joint
heatmaps for the structured 2.5D pose (Eq. 3), Laplace uncertainty of the regressed root depth
(Eq. 4-6) and of the geometric root depth (Eq. 9); HDNet's focal-normalised depth (Eq. 7) or its
log-depth bins.

Output maps (:class:`NetworkOutput`), all at stride 4, shape (B, C, h, w) with h = H/4, w = W/4.
Map pixel (x, y) is centred on input pixel ``u = 4 x + 1.5``, ``v = 4 y + 1.5`` (half-pixel
centres, as :func:`mp3d_ros.geometry.camera.resize_transform`). Offsets are in map pixels and point *from*
the pixel that holds them *to* the target: ``target = (x, y) + offset``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from mp3d_ros.geometry.depth import decode_log_depth_bins
from mp3d_ros.geometry.skeleton import get_joint_set
from mp3d_ros.model.config import ModelConfig
from mp3d_ros.model.heads import ConvHead, DisentangledHead, PoseGuidedDepthQuery
from mp3d_ros.model.hrnet import hrnet_w32
from mp3d_ros.model.mobilenet_fpn import FeatureInfo, mobilenet_fpn_movenet

__all__ = ["NetworkOutput", "PoseNetwork", "build_network"]


class NetworkOutput(NamedTuple):
    """Named output maps; J joints, h x w map pixels.

    Attributes:
        center: (B, 1, h, w) person-center heatmap (Gaussian target in [0, 1], MSE-trained, raw).
        heatmaps: (B, J, h, w) per-joint heatmaps of *seen* joints (same scale as ``center``).
        offsets: (B, J, 2, h, w) center->joint offsets (x, y) in map pixels: at a person's center
            pixel q, joint j lies at ``q + offsets[:, j, :, q]``.
        root_to_center: (B, 2, h, w) root->center offset (x, y) in map pixels: at a person's root
            pixel r, the center lies at ``r + root_to_center[:, :, r]`` (DRM's O_e).
        root_depth: (B, 1, h, w) root depth read at the root, in network depth units
            ``Z_m * config.depth_factor(fx, fy)`` (focal-normalised, HDNet Eq. 7, times
            ``depth_scale_px``), with fx, fy the focal lengths of the network input.
        root_sigma: (B, 1, h, w) Laplace scale sigma1 of ``root_depth`` (MAR Eq. 6), same units.
        geo_sigma: (B, 1, h, w) Laplace scale sigma2 of the geometric root depth (MAR Eq. 9), same units.
        rel_depth: (B, J, h, w) root-relative depths ``Z_j - Z_root`` in metres (positive = farther
            than the pelvis), read at the root; the root channel is exactly 0.
        root_depth_logits: (B, N_B, h, w) log-depth-bin logits (``depth_head="log_bins"``), else None.
    """

    center: torch.Tensor
    heatmaps: torch.Tensor
    offsets: torch.Tensor
    root_to_center: torch.Tensor
    root_depth: torch.Tensor
    root_sigma: torch.Tensor
    geo_sigma: torch.Tensor
    rel_depth: torch.Tensor
    root_depth_logits: torch.Tensor | None = None


def _build_backbone(cfg: ModelConfig, norm_layer: Callable[[int], nn.Module]) -> nn.Module:
    if cfg.backbone == "hrnet_w32":
        return hrnet_w32(norm_layer=norm_layer)
    return mobilenet_fpn_movenet()  # MoveNet's own BN epsilon and ReLU6 / ReLU, so its weights load


class PoseNetwork(nn.Module):
    """Backbone + heads. ``forward_features``: (B, 3, H, W) normalised image -> (B, C, h, w);
    ``forward_head``: features -> :class:`NetworkOutput`.

    Attributes:
        feature_info: the backbone's pyramid (name, channels, stride), finest first.
        out_info: the stride-4 map the heads see (after the optional neck).
    """

    def __init__(
        self,
        cfg: ModelConfig,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
        act_layer: Callable[[], nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        joint_set = get_joint_set(cfg.joint_set)
        joints = joint_set.num_joints
        self.backbone = _build_backbone(cfg, norm_layer)
        self.feature_info: list[FeatureInfo] = self.backbone.feature_info
        channels = self.backbone.out_info.channels
        if cfg.neck_channels:
            self.neck = nn.Sequential(
                nn.Conv2d(channels, cfg.neck_channels, 1, bias=False), norm_layer(cfg.neck_channels), act_layer()
            )
            channels = cfg.neck_channels
        else:
            self.neck = nn.Identity()
        self.out_info = FeatureInfo("neck", channels, self.backbone.out_info.stride)

        def head(in_ch: int, out_ch: int) -> ConvHead:
            return ConvHead(in_ch, cfg.head_width, out_ch, norm_layer, act_layer, cfg.separable_heads)

        branch = cfg.joint_branch_channels
        self.center_head = head(channels, 3)  # center heatmap + root->center offset (x, y)
        self.heatmap_head = head(channels, joints)
        self.offset_head = DisentangledHead(channels, joints, branch, 2, norm_layer, act_layer)
        self.rel_depth_head = DisentangledHead(channels, joints, branch, 1, norm_layer, act_layer)
        self.pdqm = PoseGuidedDepthQuery(joints, joint_set.root, branch) if cfg.pdqm else None
        depth_in = channels + (self.pdqm.out_channels if self.pdqm is not None else 0)
        depth_values = cfg.depth_bins if cfg.depth_head == "log_bins" else 1
        self.depth_head = head(depth_in, depth_values + 2)  # depth (or bins), sigma1, sigma2
        root_mask = torch.ones(1, joints, 1, 1)
        root_mask[:, joint_set.root] = 0
        self.register_buffer("root_mask", root_mask, persistent=False)
        self._init_heads()

    def _init_heads(self) -> None:
        for module in (self.center_head, self.heatmap_head, self.depth_head):
            nn.init.normal_(module.out.weight, std=1e-3)
            nn.init.zeros_(module.out.bias)
        for module in (self.offset_head, self.rel_depth_head):
            nn.init.normal_(module.out.weight, std=1e-3)
            nn.init.zeros_(module.out.bias)
        if self.cfg.depth_head == "regression":
            with torch.no_grad():
                self.depth_head.out.bias[0] = self.cfg.depth_init

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised image -> (B, C, H/4, W/4) features (C = ``out_info.channels``)."""
        return self.neck(self.backbone(x))

    def forward_head(self, features: torch.Tensor) -> NetworkOutput:
        """(B, C, h, w) features -> output maps (see :class:`NetworkOutput` for units and signs)."""
        cfg = self.cfg
        b, _, h, w = features.shape
        center_out = self.center_head(features)
        offsets, offset_features = self.offset_head(features)
        offsets = offsets.reshape(b, -1, 2, h, w)
        rel_depth = self.rel_depth_head(features)[0] * self.root_mask
        root_to_center = center_out[:, 1:3]
        depth_in = features
        if self.pdqm is not None:
            depth_in = torch.cat([features, self.pdqm(root_to_center, offsets, offset_features)], dim=1)
        depth_out = self.depth_head(depth_in)
        sigmas = cfg.sigma_min + F.softplus(depth_out[:, -2:])
        logits = None
        if cfg.depth_head == "log_bins":
            logits = depth_out[:, :-2]
            probabilities = logits.softmax(dim=1).movedim(1, -1)
            root_depth = decode_log_depth_bins(probabilities, *cfg.depth_bin_range).unsqueeze(1)
        else:
            root_depth = depth_out[:, :1]
        return NetworkOutput(
            center=center_out[:, :1],
            heatmaps=self.heatmap_head(features),
            offsets=offsets,
            root_to_center=root_to_center,
            root_depth=root_depth,
            root_sigma=sigmas[:, :1],
            geo_sigma=sigmas[:, 1:],
            rel_depth=rel_depth,
            root_depth_logits=logits,
        )

    def forward(self, x: torch.Tensor) -> NetworkOutput:
        return self.forward_head(self.forward_features(x))


def build_network(cfg: ModelConfig, **kwargs) -> PoseNetwork:
    """The network a :class:`ModelConfig` describes (the one builder)."""
    return PoseNetwork(cfg, **kwargs)

