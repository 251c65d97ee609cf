"""Small rosbag2 bags for the replay tests, and the ways a hostile tester damages them.

Frames are test_replay's: the grey level of the top-left block encodes the frame index, so
``test_replay.Oracle`` knows which frame it sees and checks that it got that frame's intrinsics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from test_replay import BLOCK, camera, truth

from mp3d_ros.messages.bags import BagFrame, BagTopics, write_bag
from mp3d_ros.messages.conversions import (
    MessageClasses,
    make_camera_info,
    make_header,
    people_to_pose_array,
)
from mp3d_ros.messages.images import rgb_to_image
from mp3d_ros.messages.typestore import typestore

FRAME_ID = "camera_optical_frame"
PERIOD_NS = 33_000_000
START_NS = 1_000_000_000
SQLITE_PAGE = 4096  # rosbags' sqlite3 writer keeps SQLite's default page size


def stamp(index: int) -> int:
    return START_NS + index * PERIOD_NS


def image_rgb(index: int) -> np.ndarray:
    """A 320x240 frame (230 kB as rgb8: an MCAP chunk of rosbags holds about five)."""
    image = np.random.default_rng(100 + index).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    image[:BLOCK, :BLOCK] = 10 * index + 5
    return image


def frames(count: int) -> list[BagFrame]:
    return [BagFrame(stamp(i), image_rgb(i), camera(i, False), truth(i, camera(i, False)))
            for i in range(count)]


def write_frames(path: Path, storage: str, count: int) -> Path:
    write_bag(path, frames(count), storage=storage, encoding="rgb8")
    return path


def storage_file(bag: Path) -> Path:
    return next(p for p in bag.iterdir() if p.suffix in (".db3", ".mcap"))


def truncate(file: Path, size: int) -> None:
    file.write_bytes(file.read_bytes()[:size])


def scribble(file: Path, offset: int, size: int, value: int = 0xFF) -> None:
    data = bytearray(file.read_bytes())
    data[offset:offset + size] = bytes([value]) * size
    file.write_bytes(bytes(data))


def image_cdr(index: int) -> bytes:
    """The serialized Image message of frame ``index`` as :func:`write_frames` writes it."""
    store = typestore()
    classes = MessageClasses.from_typestore(store)
    header = make_header(classes, stamp(index), FRAME_ID)
    return store.serialize_cdr(rgb_to_image(image_rgb(index), "rgb8", header, classes.Image),
                               "sensor_msgs/msg/Image")


def sqlite_page_of_image(db: Path, index: int) -> int:
    """Byte offset of the sqlite3 page where frame ``index``'s image row begins (its leaf cell)."""
    offset = db.read_bytes().find(image_cdr(index)[:96])
    assert offset > 0, f"image {index} not found in {db}"
    return offset - offset % SQLITE_PAGE


def mcap_chunks(file: Path) -> list[tuple[int, int, int, int]]:
    """(record offset, record length, first and last message time) of each chunk, from the index."""
    from rosbags.rosbag2.storage_mcap import McapReader

    reader = McapReader(file)
    reader.open()
    try:
        return [(c.chunk_start_offset, c.chunk_length, c.message_start_time, c.message_end_time)
                for c in reader.chunks]
    finally:
        reader.close()


def chunk_of(chunks: list[tuple[int, int, int, int]], stamp_ns: int) -> int:
    return next(i for i, c in enumerate(chunks) if c[2] <= stamp_ns <= c[3])


def write_messages(path: Path, messages: Iterable[tuple[str, str, int, Any]], storage: str = "mcap") -> None:
    """Write ``(topic, msgtype, bag time ns, message or raw bytes)`` in the given order."""
    store = typestore()
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=8, storage_plugin=plugin) as writer:
        connections: dict[str, Any] = {}
        for topic, msgtype, time_ns, message in messages:
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, msgtype, typestore=store)
            raw = message if isinstance(message, (bytes, memoryview)) else store.serialize_cdr(message, msgtype)
            writer.write(connections[topic], time_ns, raw)


def frame_messages(index: int, image_stamp_ns: int | None = None, info_stamp_ns: int | None = None,
                   truth_stamp_ns: int | None = None) -> list[tuple[str, str, int, Any]]:
    """CameraInfo, Image and ground truth of frame ``index``, each stamp overridable."""
    classes = MessageClasses.from_typestore(typestore())
    topics = BagTopics()
    image_ns = stamp(index) if image_stamp_ns is None else image_stamp_ns
    info_ns = image_ns if info_stamp_ns is None else info_stamp_ns
    truth_ns = image_ns if truth_stamp_ns is None else truth_stamp_ns
    intr = camera(index, False)
    info = make_camera_info(classes, make_header(classes, info_ns, FRAME_ID), intr.K, intr.width,
                            intr.height, distortion_model="plumb_bob", D=intr.D)
    image = rgb_to_image(image_rgb(index), "rgb8", make_header(classes, image_ns, FRAME_ID), classes.Image)
    poses = people_to_pose_array(truth(index, intr), make_header(classes, truth_ns, FRAME_ID), classes)
    return [(topics.camera_info, "sensor_msgs/msg/CameraInfo", info_ns, info),
            (topics.image, "sensor_msgs/msg/Image", image_ns, image),
            (topics.ground_truth, "mp3d_ros/msg/PoseArray3D", truth_ns, poses)]
