"""The models an :class:`~mp3d_ros.inference.estimator.Estimator` can run, behind one interface.

A :class:`Pipeline` says what its network needs (input size, normalisation), gives the network as a
module returning a plain tuple of tensors (``output_names`` order, so torch, CUDA graphs and ONNX
all see the same thing), and decodes those tensors, on their device, into
:class:`~mp3d_ros.model.codec.decode.PeopleTensors` of the source images with their live intrinsics
(:class:`~mp3d_ros.geometry.camera_torch.CameraBatch`): the host only unpacks one copied array into
:class:`~mp3d_ros.geometry.people.People` (:func:`~mp3d_ros.model.codec.decode.unpack_people`).
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from mp3d_ros.geometry.camera_torch import CameraBatch
from mp3d_ros.geometry.people import DEPTH_CUE_BODY_SIZE, DEPTH_CUE_NETWORK
from mp3d_ros.inference.movenet_lift import MOVENET_LIFT_GPU_INPUT, RAW_PIXELS, MoveNetLift, MoveNetLiftConfig
from mp3d_ros.inference.preprocess import Normalization
from mp3d_ros.model.checkpoint import ModelFileError, load_checkpoint, load_model_file, model_file_error
from mp3d_ros.model.codec.decode import DecodeConfig, PeopleTensors, decode_batch, source_people
from mp3d_ros.model.config import ModelConfig
from mp3d_ros.model.lifter import load_lifter
from mp3d_ros.model.movenet import MoveNetMaps, movenet_multipose_lightning
from mp3d_ros.model.network import NetworkOutput, build_network
from mp3d_ros.resources import find_share_path

__all__ = ["MODEL_KINDS", "Pipeline", "PaperPipeline", "MoveNetLiftPipeline", "load_pipeline",
           "pipeline_from_onnx_metadata", "MOVENET_WEIGHTS", "LIFTER_WEIGHTS"]

MODEL_KINDS = ("movenet-lift", "paper")
MOVENET_WEIGHTS = "models/movenet_multipose.safetensors"
LIFTER_WEIGHTS = "models/lifter.safetensors"
ONNX_FORMAT_VERSION = "1"


class _TupleOutputs(nn.Module):
    """A network whose NamedTuple output becomes a tuple of its non-None tensors."""

    def __init__(self, network: nn.Module, names: Sequence[str]) -> None:
        super().__init__()
        self.network = network
        self.names = tuple(names)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.network(images)
        return tuple(getattr(outputs, name) for name in self.names)


class Pipeline(ABC):
    """A model: network input requirements, the network, and its decoding."""

    kind: str
    joint_set: str
    input_size: tuple[int, int]
    normalization: Normalization
    output_names: tuple[str, ...]

    @abstractmethod
    def network(self) -> nn.Module:
        """(B, 3, H, W) normalised batch -> tuple of tensors in ``output_names`` order."""

    @abstractmethod
    def device_decode(self, outputs: Sequence[torch.Tensor], cameras: CameraBatch) -> PeopleTensors:
        """The network's outputs -> people of the source images, on the outputs' device.

        Only tensor operations of static shapes, so a CUDA graph can capture it with the network.
        """

    def to(self, device: torch.device) -> "Pipeline":
        """Move what decoding needs besides the network (e.g. a lifting network) to ``device``."""
        return self

    def decode_rows(self, outputs: Sequence[torch.Tensor], rows: torch.Tensor,
                    lenses: tuple[str, ...]) -> torch.Tensor:
        """:meth:`device_decode` with the cameras as :func:`~mp3d_ros.geometry.camera_torch.camera_rows`
        gives them, packed for one copy to the host (:meth:`PeopleTensors.pack`)."""
        return self.device_decode(outputs, CameraBatch.from_rows(rows, lenses)).pack()

    def onnx_metadata(self) -> dict[str, str]:
        """What an exported ONNX file must carry to be decoded again (checked on load)."""
        return {
            "mp3d_ros.format": ONNX_FORMAT_VERSION,
            "mp3d_ros.kind": self.kind,
            "mp3d_ros.joint_set": self.joint_set,
            "mp3d_ros.input_size": f"{self.input_size[0]}x{self.input_size[1]}",
            "mp3d_ros.normalization": json.dumps(self.normalization.to_dict()),
            "mp3d_ros.outputs": ",".join(self.output_names),
        }


class PaperPipeline(Pipeline):
    """The papers' network (:mod:`mp3d_ros.model.network`) and its decoding (:mod:`mp3d_ros.model.codec.decode`)."""

    kind = "paper"

    @property
    def depth_cues(self) -> int:
        """The network's regressed depth, fused with MAR's geometric one (Eq. 12) when on."""
        return DEPTH_CUE_NETWORK | (DEPTH_CUE_BODY_SIZE if self.config.adaptive_fusion else 0)

    def __init__(self, config: ModelConfig, normalization: Normalization,
                 state_dict: dict[str, torch.Tensor] | None, max_people: int = 20,
                 sigma_inflation: float = 1.0) -> None:
        """``sigma_inflation``: the model file's measured root-depth sigma factor
        (:attr:`~mp3d_ros.model.codec.decode.DecodeConfig.sigma_inflation`)."""
        self.config = config
        self.joint_set = config.joint_set
        self.input_size = config.input_size
        self.normalization = normalization
        self.state_dict = state_dict
        self.decode_config = DecodeConfig.from_model_config(config, max_people=max_people,
                                                            sigma_inflation=sigma_inflation)
        names = [n for n in NetworkOutput._fields if n != "root_depth_logits"]
        if config.depth_head == "log_bins":
            names.append("root_depth_logits")
        self.output_names = tuple(names)

    def network(self) -> nn.Module:
        if self.state_dict is None:
            raise ValueError("this pipeline was built from ONNX metadata and has no torch weights")
        network = build_network(self.config)
        network.load_state_dict(self.state_dict, strict=True)
        return _TupleOutputs(network, self.output_names)

    def device_decode(self, outputs, cameras) -> PeopleTensors:
        maps = NetworkOutput(**{name: t.float() for name, t in zip(self.output_names, outputs)})
        return source_people(decode_batch(maps, cameras, self.decode_config), cameras)

    def onnx_metadata(self) -> dict[str, str]:
        return {**super().onnx_metadata(), "mp3d_ros.model_config": json.dumps(self.config.to_dict()),
                SIGMA_INFLATION_KEY: repr(self.decode_config.sigma_inflation)}


