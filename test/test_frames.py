"""The node's ROS-free core: pairing, latest-frame buffer, processing, error counting, start-up."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mp3d_ros.geometry.camera import Intrinsics
from mp3d_ros.geometry.people import People
from mp3d_ros.geometry.skeleton import get_joint_set
from mp3d_ros.messages.conversions import (
    MessageClasses,
    RigidTransform,
    make_camera_info,
    make_header,
    pose_array_to_people,
    stamp_to_ns,
)
from mp3d_ros.messages.images import rgb_to_compressed_image, rgb_to_image
from mp3d_ros.ros.frame_buffer import FrameBuffer
from mp3d_ros.ros.frames import (
    ErrorKind,
    FrameProcessor,
    FrameWorker,
    ThrottledLog,
    decode_image,
    select_people,
)
from mp3d_ros.ros.health import DiagnosticsMonitor, LoadedEstimator, load_estimator
from mp3d_ros.ros.settings import NodeSettings, SettingsError

CLASSES = MessageClasses.from_typestore()
WIDTH, HEIGHT = 64, 48
K = np.array([[60.0, 0.0, 31.5], [0.0, 60.0, 23.5], [0.0, 0.0, 1.0]])


class FakeClock:
    def __init__(self, now_s: float = 1000.0) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s

    def advance(self, dt_s: float) -> None:
        self.now_s += dt_s


def image_msg(stamp_ns: int, frame_id: str = "cam", encoding: str = "rgb8", size=(WIDTH, HEIGHT)):
    rgb = np.full((size[1], size[0], 3), 100, dtype=np.uint8)
    return rgb_to_image(rgb, encoding, make_header(CLASSES, stamp_ns, frame_id), CLASSES.Image)


def info_msg(stamp_ns: int, frame_id: str = "cam", K=K, size=(WIDTH, HEIGHT), P=None):
    return make_camera_info(CLASSES, make_header(CLASSES, stamp_ns, frame_id), K, size[0], size[1],
                            "plumb_bob", [0.0] * 5, P)


MS = 1_000_000  # nanoseconds per millisecond


# ----------------------------------------------------------------------------- FrameBuffer


def test_paired_frame_is_taken_with_its_camera_info() -> None:
    buffer = FrameBuffer(0.2, FakeClock())
    image, info = image_msg(10 * MS), info_msg(10 * MS)
    buffer.on_image(image)
    assert buffer.take() is None  # waiting for its CameraInfo
    buffer.on_camera_info(info)
    buffer.on_pair(image, info)
    frame = buffer.take()
    assert frame.image is image and frame.camera_info is info and frame.paired
    assert (frame.frame_id, frame.stamp_ns) == ("cam", 10 * MS)
    assert buffer.take() is None
    assert (buffer.received, buffer.taken, buffer.dropped) == (1, 1, 0)


def test_only_the_newest_frame_is_kept_and_older_ones_are_counted_as_dropped() -> None:
    buffer = FrameBuffer(0.2, FakeClock())
    for k in range(5):
        image, info = image_msg(k * 33 * MS), info_msg(k * 33 * MS)
        buffer.on_image(image)
        buffer.on_pair(image, info)
    frame = buffer.take()
    assert frame.stamp_ns == 4 * 33 * MS
    assert (buffer.received, buffer.taken, buffer.dropped, buffer.waiting) == (5, 1, 4, 0)


def test_fallback_to_latest_camera_info_of_the_same_frame_after_the_wait() -> None:
    clock = FakeClock()
    buffer = FrameBuffer(0.2, clock)
    buffer.on_camera_info(info_msg(0, "other"))
    old_info = info_msg(0)
    buffer.on_camera_info(old_info)
    buffer.on_image(image_msg(500 * MS))  # its CameraInfo never comes (stamps differ by 0.5 s)
    clock.advance(0.19)
    assert buffer.take() is None
    clock.advance(0.02)
    frame = buffer.take()
    assert frame.camera_info is old_info and not frame.paired


def test_no_camera_info_of_that_frame_gives_a_frame_without_one() -> None:
    clock = FakeClock()
    buffer = FrameBuffer(0.1, clock)
    buffer.on_camera_info(info_msg(0, "cam_b"))
    buffer.on_image(image_msg(0, "cam_a"))
    clock.advance(0.2)
    frame = buffer.take()
    assert frame.camera_info is None and frame.camera_info_frames == ("cam_b",)


def test_late_pairs_and_duplicates_are_ignored_and_order_is_kept() -> None:
    clock = FakeClock()
    buffer = FrameBuffer(0.1, clock)
    old, new = image_msg(0), image_msg(33 * MS)
    buffer.on_image(old)
    buffer.on_image(new)
    buffer.on_pair(new, info_msg(33 * MS))
    assert buffer.take().image is new
    buffer.on_pair(old, info_msg(0))  # its pair came too late: never processed after a newer frame
    buffer.on_pair(new, info_msg(33 * MS))  # a duplicate of a processed frame
    buffer.on_image(new)  # the same image delivered again: received, dropped and counted
    clock.advance(1.0)
    assert buffer.take() is None
    assert (buffer.received, buffer.taken, buffer.dropped, buffer.waiting) == (3, 1, 2, 0)
    assert buffer.duplicates == 1 and buffer.time_jumps == 0


def test_pair_arriving_before_the_image_callback_is_counted_once() -> None:
    buffer = FrameBuffer(0.1, FakeClock())
    image = image_msg(0)
    buffer.on_pair(image, info_msg(0))
    buffer.on_image(image)
    assert buffer.take().paired
    assert (buffer.received, buffer.taken) == (1, 1)


@settings(max_examples=40)
@given(st.lists(st.tuples(st.sampled_from(["image", "pair", "late_pair", "info", "take", "tick"]),
                          st.integers(0, 5)), max_size=60))
def test_every_image_is_accounted_for(operations) -> None:
    """received == taken + dropped + waiting, and frames come out in arrival order."""
    clock = FakeClock()
    buffer = FrameBuffer(0.1, clock)
    stamp, sent, taken_stamps = 0, [], []
    for operation, k in operations:
        if operation == "image":
            stamp += 10 * MS
            sent.append(image_msg(stamp))
            buffer.on_image(sent[-1])
        elif operation in ("pair", "late_pair") and sent:
            image = sent[-1] if operation == "pair" else sent[max(0, len(sent) - 1 - k)]
            buffer.on_pair(image, info_msg(stamp_to_ns(image.header.stamp)))
        elif operation == "info":
            buffer.on_camera_info(info_msg(stamp))
        elif operation == "take":
            frame = buffer.take()
            if frame is not None:
                taken_stamps.append(frame.stamp_ns)
        else:
            clock.advance(0.05 * k)
        assert buffer.received == buffer.taken + buffer.dropped + buffer.waiting
    assert buffer.received == len(sent)
    assert taken_stamps == sorted(taken_stamps) and len(set(taken_stamps)) == len(taken_stamps)


def test_callbacks_never_block_while_the_worker_waits() -> None:
    buffer = FrameBuffer(0.1)
    got = []
    consumer = threading.Thread(target=lambda: got.append(buffer.wait(5.0)))
    consumer.start()
    time.sleep(0.05)
    start = time.perf_counter()
    image = image_msg(0)
    buffer.on_image(image)
    buffer.on_pair(image, info_msg(0))
    assert time.perf_counter() - start < 0.05
    consumer.join(2.0)
    assert got and got[0].image is image
    buffer.close()
    start = time.perf_counter()
    assert buffer.wait(5.0) is None and time.perf_counter() - start < 0.5


def test_wait_wakes_up_for_the_camera_info_fallback() -> None:
    buffer = FrameBuffer(0.05)
    buffer.on_camera_info(info_msg(0))
    buffer.on_image(image_msg(999 * MS))
    start = time.perf_counter()
    frame = buffer.wait(2.0)
    assert frame is not None and not frame.paired
    assert time.perf_counter() - start < 0.5


# ----------------------------------------------------------------------------- logging


def test_throttled_log_counts_everything_but_logs_once_per_interval() -> None:
    clock, lines = FakeClock(), []
    log = ThrottledLog(lambda level, message: lines.append((level, message)), 5.0, clock)
    for _ in range(4):
        log.report("bad_image", "warn", "bad image: truncated")
        clock.advance(1.0)
    log.report("size_mismatch", "warn", "image is 10x10")
    clock.advance(2.0)
    log.report("bad_image", "warn", "bad image: truncated")
    assert log.counts == {"bad_image": 5, "size_mismatch": 1}
    assert lines == [("warn", "bad image: truncated"), ("warn", "image is 10x10"),
                     ("warn", "bad image: truncated (3 more since the last report)")]


# ----------------------------------------------------------------------------- processing


def person_in_front(intrinsics: Intrinsics, depth_m: float = 4.0, x_m: float = 0.0,
                    score: float = 0.9) -> People:
    joint_set = get_joint_set("mupots_17")
    keypoints = np.array([x_m, 0.2, depth_m]) + np.random.default_rng(0).normal(
        0, 0.2, (1, joint_set.num_joints, 3))
    keypoints[0, joint_set.root] = [x_m, 0.2, depth_m]
    uv = keypoints[..., :2] / keypoints[..., 2:] * intrinsics.fx + [intrinsics.cx, intrinsics.cy]
    return People("mupots_17", uv_px=uv, keypoints_m=keypoints,
                  confidence=np.full((1, joint_set.num_joints), 0.8),
                  inferred=np.zeros((1, joint_set.num_joints), dtype=bool), score=np.array([score]),
                  root_sigma_m=np.array([0.2]))


class FakeEstimator:
    """Records the intrinsics of each call; returns one person (or raises ``error``)."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[Intrinsics] = []
        self.error = error
        self.backend_name = "fake"

    def estimate(self, image_rgb: np.ndarray, intrinsics: Intrinsics) -> People:
        assert image_rgb.dtype == np.uint8 and image_rgb.shape == (intrinsics.height, intrinsics.width, 3)
        self.calls.append(intrinsics)
        if self.error is not None:
            raise self.error
        return person_in_front(intrinsics)


