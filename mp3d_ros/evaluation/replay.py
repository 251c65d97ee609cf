"""The whole pipeline over a rosbag2 recording, without ROS (``mp3d-replay``'s library).

Reads a rosbag2 bag (sqlite3 or MCAP storage) with :mod:`~mp3d_ros.evaluation.bag_reading`, which
keeps every message it can read from a damaged file and names what it cannot. Each image is paired
with a CameraInfo of its ``frame_id`` as the node pairs them (:func:`mp3d_ros.messages.pairing.pair_stamp`:
within the slop, else the latest earlier one, counted as a fallback), the estimator runs with those
live intrinsics, people are tracked, and ``PoseArray3D`` and ``MarkerArray`` outputs go into a new bag
stamped with the source images' stamps. Frames that cannot be processed (corrupt or undecodable
message, unsupported encoding, no usable CameraInfo, image size differing from its CameraInfo, a
stamp already seen) are skipped and counted by reason, never silently. With a ground-truth
``PoseArray3D`` topic, the evaluator's metrics are computed over the whole bag
(:mod:`mp3d_ros.evaluation.replay_report`); the ground truth of a skipped frame counts as missed.

Bad input a replay cannot start from raises :class:`ReplayInputError` before any frame is read.
"""

from __future__ import annotations

import os
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from tqdm import tqdm

from mp3d_ros.evaluation.bag_reading import BagSource, ReplayInputError
from mp3d_ros.evaluation.memory import TRIM_EVERY_FRAMES, release_free_memory
from mp3d_ros.evaluation.floor_source import TF_TYPE, FloorSource
from mp3d_ros.geometry.camera import Intrinsics
from mp3d_ros.geometry.people import People
from mp3d_ros.messages.conversions import (
    MessageClasses,
    people_to_pose_array,
    pose_array_to_people,
    stamp_to_ns,
)
from mp3d_ros.messages.decode_ahead import Decoded, decode_now, decoded_ahead
from mp3d_ros.messages.images import UnsupportedEncodingError, any_image_to_rgb
from mp3d_ros.messages.markers import people_to_markers
from mp3d_ros.messages.pairing import DEFAULT_SYNC_SLOP_S, pair_stamp
from mp3d_ros.messages.typestore import typestore
from mp3d_ros.tracking.tracker import Tracker

__all__ = [
    "IMAGE_TYPES",
    "CAMERA_INFO_TYPE",
    "POSES_TYPE",
    "ReplayInputError",
    "ReplayTopics",
    "FrameResult",
    "GroundTruthMessage",
    "ReplayResult",
    "pick_topics",
    "CameraInfoTimeline",
    "check_output_bag",
    "open_replay",
    "replay_bag",
]

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
POSES_TYPE = "mp3d_ros/msg/PoseArray3D"
MARKERS_TYPE = "visualization_msgs/msg/MarkerArray"

# estimate(rgb, intrinsics) -> People; called with floor=FloorPlane | None too when replaying with a floor.
Estimate = Callable[..., People]
FrameKey = tuple[int, int]  # (header stamp ns, how many earlier messages had that stamp)


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
    image_size: tuple[int, int] | None = None  # (W, H) of the decoded image


@dataclass(frozen=True, eq=False)
class GroundTruthMessage:
    """One ground-truth message: its key (stamp, occurrence of that stamp) and its people."""

    key: FrameKey
    people: People


