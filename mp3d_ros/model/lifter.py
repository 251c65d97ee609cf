"""2D -> 3D lifting of one person: the residual MLP of Martinez et al. (ICCV 2017, "A simple yet
effective baseline for 3d human pose estimation").

Network (their Fig. 1): ``Linear(in -> width)``, BN, ReLU, dropout; ``num_blocks`` residual blocks
of two ``Linear -> BN -> ReLU -> dropout`` stages; ``Linear(width -> 3 J_out)``.

Input normalisation (:func:`prepare_lifter_input`), so one network serves any camera and any place
in the field of view:

1. keypoints arrive as undistorted rays ``[x, y, 1] = K^-1 [u, v, 1]`` (the live intrinsics);
2. a *virtual camera* is turned (the smallest rotation ``R``) to look straight at the person's
   centre ray, the mean direction of the seen keypoints' rays; in it the person is seen head-on,
   wherever it was in the image;
3. the rotated rays are projected, centred on their mean and divided by their RMS radius, which
   removes distance and size (monocular scale is ambiguous);
4. each joint gives ``(x, y, confidence)``; a missing joint (confidence 0) gives zeros.

Output: root-relative 3D joints (``output_joints``, root = pelvis) in metres in the virtual camera
frame for a body of ``canonical_height_m``; :func:`lift` rotates them back to the real camera frame
with ``R^T``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from mp3d_ros.data.lifting import LiftingDataConfig, PoseBank, sample_lifting_batch
from mp3d_ros.geometry.skeleton import get_joint_set

__all__ = [
    "LifterConfig",
    "ResidualLinearBlock",
    "Lifter",
    "virtual_camera_rotation",
    "prepare_lifter_input",
    "lift",
    "save_lifter",
    "load_lifter",
    "lifter_mpjpe_mm",
]


@dataclass(frozen=True)
class LifterConfig:
    """Architecture and meaning of the lifter's inputs and outputs."""

    # Joint set of the 2D inputs (what the 2D detector gives).
    input_joints: str = "coco_17"
    # Joint set of the 3D outputs (root-relative; its root is the pelvis).
    output_joints: str = "mupots_17"
    # Hidden width (Martinez et al.: 1024; 512 trains in minutes on a CPU and loses little here).
    width: int = 512
    # Residual blocks of two linear layers each (Martinez et al.: 2).
    num_blocks: int = 2
    # Dropout probability after every hidden layer (Martinez et al.: 0.5; the random cameras and
    # 2D errors regularise already).
    dropout: float = 0.1
    # Standing height (m) of the body the outputs are sized for.
    canonical_height_m: float = 1.70

    @property
    def num_inputs(self) -> int:
        return 3 * get_joint_set(self.input_joints).num_joints

    @property
    def num_outputs(self) -> int:
        return 3 * get_joint_set(self.output_joints).num_joints