def make_processor(estimator=None, clock=None, **overrides):
    settings = NodeSettings.from_values({"tracking.birth_hits": 1, **overrides})
    lines: list[tuple[str, str]] = []
    log = ThrottledLog(lambda level, message: lines.append((level, message)), 60.0, clock or FakeClock())
    lookups = []

    def lookup(target, source, stamp_ns):
        lookups.append((target, source, stamp_ns))
        if target == "nowhere":
            raise LookupError("frame 'nowhere' does not exist")
        return RigidTransform.from_quaternion([0.5, -0.5, 0.5, -0.5], [1.0, 2.0, 0.5])

    estimator = estimator or FakeEstimator()
    processor = FrameProcessor(estimator.estimate, settings, CLASSES, log,
                               lookup_transform=lookup if settings.target_frame or settings.ground_frame else None,
                               ros_now_s=lambda: 1.5, clock=clock or FakeClock())
    return processor, estimator, lines, lookups


def frame_for(image, info, paired=True, clock=None):
    buffer = FrameBuffer(0.0, clock or FakeClock())
    if info is not None:
        buffer.on_camera_info(info)
    buffer.on_image(image)
    if paired:
        buffer.on_pair(image, info)
    return buffer.take()


def test_a_good_frame_gives_poses_and_markers_with_the_image_header() -> None:
    processor, estimator, lines, _ = make_processor()
    result = processor.process(frame_for(image_msg(1_000_000_123), info_msg(1_000_000_123)))
    assert result is not None and lines == []
    assert result.poses.header.frame_id == "cam" and stamp_to_ns(result.poses.header.stamp) == 1_000_000_123
    assert len(result.poses.people) == 1 and result.poses.people[0].track_id == 1
    assert result.markers.markers[0].action == CLASSES.Marker.DELETEALL
    np.testing.assert_allclose(pose_array_to_people(result.poses).root_m[0], [0.0, 0.2, 4.0])
    assert processor.stats.processed == 1
    assert processor.stats.latency_s[-1] == 0.0  # arrival to done on the (frozen) monotonic clock
    assert processor.stats.stamp_age_s[-1] == pytest.approx(1.5 - 1.000000123)


