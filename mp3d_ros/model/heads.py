"""Prediction heads of the papers' network and DRM's pose-guided depth query (PDQM).

- :class:`ConvHead`: MAR §4.2, "one 3x3x256 conv layer, BatchNorm, ReLU and another 1x1xc0 conv";
  optionally depthwise-separable (MoveNet's heads: 3x3 depthwise, 1x1 to the hidden width).
- :class:`DisentangledHead`: DRM §3.2 / DEKR, one independent regressor per joint (Eq. 3,
  ``O_i = F_i(X_i)``): a 1x1 conv splits the features into J groups, then grouped 3x3 and 1x1
  convolutions keep the joints apart.
- :class:`PoseGuidedDepthQuery`: DRM Eq. 4. At every pixel q (a candidate root) the person's
  joints are found by following the root->center offset to the center c(q) = q + O_e(q), then the
  center->joint offsets read there, p_j = c + O_j(c); each joint's own offset-branch features X_j
  are sampled at p_j and concatenated (all joints but the root) to the root-depth head's input.

Map coordinates: pixel centres of the (h, w) output map sit at integer (x, y); x right, y down.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConvHead", "DisentangledHead", "PoseGuidedDepthQuery", "gather_pixels", "pixel_grid", "sample_maps"]

NormLayer = Callable[[int], nn.Module]
ActLayer = Callable[[], nn.Module]


class ConvHead(nn.Module):
    """3x3 conv (or depthwise 3x3 + 1x1) -> norm -> act -> 1x1 conv with bias: (B, C, h, w) -> (B, out, h, w)."""

    def __init__(
        self,
        in_channels: int,
        width: int,
        out_channels: int,
        norm_layer: NormLayer,
        act_layer: ActLayer,
        separable: bool = False,
    ) -> None:
        super().__init__()
        if separable:
            self.conv = nn.Sequential(
                nn.Conv2d(in_channels, in_channels, 3, 1, 1, groups=in_channels, bias=False),
                nn.Conv2d(in_channels, width, 1, bias=False),
            )
        else:
            self.conv = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.norm = norm_layer(width)
        self.act = act_layer()
        self.out = nn.Conv2d(width, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.norm(self.conv(x))))


class DisentangledHead(nn.Module):
    """Per-joint regressors (DRM Eq. 3): (B, C, h, w) -> outputs (B, J*out, h, w), features (B, J*c, h, w).

    Channel ``j * out + k`` of the output is component k of joint j; the features are grouped the same
    way (``c`` channels per joint) and are what :class:`PoseGuidedDepthQuery` samples.
    """

    def __init__(
        self,
        in_channels: int,
        num_joints: int,
        branch_channels: int,
        out_per_joint: int,
        norm_layer: NormLayer,
        act_layer: ActLayer,
    ) -> None:
        super().__init__()
        hidden = num_joints * branch_channels
        self.split = nn.Sequential(nn.Conv2d(in_channels, hidden, 1, bias=False), norm_layer(hidden), act_layer())
        self.branch = nn.Sequential(
            nn.Conv2d(hidden, hidden, 3, 1, 1, groups=num_joints, bias=False), norm_layer(hidden), act_layer()
        )
        self.out = nn.Conv2d(hidden, num_joints * out_per_joint, 1, groups=num_joints)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.branch(self.split(x))
        return self.out(features), features


def pixel_grid(height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """(2, h, w) map coordinates (x, y) of every pixel centre, dtype/device of ``like``."""
    y, x = torch.meshgrid(
        torch.arange(height, dtype=like.dtype, device=like.device),
        torch.arange(width, dtype=like.dtype, device=like.device),
        indexing="ij",
    )
    return torch.stack([x, y])


def gather_pixels(maps: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) maps at flat pixel indices ``y * w + x`` (B, N) -> (B, N, C)."""
    b, c = maps.shape[:2]
    return maps.reshape(b, c, -1).gather(2, index.unsqueeze(1).expand(b, c, index.shape[1])).transpose(1, 2)


def sample_maps(maps: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """Bilinearly sample ``maps`` (N, C, h, w) at map coordinates ``xy`` (N, *, 2) -> (N, C, *).

    Positions outside the map read the nearest border value (the map is extended by replication),
    so a person whose root lies outside the image reads the depth stored at the border.
    """
    n, _, h, w = maps.shape
    batch_shape = xy.shape[1:-1]
    # grid_sample with align_corners=True puts -1 / +1 on the centres of the corner pixels.
    # Python-float scales: a tensor built from a list would be a host-to-device copy, which CUDA
    # graph capture forbids.
    xy = xy.reshape(n, 1, -1, 2)
    grid = torch.stack([xy[..., 0] * (2.0 / max(w - 1, 1)), xy[..., 1] * (2.0 / max(h - 1, 1))], dim=-1)
    grid = (grid - 1).to(maps.dtype)
    out = F.grid_sample(maps, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.reshape(n, maps.shape[1], *batch_shape)


class PoseGuidedDepthQuery(nn.Module):
    """DRM Eq. 4: joint features queried along the predicted pose of the person rooted at each pixel.

    The query positions are detached: PDQM passes features to the depth head, it does not train
    the offsets (their own losses do).
    """

    def __init__(self, num_joints: int, root: int, branch_channels: int) -> None:
        super().__init__()
        self.num_joints, self.root, self.branch_channels = num_joints, root, branch_channels
        keep = [j for j in range(num_joints) if j != root]
        self.register_buffer("keep", torch.tensor(keep, dtype=torch.long), persistent=False)

    @property
    def out_channels(self) -> int:
        return (self.num_joints - 1) * self.branch_channels

    def forward(
        self, root_to_center: torch.Tensor, offsets: torch.Tensor, joint_features: torch.Tensor
    ) -> torch.Tensor:
        """Query features.

        Args:
            root_to_center: (B, 2, h, w) center minus pixel, map pixels (valid near roots).
            offsets: (B, J, 2, h, w) joint minus pixel, map pixels (valid near centers).
            joint_features: (B, J * c, h, w) the offset branch's per-joint features.

        Returns:
            (B, (J - 1) * c, h, w): features of every joint but the root, joint-major.
        """
        b, j, _, h, w = offsets.shape
        grid = pixel_grid(h, w, root_to_center)
        center = (grid + root_to_center).detach()  # (B, 2, h, w)
        center_xy = center.permute(0, 2, 3, 1)  # (B, h, w, 2)
        joint_offsets = sample_maps(offsets.detach().reshape(b, j * 2, h, w), center_xy)  # (B, J*2, h, w)
        joints_xy = center.unsqueeze(1) + joint_offsets.reshape(b, j, 2, h, w)  # (B, J, 2, h, w)
        joints_xy = joints_xy[:, self.keep].permute(0, 1, 3, 4, 2)  # (B, J-1, h, w, 2)
        c = self.branch_channels
        features = joint_features.reshape(b, j, c, h, w)[:, self.keep]  # (B, J-1, c, h, w)
        queried = sample_maps(features.reshape(b * (j - 1), c, h, w), joints_xy.reshape(b * (j - 1), h, w, 2))
        return queried.reshape(b, (j - 1) * c, h, w)
