"""The node core's answers to what a real Jazzy system showed (issues 17 and 18), without ROS:
bag loops and replays, duplicates, undecodable images, non-finite people, bounded CameraInfo
memory, latency vs stamp age, the floor from tf2, the device choice and OpenCV's threads."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from test_frames import (
    CLASSES,
    HEIGHT,
    MS,
    WIDTH,
    FakeClock,
    FakeEstimator,
    frame_for,
    image_msg,
    info_msg,
    make_processor,
    person_in_front,
)

from mp3d_ros.messages.conversions import RigidTransform, make_header
from mp3d_ros.messages.people_msgs import (
    PeopleMsgClasses,
    people_to_people_msg,
    track_frames,
)
from mp3d_ros.ros.frame_buffer import FrameBuffer
from mp3d_ros.ros.frames import (
    ErrorKind,
    finite_people,
    floor_from_transform,
    stamp_age_s,
)
from mp3d_ros.ros.health import (
    DiagnosticsMonitor,
    LoadedEstimator,
    load_estimator,
    match_opencv_threads,
    precision_for,
    resolve_device,
)
from mp3d_ros.ros.settings import NodeSettings, SettingsError


def accounted(buffer: FrameBuffer, processed_or_failed: int) -> bool:
    return buffer.received == processed_or_failed + buffer.dropped + buffer.waiting


def feed_pairs(buffer: FrameBuffer, stamps_ns) -> list:
    taken = []
    for stamp_ns in stamps_ns:
        image = image_msg(stamp_ns)
        buffer.on_image(image)
        buffer.on_pair(image, info_msg(stamp_ns))
        taken.append(buffer.take())
    return taken


# ----------------------------------------------------------------------------- time and duplicates


def test_a_looping_bag_is_a_time_jump_not_a_stream_of_duplicates() -> None:
    jumps = []
    buffer = FrameBuffer(0.1, FakeClock(), on_time_jump=jumps.append)
    stamps = [k * 66 * MS for k in range(5)]
    first = feed_pairs(buffer, stamps)
    second = feed_pairs(buffer, stamps)  # the bag starts again: the same stamps
    assert all(f is not None for f in first + second)
    assert [f.epoch for f in first + second] == [0] * 5 + [1] * 5
    assert buffer.time_jumps == 1 and buffer.duplicates == 0 and len(jumps) == 1
    assert "time jumped back by 0.264 s" in jumps[0]
    assert accounted(buffer, 10) and buffer.dropped == 0


def test_a_jump_drops_what_was_waiting_and_keeps_the_count() -> None:
    clock = FakeClock()
    buffer = FrameBuffer(0.1, clock)
    buffer.on_image(image_msg(500 * MS))  # waits for its CameraInfo
    feed_pairs(buffer, [0])  # a replay from the start
    assert buffer.time_jumps == 1 and buffer.dropped == 1 and accounted(buffer, 1)


def test_exact_duplicates_are_received_dropped_and_counted() -> None:
    clock = FakeClock()
    buffer = FrameBuffer(0.1, clock)
    feed_pairs(buffer, [0])
    clock.advance(10.0)
    buffer.on_image(image_msg(0))  # re-sent
    assert (buffer.received, buffer.duplicates, buffer.dropped, buffer.time_jumps) == (2, 1, 1, 0)
    assert buffer.last_image_age_s() == 0.0  # an arrival, whatever happens to it
    assert accounted(buffer, 1)


def test_no_image_for_counts_real_arrivals() -> None:
    clock = FakeClock()
    buffer = FrameBuffer(0.1, clock)
    processor, estimator, _, _ = make_processor(clock=clock)
    monitor = DiagnosticsMonitor(buffer, processor, LoadedEstimator(estimator, "cpu", "fp32", "f", None),
                                 clock=clock)
    for frame in feed_pairs(buffer, [0, 66 * MS]):
        processor.process(frame)
    for _ in range(10):  # the bag loops: stamps repeat while images keep arriving
        clock.advance(1.0)
        for frame in feed_pairs(buffer, [0, 66 * MS]):
            processor.process(frame)
        report = monitor.report()
        assert "no image" not in report.message
    assert report.values["time_jumps"] == "10" and report.values["frames_processed"] == "22"


# ----------------------------------------------------------------------------- failures are counted


def png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
            + chunk(b"IEND", b""))


def test_an_image_opencv_refuses_to_decode_is_a_counted_failure() -> None:
    data = png_claiming(65500, 65500)
    with pytest.raises(cv2.error):
        cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    processor, _, _, _ = make_processor()
    image = CLASSES.CompressedImage(header=make_header(CLASSES, 0, "cam"), format="png",
                                    data=np.frombuffer(data, np.uint8).copy())
    buffer = FrameBuffer(0.0, FakeClock())
    buffer.on_image(image)
    buffer.on_pair(image, info_msg(0))
    assert processor.process(buffer.take()) is None
    assert processor.log.counts == {ErrorKind.BAD_IMAGE.value: 1}
    assert buffer.received == processor.stats.processed + sum(processor.log.counts.values()) \
        + buffer.dropped + buffer.waiting


def test_unexpected_exceptions_are_counted_as_internal_errors() -> None:
    class Broken(FakeEstimator):
        def estimate(self, image_rgb, intrinsics):
            return "not people"

    processor, _, lines, _ = make_processor(Broken())
    assert processor.process(frame_for(image_msg(0), info_msg(0))) is None
    assert processor.log.counts == {ErrorKind.INTERNAL_ERROR.value: 1} and lines[0][0] == "error"


def test_people_with_non_finite_values_are_never_published() -> None:
    class HalfNaN(FakeEstimator):
        def estimate(self, image_rgb, intrinsics):
            good, bad = person_in_front(intrinsics), person_in_front(intrinsics, x_m=1.0)
            bad.keypoints_m[0, 3, 2] = np.nan
            return type(good)(
                good.skeleton, uv_px=np.concatenate([good.uv_px, bad.uv_px]),
                keypoints_m=np.concatenate([good.keypoints_m, bad.keypoints_m]),
                confidence=np.concatenate([good.confidence, bad.confidence]),
                inferred=np.concatenate([good.inferred, bad.inferred]),
                score=np.array([0.9, 0.95]), root_sigma_m=np.array([0.2, 0.2]))

    processor, _, lines, _ = make_processor(HalfNaN())
    result = processor.process(frame_for(image_msg(0), info_msg(0)))
    assert len(result.poses.people) == 1 and result.poses.people[0].root.x == pytest.approx(0.0)
    assert processor.stats.non_finite_people == 1 and "non-finite" in lines[0][1]
    people, bad = finite_people(result.people)
    assert bad == 0 and len(people) == 1


def test_camera_info_memory_is_bounded_by_frame_id() -> None:
    buffer = FrameBuffer(0.0, FakeClock())
    for k in range(100):
        buffer.on_camera_info(info_msg(0, frame_id=f"cam{k}"))
    buffer.on_camera_info(info_msg(0, frame_id="cam50"))  # seen again: kept
    buffer.on_image(image_msg(0, frame_id="cam50"))
    frame = buffer.take()
    assert len(frame.camera_info_frames) == 32 and frame.camera_info is not None
    assert "cam0" not in frame.camera_info_frames and "cam99" in frame.camera_info_frames


# ----------------------------------------------------------------------------- latency and clocks


def test_stamp_age_only_when_the_clock_and_stamps_agree() -> None:
    assert stamp_age_s(100.5, 100.0) == (0.5, "")
    age, note = stamp_age_s(1_796_155_000.0, 1_700_000_000.0)
    assert age is None and note == "stamp age unavailable: clock and stamps differ by 96155000 s"


def test_latency_is_arrival_to_done_whatever_the_stamps() -> None:
    clock = FakeClock()
    processor, estimator, _, _ = make_processor(clock=clock)
    processor._ros_now_s = lambda: 1_796_155_000.0  # wall time against a 2023 stamp (no --clock)
    buffer = FrameBuffer(0.0, clock)
    monitor = DiagnosticsMonitor(buffer, processor, LoadedEstimator(estimator, "cpu", "fp32", "f", None),
                                 clock=clock)
    (frame,) = feed_pairs(buffer, [1_700_000_000 * 10**9])
    clock.advance(0.25)
    processor.process(frame)
    values = monitor.report().values
    assert float(values["latency_s"]) == pytest.approx(0.25)
    assert values["stamp_age_s"].startswith("stamp age unavailable: clock and stamps differ by")


# ----------------------------------------------------------------------------- the floor from tf2


class FloorEstimator(FakeEstimator):
    def __init__(self) -> None:
        super().__init__()
        self.floors = []

    def estimate(self, image_rgb, intrinsics, floor=None):
        self.floors.append(floor)
        return super().estimate(image_rgb, intrinsics)


def test_ground_frame_passes_the_floor_at_the_image_stamp() -> None:
    estimator = FloorEstimator()
    processor, _, _, lookups = make_processor(estimator, ground_frame="base_footprint")
    assert processor.process(frame_for(image_msg(7 * MS), info_msg(7 * MS))) is not None
    assert lookups == [("base_footprint", "cam", 7 * MS)]
    (floor,) = estimator.floors
    # make_processor's transform: optical frame under a z-up frame, camera 0.5 m above its floor.
    assert floor.camera_height_m == pytest.approx(0.5)
    np.testing.assert_allclose(floor.up_cam, [0.0, -1.0, 0.0], atol=1e-9)  # optical y points down


def test_the_floor_uncertainty_parameters_reach_the_plane() -> None:
    estimator = FloorEstimator()
    processor, _, _, _ = make_processor(estimator, ground_frame="base_footprint",
                                        floor_tilt_sigma_rad=0.002, floor_height_sigma_m=0.005)
    assert processor.process(frame_for(image_msg(7 * MS), info_msg(7 * MS))) is not None
    (floor,) = estimator.floors
    assert (floor.tilt_sigma_rad, floor.height_sigma_m) == (0.002, 0.005)
    with pytest.raises(SettingsError, match="floor_tilt_sigma_rad"):
        NodeSettings.from_values({"floor_tilt_sigma_rad": -0.01})


def test_a_missing_ground_transform_is_counted_and_the_frame_still_processed() -> None:
    estimator = FloorEstimator()
    processor, _, lines, _ = make_processor(estimator, ground_frame="nowhere")
    assert processor.process(frame_for(image_msg(0), info_msg(0))) is not None
    assert estimator.floors == [None]  # called without a floor
    assert processor.stats.floor_unavailable == 1 and "estimating without the floor" in lines[0][1]


def test_floor_from_a_tilted_camera() -> None:
    pitch = Rotation.from_euler("x", -110, degrees=True).as_matrix()  # optical z forward and down
    floor = floor_from_transform(RigidTransform(pitch, np.array([0.3, 0.0, 1.2])))
    assert floor.camera_height_m == pytest.approx(1.2)
    np.testing.assert_allclose(floor.up_cam, pitch.T @ [0.0, 0.0, 1.0])


# ----------------------------------------------------------------------------- device and threads


def test_device_auto_and_fp32_on_the_cpu() -> None:
    assert resolve_device("auto", lambda: True)[0] == "cuda"
    device, message = resolve_device("auto", lambda: False)
    assert device == "cpu" and "no CUDA device" in message
    assert resolve_device("cuda:1", lambda: False) == ("cuda:1", None)
    assert precision_for("cpu", "fp16") == "fp32" and precision_for("cuda:0", "fp16") == "fp16"
    assert NodeSettings.from_values({}).device == "auto"
    attempts, lines = [], []

    def factory(**kwargs):
        attempts.append(kwargs)
        return FakeEstimator()

    for device in ("auto", "cpu"):  # the shipped default on a CPU-only machine, and device:=cpu
        attempts.clear(), lines.clear()
        loaded = load_estimator(factory, NodeSettings.from_values({"device": device}),
                                lambda level, message: lines.append((level, message)),
                                cuda_available=lambda: False)
        assert [(a["device"], a["precision"]) for a in attempts] == [("cpu", "fp32")]
        assert loaded.fallback_reason is None and all(level == "info" for level, _ in lines)


def test_opencv_threads_follow_torch() -> None:
    previous = match_opencv_threads(1)
    try:
        assert cv2.getNumThreads() == 1
    finally:
        cv2.setNumThreads(previous)


def test_all_parameter_problems_at_once() -> None:
    with pytest.raises(SettingsError) as error:
        NodeSettings.from_values({"device": "gpu", "ground_frame": "/base", "max_people": 0},
                                 known_problems=["rectified (bool): refused by rclpy"],
                                 unchecked={"rectified"})
    message = str(error.value)
    for name in ("device", "ground_frame", "max_people", "rectified"):
        assert name in message


# ----------------------------------------------------------------------------- people_msgs


class Plain:
    def __init__(self, **fields) -> None:
        self.__dict__.update(fields)


def test_people_msgs_of_the_tracked_people() -> None:
    from mp3d_ros.geometry.camera import Intrinsics

    intrinsics = Intrinsics.pinhole(60.0, 60.0, 31.5, 23.5, WIDTH, HEIGHT)
    people = person_in_front(intrinsics, x_m=0.5)
    two = type(people)(people.skeleton, uv_px=np.repeat(people.uv_px, 2, 0),
                       keypoints_m=np.repeat(people.keypoints_m, 2, 0),
                       confidence=np.repeat(people.confidence, 2, 0),
                       inferred=np.repeat(people.inferred, 2, 0), score=np.array([0.8, 0.7]),
                       root_sigma_m=np.array([0.1, 0.1]), track_id=np.array([7, 0]),
                       track_age=np.array([12, 0]), velocity_mps=np.array([[0.5, 0.0, -0.1], [0, 0, 0]]))
    classes = PeopleMsgClasses(People=Plain, Person=Plain, Point=Plain)
    msg = people_to_people_msg(two, "header", classes)
    (person,) = msg.people  # the untracked one is left out
    assert msg.header == "header" and person.name == "person_7" and person.reliability == 0.8
    assert (person.position.x, person.position.z) == (0.5, 4.0)
    assert (person.velocity.x, person.velocity.z) == (0.5, -0.1)
    assert person.tagnames == ["track_age", "height_m"] and person.tags == ["12", "0.000"]
    assert track_frames(two) == [("person_7", (0.5, 0.2, 4.0))]
