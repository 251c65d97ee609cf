"""Decisions of the launch files, without ``launch``: which source to run, topics, bag and RViz set-up.

``launch/camera.launch.py`` and ``launch/replay.launch.py`` read their arguments, call
:func:`plan_camera` / :func:`plan_replay`, and turn the plan into launch actions. Keeping the logic
here lets it be tested without ROS.

Sources of ``camera.launch.py``:

- ``sample``: ``ros2 bag play --loop`` of the shipped sample bag (no hardware needed); the image and
  CameraInfo topics are read from the bag's ``metadata.yaml`` (by message type);
- ``camera``: start a ``v4l2_camera`` or ``usb_cam`` driver (``camera_driver:=...``);
- ``topics``: an already running camera (``image_topic:=...``).

``source:=auto`` (the default) picks ``camera`` when a driver is named, ``topics`` when an image
topic is named, and ``sample`` otherwise.

Bags are played with ``--clock`` and the node runs on that clock (``use_sim_time``), so stamps, tf
lookups and the stamp age agree. ``rviz:=auto`` (the default) opens RViz only where the ``rviz2``
package is installed (headless robots have none). The launch files shut everything down when an
essential process (bag player, driver, transform publisher, pose node) exits, so nothing is left
running; ``replay.launch.py`` starts playback when the node logs :data:`READY_LINE`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Mapping

import yaml

__all__ = [
    "CAMERA_ARGUMENTS", "REPLAY_ARGUMENTS", "VIEW_FRAME", "VIEW_TO_OPTICAL_XYZW", "READY_LINE",
    "SAMPLE_GROUND_FRAME", "NodePlan", "CameraPlan", "ReplayPlan", "ReadyGate", "bag_topics",
    "bag_has_topic", "camera_info_topic_for", "decide_rviz", "plan_camera", "plan_replay",
    "replay_output_dir", "render_rviz_config",
]

# The pose node logs this line once it is subscribed and its estimator is warm.
READY_LINE = "pose_node ready: listening for images"
# The floor frame the synthetic bags' /tf_static provides (parent of the camera optical frame).
SAMPLE_GROUND_FRAME = "ground"
# ros2 bag play offers a bag's /tf_static as volatile unless told; tf2 listens transient-local.
TF_STATIC_QOS_FILE = "bag_play_qos.yaml"

# A z-up frame for RViz above the camera's optical frame (x right, y down, z forward); published by
# the launch file only where it owns the camera (sample bag, started driver), as a frame may have only
# one parent in tf.
VIEW_FRAME = "mp3d_view"
# Quaternion (x, y, z, w) of the optical frame in the view frame: optical z -> view x, x -> -y, y -> -z.
VIEW_TO_OPTICAL_XYZW = ("-0.5", "0.5", "-0.5", "0.5")
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
# Executables of the supported camera drivers and the parameter naming their frame id.
DRIVERS = {
    "v4l2_camera": ("v4l2_camera", "v4l2_camera_node", "camera_frame_id"),
    "usb_cam": ("usb_cam", "usb_cam_node_exe", "frame_id"),
}

# (name, default, description); defaults of "" mean "not given".
CAMERA_ARGUMENTS: tuple[tuple[str, str, str], ...] = (
    ("source", "auto", "auto | sample | camera | topics (see mp3d_ros/ros/launch_support.py)"),
    ("image_topic", "", "Image topic of a running camera (source:=topics)"),
    ("camera_info_topic", "", "CameraInfo topic; default: 'camera_info' beside the image topic"),
    ("image_transport", "raw", "raw | compressed (subscribes <image_topic>/compressed)"),
    ("camera_driver", "", "v4l2_camera | usb_cam: start this driver (source:=camera)"),
    ("video_device", "/dev/video0", "Video device of the camera driver"),
    ("camera_frame", "camera_optical_frame", "frame_id the driver stamps its images with"),
    ("sample_bag", "", "Bag for source:=sample; default: the shipped models/sample_bag"),
    ("model", "", "Model file; empty = the shipped default (parameter model_path)"),
    ("device", "", "cuda | cuda:N | cpu; empty = the params file's value"),
    ("params_file", "", "Node parameters; default: the shipped config/mp3d.yaml"),
    ("namespace", "", "Namespace of the node (and of a started driver)"),
    ("rviz", "auto", "auto | true | false: open RViz with config/mp3d.rviz (auto: if rviz2 is installed)"),
    ("fixed_frame", "", "RViz fixed frame; default: mp3d_view (z up) for the sample and a started "
                        "driver, camera_frame otherwise"),
)
REPLAY_ARGUMENTS: tuple[tuple[str, str, str], ...] = (
    ("bag", "", "Input bag (folder with metadata.yaml, or a bag file) - required"),
    ("out", "", "Output bag folder (must not exist); default: mp3d_replay_<date_time> in the current "
                "directory (~/.ros when it is not writable)"),
    ("rate", "1.0", "Playback rate (lower it when the node cannot keep up)"),
    ("image_topic", "", "Image topic in the bag; default: found by type"),
    ("camera_info_topic", "", "CameraInfo topic in the bag; default: found by type"),
    ("record_inputs", "false", "true | false: also record the bag's image and CameraInfo topics"),
    ("model", "", "Model file; empty = the shipped default"),
    ("device", "", "cuda | cuda:N | cpu; empty = the params file's value"),
    ("params_file", "", "Node parameters; default: the shipped config/mp3d.yaml"),
    ("namespace", "", "Namespace of the node"),
)


def _truthy(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError(f"{name}:={value!r} must be true or false")
    return lowered in ("true", "1", "yes")


def decide_rviz(value: str, package_exists: Callable[[str], bool]) -> tuple[bool, str]:
    """(open RViz?, what was decided) for ``rviz:=value``.

    Raises:
        ValueError: ``rviz:=true`` where rviz2 is not installed, or a value that is not a choice.
    """
    if value.strip().lower() == "auto":
        if package_exists("rviz2"):
            return True, "rviz: rviz2 is installed, opening it (rviz:=false to skip)"
        return False, "rviz: rviz2 is not installed, running without it"
    wanted = _truthy(value, "rviz")
    if wanted and not package_exists("rviz2"):
        raise ValueError("rviz:=true but the package 'rviz2' is not installed "
                         "(sudo apt install ros-$ROS_DISTRO-rviz2, or rviz:=false)")
    return wanted, f"rviz: {'on' if wanted else 'off'}"


def camera_info_topic_for(image_topic: str) -> str:
    """image_transport's convention: ``/cam/image_raw`` -> ``/cam/camera_info``."""
    head, separator, _ = image_topic.rstrip("/").rpartition("/")
    return f"{head}/camera_info" if separator else "camera_info"


