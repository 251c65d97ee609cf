"""mp3d-replay on bad input: one ``mp3d-replay: error:`` line naming the file and the problem, status 2;
bad frames (huge images, stamp clashes, CameraInfo off by a nanosecond) skipped or paired as the node
would, and the ground truth of skipped frames scored as missed."""

from __future__ import annotations

import struct
import zlib
from dataclasses import replace

import numpy as np
import pytest
import torch
import yaml
from bag_damage import (
    FRAME_ID,
    PERIOD_NS,
    frame_messages,
    frames,
    stamp,
    storage_file,
    write_frames,
    write_messages,
)
from test_replay import Oracle

from mp3d_ros.cli import replay as cli
from mp3d_ros.evaluation.evaluate import prediction_frames
from mp3d_ros.evaluation.metrics import evaluate_mupots
from mp3d_ros.evaluation.replay import replay_bag
from mp3d_ros.evaluation.replay_report import (
    ground_truth_from_people,
    replay_metrics,
    scored_frames,
    summary_text,
)
from mp3d_ros.geometry.people import People
from mp3d_ros.geometry.skeleton import MUPOTS_17
from mp3d_ros.messages.bags import write_bag
from mp3d_ros.messages.conversions import MessageClasses, make_header
from mp3d_ros.messages.pairing import pair_stamp
from mp3d_ros.messages.typestore import typestore
from mp3d_ros.tracking.tracker import Tracker


class FakeEstimator:
    """Stands in for the Estimator so the CLI tests load no model."""

    def __init__(self, *args, device: str | None = None, **kwargs) -> None:
        self.model_name, self.backend_name, self.estimate = "oracle", "test", Oracle(False)
        self.device = torch.device(device or "cpu")


def run_cli(monkeypatch, capsys, *argv: str) -> tuple[int, str]:
    monkeypatch.setattr(cli, "Estimator", FakeEstimator)
    try:
        status = cli.main(list(argv))
    except SystemExit as stop:
        status = stop.code
    return status, capsys.readouterr().err


