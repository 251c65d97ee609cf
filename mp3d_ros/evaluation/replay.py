"""The whole pipeline over a rosbag2 recording, without ROS (``mp3d-replay``'s library). over a rosbag2 recording, without ROS.

Reads a rosbag2 bag (sqlite3 or MCAP storage) with the ``rosbags`` library, pairs each image with the
CameraInfo in force at its stamp (same ``frame_id``: the latest one stamped at or before the image),
runs the estimator with those live intrinsics, tracks people, and writes ``PoseArray3D`` and
``MarkerArray`` outputs into a new bag stamped with the source images' stamps. Frames that cannot be
processed (corrupt message, unsupported encoding, no usable CameraInfo, image size differing from
its CameraInfo) are skipped and counted by reason, never silently. With a ground-truth
``PoseArray3D`` topic, the evaluator's metrics are computed over the whole bag
(:mod:`mp3d_ros.evaluation.replay_report`).
"""

from __future__ import annotations

import bisect
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from tqdm import tqdm

from mp3d_ros.geometry.camera import Intrinsics
from mp3d_ros.geometry.people import People
from mp3d_ros.messages.conversions import (
    MessageClasses,
    people_to_pose_array,
    pose_array_to_people,
    stamp_to_ns,
)
from mp3d_ros.messages.images import UnsupportedEncodingError, any_image_to_rgb
from mp3d_ros.messages.markers import people_to_markers
from mp3d_ros.messages.typestore import typestore
from mp3d_ros.tracking.tracker import Tracker

__all__ = [
    "IMAGE_TYPES",
    "CAMERA_INFO_TYPE",
    "POSES_TYPE",
    "ReplayTopics",
    "FrameResult",
    "ReplayResult",
    "pick_topics",
    "CameraInfoTimeline",
    "replay_bag",
]

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
POSES_TYPE = "mp3d_ros/msg/PoseArray3D"
MARKERS_TYPE = "visualization_msgs/msg/MarkerArray"

Estimate = Callable[[np.ndarray, Intrinsics], People]


@dataclass(frozen=True)
class ReplayTopics:
    """The input topics a replay reads (ground truth optional)."""

    image: str
    camera_info: str
    ground_truth: str | None


@dataclass(frozen=True, eq=False)
class FrameResult:
    """One processed image: its stamp, the people found, the time the estimator took, the truth."""

    stamp_ns: int
    people: People
    latency_ms: float
    ground_truth: People | None


@dataclass
class ReplayResult:
    """Everything a replay produced, and everything it skipped with why."""

    topics: ReplayTopics
    frames: list[FrameResult] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    skip_examples: dict[str, str] = field(default_factory=dict)
    images_seen: int = 0
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)

    def skip(self, reason: str, detail: str) -> None:
        """Count a skipped frame; the first detail of each reason is kept for the report."""
        self.skipped[reason] += 1
        self.skip_examples.setdefault(reason, detail)


def pick_topics(
    connections: Sequence[tuple[str, str]],
    image_topic: str | None = None,
    camera_info_topic: str | None = None,
    ground_truth_topic: str | None = None,
) -> tuple[ReplayTopics, list[str]]:
    """Choose the input topics from ``(topic, msgtype)`` pairs, by type where not given.

    Returns the topics and human-readable notes on what was picked and why.

    Raises:
        ValueError: a named topic is absent or of the wrong type, or no candidate exists.
    """
    types = dict(connections)
    notes = []

    def choose(given: str | None, wanted: Sequence[str], what: str, required: bool) -> str | None:
        if given is not None:
            if given not in types:
                raise ValueError(f"bag has no topic {given!r}; its topics: {sorted(types)}")
            if types[given] not in wanted:
                raise ValueError(f"topic {given!r} is {types[given]}, expected {' or '.join(wanted)}")
            return given
        candidates = sorted(t for t, m in types.items() if m in wanted)
        if not candidates:
            if required:
                raise ValueError(f"bag has no {what} topic ({' or '.join(wanted)}); topics: "
                                 f"{ {t: m for t, m in sorted(types.items())} }")
            return None
        if what == "image" and len(candidates) > 1:
            # Prefer a raw stream over its compressed republication, then the shortest name.
            candidates.sort(key=lambda t: (types[t] != IMAGE_TYPES[0], len(t), t))
        notes.append(f"{what} topic: picked {candidates[0]} ({types[candidates[0]]})"
                     + (f" of {candidates}" if len(candidates) > 1 else ""))
        return candidates[0]

    image = choose(image_topic, IMAGE_TYPES, "image", True)
    camera_info = choose(camera_info_topic, (CAMERA_INFO_TYPE,), "camera info", True)
    ground_truth = choose(ground_truth_topic, (POSES_TYPE,), "ground truth", False)
    return ReplayTopics(image, camera_info, ground_truth), notes