def _strip_compressed(topic: str) -> str:
    """The base image topic of image_transport's ``<image>/compressed``."""
    return topic[: -len("/compressed")] if topic.endswith("/compressed") else topic


def _namespace_prefix(namespace: str) -> str:
    """``robot`` or ``/robot/`` -> ``/robot``; empty -> empty."""
    return "/" + namespace.strip("/") if namespace.strip("/") else ""


def bag_topics(bag: str | Path) -> tuple[str | None, str | None, str | None]:
    """(image topic, its type, CameraInfo topic) listed in a bag folder's ``metadata.yaml``.

    The first image topic (raw before compressed) and CameraInfo topic are taken; Nones when the bag
    has no metadata.yaml (a lone bag file) or no such topic.
    """
    metadata = Path(bag) / "metadata.yaml"
    if not metadata.is_file():
        return None, None, None
    info = yaml.safe_load(metadata.read_text()) or {}
    entries = info.get("rosbag2_bagfile_information", {}).get("topics_with_message_count", [])
    topics = [(e["topic_metadata"]["name"], e["topic_metadata"]["type"]) for e in entries]
    images = sorted((IMAGE_TYPES.index(t), n, t) for n, t in topics if t in IMAGE_TYPES)
    infos = sorted(n for n, t in topics if t == CAMERA_INFO_TYPE)
    image_topic, image_type = (images[0][1], images[0][2]) if images else (None, None)
    return image_topic, image_type, (infos[0] if infos else None)


