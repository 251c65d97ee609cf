"""The training configuration: one YAML file (``config/train/*.yaml``) -> frozen dataclasses.

Sections (every key is optional except ``datasets``; see ``config/train/muco_coco.yaml`` for a
commented example):

- ``model``: a preset (``hrnet_w32``: the papers' HRNet-W32; ``lite``: MobileNetV2-FPN) plus any
  :class:`~mp3d_ros.model.config.ModelConfig` field overriding it;
- ``datasets``: the training sets, each with its share of every batch (DRM / MAR: half COCO);
- batch size per process, loader workers, seed, device, AMP, channels_last;
- ``optim`` (Adam / AdamW, gradient clipping) and ``schedule`` (linear warm-up, then linear decay
  to 0: DRM §4.1, warm-up over the first epoch), in steps or in epochs of one dataset;
- ``loss`` (:class:`~mp3d_ros.training.losses.LossConfig`), ``targets``
  (:class:`~mp3d_ros.model.codec.targets.TargetConfig`), ``augment``
  (:class:`~mp3d_ros.data.augment.AugmentConfig`), ``init`` (starting weights), ``normalization``;
- ``validation`` (a 3D set scored with the evaluator every ``validate_every`` steps);
- where the run goes (``out_dir``, ``log_dir``) and how often it logs / saves.

Relative paths are relative to the working directory. Bad values are refused when the file is
loaded, with the file and key in the message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mp3d_ros.config import config_from_dict, load_config
from mp3d_ros.data.augment import AugmentConfig
from mp3d_ros.inference.preprocess import IMAGENET, Normalization
from mp3d_ros.model.codec.targets import TargetConfig
from mp3d_ros.model.config import (
    ModelConfig,
    lite_mobilenet_fpn_config,
    mar_hrnet_w32_config,
)
from mp3d_ros.model.movenet import MoveNetDecodeConfig
from mp3d_ros.training.losses import LossConfig

__all__ = [
    "AMP_DTYPES",
    "DATASET_KINDS",
    "MODEL_PRESETS",
    "NORMALIZATIONS",
    "OPTIMIZERS",
    "VALIDATION_KINDS",
    "DatasetConfig",
    "InitConfig",
    "OptimConfig",
    "ScheduleConfig",
    "TrainConfig",
    "ValidationConfig",
    "load_train_config",
    "model_config",
    "normalization",
]

DATASET_KINDS = ("muco", "mupots", "h36m", "panoptic", "coco", "synthetic", "scenes")
VALIDATION_KINDS = ("muco", "mupots", "h36m", "panoptic", "synthetic")  # those with 3D ground truth
OPTIMIZERS = ("adam", "adamw")
AMP_DTYPES = ("bf16", "fp16", "none")
DEVICES = ("auto", "cpu", "cuda")
MODEL_PRESETS = {"hrnet_w32": mar_hrnet_w32_config, "lite": lite_mobilenet_fpn_config}
# MoveNet's own input scaling, (x - 1/s) * s = x * s - 1, so its converted backbone sees what it
# was trained on.
_MOVENET_SCALE = 1.0 / MoveNetDecodeConfig().input_scale[0]
NORMALIZATIONS = {
    "imagenet": IMAGENET,
    "movenet": Normalization((_MOVENET_SCALE,) * 3, (_MOVENET_SCALE,) * 3),
}


def _choice(value: str, options: Any, key: str) -> None:
    if value not in options:
        raise ValueError(f"{key} is {value!r}; expected one of {sorted(options)}")


@dataclass(frozen=True)
class DatasetConfig:
    """One training set."""

    # Reader: muco | mupots | h36m (3DMPPE JSON), panoptic (SMAP JSON), coco (2D keypoints),
    # synthetic (mp3d-synth output, MuCo layout); or scenes: synthetic scenes drawn and rendered
    # during training, a new one for every batch slot (mp3d_ros.training.scene_stream).
    kind: str = ""
    # Annotation file, or a list of them read as one dataset (e.g. Human3.6M subjects); for
    # synthetic also the dataset folder (its annotations.json); for scenes the mp3d-synth recipe
    # whose scene settings and seed the stream draws from (e.g. config/synth/train.yaml).
    path: str | tuple[str, ...] = ""
    # Folder the images' file_name is relative to; "" = the folder of the first annotation file.
    image_root: str = ""
    # Share of every batch (normalised over the datasets; DRM / MAR: COCO 0.5).
    ratio: float = 1.0
    # Leave out images in which nobody has a labelled joint (most of COCO's images).
    skip_empty: bool = True
    # scenes only: folder of BVH motion capture the people perform (e.g. ../shared/mocap);
    # "" = the renderer's procedural poses.
    mocap: str = ""

    def __post_init__(self) -> None:
        _choice(self.kind, DATASET_KINDS, "datasets[].kind")
        paths = (self.path,) if isinstance(self.path, str) else tuple(self.path)
        if not paths or not all(paths):
            raise ValueError(f"datasets[].path of the {self.kind} dataset is empty")
        object.__setattr__(self, "path", paths)
        if self.kind == "scenes" and len(paths) != 1:
            raise ValueError(f"datasets[].path of a scenes dataset is one recipe file, got {len(paths)}")
        if self.mocap and self.kind != "scenes":
            raise ValueError(f"datasets[].mocap applies to scenes datasets, not {self.kind}")
        if not self.ratio > 0:
            raise ValueError(f"datasets[].ratio of the {self.kind} dataset must be > 0, got {self.ratio}")


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser (DRM: Adam, lr 1e-3; MAR: Adam, lr 5e-4, weight decay 1e-6)."""

    # adam (weight decay as L2 in the gradient, as the papers' Adam) | adamw (decoupled decay).
    name: str = "adam"
    # Peak learning rate, reached at the end of the warm-up.
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    # Clip the global gradient norm to this value; 0 = no clipping (the norm is logged anyway).
    grad_clip_norm: float = 0.0

    def __post_init__(self) -> None:
        _choice(self.name, OPTIMIZERS, "optim.name")
        if not self.lr > 0 or self.weight_decay < 0 or self.grad_clip_norm < 0:
            raise ValueError("optim.lr must be > 0, optim.weight_decay and optim.grad_clip_norm >= 0")
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"optim.betas must lie in [0, 1), got {self.betas}")


