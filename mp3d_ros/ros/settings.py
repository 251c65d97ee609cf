"""The node's parameters: one table (name, default, description, range) and their validation.

The node declares each parameter from :data:`PARAMETERS` (with a ``ParameterDescriptor`` holding the
description and range), reads the values back, and builds :class:`NodeSettings`, which checks them
all at once and refuses to start with one message listing every invalid value. ``config/mp3d.yaml``
mirrors the table (a test keeps them equal). No ROS import here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import AbstractSet as Set
from typing import Any, Mapping, Sequence, Union

from mp3d_ros.geometry.floor import FloorPlane
from mp3d_ros.messages.pairing import DEFAULT_SYNC_SLOP_S
from mp3d_ros.tracking.tracker import TrackerConfig

__all__ = ["ParameterSpec", "PARAMETERS", "SettingsError", "NodeSettings", "defaults"]

Value = Union[bool, int, float, str]


@dataclass(frozen=True)
class ParameterSpec:
    """One node parameter. ``low``/``high`` bound numbers (inclusive); ``choices`` bound strings."""

    name: str
    default: Value
    description: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()

    @property
    def constraints(self) -> str:
        """Human-readable constraint (for ``ParameterDescriptor.additional_constraints``)."""
        if self.choices:
            return "one of: " + ", ".join(repr(c) for c in self.choices)
        if self.low is not None:
            return f"in [{self.low}, {self.high}]"
        return ""


_TRACKER = TrackerConfig()
PARAMETERS: tuple[ParameterSpec, ...] = (
    ParameterSpec("model_path", "", "Model: \"movenet-lift\", a checkpoint (.pt) of the papers' "
                  "network or an ONNX export (.onnx); empty = the shipped default (movenet-lift)."),
    ParameterSpec("backend", "auto", "Inference backend. 'auto': onnxruntime for an .onnx model "
                  "and, on a CPU with onnxruntime and onnx installed, for any model through an export "
                  "cached in $MP3D_ROS_CACHE_DIR (default ~/.cache/mp3d_ros; the first start exports, "
                  "a few seconds); torch otherwise.", choices=("auto", "torch", "onnxruntime")),
    ParameterSpec("device", "auto", "Device: 'auto' (the GPU when CUDA is available, else the CPU; "
                  "logged at start), 'cuda', 'cuda:N' or 'cpu'. If a requested GPU or the backend fails "
                  "at start the node falls back to 'cpu' (fp32) with an error log."),
    ParameterSpec("precision", "fp16", "Inference precision on the GPU (the CPU always runs fp32).",
                  choices=("fp16", "bf16", "fp32")),
    ParameterSpec("cuda_graph", "auto", "Replay the network and its decoding as CUDA graphs, captured "
                  "at start for the warm-up frame size and on first sight of another image size or lens "
                  "(at most 8 kept): 'auto' = on on a GPU (with onnxruntime: the pre-processing and the "
                  "decoding around its network), off otherwise.",
                  choices=("auto", "on", "off")),
    ParameterSpec("compile", False, "torch.compile the network and its decoding; adds tens of seconds "
                  "to the start (and to each new image size)."),
    ParameterSpec("input_width", 0, "Network input width in pixels; 0 = the model's default for the "
                  "device (movenet-lift: 288 on a CPU, 512 on CUDA; a checkpoint: its own, on CUDA its "
                  "GPU input when it has one).", 0, 4096),
    ParameterSpec("input_height", 0, "Network input height in pixels; 0 = the model's default for the "
                  "device (movenet-lift: 224 on a CPU, 384 on CUDA).", 0, 4096),
    ParameterSpec("score_threshold", 0.3, "People with a lower score are not published.", 0.0, 1.0),
    ParameterSpec("max_people", 20, "At most this many people (highest scores) are published.", 1, 200),
    ParameterSpec("rectified", False, "True when 'image' is rectified (intrinsics from CameraInfo.P, no "
                  "distortion); false for raw images (CameraInfo.K and D)."),
    ParameterSpec("image_transport", "raw", "'raw' subscribes sensor_msgs/Image on 'image'; 'compressed' "
                  "subscribes sensor_msgs/CompressedImage on '<image>/compressed'.",
                  choices=("raw", "compressed")),
    ParameterSpec("sync_slop_s", DEFAULT_SYNC_SLOP_S, "Largest stamp difference, seconds, for pairing an image with its "
                  "CameraInfo (message_filters ApproximateTimeSynchronizer, which needs a difference "
                  "strictly below the slop, so 0 would never pair).", 0.001, 1.0),
    ParameterSpec("sync_queue_size", 10, "Messages per topic the synchronizer keeps while pairing.", 1, 100),
    ParameterSpec("camera_info_wait_s", 0.2, "How long an image waits for a CameraInfo within the slop "
                  "before the latest CameraInfo of its frame_id is used instead (with a warning).",
                  0.0, 5.0),
    ParameterSpec("target_frame", "", "Frame to publish poses in (via tf2 at the image stamp); empty = "
                  "the image's optical frame. Tracking runs in this frame, so choose a world-fixed "
                  "frame (odom, map) for ego-motion-free velocities."),
    ParameterSpec("transform_timeout_s", 0.05, "How long to wait for a transform (target_frame or "
                  "ground_frame) at the image stamp, seconds.", 0.0, 2.0),
    ParameterSpec("ground_frame", "", "A frame whose x-y plane is the floor (z up), e.g. "
                  "'base_footprint'; empty = off. When set, the camera's pose over the floor is looked "
                  "up at each image stamp (ground_frame <- image frame) and people's depth also comes "
                  "from where their feet meet the floor; without the transform the frame is estimated "
                  "without the floor (counted in /diagnostics)."),
    ParameterSpec("floor_tilt_sigma_rad", FloorPlane.tilt_sigma_rad, "Standard deviation, radians, of "
                  "the floor plane's orientation from ground_frame about each horizontal axis (camera "
                  "mount calibration, the robot rocking on its wheels). The floor depth's sigma grows "
                  "with it as t^2 for far people, so it decides how much a far person's depth trusts "
                  "the floor against their body size: lower it for a rigid, calibrated mount.",
                  0.0, 0.5),
    ParameterSpec("floor_height_sigma_m", FloorPlane.height_sigma_m, "Standard deviation, metres, of the "
                  "camera's height over the floor from ground_frame.", 0.0, 1.0),
    ParameterSpec("publish_people", True, "Publish ~/people (people_msgs/msg/People: tracked people in "
                  "the output frame, for navigation) when people_msgs is installed."),
    ParameterSpec("publish_tf", False, "Broadcast a TF frame 'person_<track id>' at each confirmed "
                  "track's root, child of the output frame."),
    ParameterSpec("publish_markers", True, "Publish ~/markers (visualization_msgs/MarkerArray) for RViz."),
    ParameterSpec("marker_lifetime_s", 0.5, "Lifetime of the markers, seconds; they also vanish with each "
                  "new frame (DELETEALL).", 0.0, 60.0),
    ParameterSpec("diagnostics_period_s", 1.0, "Period of the /diagnostics status, seconds.", 0.1, 60.0),
    ParameterSpec("log_throttle_s", 5.0, "At most one log line per kind of bad input per this many "
                  "seconds (every occurrence is still counted in /diagnostics).", 0.0, 3600.0),
    ParameterSpec("stage_timing", "auto", "Time each stage of a frame (image decode, tf2 lookups, the "
                  "estimator, tracking, message and marker building, publishing) and report each stage's "
                  "median and p90 over every diagnostics period in /diagnostics (stage_<stage>_ms_median, "
                  "stage_<stage>_ms_p90). 'auto' also times the estimator's own stages (preprocess, "
                  "network, decode) on the CPU, where that is a clock read, but not on a GPU, where its "
                  "CUDA events cost 0.1-0.2 ms per frame (H200, CUDA graphs); 'on' times them "
                  "everywhere; 'off' times nothing.", choices=("auto", "on", "off")),
    ParameterSpec("decode_ahead", "auto", "Decode the next image in a second thread while the "
                  "estimator runs the current one, so a frame that arrives while the node is busy is "
                  "ready when it is free; the newest frame still wins (a decoded frame that a newer "
                  "one overtakes is dropped and counted). 'auto' does so on a GPU, where the estimator "
                  "mostly waits for the device; on the CPU the decode would compete with it for the "
                  "cores.", choices=("auto", "on", "off")),
    ParameterSpec("tracking.enabled", True, "Track people: stable track ids and velocities."),
    ParameterSpec("tracking.gate_m", _TRACKER.gate_m, "Largest distance, metres, between a predicted "
                  "track and a detection that may be the same person, beyond what the detection's own "
                  "uncertainty explains (a far person's depth noise along its viewing ray does not "
                  "split its track).", 0.05, 10.0),
    ParameterSpec("tracking.gate_chi2", _TRACKER.gate_chi2, "Mahalanobis gate (chi-square, 3 dof) on the "
                  "innovation; 16.27 keeps 99.9 % of true matches.", 0.1, 1000.0),
    ParameterSpec("tracking.birth_hits", _TRACKER.birth_hits, "Detections before a track gets an id.",
                  1, 100),
    ParameterSpec("tracking.death_misses", _TRACKER.death_misses, "Consecutive frames without a detection "
                  "after which a track is deleted.", 1, 1000),
    ParameterSpec("tracking.max_coast_s", _TRACKER.max_coast_s, "Seconds without a detection after which "
                  "a track is deleted, whatever its misses.", 0.01, 60.0),
    ParameterSpec("tracking.accel_sigma_mps2", _TRACKER.accel_sigma_mps2, "Process noise: standard "
                  "deviation of people's acceleration, m/s^2.", 0.01, 20.0),
)
_SPECS = {spec.name: spec for spec in PARAMETERS}


def defaults() -> dict[str, Value]:
    return {spec.name: spec.default for spec in PARAMETERS}


class SettingsError(ValueError):
    """Invalid node parameters; the message lists every problem."""


def _type_name(value: Any) -> str:
    names = {bool: "a bool", int: "an integer", float: "a double", str: "a string"}
    return names.get(type(value), type(value).__name__)


def _check(spec: ParameterSpec, value: Any) -> str | None:
    """The problem with ``value`` for ``spec``, or None."""
    expected = type(spec.default)
    if expected is float and type(value) is int:
        value = float(value)
    if type(value) is not expected:
        return (f"{spec.name} must be {_type_name(spec.default)}, got {value!r} "
                f"({_type_name(value)})" + (" - write it with a decimal point" if expected is float else ""))
    if spec.choices and value not in spec.choices:
        return f"{spec.name} is {value!r}; expected {spec.constraints}"
    if spec.low is not None and not (spec.low <= value <= spec.high):
        return f"{spec.name} is {value!r}; expected a value {spec.constraints}"
    return None


@dataclass(frozen=True)
class NodeSettings:
    """Validated node parameters (see :data:`PARAMETERS` for their meaning)."""

    model_path: str
    backend: str
    device: str
    precision: str
    cuda_graph: str
    compile: bool
    input_width: int
    input_height: int
    score_threshold: float
    max_people: int
    rectified: bool
    image_transport: str
    sync_slop_s: float
    sync_queue_size: int
    camera_info_wait_s: float
    target_frame: str
    transform_timeout_s: float
    ground_frame: str
    floor_tilt_sigma_rad: float
    floor_height_sigma_m: float
    publish_people: bool
    publish_tf: bool
    publish_markers: bool
    marker_lifetime_s: float
    diagnostics_period_s: float
    log_throttle_s: float
    stage_timing: str
    decode_ahead: str
    tracking: TrackerConfig | None  # None when tracking is off

    @property
    def times_stages(self) -> bool:
        """Whether the node times its frames' stages (``stage_timing`` is not ``off``)."""
        return self.stage_timing != "off"

    @property
    def input_size(self) -> tuple[int, int] | None:
        """(W, H) for the estimator, or None for the model's default."""
        return (self.input_width, self.input_height) if self.input_width else None

    @classmethod
    def from_values(cls, values: Mapping[str, Any], known_problems: Sequence[str] = (),
                    unchecked: Set[str] = frozenset()) -> "NodeSettings":
        """Validate parameter values (missing ones take their defaults).

        Args:
            values: parameter values by name.
            known_problems: problems found before (the node's declarations rclpy refused), reported
                together with the ones found here.
            unchecked: names whose value in ``values`` is a stand-in for a refused one (their
                problem is already in ``known_problems``).

        Raises:
            SettingsError: listing every unknown name, refused and invalid value at once.
        """
        merged = {**defaults(), **values}
        problems = list(known_problems)
        problems += [f"unknown parameter {name!r}" for name in values if name not in _SPECS]
        invalid = {name: _check(_SPECS[name], merged[name]) for name in _SPECS if name not in unchecked}
        problems += [problem for problem in invalid.values() if problem]
        problems += _cross_checks(merged, {name for name, problem in invalid.items() if problem} | set(unchecked))
        tracking = None
        if not problems and merged["tracking.enabled"]:
            try:
                tracking = TrackerConfig(
                    gate_m=float(merged["tracking.gate_m"]), gate_chi2=float(merged["tracking.gate_chi2"]),
                    birth_hits=merged["tracking.birth_hits"],
                    death_misses=merged["tracking.death_misses"],
                    max_coast_s=float(merged["tracking.max_coast_s"]),
                    accel_sigma_mps2=float(merged["tracking.accel_sigma_mps2"]),
                )
            except ValueError as error:
                problems.append(str(error))
        if problems:
            raise SettingsError("invalid parameters:\n  - " + "\n  - ".join(problems))
        plain = {f.name: merged[f.name] for f in fields(cls) if f.name != "tracking"}
        for name, value in plain.items():
            if isinstance(_SPECS[name].default, float):
                plain[name] = float(value)
        return cls(**plain, tracking=tracking)


def _cross_checks(values: Mapping[str, Any], invalid: set[str]) -> list[str]:
    """Checks beyond one value's type and range (skipping values already found invalid)."""
    problems = []
    if "device" not in invalid and not re.fullmatch(r"auto|cpu|cuda(:\d+)?", values["device"]):
        problems.append(f"device is {values['device']!r}; expected 'auto', 'cpu', 'cuda' or 'cuda:N'")
    width, height = values["input_width"], values["input_height"]
    if not {"input_width", "input_height"} & invalid:
        if (width == 0) != (height == 0):
            problems.append(f"input_width and input_height must both be 0 (model default) or both "
                            f"set, got {width}x{height}")
        elif width and (width < 32 or height < 32):
            problems.append(f"input size {width}x{height} is too small (at least 32x32)")
    for name in ("target_frame", "ground_frame"):
        if name not in invalid and values[name].startswith("/"):
            problems.append(f"{name} {values[name]!r} must not start with '/' (tf2 frame ids have no "
                            f"leading slash)")
    return problems