def bag_has_topic(bag: str | Path, topic: str) -> bool:
    """Whether a bag folder's ``metadata.yaml`` lists ``topic``."""
    metadata = Path(bag) / "metadata.yaml"
    if not metadata.is_file():
        return False
    info = yaml.safe_load(metadata.read_text()) or {}
    entries = info.get("rosbag2_bagfile_information", {}).get("topics_with_message_count", [])
    return any(e["topic_metadata"]["name"] == topic for e in entries)


def _bag_play(bag: str, share_dir: Path, *extra: str) -> list[str]:
    """``ros2 bag play`` on the bag's clock, with /tf_static offered as tf2 expects it."""
    command = ["ros2", "bag", "play", bag, "--clock", *extra]
    if bag_has_topic(bag, "/tf_static"):
        command += ["--qos-profile-overrides-path", str(share_dir / "config" / TF_STATIC_QOS_FILE)]
    return command


@dataclass
class NodePlan:
    """The pose node's remappings and parameters (files first, then overrides)."""

    remappings: list[tuple[str, str]]
    parameter_files: list[str]
    overrides: dict[str, object] = field(default_factory=dict)


@dataclass
class CameraPlan:
    source: str
    node: NodePlan
    rviz_image_topic: str  # absolute topic of the images the node listens to
    node_prefix: str  # absolute name of the node, e.g. /robot/pose_node (its outputs live below)
    bag_play: list[str] | None = None  # command line
    driver: tuple[str, str, dict] | None = None  # (package, executable, parameters)
    rviz: bool = False
    fixed_frame: str = VIEW_FRAME
    view_transform: list[str] | None = None  # static_transform_publisher arguments
    messages: list[str] = field(default_factory=list)  # what was decided, for the launch log


def _node_plan(args: Mapping[str, str], share_dir: Path, image_topic: str, info_topic: str,
               transport: str) -> NodePlan:
    if transport not in ("raw", "compressed"):
        raise ValueError(f"image_transport:={transport!r} must be raw or compressed")
    params_file = args.get("params_file") or str(share_dir / "config" / "mp3d.yaml")
    overrides: dict[str, object] = {"image_transport": transport}
    if args.get("model"):
        overrides["model_path"] = args["model"]
    if args.get("device"):
        overrides["device"] = args["device"]
    # The node subscribes 'image' (or '<image>/compressed'); remapping 'image' moves both.
    return NodePlan([("image", image_topic), ("camera_info", info_topic)], [params_file], overrides)