class CameraInfoTimeline:
    """CameraInfo messages per frame_id, looked up by stamp: the one in force at a time."""

    def __init__(self) -> None:
        self._stamps: dict[str, list[int]] = defaultdict(list)
        self._messages: dict[str, list[Any]] = defaultdict(list)

    def add(self, frame_id: str, stamp_ns: int, message: Any) -> None:
        index = bisect.bisect_right(self._stamps[frame_id], stamp_ns)
        self._stamps[frame_id].insert(index, stamp_ns)
        self._messages[frame_id].insert(index, message)

    def in_force(self, frame_id: str, stamp_ns: int) -> Any | None:
        """The latest CameraInfo of ``frame_id`` stamped at or before ``stamp_ns``, else None."""
        index = bisect.bisect_right(self._stamps.get(frame_id, []), stamp_ns)
        return self._messages[frame_id][index - 1] if index else None

    def frame_ids(self) -> list[str]:
        return sorted(self._stamps)


def _bag_path(path: Path) -> Path:
    """A rosbag2 bag is a folder with metadata.yaml; accept the path of a storage file inside it."""
    if path.is_file() and (path.parent / "metadata.yaml").is_file():
        return path.parent
    if not path.exists():
        raise FileNotFoundError(f"bag {path} does not exist")
    if not (path / "metadata.yaml").is_file():
        raise ValueError(f"{path} is not a rosbag2 bag (a folder with metadata.yaml)")
    return path


def _deserialize(reader: Any, connection: Any, raw: bytes) -> Any:
    return reader.deserialize(raw, connection.msgtype)


def _collect_camera_infos(reader: Any, connections: list, result: ReplayResult) -> CameraInfoTimeline:
    timeline = CameraInfoTimeline()
    for connection, _, raw in reader.messages(connections=connections):
        try:
            message = _deserialize(reader, connection, raw)
        except Exception as error:  # rosbags raises several types for corrupt CDR
            result.skip("corrupt CameraInfo message", f"{connection.topic}: {error}")
            continue
        timeline.add(message.header.frame_id, stamp_to_ns(message.header.stamp), message)
    return timeline


def _collect_ground_truth(reader: Any, connections: list, result: ReplayResult) -> dict[int, People]:
    truth = {}
    for connection, _, raw in reader.messages(connections=connections):
        try:
            message = _deserialize(reader, connection, raw)
            truth[stamp_to_ns(message.header.stamp)] = pose_array_to_people(message)
        except Exception as error:
            result.skip("unreadable ground truth message", f"{connection.topic}: {error}")
    return truth


class _OutputBag:
    """The rosbag2 writer of the outputs (and optionally copies of the inputs)."""

    def __init__(self, path: Path, storage: str, input_connections: list, namespace: str) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        if path.exists():
            raise FileExistsError(f"output bag {path} already exists; choose another --out")
        plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
        self.store = typestore()
        self.writer = Writer(path, version=8, storage_plugin=plugin)
        self.writer.open()
        self.poses = self.writer.add_connection(f"{namespace}/poses", POSES_TYPE, typestore=self.store)
        self.markers = self.writer.add_connection(f"{namespace}/markers", MARKERS_TYPE,
                                                  typestore=self.store)
        self.copies = {
            c.id: self.writer.add_connection(c.topic, c.msgtype, typestore=self.store)
            for c in input_connections
        }

    def write(self, connection: Any, stamp_ns: int, message: Any) -> None:
        self.writer.write(connection, stamp_ns, self.store.serialize_cdr(message, connection.msgtype))

    def copy(self, source_connection: Any, stamp_ns: int, raw: bytes) -> None:
        self.writer.write(self.copies[source_connection.id], stamp_ns, raw)

    def close(self) -> None:
        self.writer.close()


