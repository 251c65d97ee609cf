"""The node's frame processing without ROS: one paired frame in, messages and counts out.

Data flow (the node only wires ROS callbacks to these objects; pairing is
:mod:`mp3d_ros.ros.frame_buffer`'s):

    image / CameraInfo callbacks ---> FrameBuffer (latest paired frame)
    FrameWorker thread: FrameBuffer.wait() -> FrameProcessor.process() -> publish
    with decode_ahead:  decoding thread: FrameBuffer.wait() -> decode -> one-frame slot
                        FrameWorker thread: slot -> FrameProcessor.process() -> publish

:class:`FrameProcessor` turns one frame into messages and counts each kind of bad input
(:class:`ErrorKind`), logging each kind at most once per ``log_throttle_s``, and times each stage
of a frame (:mod:`mp3d_ros.ros.timing`; recorded unless ``stage_timing`` is off). The worker and the
diagnostics run in different threads; shared counters are guarded by locks.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Mapping

import numpy as np

from mp3d_ros.geometry.camera import Intrinsics
from mp3d_ros.geometry.floor import FloorPlane
from mp3d_ros.geometry.people import People
from mp3d_ros.messages.conversions import (
    MessageClasses,
    RigidTransform,
    make_header,
    people_root_covariance,
    people_to_pose_array,
    stamp_to_ns,
    transform_people,
)
from mp3d_ros.messages.decode_ahead import Decoded, decode_now
from mp3d_ros.messages.images import UnsupportedEncodingError, any_image_to_rgb
from mp3d_ros.messages.markers import MarkerStyle, people_to_markers
from mp3d_ros.ros.frame_buffer import Frame, FrameBuffer
from mp3d_ros.ros.settings import NodeSettings
from mp3d_ros.ros.timing import StageSamples, StageTimes, Stopwatch
from mp3d_ros.tracking.tracker import Tracker

__all__ = [
    "ErrorKind", "ThrottledLog", "FrameResult", "FrameProcessor",
    "FrameWorker", "decode_image", "select_people", "finite_people", "floor_from_transform", "stamp_age_s",
    "Log",
]

Log = Callable[[str, str], None]  # (level: "info" | "warn" | "error", message)


class ErrorKind(str, Enum):
    """Kinds of frames that could not be processed (each counted in /diagnostics)."""

    UNSUPPORTED_ENCODING = "unsupported_encoding"
    BAD_IMAGE = "bad_image"  # empty, truncated or undecodable image data
    NO_CAMERA_INFO = "no_camera_info"
    INVALID_INTRINSICS = "invalid_intrinsics"
    SIZE_MISMATCH = "size_mismatch"
    ESTIMATOR_FAILURE = "estimator_failure"
    TRANSFORM_FAILURE = "transform_failure"
    INTERNAL_ERROR = "internal_error"  # a bug: any other exception while processing a frame


class ThrottledLog:
    """Counts every report per kind; logs the first and then at most one per ``throttle_s``."""

    def __init__(self, log: Log, throttle_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._log, self.throttle_s, self._clock = log, float(throttle_s), clock
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.last_message: dict[str, str] = {}
        self._last_logged_s: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def report(self, kind: str, level: str, message: str) -> None:
        with self._lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            self.last_message[kind] = message
            now = self._clock()
            last = self._last_logged_s.get(kind)
            if last is not None and now - last < self.throttle_s:
                self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
                return
            suppressed = self._suppressed.pop(kind, 0)
            self._last_logged_s[kind] = now
        suffix = f" ({suppressed} more since the last report)" if suppressed else ""
        self._log(level, f"{message}{suffix}")


# Beyond this difference between the node's clock and the image stamps, a "stamp age" would measure
# the clocks, not the pipeline (a bag played without --clock, a camera with its own time base).
_CLOCKS_AGREE_S = 10.0


def stamp_age_s(now_s: float, stamp_s: float, agree_s: float = _CLOCKS_AGREE_S) -> tuple[float | None, str]:
    """(now - stamp, "") when the clock and the stamp agree within ``agree_s``, else (None, why)."""
    age_s = now_s - stamp_s
    if abs(age_s) <= agree_s:
        return age_s, ""
    return None, f"stamp age unavailable: clock and stamps differ by {age_s:.0f} s"


def finite_people(people: People) -> tuple[People, int]:
    """The people whose joints, pixels, scores and velocities are all finite, and how many were not."""
    count = len(people)
    finite = (np.isfinite(np.asarray(people.keypoints_m, np.float64).reshape(count, -1)).all(axis=1)
              & np.isfinite(np.asarray(people.uv_px, np.float64).reshape(count, -1)).all(axis=1)
              & np.isfinite(np.asarray(people.score, np.float64))
              & np.isfinite(np.asarray(people.root_sigma_m, np.float64))
              & np.isfinite(np.asarray(people.velocity_mps, np.float64).reshape(count, -1)).all(axis=1))
    bad = int(count - finite.sum())
    return (people if not bad else people.select(finite)), bad


def floor_from_transform(ground_from_camera: RigidTransform,
                         tilt_sigma_rad: float = FloorPlane.tilt_sigma_rad,
                         height_sigma_m: float = FloorPlane.height_sigma_m) -> FloorPlane:
    """The floor (z = 0 of the ground frame) from tf2's ``ground_frame <- camera optical frame``,
    with the plane's uncertainty (``floor_tilt_sigma_rad``, ``floor_height_sigma_m``)."""
    return FloorPlane.from_camera_pose(ground_from_camera.rotation, ground_from_camera.translation_m,
                                       tilt_sigma_rad=tilt_sigma_rad, height_sigma_m=height_sigma_m)