def test_intrinsics_come_from_each_frames_camera_info() -> None:
    processor, estimator, _, _ = make_processor()
    zoomed = K.copy()
    zoomed[0, 0] = zoomed[1, 1] = 120.0
    processor.process(frame_for(image_msg(0), info_msg(0)))
    processor.process(frame_for(image_msg(MS), info_msg(MS, K=zoomed)))
    assert [c.fx for c in estimator.calls] == [60.0, 120.0]


def test_rectified_uses_the_projection_matrix() -> None:
    processor, estimator, _, _ = make_processor(rectified=True)
    P = np.hstack([K * [[0.5], [0.5], [1.0]], np.zeros((3, 1))])
    processor.process(frame_for(image_msg(0), info_msg(0, P=P)))
    assert estimator.calls[0].fx == 30.0 and estimator.calls[0].distortion_model == "none"


def test_compressed_images_are_processed() -> None:
    processor, _, _, _ = make_processor()
    rgb = np.full((HEIGHT, WIDTH, 3), 90, np.uint8)
    image = rgb_to_compressed_image(rgb, make_header(CLASSES, 0, "cam"), CLASSES.CompressedImage)
    assert processor.process(frame_for(image, info_msg(0))) is not None


@pytest.mark.parametrize("case, kind", [
    ("unsupported_encoding", ErrorKind.UNSUPPORTED_ENCODING),
    ("empty_image", ErrorKind.BAD_IMAGE),
    ("no_camera_info", ErrorKind.NO_CAMERA_INFO),
    ("invalid_intrinsics", ErrorKind.INVALID_INTRINSICS),
    ("size_mismatch", ErrorKind.SIZE_MISMATCH),
    ("estimator_failure", ErrorKind.ESTIMATOR_FAILURE),
    ("transform_failure", ErrorKind.TRANSFORM_FAILURE),
])
@pytest.mark.parametrize("decoded_ahead", [False, True])
def test_bad_input_is_counted_logged_and_skipped(case: str, kind: ErrorKind, decoded_ahead: bool) -> None:
    estimator = FakeEstimator(RuntimeError("CUDA out of memory") if case == "estimator_failure" else None)
    overrides = {"target_frame": "nowhere"} if case == "transform_failure" else {}
    processor, _, lines, _ = make_processor(estimator, **overrides)
    image, info = image_msg(0), info_msg(0)
    if case == "unsupported_encoding":
        image.encoding = "mono16"
    elif case == "empty_image":
        image = CLASSES.Image(header=image.header, height=0, width=0, encoding="rgb8", is_bigendian=0,
                              step=0, data=np.zeros(0, np.uint8))
    elif case == "invalid_intrinsics":
        info.k = np.zeros(9)
    elif case == "size_mismatch":
        info = info_msg(0, size=(2 * WIDTH, 2 * HEIGHT))
    frame = frame_for(image, None if case == "no_camera_info" else info,
                      paired=case != "no_camera_info")
    for _ in range(3):  # decoded in the worker, or ahead in the decoding thread: the same outcome
        assert processor.process(frame, decode_image(frame) if decoded_ahead else None) is None
    assert processor.log.counts == {kind.value: 3}
    assert len(lines) == 1  # throttled
    assert processor.stats.processed == 0
    level, message = lines[0]
    assert level == ("error" if kind == ErrorKind.ESTIMATOR_FAILURE else "warn")
    expected = {"unsupported_encoding": "mono16", "empty_image": "empty", "no_camera_info": "'cam'",
                "invalid_intrinsics": "not calibrated", "size_mismatch": "128x96",
                "estimator_failure": "out of memory", "transform_failure": "nowhere"}[case]
    assert expected in message