def assert_one_error_line(err: str, *parts: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("mp3d-replay: error: "), err
    assert all(part in lines[0] for part in parts), (parts, lines[0])


@pytest.fixture
def bag(tmp_path):
    return write_frames(tmp_path / "bag", "sqlite3", 2)


def edit_metadata(bag, edit) -> None:
    path = bag / "metadata.yaml"
    content = yaml.safe_load(path.read_text())
    edit(content["rosbag2_bagfile_information"])
    path.write_text(yaml.safe_dump(content))


@pytest.mark.parametrize("damage, expected", [
    (lambda bag: (bag / "metadata.yaml").unlink(), "no metadata.yaml"),
    (lambda bag: (bag / "metadata.yaml").write_text(""), "the file is empty"),
    (lambda bag: (bag / "metadata.yaml").write_text("{[: garbage"), "not valid YAML"),
    (lambda bag: (bag / "metadata.yaml").write_bytes(b"\x89\x00\xff binary"), "metadata.yaml"),
    (lambda bag: (bag / "metadata.yaml").write_text("- a list\n"), "no 'rosbag2_bagfile_information'"),
    (lambda bag: edit_metadata(bag, lambda i: i.update(storage_identifier="rosbag_v1")),
     "storage_identifier 'rosbag_v1' is not supported"),
    (lambda bag: edit_metadata(bag, lambda i: i.update(version=42)), "rosbag2 version 42 is not supported"),
    (lambda bag: edit_metadata(bag, lambda i: i.pop("version")), "key 'version' is missing"),
    (lambda bag: storage_file(bag).unlink(), "listed but missing"),
    (lambda bag: storage_file(bag).write_bytes(b"not a database" * 100), "not a readable sqlite3"),
])
def test_bad_metadata_or_storage_is_one_error_line_and_status_2(tmp_path, bag, monkeypatch, capsys,
                                                                damage, expected):
    damage(bag)
    status, err = run_cli(monkeypatch, capsys, str(bag), "--out", str(tmp_path / "out"))
    assert status == 2
    assert_one_error_line(err, str(bag), expected)
    assert not (tmp_path / "out").exists()


def test_missing_bag_folder(tmp_path, monkeypatch, capsys):
    status, err = run_cli(monkeypatch, capsys, str(tmp_path / "nope"))
    assert status == 2
    assert_one_error_line(err, str(tmp_path / "nope"), "no such bag folder")


@pytest.mark.parametrize("keep, argv, expected", [
    ({"/camera/camera_info", "/ground_truth/poses"}, [], "no image topic"),
    ({"/camera/image_raw", "/ground_truth/poses"}, [], "no camera info topic"),
    (None, ["--image-topic", "/camera/image_rect"], "bag has no topic '/camera/image_rect'"),
    (None, ["--image-topic", "/camera/camera_info"], "is sensor_msgs/msg/CameraInfo, expected"),
])
def test_topic_problems_are_one_error_line(tmp_path, monkeypatch, capsys, keep, argv, expected):
    messages = [m for m in frame_messages(0) if keep is None or m[0] in keep]
    write_messages(tmp_path / "bag", messages)
    status, err = run_cli(monkeypatch, capsys, str(tmp_path / "bag"), *argv)
    assert status == 2
    assert_one_error_line(err, str(tmp_path / "bag"), expected)


def test_existing_or_unwritable_out(tmp_path, bag, monkeypatch, capsys):
    (tmp_path / "taken").mkdir()
    status, err = run_cli(monkeypatch, capsys, str(bag), "--out", str(tmp_path / "taken"))
    assert status == 2
    assert_one_error_line(err, str(tmp_path / "taken"), "already exists")
    (tmp_path / "a_file").write_text("")
    status, err = run_cli(monkeypatch, capsys, str(bag), "--out", str(tmp_path / "a_file" / "out"))
    assert status == 2
    assert_one_error_line(err, str(tmp_path / "a_file" / "out"), "cannot create the output bag")


def huge_png() -> bytes:
    """A valid PNG whose header claims 65500x65500 pixels (OpenCV refuses to allocate it)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 65500, 65500, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 9))
            + chunk(b"IEND", b""))


def test_huge_compressed_image_is_skipped_and_its_truth_missed(tmp_path):
    source = tmp_path / "bag"
    write_bag(source.with_name("png"), frames(3), storage="mcap", encoding="png")
    from rosbags.highlevel import AnyReader

    store = typestore()
    classes = MessageClasses.from_typestore(store)
    with AnyReader([source.with_name("png")], default_typestore=store) as reader:
        messages = [(c.topic, c.msgtype, t, bytes(raw)) for c, t, raw in reader.messages()]
    huge = classes.CompressedImage(header=make_header(classes, stamp(1), FRAME_ID), format="png",
                                   data=np.frombuffer(huge_png(), np.uint8))
    messages = [(topic, msgtype, t, store.serialize_cdr(huge, msgtype)
                 if msgtype.endswith("CompressedImage") and t == stamp(1) else raw)
                for topic, msgtype, t, raw in messages]
    write_messages(source, messages)
    result = replay_bag(source, Oracle(False), progress=False)
    assert [f.stamp_ns for f in result.frames] == [stamp(0), stamp(2)]
    assert result.skipped["undecodable image"] == 1
    assert "CV_IO_MAX_IMAGE_PIXELS" in result.skip_examples["undecodable image"]
    assert scored_frames(result).missed_people == 2


def corrupt(messages: list, skipped: set[int]) -> list:
    """The image messages of frames ``skipped`` replaced by bytes that are no CDR Image."""
    return [(t, m, time, b"\x00\x01\x00\x00garbage" if m.endswith("/Image") and time in skipped else msg)
            for t, m, time, msg in messages]


def test_skipped_frames_truth_counts_as_missed(tmp_path):
    skipped = {stamp(i) for i in (2, 5, 7)}
    write_messages(tmp_path / "bag", corrupt([m for i in range(10) for m in frame_messages(i)], skipped))
    result = replay_bag(tmp_path / "bag", Oracle(False), progress=False)
    assert len(result.frames) == 7 and result.skipped["corrupt image message"] == 3
    metrics = replay_metrics(result, "bag")
    assert metrics["counts"]["frames"] == 10 and metrics["all"]["pck_abs"] == pytest.approx(70.0)
    scored = scored_frames(result)
    assert (scored.missed_frames, scored.missed_people) == (3, 6)
    assert "6 people in 3 skipped or unreadable frames counted as missed" in summary_text(result, "bag")


def test_a_bag_whose_frames_were_all_skipped_scores_zero(tmp_path):
    messages = [m for i in range(3) for m in frame_messages(i)]
    write_messages(tmp_path / "bag", corrupt(messages, {stamp(i) for i in range(3)}))
    result = replay_bag(tmp_path / "bag", Oracle(False), progress=False)
    metrics = replay_metrics(result, "bag")
    assert not result.frames and metrics["counts"]["gt_people"] == 6
    assert metrics["all"]["pck_abs"] == 0.0
    assert "no ground truth in the bag" not in summary_text(result, "bag")


def test_camera_info_stamped_1ns_after_its_image_is_paired(tmp_path):
    # The camera zooms after frame 2: with the previous intrinsics, the Oracle's check would fail.
    write_messages(tmp_path / "bag", [m for i in range(5) for m in frame_messages(
        i, info_stamp_ns=stamp(i) + 1)])
    result = replay_bag(tmp_path / "bag", Oracle(False), progress=False)
    assert len(result.frames) == 5 and result.camera_info_fallbacks == 0


def test_camera_info_outside_the_slop_falls_back_with_a_warning(tmp_path):
    images_ns = [stamp(0), stamp(0) + 100_000_000]
    write_messages(tmp_path / "bag", [m for i in range(2) for m in frame_messages(
        i, image_stamp_ns=images_ns[i], info_stamp_ns=images_ns[i] - 25_000_000)])
    result = replay_bag(tmp_path / "bag", Oracle(False), progress=False)
    assert len(result.frames) == 2 and result.camera_info_fallbacks == 2
    assert "2 frames had no CameraInfo within the slop" in summary_text(result, "bag")


def test_duplicate_stamps_are_not_scored_against_another_frames_truth(tmp_path):
    # Frame 1's image, CameraInfo and truth carry frame 0's stamp.
    messages = frame_messages(0) + frame_messages(1, image_stamp_ns=stamp(0)) + frame_messages(2)
    write_messages(tmp_path / "bag", messages)
    result = replay_bag(tmp_path / "bag", Oracle(False), progress=False)
    assert [f.stamp_ns for f in result.frames] == [stamp(0), stamp(2)]
    assert result.duplicate_images == 1 and result.duplicate_ground_truth == 1
    scored = scored_frames(result)
    assert scored.missed_people == 2  # frame 1's truth: its image was not processed
    truth = [ground_truth_from_people(p, "bag") for p in scored.truth]
    assert replay_metrics(result, "bag")["all"] == evaluate_mupots(
        prediction_frames(scored.predictions), truth)["all"]
    np.testing.assert_array_equal(scored.truth[0].keypoints_m, result.frames[0].ground_truth.keypoints_m)
    summary = summary_text(result, "bag")
    assert "1 images repeat an earlier image's stamp" in summary
    assert "1 ground-truth messages repeat an earlier stamp" in summary


def test_stamps_going_backwards_reset_the_tracker_and_are_reported(tmp_path):
    messages = [m for i in (0, 1, 2) for m in frame_messages(i)]
    messages += frame_messages(3, image_stamp_ns=stamp(0) - PERIOD_NS)  # a looping camera
    # Received in this order: bag time goes on while the header stamps jump back.
    write_messages(tmp_path / "bag", [(t, m, stamp(0) + k, msg) for k, (t, m, _, msg) in enumerate(messages)])
    result = replay_bag(tmp_path / "bag", Oracle(False), tracker=Tracker(), progress=False)
    assert result.backward_stamps == 1 and result.tracker_resets == 1
    assert "image stamps went backwards 1 times; the tracker was reset 1 times" in summary_text(
        result, "bag")


def test_pair_stamp_follows_the_nodes_rule():
    stamps = [100, 200, 300]
    assert pair_stamp(stamps, 201, 20) == replace(pair_stamp(stamps, 200, 20), index=1)
    assert pair_stamp(stamps, 201, 20).within_slop
    assert pair_stamp(stamps, 199, 20).index == 1  # the nearest, even when it is later
    assert pair_stamp(stamps, 250, 50).index == 1  # a tie: the earlier one
    assert not pair_stamp(stamps, 220, 20).within_slop  # strictly below the slop, as message_filters
    assert pair_stamp(stamps, 260, 20).index == 1  # fallback: the latest earlier one
    assert pair_stamp(stamps, 50, 20) is None
    assert pair_stamp([], 50, 20) is None


def test_empty_people_scores_like_a_missed_frame():
    empty = People.empty(MUPOTS_17.name)
    assert len(empty) == 0 and prediction_frames([empty])[0].keypoints_mm.shape == (0, 17, 3)


def test_bound_malloc_applies_on_glibc_only():
    import platform

    from mp3d_ros.evaluation.memory import bound_malloc, release_free_memory

    on_glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert bound_malloc() == on_glibc and release_free_memory() == on_glibc