class ResidualLinearBlock(nn.Module):
    """``x + f(x)`` with ``f`` two stages of Linear -> norm -> act -> dropout."""

    def __init__(
        self,
        width: int,
        dropout: float,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm1d,
        act_layer: Callable[[], nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(2):
            layers += [nn.Linear(width, width), norm_layer(width), act_layer(), nn.Dropout(dropout)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Lifter(nn.Module):
    """(B, 3 J_in) normalised keypoints -> (B, J_out, 3) root-relative joints (virtual camera, m)."""

    def __init__(
        self,
        cfg: LifterConfig = LifterConfig(),
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm1d,
        act_layer: Callable[[], nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.stem = nn.Sequential(
            nn.Linear(cfg.num_inputs, cfg.width),
            norm_layer(cfg.width),
            act_layer(),
            nn.Dropout(cfg.dropout),
        )
        self.blocks = nn.Sequential(
            *(
                ResidualLinearBlock(cfg.width, cfg.dropout, norm_layer, act_layer)
                for _ in range(cfg.num_blocks)
            )
        )
        self.head = nn.Linear(cfg.width, cfg.num_outputs)
        self.root = get_joint_set(cfg.output_joints).root

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out = self.head(self.blocks(self.stem(features))).unflatten(-1, (-1, 3))
        return out - out[:, self.root : self.root + 1]  # root-relative by construction


def virtual_camera_rotation(direction: torch.Tensor) -> torch.Tensor:
    """(*, 3, 3) smallest rotation taking the (*, 3) unit ``direction`` onto the optical axis z.

    Rodrigues' formula about ``direction x z``; ``direction`` must point in front (z > 0).
    """
    z = torch.zeros_like(direction)
    z[..., 2] = 1.0
    axis = torch.cross(direction, z, dim=-1)
    cos = direction[..., 2]
    skew = torch.zeros(
        direction.shape[:-1] + (3, 3), dtype=direction.dtype, device=direction.device
    )
    skew[..., 0, 1], skew[..., 0, 2], skew[..., 1, 2] = -axis[..., 2], axis[..., 1], -axis[..., 0]
    skew = skew - skew.transpose(-1, -2)
    eye = torch.eye(3, dtype=direction.dtype, device=direction.device).expand_as(skew)
    return eye + skew + skew @ skew / (1.0 + cos)[..., None, None]


def prepare_lifter_input(
    rays: torch.Tensor, confidence: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalise keypoints for the lifter (module docstring, steps 2-4).

    Args:
        rays: (B, J_in, 3) undistorted rays ``[x, y, 1]`` of the keypoints (any value if missing).
        confidence: (B, J_in) in [0, 1]; 0 marks a missing keypoint.

    Returns:
        ``(features, R)``: (B, 3 J_in) network input and (B, 3, 3) virtual-camera rotation
        (camera frame -> virtual frame).
    """
    seen = (confidence > 0).to(rays.dtype)
    count = seen.sum(-1, keepdim=True).clamp_min(1.0)
    units = rays / rays.norm(dim=-1, keepdim=True)
    mean = (units * seen[..., None]).sum(1)
    # Nobody seen: look along the optical axis (the features are all zero anyway). Added in place
    # because a tensor literal would be a host-to-device copy, which CUDA graph capture forbids.
    mean[..., 2] += (seen.sum(-1) == 0).to(mean.dtype)
    rotation = virtual_camera_rotation(mean / mean.norm(dim=-1, keepdim=True))
    turned = rays @ rotation.transpose(-1, -2)
    xy = turned[..., :2] / turned[..., 2:].clamp_min(1e-6)
    center = (xy * seen[..., None]).sum(1, keepdim=True) / count[..., None]
    radius2 = (((xy - center) ** 2).sum(-1) * seen).sum(-1, keepdim=True) / count
    xy = (xy - center) / radius2.sqrt().clamp_min(1e-6)[..., None]
    features = torch.cat([xy * seen[..., None], confidence[..., None] * seen[..., None]], dim=-1)
    return features.flatten(1), rotation


def lift(model: Lifter, rays: torch.Tensor, confidence: torch.Tensor) -> torch.Tensor:
    """(B, J_out, 3) root-relative joints in the real camera frame (canonical size, metres)."""
    features, rotation = prepare_lifter_input(rays, confidence)
    return model(features) @ rotation  # rows: R^T applied to each joint vector


def save_lifter(path: str | Path, model: Lifter, record: dict[str, object]) -> None:
    """Write the weights (float32) with the config and a training ``record`` as metadata."""
    metadata = {
        "model": "lifter",
        "config": json.dumps(asdict(model.cfg), sort_keys=True),
        "record": json.dumps(record, sort_keys=True),
    }
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata=metadata)


def load_lifter(path: str | Path) -> tuple[Lifter, dict[str, object]]:
    """Load a lifter (strictly) and its training record; eval mode."""
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("model") != "lifter":
        raise ValueError(f"{path} is not a lifter weights file (model={meta.get('model')!r})")
    model = Lifter(LifterConfig(**json.loads(meta["config"])))
    model.load_state_dict(load_file(str(path)), strict=True)
    return model.eval(), json.loads(meta.get("record", "{}"))


@torch.no_grad()
def lifter_mpjpe_mm(model: Lifter, bank: PoseBank, samples: int, seed: int,
                    data_cfg: LiftingDataConfig = LiftingDataConfig()) -> float:
    """Mean per-joint position error (mm, root-relative) on ``samples`` pairs of ``bank`` drawn
    with ``data_cfg``'s cameras and 2D errors from ``seed`` (the same pairs for the same seed)."""
    was_training = model.training
    model.eval()
    generator = torch.Generator(bank.poses_m.device).manual_seed(seed)
    total, count = 0.0, 0
    for start in range(0, samples, 4096):
        batch = sample_lifting_batch(bank, min(4096, samples - start), data_cfg, generator)
        error = (lift(model, batch.rays, batch.confidence) - batch.target_m).norm(dim=-1)
        total += float(error.sum())
        count += error.numel()
    model.train(was_training)
    return 1000.0 * total / count
