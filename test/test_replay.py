"""replay.py: bags in both storages and every encoding replay end to end; bad frames are counted."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer

from mp3d_ros.evaluation.evaluate import prediction_frames
from mp3d_ros.evaluation.metrics import evaluate_mupots
from mp3d_ros.evaluation.replay import pick_topics, replay_bag
from mp3d_ros.evaluation.replay_report import (
    ground_truth_from_people,
    replay_identities,
    replay_metrics,
    write_report,
)
from mp3d_ros.geometry.camera import Intrinsics, project
from mp3d_ros.geometry.people import People
from mp3d_ros.geometry.skeleton import MUPOTS_17
from mp3d_ros.messages.bags import BagFrame, write_bag
from mp3d_ros.messages.conversions import MessageClasses, make_header
from mp3d_ros.messages.typestore import typestore
from mp3d_ros.tracking.tracker import Tracker, TrackerConfig

FRAMES = 6
BLOCK = 24  # side of the top-left block whose grey level encodes the frame index


def camera(index: int, distorted: bool) -> Intrinsics:
    """The camera zooms in after frame 2, so each image must use the CameraInfo in force."""
    focal = 300.0 if index < 3 else 420.0
    K = np.array([[focal, 0, 160.0], [0, focal, 120.0], [0, 0, 1]])
    if distorted:
        return Intrinsics(K, 320, 240, "plumb_bob", [-0.2, 0.05, 0.001, -0.001, 0.0])
    return Intrinsics(K, 320, 240)


def truth(index: int, intr: Intrinsics) -> People:
    rng = np.random.default_rng(index)
    roots = np.array([[-0.6, 0.1, 4.0], [0.7, 0.2, 6.0]]) + rng.normal(0, 0.05, (2, 3))
    joints = roots[:, None] + rng.normal(0, 0.25, (2, MUPOTS_17.num_joints, 3)) * [1, 2, 0.3]
    joints[:, MUPOTS_17.root] = roots
    return People(MUPOTS_17.name, uv_px=project(joints, intr), keypoints_m=joints,
                  confidence=np.ones((2, 17)), inferred=np.zeros((2, 17), bool),
                  score=np.array([0.9, 0.8]), root_sigma_m=np.array([0.1, 0.2]))


def frames(distorted: bool = False) -> list[BagFrame]:
    out = []
    for index in range(FRAMES):
        intr = camera(index, distorted)
        image = np.random.default_rng(100 + index).integers(0, 255, (240, 320, 3), dtype=np.uint8)
        image[:BLOCK, :BLOCK] = 10 * index + 5
        out.append(BagFrame(1_000_000_000 + index * 33_000_000, image, intr, truth(index, intr)))
    return out


class Oracle:
    """Reads the frame index from the image; returns the truth moved 5 cm deeper."""

    def __init__(self, distorted: bool) -> None:
        self.distorted = distorted
        self.calls = 0

    def __call__(self, rgb: np.ndarray, intrinsics: Intrinsics) -> People:
        index = int(round((float(rgb[4:BLOCK - 4, 4:BLOCK - 4].mean()) - 5) / 10))
        expected = camera(index, self.distorted)
        np.testing.assert_allclose(intrinsics.K, expected.K)  # the live intrinsics of this frame
        np.testing.assert_allclose(intrinsics.D, expected.D if self.distorted else np.zeros(5))
        self.calls += 1
        people = truth(index, expected)
        return replace(people, keypoints_m=people.keypoints_m + [0.0, 0.0, 0.05])


@pytest.mark.parametrize("storage, encoding, distorted", [
    ("mcap", "rgb8", False), ("sqlite3", "bgr8", True), ("mcap", "mono8", False),
    ("sqlite3", "uyvy", False), ("mcap", "yuyv", True), ("mcap", "rgba8", False),
    ("sqlite3", "bgra8", False), ("mcap", "jpeg", True), ("sqlite3", "png", False),
])
def test_replay_writes_outputs_and_matches_the_evaluator(tmp_path, storage, encoding, distorted):
    source = tmp_path / "in"
    written = frames(distorted)
    if encoding == "mono8":  # a grey camera: keep the index block readable after conversion
        written = [replace(f, image_rgb=np.repeat(f.image_rgb[..., :1], 3, axis=2)) for f in written]
    write_bag(source, written, storage=storage, encoding=encoding)
    oracle = Oracle(distorted)
    result = replay_bag(source, oracle, out_bag=tmp_path / "out", storage=storage, progress=False,
                        copy_inputs=True)
    assert oracle.calls == FRAMES and len(result.frames) == FRAMES and not result.skipped
    assert [f.stamp_ns for f in result.frames] == [f.stamp_ns for f in written]

    with AnyReader([tmp_path / "out"], default_typestore=typestore()) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        assert types["/mp3d/poses"] == "mp3d_ros/msg/PoseArray3D"
        assert types["/mp3d/markers"] == "visualization_msgs/msg/MarkerArray"
        assert len(types) == 5  # outputs + copied image, camera info and ground truth
        poses = [(t, reader.deserialize(raw, c.msgtype)) for c, t, raw in reader.messages()
                 if c.topic == "/mp3d/poses"]
    assert [t for t, _ in poses] == [f.stamp_ns for f in written]
    assert all(m.header.stamp.sec * 10**9 + m.header.stamp.nanosec == t for t, m in poses)
    assert all(len(m.people) == 2 and m.header.frame_id == "camera_optical_frame" for _, m in poses)

    metrics = replay_metrics(result, "bag")
    expected = evaluate_mupots(prediction_frames([f.people for f in result.frames]),
                               [ground_truth_from_people(f.ground_truth, "bag") for f in written])
    assert metrics["all"] == expected["all"] and metrics["ap_root_25"] == expected["ap_root_25"]
    assert metrics["all"]["pck_rel"] == 100.0 and metrics["all"]["pck_abs"] == 100.0
    assert metrics["mrpe_mm"]["z"] == pytest.approx(50.0, abs=1e-6)


@pytest.mark.parametrize("decode_ahead", [False, True])
def test_bad_frames_are_skipped_and_reported(tmp_path, decode_ahead):
    store = typestore()
    classes = MessageClasses.from_typestore(store)
    source = tmp_path / "in"
    good = frames()
    write_bag(source.with_name("clean"), good, storage="mcap")
    with AnyReader([source.with_name("clean")], default_typestore=store) as reader:
        messages = [(c.topic, c.msgtype, t, raw) for c, t, raw in reader.messages()]
    with Writer(source, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        connections = {}
        for topic, msgtype, _, _ in messages:
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, msgtype, typestore=store)
        for topic, msgtype, stamp, raw in messages:
            if topic == "/camera/camera_info" and stamp == good[0].stamp_ns:
                continue  # the first image has no CameraInfo in force
            if topic == "/camera/image_raw" and stamp == good[2].stamp_ns:
                raw = b"\x00\x01\x00\x00garbage"  # a corrupt message
            writer.write(connections[topic], stamp, raw)
        header = make_header(classes, good[-1].stamp_ns + 10**7, "camera_optical_frame")
        depth = classes.Image(header=header, height=2, width=2, encoding="16UC1", is_bigendian=0,
                              step=4, data=np.zeros(8, np.uint8))
        writer.write(connections["/camera/image_raw"], good[-1].stamp_ns + 10**7,
                     store.serialize_cdr(depth, "sensor_msgs/msg/Image"))

    result = replay_bag(source, Oracle(False), progress=False, decode_ahead=decode_ahead)
    assert result.images_seen == FRAMES + 1 and len(result.frames) == FRAMES - 2
    assert result.skipped["no CameraInfo in force"] == 1
    assert result.skipped["corrupt image message"] == 1
    assert result.skipped["unsupported encoding on /camera/image_raw"] == 1
    assert "16UC1" in result.skip_examples["unsupported encoding on /camera/image_raw"]
    report = write_report(result, tmp_path / "report", "bad")
    assert report["skipped"]["corrupt image message"] == 1
    assert {p.name for p in (tmp_path / "report").iterdir()} == {
        "summary.md", "metrics.json", "pck.png", "root_depth_error.png", "latency.png"}
    assert "unsupported encoding" in (tmp_path / "report" / "summary.md").read_text()


def test_track_ids_are_scored_against_the_ground_truth_ids(tmp_path):
    written = [replace(f, ground_truth=replace(f.ground_truth, track_id=np.array([4, 9])))
               for f in frames()]
    write_bag(tmp_path / "in", written, storage="mcap", encoding="rgb8")
    result = replay_bag(tmp_path / "in", Oracle(False), out_bag=tmp_path / "out", storage="mcap",
                        progress=False, tracker=Tracker(TrackerConfig(birth_hits=1)))
    identities = replay_identities(result)
    assert (identities.people, identities.matched, identities.tracked) == (2, 2 * FRAMES, 2 * FRAMES)
    assert identities.id_switches == 0 and identities.ids_per_person == 1.0
    report = write_report(result, tmp_path / "report", "ids")
    assert report["identities"]["id_switches"] == 0
    assert "2 people matched, 1.00 ids each, 0 id switches" in (tmp_path / "report" / "summary.md").read_text()


def test_pick_topics_by_type_and_refusals():
    connections = [("/cam/image_raw", "sensor_msgs/msg/Image"),
                   ("/cam/image_raw/compressed", "sensor_msgs/msg/CompressedImage"),
                   ("/cam/camera_info", "sensor_msgs/msg/CameraInfo")]
    topics, notes = pick_topics(connections)
    assert topics.image == "/cam/image_raw" and topics.ground_truth is None
    assert any("picked /cam/image_raw" in n for n in notes)
    with pytest.raises(ValueError, match="no topic '/nope'"):
        pick_topics(connections, image_topic="/nope")
    with pytest.raises(ValueError, match="is sensor_msgs/msg/CameraInfo, expected"):
        pick_topics(connections, image_topic="/cam/camera_info")
    with pytest.raises(ValueError, match="no camera info topic"):
        pick_topics(connections[:1])