class MoveNetLiftPipeline(Pipeline):
    """``movenet-lift``: MoveNet's maps from the network; decoding, lifting and depth after it."""

    kind = "movenet-lift"
    depth_cues = DEPTH_CUE_BODY_SIZE

    def __init__(self, model: MoveNetLift) -> None:
        self.model = model
        self.joint_set = "mupots_17"
        self.input_size = tuple(model.cfg.input_size)
        self.normalization = RAW_PIXELS
        self.output_names = MoveNetMaps._fields

    def network(self) -> nn.Module:
        return _TupleOutputs(self.model.movenet, self.output_names)

    @torch.no_grad()
    def device_decode(self, outputs, cameras) -> PeopleTensors:
        maps = MoveNetMaps(*(t.float() for t in outputs))
        return self.model.people_tensors(self.model.decode(maps), cameras)

    def to(self, device: torch.device) -> "MoveNetLiftPipeline":
        self.model.lifter.to(device)
        return self


def _check_request(input_size: tuple[int, int] | None, max_people: int) -> None:
    """Refuse a bad ``input_size`` / ``max_people`` now rather than at the first frame."""
    if isinstance(max_people, bool) or not isinstance(max_people, int) or max_people <= 0:
        raise ValueError(f"max_people must be a positive integer, got {max_people!r}")
    if input_size is not None and not _is_input_size(input_size):
        raise ValueError(f"input_size must be (width, height), positive multiples of 32, got {input_size!r}")


def _is_input_size(value: object) -> bool:
    """Whether ``value`` is a network input (width, height): two positive integer multiples of 32."""
    return isinstance(value, (tuple, list)) and len(value) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 and v % 32 == 0 for v in value)


def _movenet_lift(config: MoveNetLiftConfig) -> MoveNetLift:
    """The shipped MoveNet and lifter, each file's problems reported with its path."""
    lifter = load_model_file(find_share_path(LIFTER_WEIGHTS), lambda path: load_lifter(path)[0])
    movenet = load_model_file(find_share_path(MOVENET_WEIGHTS), movenet_multipose_lightning)
    return MoveNetLift(movenet, lifter, config).eval()