def test_camera_info_fallback_is_warned_and_counted() -> None:
    processor, _, lines, _ = make_processor()
    frame = frame_for(image_msg(300 * MS), info_msg(0), paired=False)
    assert processor.process(frame) is not None
    assert processor.stats.camera_info_fallbacks == 1
    assert "latest CameraInfo" in lines[0][1] and "-0.300 s" in lines[0][1]


def test_camera_info_of_another_frame_id_is_used_with_a_warning() -> None:
    processor, _, lines, _ = make_processor()
    assert processor.process(frame_for(image_msg(0, "cam"), info_msg(0, "cam_info"))) is not None
    assert processor.log.counts == {"camera_info_frame_mismatch": 1}
    assert "'cam_info'" in lines[0][1]


def test_score_threshold_and_max_people() -> None:
    intrinsics = Intrinsics(K, WIDTH, HEIGHT)
    people = [person_in_front(intrinsics, 3.0 + i, x_m=i, score=s)
              for i, s in enumerate([0.2, 0.9, 0.5, 0.7])]
    merged = People("mupots_17", *(np.concatenate([getattr(p, f) for p in people]) for f in (
        "uv_px", "keypoints_m", "confidence", "inferred", "score", "root_sigma_m")))
    assert select_people(merged, 0.3, 2).score.tolist() == [0.9, 0.7]
    assert select_people(merged, 0.0, 10).score.tolist() == [0.9, 0.7, 0.5, 0.2]