def plan_camera(args: Mapping[str, str], share_dir: str | Path,
                package_exists: Callable[[str], bool] = lambda package: False) -> CameraPlan:
    """What ``camera.launch.py`` starts for its arguments (missing ones take their defaults).

    ``package_exists(name)`` says whether a ROS package is installed (for ``rviz:=auto``).

    Raises:
        ValueError: an unknown source or driver, or a source without what it needs.
    """
    args = {**{name: default for name, default, _ in CAMERA_ARGUMENTS}, **args}
    share_dir = Path(share_dir)
    source, driver = args["source"], args["camera_driver"]
    if source == "auto":
        source = "camera" if driver else "topics" if args["image_topic"] else "sample"
    if source not in ("sample", "camera", "topics"):
        raise ValueError(f"source:={source!r} must be auto, sample, camera or topics")
    transport = args["image_transport"]
    rviz, rviz_message = decide_rviz(args["rviz"], package_exists)
    messages = [f"source: {source}", rviz_message]
    node_overrides: dict[str, object] = {}
    ground_in_bag = False
    bag_play, driver_spec = None, None
    if source == "sample":
        bag = args["sample_bag"] or str(share_dir / "models" / "sample_bag")
        if not Path(bag).exists():
            raise ValueError(f"sample bag {bag} does not exist; name a camera (camera_driver:=... or "
                             f"image_topic:=...) or a bag (sample_bag:=...)")
        found_image, found_type, found_info = bag_topics(bag)
        image_topic = args["image_topic"] or found_image or "/camera/image_raw"
        info_topic = args["camera_info_topic"] or found_info or camera_info_topic_for(image_topic)
        if found_type == "sensor_msgs/msg/CompressedImage" and not args["image_topic"]:
            transport = "compressed"
            image_topic = _strip_compressed(image_topic)
        bag_play = _bag_play(bag, share_dir, "--loop")
        node_overrides["use_sim_time"] = True  # the bag's clock: stamps, tf and stamp age agree
        if bag_has_topic(bag, "/tf_static"):  # the camera's pose over the floor is in the bag
            node_overrides["ground_frame"] = SAMPLE_GROUND_FRAME
            ground_in_bag = True
        messages.append(f"playing {bag} in a loop on its clock: {image_topic} ({transport}), {info_topic}")
    elif source == "camera":
        if driver not in DRIVERS:
            raise ValueError(f"camera_driver:={driver!r} must be one of {', '.join(DRIVERS)}")
        package, executable, frame_parameter = DRIVERS[driver]
        driver_spec = (package, executable, {"video_device": args["video_device"],
                                             frame_parameter: args["camera_frame"]})
        image_topic, info_topic = "image_raw", "camera_info"
        messages.append(f"starting {package}/{executable} on {args['video_device']}")
    else:
        if not args["image_topic"]:
            raise ValueError("source:=topics needs image_topic:=...")
        image_topic = args["image_topic"]
        info_topic = args["camera_info_topic"] or camera_info_topic_for(image_topic)
    node = _node_plan(args, share_dir, image_topic, info_topic, transport)
    node.overrides.update(node_overrides)
    prefix = _namespace_prefix(args["namespace"])
    rviz_image = image_topic if image_topic.startswith("/") else f"{prefix}/{image_topic}"
    view_transform = None
    # A bag whose /tf_static places the camera over the floor already gives the optical frame its
    # parent: a second parent (the view transform) would make tf2 flip between the two.
    if source != "topics" and not ground_in_bag:
        qx, qy, qz, qw = VIEW_TO_OPTICAL_XYZW
        view_transform = ["--x", "0", "--y", "0", "--z", "0", "--qx", qx, "--qy", qy, "--qz", qz,
                          "--qw", qw, "--frame-id", VIEW_FRAME, "--child-frame-id", args["camera_frame"]]
    fixed_frame = args["fixed_frame"] or (SAMPLE_GROUND_FRAME if ground_in_bag else
                                          VIEW_FRAME if view_transform else args["camera_frame"])
    return CameraPlan(source, node, rviz_image, f"{prefix}/pose_node", bag_play, driver_spec, rviz,
                      fixed_frame, view_transform, messages)


@dataclass
class ReplayPlan:
    node: NodePlan
    bag_play: list[str]  # started when the node logs READY_LINE
    bag_record: list[str]
    out: Path
    messages: list[str] = field(default_factory=list)


class ReadyGate:
    """True for the first output text holding :data:`READY_LINE`, False before and after."""

    def __init__(self, line: str = READY_LINE) -> None:
        self.line, self.opened = line, False

    def __call__(self, text: bytes | str) -> bool:
        if self.opened:
            return False
        decoded = text.decode(errors="replace") if isinstance(text, bytes) else text
        self.opened = self.line in decoded
        return self.opened