def _paper_network_check(config: ModelConfig, state: dict[str, torch.Tensor], path: Path) -> None:
    """Load ``state`` strictly into the network ``config`` describes, built on the meta device (no
    memory, no compute), so a wrong architecture or a missing key is refused at load, naming the file."""
    with torch.device("meta"):
        network = build_network(config)
    try:
        # assign: meta parameters cannot be copied into (shapes are checked all the same).
        network.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as error:
        raise model_file_error(path, f"weights do not fit the network its model_config describes "
                                     f"({config.backbone}, {config.joint_set}): {' '.join(str(error).split())}") from None


def load_pipeline(model: str, input_size: tuple[int, int] | None = None,
                  max_people: int = 20, cuda: bool = False) -> Pipeline:
    """``"movenet-lift"`` (shipped in ``models/``) or a checkpoint file of the papers' network.

    Without ``input_size`` the model runs at its own input; with ``cuda`` (it will run on a GPU)
    at its GPU input when it has one: :data:`MOVENET_LIFT_GPU_INPUT` for ``movenet-lift``, a
    checkpoint's ``extra["cuda_input_size"]`` (written by ``benchmarks/input_size_sweep.py``).

    Raises:
        FileNotFoundError: ``model`` is neither a model name nor a file.
        ModelFileError: the model file is corrupt or inconsistent (names the file and the problem).
        ValueError: a bad ``input_size`` or ``max_people``.
    """
    _check_request(input_size, max_people)
    if model == "movenet-lift":
        config = MoveNetLiftConfig(max_people=max_people)
        if input_size is None and cuda:
            input_size = MOVENET_LIFT_GPU_INPUT
        if input_size is not None:
            config = replace(config, input_size=tuple(input_size))
        return MoveNetLiftPipeline(_movenet_lift(config))
    path = Path(model)
    if not path.exists():
        raise FileNotFoundError(
            f"model {model!r} is neither a model name ({', '.join(MODEL_KINDS[:1])}) nor an existing "
            "file (a checkpoint .pt or an ONNX export .onnx)")
    checkpoint = load_checkpoint(path)
    try:
        config = ModelConfig.from_dict(checkpoint.model_config)
    except (ValueError, TypeError, KeyError) as error:
        raise model_file_error(path, f"model_config: {error}") from None
    if config.joint_set != checkpoint.joint_set or config.input_size != checkpoint.input_size:
        raise model_file_error(path, f"model_config ({config.joint_set}, {config.input_size}) and "
                                     f"the file's joint_set / input_size ({checkpoint.joint_set}, "
                                     f"{checkpoint.input_size}) disagree")
    _paper_network_check(config, checkpoint.model_state, path)
    if input_size is None and cuda:
        input_size = checkpoint_cuda_input_size(checkpoint.extra, path)
    if input_size is not None:
        config = replace(config, input_size=tuple(input_size))
    calibration = checkpoint.extra.get("calibration", {})
    if not isinstance(calibration, dict):
        raise model_file_error(path, f'extra["calibration"] is {calibration!r}, expected a mapping')
    inflation = _sigma_inflation(calibration.get("sigma_inflation", 1.0), path,
                                 'extra["calibration"]["sigma_inflation"]')
    return PaperPipeline(config, Normalization.from_dict(checkpoint.normalization),
                         checkpoint.model_state, max_people, inflation)


def checkpoint_cuda_input_size(extra: dict, path: Path) -> tuple[int, int] | None:
    """A checkpoint's input (W, H) for GPUs from ``extra["cuda_input_size"]``, None without one.

    Raises:
        ModelFileError: the entry is not two positive multiples of 32 (names the file).
    """
    value = extra.get("cuda_input_size")
    if value is None:
        return None
    if not _is_input_size(value):
        raise model_file_error(path, f'extra["cuda_input_size"] is {value!r}, expected [width, height], '
                                     "positive multiples of 32")
    return int(value[0]), int(value[1])