def test_target_frame_transforms_poses_at_the_image_stamp() -> None:
    processor, _, _, lookups = make_processor(target_frame="odom")
    result = processor.process(frame_for(image_msg(7 * MS), info_msg(7 * MS)))
    assert lookups == [("odom", "cam", 7 * MS)]
    assert result.poses.header.frame_id == "odom" and result.frame_id == "odom"
    transform = RigidTransform.from_quaternion([0.5, -0.5, 0.5, -0.5], [1.0, 2.0, 0.5])
    root = result.poses.people[0].root
    np.testing.assert_allclose([root.x, root.y, root.z], transform.apply([0.0, 0.2, 4.0]))
    cov = np.asarray(result.poses.people[0].root_covariance).reshape(3, 3)
    ray = transform.rotation @ np.array([0.0, 0.2, 4.0]) / np.linalg.norm([0.0, 0.2, 4.0])
    assert abs(np.linalg.eigh(cov)[1][:, -1] @ ray) > 0.99  # still elongated along the viewing ray
    # The label keeps the distance from the camera, not from the odom origin.
    label = [m for m in result.markers.markers if m.ns == "labels"][0]
    assert label.text.endswith(f"{np.linalg.norm([0.0, 0.2, 4.0]):.1f} m")


def test_tracking_gives_stable_ids_and_resets_when_the_frame_changes() -> None:
    processor, _, _, _ = make_processor(**{"tracking.birth_hits": 2})
    results = [processor.process(frame_for(image_msg(k * 100 * MS), info_msg(k * 100 * MS)))
               for k in range(4)]
    ids = [result.poses.people[0].track_id for result in results]
    assert ids == [0, 1, 1, 1]
    other = processor.process(frame_for(image_msg(500 * MS, "cam2"), info_msg(500 * MS, "cam2")))
    assert other.poses.people[0].track_id == 0


def test_tracking_off_and_markers_off() -> None:
    processor, _, _, _ = make_processor(**{"tracking.enabled": False, "publish_markers": False})
    result = processor.process(frame_for(image_msg(0), info_msg(0)))
    assert processor.tracker is None and result.markers is None
    assert result.poses.people[0].track_id == 0


# ----------------------------------------------------------------------------- worker


@pytest.mark.parametrize("decode_ahead", [False, True])
def test_worker_processes_the_newest_frames_in_order_and_survives_failures(decode_ahead: bool) -> None:
    buffer = FrameBuffer(0.05)
    processor, _, _, _ = make_processor(clock=time.monotonic)
    published, logged = [], []
    calls = {"n": 0}

    def publish(result):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("publisher gone")
        published.append(result.stamp_ns)

    worker = FrameWorker(buffer, processor, publish, lambda level, message: logged.append(message),
                         poll_s=0.02, decode_ahead=decode_ahead)
    assert worker.decodes_ahead == decode_ahead
    worker.start()
    for k in range(6):
        image, info = image_msg(k * 33 * MS), info_msg(k * 33 * MS)
        buffer.on_image(image)
        buffer.on_pair(image, info)
        time.sleep(0.05)
    deadline = time.monotonic() + 3.0
    while buffer.taken + buffer.dropped < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.stop()
    assert not worker.alive
    assert published == sorted(published) and len(published) >= 3
    assert any("publisher gone" in line for line in logged)


