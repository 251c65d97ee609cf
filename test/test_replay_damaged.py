"""replay.py on damaged storage: every readable frame keeps its result, the damage is named."""

from __future__ import annotations

import pytest
from bag_damage import (
    PERIOD_NS,
    SQLITE_PAGE,
    START_NS,
    chunk_of,
    mcap_chunks,
    scribble,
    sqlite_page_of_image,
    stamp,
    storage_file,
    truncate,
    write_frames,
)
from rosbags.highlevel import AnyReader
from test_replay import Oracle
from test_replay_input import FakeEstimator

from mp3d_ros.cli import replay as cli
from mp3d_ros.evaluation.replay import replay_bag
from mp3d_ros.evaluation.replay_report import write_report
from mp3d_ros.messages.typestore import typestore

COUNT = 12  # rosbags' MCAP writer puts these frames in three chunks: 0-4, 4-9, 10-11


def indices(stamps: list[int]) -> list[int]:
    return [(s - START_NS) // PERIOD_NS for s in stamps]


def pose_stamps(bag) -> list[int]:
    with AnyReader([bag], default_typestore=typestore()) as reader:
        return [t for c, t, _ in reader.messages() if c.topic == "/mp3d/poses"]


def outcome(result) -> tuple:
    """What a replay found, frame by frame, and what it reported."""
    return ([(f.stamp_ns, f.people.keypoints_m.tobytes()) for f in result.frames], result.images_seen,
            dict(result.skipped), result.read_damage, result.images_lost)


def replay_and_report(tmp_path, bag):
    """Replay with the next image decoded ahead (as on a GPU), check it equals the plain replay."""
    result = replay_bag(bag, Oracle(False), out_bag=tmp_path / "out", progress=False, decode_ahead=True)
    assert outcome(result) == outcome(replay_bag(bag, Oracle(False), progress=False))
    report = write_report(result, tmp_path / "report", bag.name)
    assert pose_stamps(tmp_path / "out") == [f.stamp_ns for f in result.frames]
    return result, report


def test_truncated_sqlite_keeps_the_rows_before_the_cut(tmp_path):
    bag = write_frames(tmp_path / "bag", "sqlite3", COUNT)
    db = storage_file(bag)
    truncate(db, sqlite_page_of_image(db, 6))  # cut where frame 6's image row begins
    result, report = replay_and_report(tmp_path, bag)
    assert indices([f.stamp_ns for f in result.frames]) == [0, 1, 2, 3, 4, 5]
    assert any(db.name in d and "malformed" in d for d in report["read_damage"])
    assert "/camera/image_raw: 6 of the 12 messages" in " ".join(report["read_damage"])
    assert report["metrics"]["counts"]["frames"] >= 5  # the truth of frames 0-4 (5's may be cut)


def test_scribbled_sqlite_page_costs_only_its_rows(tmp_path):
    bag = write_frames(tmp_path / "bag", "sqlite3", COUNT)
    db = storage_file(bag)
    scribble(db, sqlite_page_of_image(db, 5), SQLITE_PAGE)
    result, report = replay_and_report(tmp_path, bag)
    processed = indices([f.stamp_ns for f in result.frames])
    assert 5 not in processed and set(range(COUNT)) - {4, 5, 6} <= set(processed)
    assert any(db.name in d and "rows" in d and "malformed" in d for d in report["read_damage"])
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "could not read" in summary


def test_truncated_mcap_keeps_the_chunks_before_the_cut(tmp_path):
    bag = write_frames(tmp_path / "bag", "mcap", COUNT)
    file = storage_file(bag)
    chunks = mcap_chunks(file)
    second = chunks[chunk_of(chunks, stamp(5))]
    truncate(file, second[0] + second[1] // 2)  # cut mid-chunk
    result, report = replay_and_report(tmp_path, bag)
    assert indices([f.stamp_ns for f in result.frames]) == [0, 1, 2, 3, 4]
    assert any(file.name in d and "cut short" in d for d in report["read_damage"])
    assert report["metrics"]["counts"]["frames"] >= 4


def test_scribbled_mcap_chunk_is_skipped_and_later_chunks_read(tmp_path):
    bag = write_frames(tmp_path / "bag", "mcap", COUNT)
    file = storage_file(bag)
    chunks = mcap_chunks(file)
    second = chunks[chunk_of(chunks, stamp(5))]
    # opcode + length + times, size, crc (8+8+8+4), compression "" (4), records length (8)
    scribble(file, second[0] + 9 + 28 + 4 + 8, 9)  # the first record header inside the chunk
    result, report = replay_and_report(tmp_path, bag)
    assert indices([f.stamp_ns for f in result.frames]) == [0, 1, 2, 3, 4, 10, 11]
    damage = " ".join(report["read_damage"])
    assert file.name in damage and f"chunk with messages {second[2]}-{second[3]} ns" in damage


def test_cli_finishes_a_damaged_bag_with_status_1_and_writes_everything(tmp_path, monkeypatch,
                                                                         capsys):
    monkeypatch.setattr(cli, "Estimator", FakeEstimator)
    bag = write_frames(tmp_path / "bag", "mcap", COUNT)
    file = storage_file(bag)
    last = mcap_chunks(file)[-1]
    truncate(file, last[0] + last[1] // 2)
    # "cuda": the fake estimator's device, so the replay decodes ahead as it does on a GPU.
    status = cli.main([str(bag), "--out", str(tmp_path / "out"), "--report", str(tmp_path / "report"),
                       "--device", "cuda"])
    captured = capsys.readouterr()
    assert status == 1 and "parts of the bag could not be read" in captured.err
    assert "Traceback" not in captured.err
    assert indices(pose_stamps(tmp_path / "out")) == list(range(10))
    assert "cut short" in (tmp_path / "report" / "summary.md").read_text()


def test_mcap_without_its_summary_reads_completely(tmp_path):
    bag = write_frames(tmp_path / "bag", "mcap", COUNT)
    file = storage_file(bag)
    truncate(file, file.stat().st_size - 100)  # the footer and part of the index are gone
    result = replay_bag(bag, Oracle(False), progress=False)
    assert len(result.frames) == COUNT and not result.read_damage


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_out_without_copy_inputs_writes_only_the_outputs(tmp_path, storage):
    bag = write_frames(tmp_path / "bag", storage, 3)
    result = replay_bag(bag, Oracle(False), out_bag=tmp_path / "out", progress=False)
    assert len(result.frames) == 3 and not result.read_damage
    with AnyReader([tmp_path / "out"], default_typestore=typestore()) as reader:
        assert {c.topic for c in reader.connections} == {"/mp3d/poses", "/mp3d/markers"}
        assert sum(c.msgcount for c in reader.connections) == 6