def _sigma_inflation(value: object, path: Path, where: str) -> float:
    """A model file's sigma factor: a finite number > 0 (else the file is refused, naming ``where``)."""
    try:
        factor = float(value)
    except (TypeError, ValueError):
        factor = math.nan
    if not math.isfinite(factor) or factor <= 0:
        raise model_file_error(path, f"{where} is {value!r}, expected a finite number > 0")
    return factor


def pipeline_from_onnx_metadata(metadata: dict[str, str], path: Path, max_people: int = 20) -> Pipeline:
    """The decoding side of an exported model, from the metadata ``mp3d-export`` wrote.

    Raises:
        ModelFileError: a metadata entry is missing or malformed, naming the file and the key.
        ValueError: a bad ``max_people``.
    """
    _check_request(None, max_people)
    if metadata.get("mp3d_ros.format") != ONNX_FORMAT_VERSION:
        raise model_file_error(path, f"not an mp3d_ros export (metadata mp3d_ros.format is "
                                     f"{metadata.get('mp3d_ros.format')!r}, expected {ONNX_FORMAT_VERSION!r})")
    missing = [key for key in ("mp3d_ros.kind", *_CHECKED_METADATA) if key not in metadata]
    if missing:
        raise model_file_error(path, f"metadata lacks {missing}")
    kind = metadata["mp3d_ros.kind"]
    try:
        width, height = (int(v) for v in metadata["mp3d_ros.input_size"].split("x"))
        _check_request((width, height), max_people)
    except ValueError:
        raise model_file_error(path, f"metadata mp3d_ros.input_size is "
                                     f"{metadata['mp3d_ros.input_size']!r}, expected WxH of positive "
                                     "multiples of 32") from None
    if kind == "movenet-lift":
        pipeline: Pipeline = load_pipeline("movenet-lift", (width, height), max_people)
    elif kind == "paper":
        # Exports written before the calibration existed have no factor: theirs is 1.
        inflation = _sigma_inflation(metadata.get(SIGMA_INFLATION_KEY, "1.0"), path,
                                     f"metadata {SIGMA_INFLATION_KEY}")
        pipeline = PaperPipeline(_metadata_config(metadata, path), _metadata_normalization(metadata, path),
                                 None, max_people, inflation)
    else:
        raise model_file_error(path, f"metadata mp3d_ros.kind is {kind!r}; known: {MODEL_KINDS}")
    expected = pipeline.onnx_metadata()
    for key in _CHECKED_METADATA:
        if metadata.get(key) != expected[key]:
            raise model_file_error(path, f"metadata {key} is {metadata.get(key)!r}, this mp3d_ros "
                                         f"expects {expected[key]!r}")
    return pipeline


SIGMA_INFLATION_KEY = "mp3d_ros.sigma_inflation"
_CHECKED_METADATA = ("mp3d_ros.joint_set", "mp3d_ros.input_size", "mp3d_ros.outputs",
                     "mp3d_ros.normalization")


def _metadata_json(metadata: dict[str, str], key: str, path: Path) -> dict:
    try:
        value = json.loads(metadata[key])
    except KeyError:
        raise model_file_error(path, f"metadata lacks {key}") from None
    except json.JSONDecodeError as error:
        raise model_file_error(path, f"metadata {key} is not JSON: {error}") from None
    if not isinstance(value, dict):
        raise model_file_error(path, f"metadata {key} is {value!r}, expected a JSON object")
    return value


def _metadata_config(metadata: dict[str, str], path: Path) -> ModelConfig:
    try:
        return ModelConfig.from_dict(_metadata_json(metadata, "mp3d_ros.model_config", path))
    except ModelFileError:
        raise
    except (ValueError, TypeError, KeyError) as error:
        raise model_file_error(path, f"metadata mp3d_ros.model_config: {error}") from None


def _metadata_normalization(metadata: dict[str, str], path: Path) -> Normalization:
    value = _metadata_json(metadata, "mp3d_ros.normalization", path)
    try:
        normalization = Normalization.from_dict(value)
    except (KeyError, TypeError, ValueError):
        normalization = None
    if normalization is None or len(normalization.mean) != 3 or len(normalization.std) != 3 or \
            not all(s > 0 for s in normalization.std):
        raise model_file_error(path, f"metadata mp3d_ros.normalization is {value!r}, expected "
                                     "3 means and 3 positive stds")
    return normalization
