"""Architecture configuration of the papers' network (MAR + DRM heads on HRNet-W32 or the lite backbone).

One frozen dataclass describes everything that changes the network's parameters or the meaning of its
outputs, plus the switches the ablations toggle (they change losses and decoding, not parameters).
It is stored in every checkpoint (:meth:`ModelConfig.to_dict` / :meth:`ModelConfig.from_dict`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from mp3d_ros.geometry.skeleton import get_joint_set

__all__ = ["BACKBONES", "DECODE_SWITCHES", "DEPTH_HEADS", "ModelConfig", "lite_mobilenet_fpn_config",
           "mar_hrnet_w32_config"]

BACKBONES = ("hrnet_w32", "mobilenet_fpn")
DEPTH_HEADS = ("regression", "log_bins")
# Ablation switches that only the decoder reads (no loss, no parameter): a trained network can be
# decoded with any setting of them.
DECODE_SWITCHES = ("snap_to_nearest_peak", "heatmap_refinement", "adaptive_fusion")
# Renamed fields of configs stored by older checkpoints: old name -> (new name, old value -> new value).
_RENAMED = {"use_offsets": ("snap_to_nearest_peak", lambda use_offsets: not use_offsets)}


@dataclass(frozen=True)
class ModelConfig:
    """The network and its ablation switches. Sizes are (width, height) in pixels."""

    # Backbone: "hrnet_w32" (the papers', stride-4 HRNetV2 representation) or "mobilenet_fpn"
    # (MobileNetV2 x1.5 + MoveNet's FPN, loadable from MoveNet MultiPose's weights).
    backbone: str = "hrnet_w32"
    # Joint set the network predicts (mp3d_ros.geometry.skeleton); needs a root (pelvis) and a neck.
    joint_set: str = "mupots_17"
    # Network input (W, H) in pixels; must be divisible by 32 (the backbones' coarsest stride).
    input_size: tuple[int, int] = (832, 512)
    # Channels of the 1x1 conv-BN-ReLU that reduces the backbone output before the heads
    # (0 = none: heads see the backbone output directly, e.g. HRNet's 480 channels).
    neck_channels: int = 128
    # Hidden width of every head's 3x3 conv-BN-ReLU (MAR §4.2 uses 256).
    head_width: int = 256
    # Depthwise-separable 3x3 in the heads (MoveNet style, for the lite configuration).
    separable_heads: bool = False
    # Channels of each joint's own branch in the disentangled offset / relative-depth heads (DRM,
    # DEKR); the offset branch's per-joint features are also what PDQM queries.
    joint_branch_channels: int = 16
    # Root-depth head: "regression" (one value + Laplace scale, MAR §3.2) or "log_bins" (HDNet's
    # soft-argmax over log-spaced bins of the normalised depth).
    depth_head: str = "regression"
    # Number of log-depth bins for depth_head="log_bins".
    depth_bins: int = 64
    # Range (min, max) of the normalised root depth covered by the bins (units of `depth_scale_px`).
    depth_bin_range: tuple[float, float] = (0.1, 20.0)
    # Focal-normalised depth is predicted as Z * depth_scale_px / sqrt(fx * fy) (HDNet Eq. 7 times a
    # fixed scale so values are O(1): 5 m seen with a 500 px focal length reads 1.0).
    depth_scale_px: float = 100.0
    # Initial value of the root-depth output (bias of its last layer), normalised units.
    depth_init: float = 1.0
    # Floor of the predicted Laplace scales sigma1 / sigma2 (normalised depth units): the network
    # outputs sigma = sigma_min + softplus(raw), and the losses subtract log(sigma_min) so the
    # NLL is >= 0 and reaches 0 for a perfect, maximally confident prediction.
    sigma_min: float = 0.01
    # Pelvis-to-neck length Omega (m) for MAR's geometric depth (Eq. 7-8), in training and inference.
    torso_length_m: float = 0.5
    # Ablation of MAR Eq. 3 (MAR Table 4's "offsets"): every joint snaps to the nearest heatmap peak
    # whatever its value, offsets only group joints to their person. False: offsets give joints
    # where the heatmap is not confident. Older checkpoints store it inverted as ``use_offsets``.
    snap_to_nearest_peak: bool = False
    # Ablation: MAR Eq. 3 snapping of joints to confident heatmap maxima. False: offsets only.
    heatmap_refinement: bool = True
    # Ablation: geometric-depth loss gradients flow into offsets and relative depths (MAR Eq. 10).
    geometry_backward: bool = True
    # Ablation: fuse regressed and geometric root depths by their uncertainties (MAR Eq. 12).
    adaptive_fusion: bool = True
    # Ablation: PDQM, joint features queried at the predicted 2D pose feed the root-depth head (DRM Eq. 4).
    pdqm: bool = True
    # Ablation: DRM's decoupled absolute pose loss (Eq. 11).
    dapl: bool = True
    # Ablation: predict focal-normalised root depth (HDNet Eq. 7). False: metres (camera baked in).
    focal_normalised_depth: bool = True

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"ModelConfig.backbone {self.backbone!r}: expected one of {BACKBONES}")
        if self.depth_head not in DEPTH_HEADS:
            raise ValueError(f"ModelConfig.depth_head {self.depth_head!r}: expected one of {DEPTH_HEADS}")
        joint_set = get_joint_set(self.joint_set)
        if joint_set.root < 0 or joint_set.neck < 0:
            raise ValueError(f"ModelConfig.joint_set {self.joint_set!r} has no root or no neck joint")
        width, height = (int(v) for v in self.input_size)
        if width <= 0 or height <= 0 or width % 32 or height % 32:
            raise ValueError(f"ModelConfig.input_size {self.input_size}: (W, H) must be positive multiples of 32")
        object.__setattr__(self, "input_size", (width, height))
        object.__setattr__(self, "depth_bin_range", tuple(float(v) for v in self.depth_bin_range))
        if not 0 < self.depth_bin_range[0] < self.depth_bin_range[1]:
            raise ValueError(f"ModelConfig.depth_bin_range {self.depth_bin_range} must be 0 < min < max")
        if self.snap_to_nearest_peak and not self.heatmap_refinement:
            raise ValueError("ModelConfig: snap_to_nearest_peak needs heatmap_refinement")
        if self.depth_scale_px <= 0 or self.torso_length_m <= 0 or self.sigma_min <= 0:
            raise ValueError("ModelConfig.depth_scale_px, torso_length_m and sigma_min must be positive")

    @property
    def num_joints(self) -> int:
        return get_joint_set(self.joint_set).num_joints

    @property
    def output_stride(self) -> int:
        """Input pixels per output-map pixel (both backbones end at stride 4)."""
        return 4

    @property
    def output_size(self) -> tuple[int, int]:
        """(w, h) of the output maps."""
        return self.input_size[0] // self.output_stride, self.input_size[1] // self.output_stride

    @property
    def depth_units(self) -> tuple[bool, float]:
        """What :meth:`depth_factor` depends on besides the focal lengths: configs with equal
        ``depth_units`` predict root depth in the same units."""
        return self.focal_normalised_depth, self.depth_scale_px

    def depth_factor(self, fx_px: Any, fy_px: Any) -> Any:
        """Multiplier from metres to the network's depth units for an input of focal lengths fx, fy.

        ``z_net = Z_m * depth_factor``; works on floats, numpy arrays and tensors alike.
        """
        if not self.focal_normalised_depth:
            return fx_px * 0 + 1.0
        return self.depth_scale_px / (fx_px * fy_px) ** 0.5

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists for tuples) for checkpoints and YAML."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict` (renamed fields of older checkpoints are mapped); unknown keys
        are an error naming them."""
        data = dict(data)
        for old, (new, convert) in _RENAMED.items():
            if old in data and new not in data:
                data[new] = convert(data.pop(old))
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"ModelConfig has no fields {unknown}; known: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def mar_hrnet_w32_config(**overrides: Any) -> ModelConfig:
    """The papers' configuration: HRNet-W32 at 832x512 with MAR's 256-wide heads."""
    return ModelConfig(**{"backbone": "hrnet_w32", **overrides})


def lite_mobilenet_fpn_config(**overrides: Any) -> ModelConfig:
    """The lite configuration: MobileNetV2-FPN with MoveNet-style separable 96-wide heads."""
    defaults = {"backbone": "mobilenet_fpn", "neck_channels": 0, "head_width": 96, "separable_heads": True,
                "joint_branch_channels": 8}
    return ModelConfig(**{**defaults, **overrides})