@dataclass(frozen=True)
class ScheduleConfig:
    """Length of the run and its learning-rate schedule: linear warm-up from 0 to ``optim.lr``,
    then linear decay to 0 at the last step (DRM §4.1). Lengths in steps, or in epochs of dataset
    ``epoch_dataset`` (its share of the global batch sets the steps per epoch); set one of each pair."""

    steps: int = 0
    epochs: float = 0.0
    warmup_steps: int = 0
    warmup_epochs: float = 0.0
    # Index (in ``datasets``) of the dataset whose epochs ``epochs`` / ``warmup_epochs`` count.
    epoch_dataset: int = 0

    def __post_init__(self) -> None:
        if (self.steps > 0) == (self.epochs > 0):
            raise ValueError("schedule: set exactly one of schedule.steps and schedule.epochs (> 0)")
        if self.warmup_steps < 0 or self.warmup_epochs < 0 or (self.warmup_steps and self.warmup_epochs):
            raise ValueError("schedule: set at most one of warmup_steps and warmup_epochs (>= 0)")


@dataclass(frozen=True)
class InitConfig:
    """Starting weights (the papers start the backbone from ImageNet)."""

    # A checkpoint of the same architecture to start from (fine-tuning; step and optimiser start
    # afresh, unlike --resume).
    weights: str = ""
    # Backbone-only weights: a safetensors or torch state-dict file, e.g. the converted MoveNet
    # (models/movenet_multipose.safetensors) for the lite backbone, or HRNet-W32 ImageNet weights.
    # A relative path missing from the working directory is looked up where the package ships models/.
    backbone_weights: str = ""
    # Only keys under this prefix are read, the prefix stripped ("" = every key).
    backbone_prefix: str = "backbone."
    # Refuse missing / unexpected keys; when False each one is logged.
    strict: bool = True