def select_people(people: People, score_threshold: float, max_people: int) -> People:
    """The ``max_people`` highest-scoring people with score >= ``score_threshold``, best first."""
    scores = np.asarray(people.score, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    order = order[scores[order] >= score_threshold][:max_people]
    return people.select(order)


@dataclass(frozen=True, eq=False)
class FrameResult:
    """Messages for one processed frame."""

    stamp_ns: int
    frame_id: str  # of the outputs (target_frame when transformed)
    people: People
    poses: Any
    markers: Any  # None when markers are off
    processing_s: float
    stage_times: StageTimes | None = None  # how long each stage took (always measured: a few clock reads)


@dataclass
class ProcessingStats:
    """Counters of the processor (read by the diagnostics thread under ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    processed: int = 0
    camera_info_fallbacks: int = 0
    non_finite_people: int = 0  # people dropped for NaN/inf values (never published)
    floor_unavailable: int = 0  # frames estimated without the floor (no ground_frame transform)
    last_people: int = 0
    processed_s: deque = field(default_factory=lambda: deque(maxlen=512))
    processing_s: deque = field(default_factory=lambda: deque(maxlen=100))
    latency_s: deque = field(default_factory=lambda: deque(maxlen=100))  # arrival -> done, monotonic
    stamp_age_s: deque = field(default_factory=lambda: deque(maxlen=100))  # ROS now - image stamp
    stamp_age_note: str = ""  # why the stamp age is unavailable
    stages: StageSamples = field(default_factory=StageSamples)  # since the last diagnostics report


class _FrameError(Exception):
    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class FrameProcessor:
    """Runs one frame through decoding, the estimator, tf2, tracking and message building.

    Args:
        estimate: ``(image_rgb, intrinsics, floor=None) -> People`` (the Estimator's ``estimate``;
            ``floor`` is passed only when ``settings.ground_frame`` gave one).
        settings: validated node settings.
        classes: message classes to build outputs with.
        log: throttled log for bad input.
        lookup_transform: ``(target_frame, source_frame, stamp_ns) -> RigidTransform``, raising on
            failure; needed when ``settings.target_frame`` or ``settings.ground_frame`` is set.
        ros_now_s: current ROS time in seconds (for the stamp age, when it agrees with the stamps).
        clock: monotonic clock for processing times, stage times and rates.
        estimator_timings: the estimator's own stage durations (ms) of its last ``estimate`` call
            (``Estimator.last_timings_ms``, empty when it does not time them); read right after each
            call unless ``settings.stage_timing`` is off.
    """

    def __init__(
        self, estimate: Callable[..., People], settings: NodeSettings,
        classes: MessageClasses, log: ThrottledLog,
        lookup_transform: Callable[[str, str, int], RigidTransform] | None = None,
        ros_now_s: Callable[[], float] = time.time, clock: Callable[[], float] = time.monotonic,
        estimator_timings: Callable[[], Mapping[str, float]] | None = None,
    ) -> None:
        if (settings.target_frame or settings.ground_frame) and lookup_transform is None:
            raise ValueError("target_frame or ground_frame is set but no lookup_transform was given")
        self._estimate, self.settings, self._classes, self.log = estimate, settings, classes, log
        self._lookup, self._ros_now_s, self._clock = lookup_transform, ros_now_s, clock
        self._estimator_timings = estimator_timings
        self.tracker = Tracker(settings.tracking) if settings.tracking else None
        self._track_frame: str | None = None
        self._epoch = 0
        self._style = MarkerStyle(lifetime_s=settings.marker_lifetime_s)
        self.stats = ProcessingStats()

    def process(self, frame: Frame, decoded: Decoded | None = None) -> FrameResult | None:
        """Messages for ``frame``, or None when it failed (counted under an :class:`ErrorKind`, logged).

        ``decoded``: ``frame``'s image already decoded (:func:`decode_image`, in another thread);
        None decodes it here."""
        start_s = self._clock()
        try:
            return self._process(frame, start_s, decoded)
        except _FrameError as error:
            self.log.report(error.kind.value, "error" if error.kind in (
                ErrorKind.ESTIMATOR_FAILURE, ErrorKind.INTERNAL_ERROR) else "warn", str(error))
        except Exception as error:  # noqa: BLE001 - counted, so received = processed + failed + ...
            self.log.report(ErrorKind.INTERNAL_ERROR.value, "error",
                            f"frame processing failed unexpectedly: {type(error).__name__}: {error}")
        return None

    def record_publish(self, duration_s: float) -> None:
        """Count the time the worker took to publish one frame's messages (the ``publish`` stage)."""
        if self.settings.times_stages:
            with self.stats.lock:
                self.stats.stages.add("publish", 1e3 * duration_s)

    def _process(self, frame: Frame, start_s: float, decoded: Decoded | None) -> FrameResult:
        watch = Stopwatch(self._clock, start_s)
        people, root_cov, distance_m, frame_id = self._estimate_people(frame, watch, decoded)
        stamp_s = frame.stamp_ns * 1e-9
        if self.tracker is not None:
            if frame_id != self._track_frame or frame.epoch != self._epoch:
                # Tracks in another frame, or from before time jumped back, are meaningless here.
                self.tracker.reset()
                self._track_frame, self._epoch = frame_id, frame.epoch
            people = self.tracker.update(people, stamp_s, root_cov)
            watch.lap("tracking")
        header = make_header(self._classes, frame.stamp_ns, frame_id)
        poses = people_to_pose_array(people, header, self._classes, root_cov)
        watch.lap("pose_message")
        markers = None
        if self.settings.publish_markers:
            markers = people_to_markers(people, header, self._classes, self._style, distance_m)
            watch.lap("markers")
        done_s = self._clock()
        timed = self.settings.times_stages and self._estimator_timings is not None
        stage_times = watch.stage_times(self._estimator_timings() if timed else None)
        age_s, age_note = stamp_age_s(self._ros_now_s(), stamp_s)
        with self.stats.lock:
            self.stats.processed += 1
            self.stats.last_people = len(people)
            self.stats.processed_s.append(done_s)
            self.stats.processing_s.append(done_s - start_s)
            self.stats.latency_s.append(done_s - frame.received_s)
            if age_s is not None:
                self.stats.stamp_age_s.append(age_s)
            self.stats.stamp_age_note = age_note
            if self.settings.times_stages:
                self.stats.stages.add_frame(stage_times)
        return FrameResult(frame.stamp_ns, frame_id, people, poses, markers, done_s - start_s,
                           stage_times)

    def _estimate_people(self, frame: Frame, watch: Stopwatch, decoded: Decoded | None
                         ) -> tuple[People, np.ndarray, np.ndarray, str]:
        if frame.camera_info is None:
            seen = ", ".join(repr(f) for f in frame.camera_info_frames) or "none"
            raise _FrameError(ErrorKind.NO_CAMERA_INFO, (
                f"no CameraInfo for image frame_id {frame.frame_id!r} (CameraInfo frame_ids seen: "
                f"{seen}); check the camera_info topic"))
        info_frame = str(frame.camera_info.header.frame_id)
        if info_frame != frame.frame_id:
            # The synchronizer pairs by stamp only; a driver may name the two frames differently.
            self.log.report("camera_info_frame_mismatch", "warn", (
                f"image frame_id {frame.frame_id!r} was paired with a CameraInfo of frame_id "
                f"{info_frame!r}; using it (check the camera driver's frame ids)"))
        if not frame.paired:
            delta_s = (stamp_to_ns(frame.camera_info.header.stamp) - frame.stamp_ns) * 1e-9
            self.log.report("camera_info_fallback", "warn", (
                f"no CameraInfo within {self.settings.sync_slop_s} s of the image stamp; using the "
                f"latest CameraInfo of frame {frame.frame_id!r} (stamp difference {delta_s:+.3f} s)"))
            with self.stats.lock:
                self.stats.camera_info_fallbacks += 1
        try:
            intrinsics = Intrinsics.from_camera_info(frame.camera_info, rectified=self.settings.rectified)
        except ValueError as error:
            raise _FrameError(ErrorKind.INVALID_INTRINSICS, f"invalid CameraInfo: {error}") from None
        if decoded is not None:
            watch.add("decode", 1e3 * decoded.seconds)
        try:
            rgb = decoded.get() if decoded is not None else any_image_to_rgb(frame.image)
        except UnsupportedEncodingError as error:
            raise _FrameError(ErrorKind.UNSUPPORTED_ENCODING, str(error)) from None
        except ValueError as error:
            raise _FrameError(ErrorKind.BAD_IMAGE, f"bad image: {error}") from None
        try:
            intrinsics.check_image_size(rgb.shape[1], rgb.shape[0], "image")
        except ValueError as error:
            raise _FrameError(ErrorKind.SIZE_MISMATCH, str(error)) from None
        watch.lap("decode")
        floor = self._floor(frame)
        if self.settings.ground_frame:
            watch.lap("tf_lookup")
        try:
            people = (self._estimate(rgb, intrinsics) if floor is None
                      else self._estimate(rgb, intrinsics, floor=floor))
        except Exception as error:  # noqa: BLE001 - any estimator failure must not stop the node
            raise _FrameError(ErrorKind.ESTIMATOR_FAILURE,
                              f"estimator failed: {type(error).__name__}: {error}") from None
        watch.lap("estimator")
        people, non_finite = finite_people(people)
        if non_finite:
            with self.stats.lock:
                self.stats.non_finite_people += non_finite
            self.log.report("non_finite_people", "warn",
                            f"{non_finite} people with non-finite values were not published")
        people = select_people(people, self.settings.score_threshold, self.settings.max_people)
        root_cov = people_root_covariance(people)
        distance_m = np.linalg.norm(people.root_m, axis=1)
        frame_id = frame.frame_id
        target = self.settings.target_frame
        if target and target != frame_id:
            watch.lap("select")
            try:
                transform = self._lookup(target, frame_id, frame.stamp_ns)
            except Exception as error:  # noqa: BLE001 - tf2 raises several unrelated types
                raise _FrameError(ErrorKind.TRANSFORM_FAILURE, (
                    f"no transform {frame_id!r} -> {target!r} at the image stamp: "
                    f"{type(error).__name__}: {error}")) from None
            watch.lap("tf_lookup")
            people, root_cov = transform_people(people, transform), transform.rotate_covariance(root_cov)
            frame_id = target
        watch.lap("select")
        return people, root_cov, distance_m, frame_id

    def _floor(self, frame: Frame) -> FloorPlane | None:
        """The floor from tf2 at the image stamp; None (counted, logged) when there is none."""
        ground = self.settings.ground_frame
        if not ground:
            return None
        try:
            return floor_from_transform(self._lookup(ground, frame.frame_id, frame.stamp_ns),
                                        self.settings.floor_tilt_sigma_rad, self.settings.floor_height_sigma_m)
        except Exception as error:  # noqa: BLE001 - tf2 raises several unrelated types
            with self.stats.lock:
                self.stats.floor_unavailable += 1
            self.log.report("floor_unavailable", "warn", (
                f"no transform {frame.frame_id!r} -> ground_frame {ground!r} at the image stamp "
                f"({type(error).__name__}: {error}); estimating without the floor"))
            return None


def decode_image(frame: Frame) -> Decoded[np.ndarray]:
    """``frame``'s image as RGB, or the error decoding it raised (for the processor to report)."""
    return decode_now(any_image_to_rgb, frame.image)


class FrameWorker:
    """The inference thread: waits for the newest frame, processes it, publishes the result.

    With ``decode_ahead`` a second thread takes the newest frame from the buffer as soon as it is
    ready and decodes its image into a one-frame slot, while the inference thread processes the
    frame before; a decoded frame that a newer one overtakes in the slot is dropped (counted by the
    buffer), so the newest frame still wins and nothing queues.
    """

    def __init__(self, buffer: FrameBuffer, processor: FrameProcessor,
                 publish: Callable[[FrameResult], None], log: Log, poll_s: float = 0.1,
                 clock: Callable[[], float] = time.monotonic, decode_ahead: bool = False) -> None:
        self._buffer, self._processor, self._publish, self._log = buffer, processor, publish, log
        self._poll_s, self._clock = poll_s, clock
        self._stop = threading.Event()
        self._slot = threading.Condition()
        self._decoded: tuple[Frame, Decoded] | None = None
        self._threads = [threading.Thread(target=self._run, name="mp3d_worker", daemon=True)]
        if decode_ahead:
            self._threads.append(threading.Thread(target=self._decode_loop, name="mp3d_decode", daemon=True))

    @property
    def decodes_ahead(self) -> bool:
        return len(self._threads) > 1

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._buffer.close()
        with self._slot:
            self._slot.notify_all()
        for thread in self._threads:
            thread.join(timeout_s)

    @property
    def alive(self) -> bool:
        return all(thread.is_alive() for thread in self._threads)

    def _next(self) -> tuple[Frame, Decoded | None] | None:
        """The next frame to process (decoded, with ``decode_ahead``), or None after ``poll_s``."""
        if not self.decodes_ahead:
            frame = self._buffer.wait(self._poll_s)
            return None if frame is None else (frame, None)
        with self._slot:
            if self._decoded is None:
                self._slot.wait(self._poll_s)
            taken, self._decoded = self._decoded, None
            return taken

    def _decode_loop(self) -> None:
        while not self._stop.is_set():
            frame = self._buffer.wait(self._poll_s)
            if frame is None:
                continue
            decoded = decode_image(frame)
            with self._slot:
                if self._decoded is not None:  # the worker is still busy: the newer frame wins
                    self._buffer.drop_taken()
                self._decoded = (frame, decoded)
                self._slot.notify_all()

    def _run(self) -> None:
        while not self._stop.is_set():
            taken = self._next()
            if taken is None:
                continue
            result = self._processor.process(*taken)  # counts its own failures
            if result is None:
                continue
            started_s = self._clock()
            try:
                self._publish(result)
            except Exception as error:  # noqa: BLE001 - keep the worker alive; the cause is logged
                self._log("error", f"publishing failed: {type(error).__name__}: {error}")
                continue
            self._processor.record_publish(self._clock() - started_s)