@dataclass
class ReplayResult:
    """Everything a replay produced, and everything it skipped or could not read, with why."""

    topics: ReplayTopics
    frames: list[FrameResult] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # images not processed, by reason
    skip_examples: dict[str, str] = field(default_factory=dict)
    unreadable: Counter = field(default_factory=Counter)  # CameraInfo / ground truth, by reason
    images_seen: int = 0
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)
    ground_truth: list[GroundTruthMessage] = field(default_factory=list)
    processed_keys: dict[FrameKey, int] = field(default_factory=dict)  # key -> index in frames
    image_keys: set[FrameKey] = field(default_factory=set)  # every image read, processed or not
    read_damage: list[str] = field(default_factory=list)
    images_lost: bool = False  # images whose stamp is unknown: damaged, short topic, corrupt CDR
    last_image_stamp_ns: int | None = None
    stopped_early: bool = False  # --max-frames or an interrupt: later ground truth is not scored
    camera_info_fallbacks: int = 0
    duplicate_images: int = 0
    duplicate_ground_truth: int = 0
    backward_stamps: int = 0
    tracker_resets: int = 0
    floor: str = ""  # where the floor plane came from ("" = not used)
    floor_unavailable: int = 0  # frames estimated without the floor: no transform to the ground

    def skip(self, reason: str, detail: str) -> None:
        """Count a skipped frame; the first detail of each reason is kept for the report."""
        self.skipped[reason] += 1
        self.skip_examples.setdefault(reason, detail)

    def bad_message(self, reason: str, detail: str) -> None:
        """Count an unreadable CameraInfo or ground-truth message (not a frame) with an example."""
        self.unreadable[reason] += 1
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
        ReplayInputError: a named topic is absent or of the wrong type, or no candidate exists.
    """
    types = dict(connections)
    notes = []

    def choose(given: str | None, wanted: Sequence[str], what: str, required: bool) -> str | None:
        if given is not None:
            if given not in types:
                raise ReplayInputError(f"bag has no topic {given!r}; its topics: {sorted(types)}")
            if types[given] not in wanted:
                raise ReplayInputError(f"topic {given!r} is {types[given]}, expected {' or '.join(wanted)}")
            return given
        candidates = sorted(t for t, m in types.items() if m in wanted)
        if not candidates:
            if required:
                raise ReplayInputError(f"bag has no {what} topic ({' or '.join(wanted)}); topics: "
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
    """CameraInfo messages per frame_id, paired with an image stamp by the node's rule."""

    def __init__(self, slop_s: float = DEFAULT_SYNC_SLOP_S) -> None:
        self.slop_ns = round(slop_s * 1e9)
        self._entries: dict[str, list[tuple[int, Any]]] = defaultdict(list)
        self._stamps: dict[str, list[int]] = {}

    def add(self, frame_id: str, stamp_ns: int, message: Any) -> None:
        self._entries[frame_id].append((stamp_ns, message))
        self._stamps.pop(frame_id, None)

    def pair(self, frame_id: str, stamp_ns: int) -> tuple[Any, bool] | None:
        """The CameraInfo for an image of ``frame_id`` at ``stamp_ns`` and whether it was within the
        slop (False: the latest earlier one), else None."""
        entries = self._entries.get(frame_id)
        if not entries:
            return None
        if frame_id not in self._stamps:
            entries.sort(key=lambda e: e[0])
            self._stamps[frame_id] = [e[0] for e in entries]
        pairing = pair_stamp(self._stamps[frame_id], stamp_ns, self.slop_ns)
        return None if pairing is None else (entries[pairing.index][1], pairing.within_slop)

    def frame_ids(self) -> list[str]:
        return sorted(self._entries)