def replay_output_dir(out: str, cwd: Path, home: Path, now: datetime,
                      writable: Callable[[Path], bool] = lambda path: os.access(path, os.W_OK)) -> Path:
    """Where ``replay.launch.py`` records: ``out`` (refused if it exists), or a new folder
    ``mp3d_replay_<date>_<time>[_N]`` in ``cwd`` (``home/.ros`` when ``cwd`` is not writable, e.g.
    inside an install tree)."""
    if out:
        path = Path(out).expanduser().resolve()
        if path.exists():
            raise ValueError(f"output bag {path} already exists; choose another out:=...")
        return path
    base = cwd if writable(cwd) else home / ".ros"
    stem = f"mp3d_replay_{now:%Y%m%d_%H%M%S}"
    path, index = base / stem, 1
    while path.exists():
        index += 1
        path = base / f"{stem}_{index}"
    return path


def plan_replay(args: Mapping[str, str], share_dir: str | Path, cwd: Path | None = None,
                home: Path | None = None, now: datetime | None = None) -> ReplayPlan:
    """``ros2 bag play`` + the node (on the bag's clock) + ``ros2 bag record`` of its outputs.

    ``cwd``, ``home`` and ``now`` (default: the process's) choose the default output folder.
    """
    args = {**{name: default for name, default, _ in REPLAY_ARGUMENTS}, **args}
    bag = args["bag"]
    if not bag:
        raise ValueError("bag:=... is required")
    if not Path(bag).exists():
        raise ValueError(f"bag {bag} does not exist")
    rate = float(args["rate"])
    if not rate > 0:
        raise ValueError(f"rate:={args['rate']} must be > 0")
    found_image, found_type, found_info = bag_topics(bag)
    image_topic = args["image_topic"] or found_image
    if not image_topic:
        raise ValueError(f"no Image or CompressedImage topic found in {bag}; give image_topic:=...")
    transport = "compressed" if (found_type == "sensor_msgs/msg/CompressedImage"
                                 and not args["image_topic"]) else "raw"
    if transport == "compressed":
        image_topic = _strip_compressed(image_topic)
    info_topic = args["camera_info_topic"] or found_info or camera_info_topic_for(image_topic)
    node = _node_plan(args, Path(share_dir), image_topic, info_topic, transport)
    node.overrides["use_sim_time"] = True  # stamps, tf and latency follow the bag's clock
    out = replay_output_dir(args["out"], cwd or Path.cwd(), home or Path.home(), now or datetime.now())
    prefix = _namespace_prefix(args["namespace"])
    topics = [f"{prefix}/pose_node/poses", f"{prefix}/pose_node/markers", "/diagnostics"]
    if _truthy(args["record_inputs"], "record_inputs"):
        topics += [image_topic + ("/compressed" if transport == "compressed" else ""), info_topic]
    play = _bag_play(bag, Path(share_dir), "--rate", f"{rate:g}")
    record = ["ros2", "bag", "record", "-o", str(out), *topics]
    return ReplayPlan(node, play, record, out, [
        f"replaying {bag} ({image_topic}, {transport}) into {out} once the pose node is ready"])


def render_rviz_config(template: str, fixed_frame: str, poses_prefix: str, image_topic: str) -> str:
    """``config/mp3d.rviz`` with the fixed frame and topics of this launch.

    The template names the fixed frame ``mp3d_view``, the node ``/pose_node`` and the
    image ``/camera/image_raw``; they are replaced by ``fixed_frame``, ``poses_prefix`` (e.g.
    ``/robot/pose_node``) and ``image_topic``.
    """
    out = template.replace(f"Fixed Frame: {VIEW_FRAME}", f"Fixed Frame: {fixed_frame}")
    out = out.replace("/pose_node/markers", f"{poses_prefix}/markers")
    return out.replace("Value: /camera/image_raw", f"Value: {image_topic}")