def _process_image(message: Any, timeline: CameraInfoTimeline, estimate: Estimate, rectified: bool,
                   result: ReplayResult, topic: str) -> tuple[People, float] | None:
    """Estimate the people of one image message, or count why it was skipped."""
    stamp_ns = stamp_to_ns(message.header.stamp)
    try:
        rgb = any_image_to_rgb(message)
    except UnsupportedEncodingError as error:
        result.skip(f"unsupported encoding on {topic}", str(error))
        return None
    except ValueError as error:
        result.skip("undecodable image", f"{topic} at {stamp_ns} ns: {error}")
        return None
    info = timeline.in_force(message.header.frame_id, stamp_ns)
    if info is None:
        result.skip("no CameraInfo in force",
                    f"image at {stamp_ns} ns in frame {message.header.frame_id!r}; CameraInfo frames: "
                    f"{timeline.frame_ids()}")
        return None
    try:
        intrinsics = Intrinsics.from_camera_info(info, rectified=rectified)
        intrinsics.check_image_size(rgb.shape[1], rgb.shape[0], f"image at {stamp_ns} ns")
    except ValueError as error:
        result.skip("unusable CameraInfo", str(error))
        return None
    start = time.perf_counter()
    people = estimate(rgb, intrinsics)
    return people, 1000.0 * (time.perf_counter() - start)


def replay_bag(
    bag: str | Path,
    estimate: Estimate,
    out_bag: str | Path | None = None,
    image_topic: str | None = None,
    camera_info_topic: str | None = None,
    ground_truth_topic: str | None = None,
    rectified: bool = False,
    copy_inputs: bool = False,
    storage: str = "mcap",
    tracker: Tracker | None = None,
    output_namespace: str = "/mp3d",
    max_frames: int | None = None,
    progress: bool = True,
) -> ReplayResult:
    """Run ``estimate`` over every image of a bag; write outputs to ``out_bag`` when given.

    A KeyboardInterrupt stops reading, and the output bag is closed cleanly with what was written.
    """
    from rosbags.highlevel import AnyReader

    classes = MessageClasses.from_typestore()
    with AnyReader([_bag_path(Path(bag))], default_typestore=typestore()) as reader:
        topics, notes = pick_topics([(c.topic, c.msgtype) for c in reader.connections],
                                    image_topic, camera_info_topic, ground_truth_topic)
        result = ReplayResult(topics, notes=notes)
        by_topic = defaultdict(list)
        for connection in reader.connections:
            by_topic[connection.topic].append(connection)
        timeline = _collect_camera_infos(reader, by_topic[topics.camera_info], result)
        truth = (_collect_ground_truth(reader, by_topic[topics.ground_truth], result)
                 if topics.ground_truth else {})
        inputs = [c for t in (topics.image, topics.camera_info, topics.ground_truth) if t
                  for c in by_topic[t]] if copy_inputs else []
        writer = _OutputBag(Path(out_bag), storage, inputs, output_namespace) if out_bag else None
        total = sum(c.msgcount for c in by_topic[topics.image])
        try:
            if writer is not None:
                for connection, timestamp, raw in reader.messages(connections=inputs):
                    writer.copy(connection, timestamp, raw)
            stream = reader.messages(connections=by_topic[topics.image])
            for connection, _, raw in tqdm(stream, total=total, desc="replay", unit="frame",
                                           disable=not progress):
                if max_frames is not None and result.images_seen >= max_frames:
                    break
                result.images_seen += 1
                try:
                    message = _deserialize(reader, connection, raw)
                except Exception as error:
                    result.skip("corrupt image message", f"{connection.topic}: {error}")
                    continue
                outcome = _process_image(message, timeline, estimate, rectified, result, connection.topic)
                if outcome is None:
                    continue
                people, latency_ms = outcome
                stamp_ns = stamp_to_ns(message.header.stamp)
                if tracker is not None:
                    people = tracker.update(people, stamp_ns * 1e-9)
                result.frames.append(FrameResult(stamp_ns, people, latency_ms, truth.get(stamp_ns)))
                if writer is not None:
                    writer.write(writer.poses, stamp_ns,
                                 people_to_pose_array(people, message.header, classes))
                    writer.write(writer.markers, stamp_ns,
                                 people_to_markers(people, message.header, classes))
        except KeyboardInterrupt:
            result.interrupted = True
        finally:
            if writer is not None:
                writer.close()
    return result