def check_output_bag(path: str | Path) -> Path:
    """``path`` as a new output bag folder.

    Raises:
        ReplayInputError: it exists, or its parent folder is missing or not writable.
    """
    path = Path(path)
    if path.exists():
        raise ReplayInputError(f"{path}: the output bag already exists; choose another --out")
    parent = path.absolute().parent
    if not parent.is_dir():
        raise ReplayInputError(f"{path}: cannot create the output bag, folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ReplayInputError(f"{path}: cannot create the output bag, folder {parent} is not writable")
    return path


class _OutputBag:
    """The rosbag2 writer of the outputs (and optionally copies of the inputs)."""

    def __init__(self, path: Path, storage: str, input_topics: dict[str, str], namespace: str,
                 input_store: Any) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
        self.store = typestore()
        self.writer = Writer(check_output_bag(path), version=8, storage_plugin=plugin)
        try:
            self.writer.open()
        except OSError as error:
            raise ReplayInputError(f"{path}: cannot create the output bag ({error})") from None
        self.poses = self.writer.add_connection(f"{namespace}/poses", POSES_TYPE, typestore=self.store)
        self.markers = self.writer.add_connection(f"{namespace}/markers", MARKERS_TYPE,
                                                  typestore=self.store)
        # Copies keep the bytes, so they keep the definitions they were recorded with.
        self.copies = {topic: self.writer.add_connection(topic, msgtype, typestore=input_store)
                       for topic, msgtype in input_topics.items()}

    def write(self, connection: Any, stamp_ns: int, message: Any) -> None:
        self.writer.write(connection, stamp_ns, self.store.serialize_cdr(message, connection.msgtype))

    def copy(self, topic: str, stamp_ns: int, raw: bytes) -> None:
        if topic in self.copies:
            self.writer.write(self.copies[topic], stamp_ns, raw)

    def close(self) -> None:
        self.writer.close()


def _read_image(store: Any, msgtype: str) -> Callable[[tuple[str, int, bytes]], tuple[Any, Decoded]]:
    """``(topic, timestamp, raw) -> (image message, its decoded RGB)``: the host work of one frame
    that :func:`~mp3d_ros.messages.decode_ahead.decoded_ahead` may run ahead. A corrupt message
    raises; a message that does not decode carries the error in its :class:`Decoded`."""
    def read(entry: tuple[str, int, bytes]) -> tuple[Any, Decoded]:
        message = store.deserialize_cdr(entry[2], msgtype)
        return message, decode_now(any_image_to_rgb, message)
    return read


def _decode(image: Decoded, topic: str, stamp_ns: int, result: ReplayResult) -> np.ndarray | None:
    try:
        return image.get()
    except UnsupportedEncodingError as error:
        result.skip(f"unsupported encoding on {topic}", str(error))
    except ValueError as error:
        result.skip("undecodable image", f"{topic} at {stamp_ns} ns: {error}")
    return None


def _process_image(message: Any, image: Decoded, timeline: CameraInfoTimeline, estimate: Estimate,
                   rectified: bool, result: ReplayResult, topic: str, floor: FloorSource | None
                   ) -> tuple[People, float, tuple[int, int]] | None:
    """Estimate the people of one image message, decoded into ``image`` (with the time it took and
    the image's (W, H)), or count why it was skipped."""
    stamp_ns = stamp_to_ns(message.header.stamp)
    rgb = _decode(image, topic, stamp_ns, result)
    if rgb is None:
        return None
    paired = timeline.pair(message.header.frame_id, stamp_ns)
    if paired is None:
        result.skip("no CameraInfo in force",
                    f"image at {stamp_ns} ns in frame {message.header.frame_id!r}; CameraInfo frames: "
                    f"{timeline.frame_ids()}")
        return None
    info, within_slop = paired
    result.camera_info_fallbacks += not within_slop
    try:
        intrinsics = Intrinsics.from_camera_info(info, rectified=rectified)
        intrinsics.check_image_size(rgb.shape[1], rgb.shape[0], f"image at {stamp_ns} ns")
    except ValueError as error:
        result.skip("unusable CameraInfo", str(error))
        return None
    start = time.perf_counter()
    if floor is None:
        people = estimate(rgb, intrinsics)
    else:
        people = estimate(rgb, intrinsics, floor=floor.plane(message.header.frame_id, stamp_ns))
    return people, 1000.0 * (time.perf_counter() - start), (rgb.shape[1], rgb.shape[0])


def _next_key(seen: Counter, stamp_ns: int) -> FrameKey:
    key = (stamp_ns, seen[stamp_ns])
    seen[stamp_ns] += 1
    return key


def _read_calibration(source: BagSource, store: Any, topics: ReplayTopics, timeline: CameraInfoTimeline,
                      result: ReplayResult, writer: _OutputBag | None, floor: FloorSource | None) -> None:
    """CameraInfo into ``timeline``, ground truth into ``result``, transforms into ``floor``'s tree
    (one pass over these topics)."""
    seen: Counter = Counter()
    tf_topics = [name for name, kind in sorted(source.topic_types.items()) if kind == TF_TYPE] \
        if floor is not None and floor.fixed is None else []
    wanted = [t for t in (topics.camera_info, topics.ground_truth) if t] + tf_topics
    for topic, timestamp, raw in source.messages(wanted):
        if writer is not None and topic not in tf_topics:
            writer.copy(topic, timestamp, raw)
        if topic in tf_topics:
            try:
                floor.tree.add_message(store.deserialize_cdr(raw, TF_TYPE), static=topic.endswith("tf_static"))
            except Exception as error:  # noqa: BLE001 - corrupt CDR or a malformed transform
                result.bad_message("unreadable transform message", f"{topic} at {timestamp} ns: {error}")
            continue
        if topic == topics.camera_info:
            try:
                message = store.deserialize_cdr(raw, CAMERA_INFO_TYPE)
            except Exception as error:  # noqa: BLE001 - rosbags raises several types for corrupt CDR
                result.bad_message("corrupt CameraInfo message", f"{topic} at {timestamp} ns: {error}")
                continue
            timeline.add(message.header.frame_id, stamp_to_ns(message.header.stamp), message)
            continue
        try:
            message = store.deserialize_cdr(raw, POSES_TYPE)
            people = pose_array_to_people(message)
        except Exception as error:  # noqa: BLE001 - corrupt CDR or an inconsistent message
            result.bad_message("unreadable ground truth message",
                               f"{topic} at {timestamp} ns: {type(error).__name__}: {error}")
            continue
        key = _next_key(seen, stamp_to_ns(message.header.stamp))
        result.duplicate_ground_truth += key[1] > 0
        result.ground_truth.append(GroundTruthMessage(key, people))


def _replay_images(source: BagSource, store: Any, topic: str, timeline: CameraInfoTimeline,
                   estimate: Estimate, rectified: bool, tracker: Tracker | None,
                   writer: _OutputBag | None, result: ReplayResult, max_frames: int | None,
                   progress: bool, floor: FloorSource | None, decode_ahead: bool) -> None:
    classes = MessageClasses.from_typestore()
    truth = {g.key: g.people for g in result.ground_truth}
    seen: Counter = Counter()
    total = source.metadata.topic_counts.get(topic) or None
    frames = decoded_ahead(source.messages([topic]), _read_image(store, source.topic_types[topic]),
                           decode_ahead)
    for (_, timestamp, raw), read in tqdm(frames, total=total, desc="replay", unit="frame",
                                          disable=not progress):
        if max_frames is not None and result.images_seen >= max_frames:
            result.stopped_early = True
            break
        result.images_seen += 1
        if result.images_seen % TRIM_EVERY_FRAMES == 0:
            release_free_memory()  # see mp3d_ros.evaluation.memory
        if writer is not None:
            writer.copy(topic, timestamp, raw)
        if read.error is not None:  # rosbags raises several types for corrupt CDR
            result.skip("corrupt image message", f"{topic} at {timestamp} ns: {read.error}")
            result.images_lost = True
            continue
        message, image = read.value
        stamp_ns = stamp_to_ns(message.header.stamp)
        if result.last_image_stamp_ns is not None and stamp_ns < result.last_image_stamp_ns:
            result.backward_stamps += 1
        result.last_image_stamp_ns = stamp_ns
        key = _next_key(seen, stamp_ns)
        result.image_keys.add(key)
        if key[1] > 0:  # the node ignores a second image of the same stamp, and so does the replay
            result.duplicate_images += 1
            result.skip("duplicate image stamp", f"{topic}: another image at {stamp_ns} ns came first")
            continue
        outcome = _process_image(message, image, timeline, estimate, rectified, result, topic, floor)
        if outcome is None:
            continue
        people, latency_ms, image_size = outcome
        if tracker is not None:
            people = tracker.update(people, stamp_ns * 1e-9)
        result.processed_keys[key] = len(result.frames)
        result.frames.append(FrameResult(stamp_ns, people, latency_ms, truth.get(key), image_size))
        if writer is not None:
            writer.write(writer.poses, stamp_ns, people_to_pose_array(people, message.header, classes))
            writer.write(writer.markers, stamp_ns, people_to_markers(people, message.header, classes))


def _record_reading(source: BagSource, topics: ReplayTopics, result: ReplayResult) -> None:
    """Damage and short topics into ``result``; images count as lost when their topic is short."""
    result.read_damage = [d.describe() for d in source.damage]
    for topic, (read, listed) in sorted(source.shortfalls().items()):
        if not (topic == topics.image and result.stopped_early):
            result.read_damage.append(f"{topic}: {read} of the {listed} messages listed in "
                                      "metadata.yaml were read")
    short = topics.image in source.shortfalls() and not result.stopped_early
    result.images_lost |= short or any(d.topic in (None, topics.image) for d in source.damage)


def open_replay(bag: str | Path, image_topic: str | None = None, camera_info_topic: str | None = None,
                ground_truth_topic: str | None = None) -> tuple[BagSource, ReplayTopics, list[str]]:
    """Open ``bag`` and choose its topics (see :func:`pick_topics`): all a replay checks up front.

    Raises:
        ReplayInputError: bad metadata, unreadable storage headers, missing or mistyped topics.
    """
    source = BagSource.open(bag)
    try:
        topics, notes = pick_topics(sorted(source.topic_types.items()), image_topic, camera_info_topic,
                                    ground_truth_topic)
    except ReplayInputError as error:
        raise ReplayInputError(f"{source.metadata.folder}: {error}") from None
    return source, topics, notes


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
    sync_slop_s: float = DEFAULT_SYNC_SLOP_S,
    floor: FloorSource | None = None,
    decode_ahead: bool = False,
) -> ReplayResult:
    """Run ``estimate`` over every image of a bag; write outputs to ``out_bag`` when given.

    With ``decode_ahead``, the next image is read and decoded in a second thread while ``estimate``
    runs (:mod:`mp3d_ros.messages.decode_ahead`): worth it when ``estimate`` waits on a GPU; the
    results are the same.

    With ``floor``, ``estimate`` is called with ``floor=`` the frame's floor plane (None where the
    bag's transforms do not reach the ground frame at that stamp; counted).

    A KeyboardInterrupt stops reading, and the output bag is closed cleanly with what was written;
    so does damage in the bag (what could be read is processed, the rest is reported).

    Raises:
        ReplayInputError: the bag, its topics or ``out_bag`` cannot be used (nothing is written).
    """
    source, topics, notes = open_replay(bag, image_topic, camera_info_topic, ground_truth_topic)
    result = ReplayResult(topics, notes=notes)
    inputs = {t: source.topic_types[t] for t in (topics.image, topics.camera_info, topics.ground_truth)
              if t and copy_inputs}
    store = source.typestore(typestore())  # the bag's own message definitions
    writer = _OutputBag(Path(out_bag), storage, inputs, output_namespace, store) if out_bag else None
    timeline = CameraInfoTimeline(sync_slop_s)
    try:
        if floor is not None:
            result.floor = (f"transforms to {floor.ground_frame!r} in the bag" if floor.fixed is None else
                            f"camera {floor.fixed.camera_height_m:g} m over the floor")
        _read_calibration(source, store, topics, timeline, result, writer, floor)
        _replay_images(source, store, topics.image, timeline, estimate, rectified, tracker, writer,
                       result, max_frames, progress, floor, decode_ahead)
    except KeyboardInterrupt:
        result.interrupted = result.stopped_early = True
    finally:
        if writer is not None:
            writer.close()
    _record_reading(source, topics, result)
    result.tracker_resets = tracker.resets if tracker is not None else 0
    result.floor_unavailable = floor.misses if floor is not None else 0
    return result