@dataclass(frozen=True)
class ValidationConfig:
    """The validation set, scored with the MuPoTS-3D protocol (Panoptic: MPJPE / RtError)."""

    # "" = no validation; else muco | mupots | h36m | panoptic | synthetic.
    kind: str = ""
    # Annotation file (synthetic: also the folder).
    path: str = ""
    # As in DatasetConfig; "" = the annotation file's folder.
    image_root: str = ""
    # Score the first this many images (0 = all; the full benchmark is mp3d-eval's job).
    max_images: int = 200
    # Images per forward pass.
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.kind:
            _choice(self.kind, VALIDATION_KINDS, "validation.kind")
            if not self.path:
                raise ValueError("validation.path is empty but validation.kind is set")
        if self.max_images < 0 or self.batch_size < 1:
            raise ValueError("validation.max_images must be >= 0 and validation.batch_size >= 1")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on (stored in its checkpoints)."""

    # {"preset": "hrnet_w32" | "lite", <ModelConfig field>: value, ...}.
    model: dict[str, Any] = field(default_factory=lambda: {"preset": "lite"})
    datasets: tuple[DatasetConfig, ...] = ()
    # Images per process per step (global batch = batch_size x processes).
    batch_size: int = 8
    # DataLoader worker processes per training process (0 = load in the training process).
    workers: int = 4
    seed: int = 0
    # auto (cuda when available) | cpu | cuda.
    device: str = "auto"
    # Autocast dtype on CUDA: bf16 (fp16 with loss scaling where the GPU lacks bf16) | fp16 |
    # none. CPU runs always use float32.
    amp: str = "bf16"
    channels_last: bool = True
    # torch.use_deterministic_algorithms + no cuDNN autotuning: bit-exact resume on GPU too
    # (CPU runs are bit-exact anyway), at some speed.
    deterministic: bool = False
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(steps=1000))
    loss: LossConfig = field(default_factory=LossConfig)
    targets: TargetConfig = field(default_factory=TargetConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    init: InitConfig = field(default_factory=InitConfig)
    # Input normalisation stored with the weights: imagenet | movenet (for MoveNet's backbone).
    normalization: str = "imagenet"
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    # Validate every this many steps and at the end (0 = only at the end; needs validation.kind).
    validate_every: int = 0
    # Run folder: checkpoints/, metrics.jsonl, config.yaml.
    out_dir: str = "runs/train"
    # TensorBoard folder; "" = <out_dir>/tensorboard.
    log_dir: str = ""
    # Log losses, learning rate and images/s every this many steps.
    log_every: int = 20
    # Save a checkpoint every this many steps (and always at the end).
    checkpoint_every: int = 1000
    # Keep the newest this many periodic checkpoints (0 = keep all).
    keep_checkpoints: int = 3
    # tqdm progress bar on rank 0.
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.datasets:
            raise ValueError("datasets: at least one training dataset is needed")
        _choice(self.device, DEVICES, "device")
        _choice(self.amp, AMP_DTYPES, "amp")
        _choice(self.normalization, NORMALIZATIONS, "normalization")
        for key in ("batch_size", "log_every", "checkpoint_every"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        for key in ("workers", "validate_every", "keep_checkpoints"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be >= 0, got {getattr(self, key)}")
        if self.validate_every and not self.validation.kind:
            raise ValueError("validate_every is set but validation.kind is empty: no validation set")
        if not 0 <= self.schedule.epoch_dataset < len(self.datasets):
            raise ValueError(f"schedule.epoch_dataset {self.schedule.epoch_dataset} is not an index "
                             f"of the {len(self.datasets)} datasets")
        model_config(self)  # refuse a bad model section now, not after the data is read


def model_config(config: TrainConfig) -> ModelConfig:
    """The :class:`ModelConfig` of ``config.model``: its preset with the given fields replaced."""
    section = config.model
    if not isinstance(section, dict):
        raise ValueError(f"model must be a mapping with a 'preset' key, got {section!r}")
    rest = dict(section)
    preset = rest.pop("preset", "lite")
    _choice(preset, MODEL_PRESETS, "model.preset")
    return config_from_dict(ModelConfig, {**MODEL_PRESETS[preset]().to_dict(), **rest}, "model")


def normalization(config: TrainConfig) -> Normalization:
    """The input normalisation ``config.normalization`` names."""
    return NORMALIZATIONS[config.normalization]


def load_train_config(path: str | Path | None, overrides: list[str] = ()) -> TrainConfig:
    """A :class:`TrainConfig` from a YAML file plus ``key.sub=value`` overrides.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ConfigError: (a ValueError) invalid YAML, a duplicate or unknown key or a bad value,
            naming the file, the dotted key and what was expected.
    """
    return load_config(TrainConfig, path, list(overrides))