def test_a_pre_decoded_image_gives_the_same_messages_and_its_decode_time() -> None:
    plain, _, _, _ = make_processor()
    ahead, _, _, _ = make_processor()
    frame = frame_for(image_msg(5 * MS), info_msg(5 * MS))
    decoded = decode_image(frame)
    expected, result = plain.process(frame), ahead.process(frame, decoded)
    np.testing.assert_array_equal(pose_array_to_people(result.poses).keypoints_m,
                                  pose_array_to_people(expected.poses).keypoints_m)
    assert result.stage_times.decode_ms == pytest.approx(1e3 * decoded.seconds)  # the clock is frozen


class BlockingEstimator(FakeEstimator):
    """Holds the first call until ``release`` is set, so frames arrive while the worker is busy."""

    def __init__(self) -> None:
        super().__init__()
        self.busy, self.release = threading.Event(), threading.Event()

    def estimate(self, image_rgb: np.ndarray, intrinsics: Intrinsics) -> People:
        if not self.calls:
            self.busy.set()
            assert self.release.wait(10.0)
        return super().estimate(image_rgb, intrinsics)


def wait_until(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_decoding_ahead_keeps_the_newest_frame_and_counts_the_one_it_overtook() -> None:
    buffer = FrameBuffer(0.0)
    estimator = BlockingEstimator()
    processor, _, _, _ = make_processor(estimator, clock=time.monotonic)
    published: list[int] = []
    worker = FrameWorker(buffer, processor, lambda result: published.append(result.stamp_ns),
                         lambda level, message: None, poll_s=0.02, decode_ahead=True)
    worker.start()

    def deliver(stamp_ns: int) -> None:
        image, info = image_msg(stamp_ns), info_msg(stamp_ns)
        buffer.on_image(image)
        buffer.on_pair(image, info)

    deliver(0)
    assert estimator.busy.wait(10.0)  # frame 0 is in the estimator
    deliver(33 * MS)
    wait_until(lambda: buffer.taken == 2)  # frame 1 taken and decoded while frame 0 runs
    deliver(66 * MS)
    wait_until(lambda: buffer.dropped == 1)  # frame 2 decoded too: it overtakes frame 1
    estimator.release.set()
    wait_until(lambda: len(published) == 2)
    worker.stop()
    assert published == [0, 66 * MS]
    assert buffer.received == 3 and buffer.taken == 2 and buffer.dropped == 1 and buffer.waiting == 0
    assert processor.stats.processed == 2  # received = processed + failed + dropped + waiting


# ----------------------------------------------------------------------------- start-up and health


def test_estimator_falls_back_to_cpu_when_the_gpu_fails() -> None:
    attempts, lines = [], []

    def factory(**kwargs):
        attempts.append(kwargs)
        if kwargs["device"] != "cpu":
            raise RuntimeError("CUDA error: no CUDA-capable device is detected")
        return FakeEstimator()

    settings = NodeSettings.from_values({"device": "cuda:1", "precision": "fp16", "model_path": "m.onnx",
                                         "input_width": 640, "input_height": 384})
    loaded = load_estimator(factory, settings, lambda level, message: lines.append((level, message)))
    assert [a["device"] for a in attempts] == ["cuda:1", "cpu"]
    assert attempts[0]["stage_timing"] is False  # stage_timing auto: no CUDA events on the GPU
    assert attempts[1] == {"model_path": "m.onnx", "backend": "auto", "device": "cpu",
                           "precision": "fp32", "input_size": (640, 384), "cuda_graph": "auto",
                           "compile_network": False, "stage_timing": True}
    assert loaded.device == "cpu" and "no CUDA-capable" in loaded.fallback_reason
    assert lines[0][0] == "error" and "falling back to the CPU" in lines[0][1]
    assert len(loaded.estimator.calls) == 1  # the warm-up frame


def test_warm_up_failure_counts_as_a_start_failure_and_both_errors_are_reported() -> None:
    settings = NodeSettings.from_values({"device": "cuda"})
    with pytest.raises(RuntimeError, match="cuda .*out of memory.*cpu .*broken"):
        load_estimator(lambda **kw: FakeEstimator(RuntimeError(
            "out of memory" if kw["device"] == "cuda" else "broken model")), settings, lambda *a: None)


def test_diagnostics_levels_and_values() -> None:
    clock = FakeClock()
    buffer = FrameBuffer(0.1, clock)
    processor, estimator, _, _ = make_processor(clock=clock)
    loaded = LoadedEstimator(estimator, "cpu", "fp32", "fake", "CUDA missing")
    monitor = DiagnosticsMonitor(buffer, processor, loaded, stale_after_s=3.0, clock=clock)
    assert monitor.report().level == "WARN"  # waiting for images

    def feed(image, info):
        buffer.on_image(image)
        buffer.on_pair(image, info)
        frame = buffer.take()
        clock.advance(0.1)
        return processor.process(frame)

    for k in range(3):
        feed(image_msg(k * 100 * MS), info_msg(k * 100 * MS))
    report = monitor.report()
    assert report.level == "OK" and "CPU fallback" in report.message
    assert report.values["frames_processed"] == "3" and report.values["device"] == "cpu (fp32)"
    assert float(report.values["frame_rate_hz"]) == pytest.approx(10.0)
    assert report.values["backend"] == "fake" and report.values["device_fallback_reason"] == "CUDA missing"
    bad = image_msg(400 * MS)
    bad.encoding = "bayer_rggb8"
    feed(bad, info_msg(400 * MS))
    feed(image_msg(500 * MS), info_msg(500 * MS))
    report = monitor.report()
    assert report.level == "WARN" and "unsupported_encoding" in report.message
    assert report.values["errors.unsupported_encoding"] == "1"
    bad2 = image_msg(600 * MS)
    bad2.encoding = "mono16"
    feed(bad2, info_msg(600 * MS))
    assert monitor.report().level == "ERROR"  # frames arrived, none could be processed
    clock.advance(5.0)
    report = monitor.report()
    assert report.level == "WARN" and "no image" in report.message
    assert set(report.values) >= {"latency_s", "frames_dropped", "camera_info_age_s", "input_rate_hz",
                                  "processing_time_mean_s", "camera_info_fallbacks"}


def test_settings_defaults_are_valid_and_invalid_values_are_all_reported() -> None:
    settings = NodeSettings.from_values({})
    assert settings.tracking is not None and settings.input_size is None
    assert settings.sync_slop_s == 0.02 and settings.image_transport == "raw"
    with pytest.raises(SettingsError) as error:
        NodeSettings.from_values({"device": "gpu", "precision": "fp8", "sync_slop_s": 0.0,
                                  "max_people": "5", "input_width": 320, "bogus": 1})
    text = str(error.value)
    for expected in ("unknown parameter 'bogus'", "precision is 'fp8'", "sync_slop_s is 0.0",
                     "max_people must be an integer, got '5' (a string)", "device is 'gpu'",
                     "input_width and input_height"):
        assert expected in text, (expected, text)
    with pytest.raises(SettingsError, match="input_width and input_height"):
        NodeSettings.from_values({"input_width": 320})
    with pytest.raises(SettingsError, match="target_frame"):
        NodeSettings.from_values({"target_frame": "/odom"})
    assert NodeSettings.from_values({"score_threshold": 1}).score_threshold == 1.0  # int for a double
    assert NodeSettings.from_values({"tracking.enabled": False}).tracking is None
    assert NodeSettings.from_values({"input_width": 640, "input_height": 384}).input_size == (640, 384)
