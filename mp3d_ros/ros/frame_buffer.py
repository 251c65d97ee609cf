"""The node's latest-frame buffer without ROS: pairing images with CameraInfo, never queueing.

Data flow (the node only wires ROS callbacks to it):

    image callback ----------> FrameBuffer.on_image        (every image, first)
    CameraInfo callback -----> FrameBuffer.on_camera_info  (latest per frame_id)
    ApproximateTimeSync -----> FrameBuffer.on_pair         (image + CameraInfo within the slop)
    FrameWorker thread: FrameBuffer.wait() -> FrameProcessor.process() -> publish
:class:`FrameBuffer` never blocks a callback: it keeps at most one paired frame ready (a newer one
replaces it) and a few images still waiting for their CameraInfo. An image that finds no CameraInfo
within ``camera_info_wait_s`` is processed with the latest CameraInfo of its frame_id (the processor
warns); frames are never processed out of order, and every image is accounted for:
``received = processed + failed + dropped + waiting`` (an exact duplicate, the same frame_id and
stamp delivered again, is received and dropped, and counted as a duplicate).

Time going backwards (a looping bag, a bag played again into a running node): an image whose stamp is
older than the last one of its frame_id starts a new *epoch*: the pairing and duplicate memory is
cleared (waiting frames are dropped), the jump is counted and reported, and the processor resets the
tracker when it sees a frame of the new epoch. Without this the duplicate filter took the loop's
repeated stamps for duplicates and the node went silent after one pass.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Callable

from mp3d_ros.messages.conversions import stamp_to_ns

__all__ = ["Frame", "FrameBuffer", "event_rate_hz"]

_MAX_WAITING_IMAGES = 16  # images kept while their CameraInfo may still arrive
_REMEMBERED_KEYS = 256  # recently handled images, so a late duplicate is ignored
_MAX_CAMERA_INFO_FRAMES = 32  # frame_ids whose latest CameraInfo is kept (least recently seen go)


@dataclass(frozen=True, eq=False)
class Frame:
    """An image ready for processing with the CameraInfo chosen for it (None when there is none)."""

    image: Any
    camera_info: Any
    frame_id: str
    stamp_ns: int
    seq: int  # arrival order
    received_s: float  # monotonic arrival time
    paired: bool  # True: CameraInfo matched within the slop; False: fallback (or none)
    camera_info_frames: tuple[str, ...] = ()  # frame_ids that have a CameraInfo (for messages)
    epoch: int = 0  # incremented by each backward time jump


def _key(msg: Any) -> tuple[str, int]:
    return str(msg.header.frame_id), stamp_to_ns(msg.header.stamp)


class FrameBuffer:
    """Thread-safe single-slot buffer with CameraInfo pairing and fallback (see module docstring)."""

    def __init__(self, camera_info_wait_s: float, clock: Callable[[], float] = time.monotonic,
                 on_time_jump: Callable[[str], None] | None = None) -> None:
        """``on_time_jump(message)`` is called (outside the lock) after each backward time jump."""
        self.camera_info_wait_s = float(camera_info_wait_s)
        self._clock = clock
        self._on_time_jump = on_time_jump
        self._cond = threading.Condition()
        self._ready: Frame | None = None
        self._waiting: OrderedDict[tuple[str, int], Frame] = OrderedDict()
        self._infos: OrderedDict[str, tuple[Any, float]] = OrderedDict()
        self._handled: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._delivered: OrderedDict[tuple[str, int], None] = OrderedDict()  # seen by on_image
        self._last_stamp_ns: dict[str, int] = {}
        self._next_seq = 0
        self._last_taken_seq = -1
        self._closed = False
        self.epoch = 0
        self.received = 0
        self.taken = 0
        self.dropped = 0
        self.duplicates = 0  # also counted in dropped
        self.time_jumps = 0
        self._arrivals_s: deque[float] = deque(maxlen=512)  # every image delivery, duplicates too

    # ------------------------------------------------------------------ callbacks (never block)

    def on_camera_info(self, msg: Any) -> None:
        with self._cond:
            frame_id = str(msg.header.frame_id)
            self._infos[frame_id] = (msg, self._clock())
            self._infos.move_to_end(frame_id)
            while len(self._infos) > _MAX_CAMERA_INFO_FRAMES:
                self._infos.popitem(last=False)

    def on_image(self, msg: Any) -> None:
        with self._cond:
            self._arrivals_s.append(self._clock())
            key = _key(msg)
            jump = self._check_time_jump(key)  # an old stamp again after newer ones is a jump
            if not jump and key in self._delivered:  # the same image sent again
                self.received += 1
                self.duplicates += 1
                self.dropped += 1
                return
            self._remember(self._delivered, key)
            if not self._known(key):  # else its pair came first and registered it
                self._add_image(msg)
            self._cond.notify_all()
        if jump and self._on_time_jump is not None:
            self._on_time_jump(jump)

    def on_pair(self, image: Any, camera_info: Any) -> None:
        jump = ""
        with self._cond:
            key = _key(image)
            if key in self._handled or (
                    self._ready is not None and (self._ready.frame_id, self._ready.stamp_ns) == key):
                return  # already handled (processed, failed or dropped) or already ready
            frame = self._waiting.pop(key, None)
            if frame is None:  # the pair arrived before the image callback
                jump = self._check_time_jump(key)
                frame = self._add_image(image, waiting=False)
            if frame.seq < self._last_taken_seq:
                self._drop(frame)  # never process out of order
                return
            frame = Frame(image, camera_info, frame.frame_id, frame.stamp_ns, frame.seq,
                          frame.received_s, paired=True, epoch=self.epoch)
            if self._ready is not None and self._ready.seq > frame.seq:
                self._drop(frame)
                return
            if self._ready is not None:
                self._drop(self._ready)
            self._ready = frame
            self._drop_waiting_before(frame.seq)
            self._cond.notify_all()
        if jump and self._on_time_jump is not None:
            self._on_time_jump(jump)

    # ------------------------------------------------------------------ worker side

    def take(self) -> Frame | None:
        """The frame to process now, or None (non-blocking)."""
        with self._cond:
            return self._take_locked()

    def wait(self, timeout_s: float) -> Frame | None:
        """Block up to ``timeout_s`` for a frame; None on timeout or after :meth:`close`."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not self._closed:
                frame = self._take_locked()
                if frame is not None:
                    return frame
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                if self._waiting:  # wake when the oldest waiting image is due for the fallback
                    oldest = next(iter(self._waiting.values()))
                    due = oldest.received_s + self.camera_info_wait_s - self._clock()
                    remaining = min(remaining, max(due, 1e-3))
                self._cond.wait(remaining)
        return None

    def drop_taken(self) -> None:
        """Count a frame that was taken but then overtaken by a newer one before it was processed
        (the worker's decode-ahead slot) as dropped instead of taken; :meth:`take` already
        remembered its key, so a late copy of it is still ignored."""
        with self._cond:
            self.taken -= 1
            self.dropped += 1

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # ------------------------------------------------------------------ statistics

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._waiting) + (self._ready is not None)

    def camera_info_age_s(self) -> float | None:
        """Seconds since the newest CameraInfo arrived (any frame_id), None before the first."""
        with self._cond:
            if not self._infos:
                return None
            return self._clock() - max(arrival for _, arrival in self._infos.values())

    def input_rate_hz(self, window_s: float = 5.0) -> float:
        with self._cond:
            return event_rate_hz(self._arrivals_s, self._clock(), window_s)

    def last_image_age_s(self) -> float | None:
        """Seconds since the last image delivery (any, duplicates included); None before the first."""
        with self._cond:
            return self._clock() - self._arrivals_s[-1] if self._arrivals_s else None

    # ------------------------------------------------------------------ internals (lock held)

    def _known(self, key: tuple[str, int]) -> bool:
        return key in self._waiting or key in self._handled or (
            self._ready is not None and (self._ready.frame_id, self._ready.stamp_ns) == key)

    def _check_time_jump(self, key: tuple[str, int]) -> str:
        """Start a new epoch when ``key``'s stamp is older than its frame_id's last; the report or ""."""
        frame_id, stamp_ns = key
        last_ns = self._last_stamp_ns.get(frame_id)
        self._last_stamp_ns[frame_id] = stamp_ns if last_ns is None else max(stamp_ns, last_ns)
        if last_ns is None or stamp_ns >= last_ns:
            return ""
        self.time_jumps += 1
        self.epoch += 1
        if self._ready is not None:
            self._drop(self._ready)
            self._ready = None
        for frame in list(self._waiting.values()):
            self._drop(frame)
        self._waiting.clear()
        self._handled.clear()
        self._delivered = OrderedDict([(key, None)])
        self._last_stamp_ns = {frame_id: stamp_ns}
        return (f"time jumped back by {(last_ns - stamp_ns) * 1e-9:.3f} s on frame {frame_id!r} (a "
                f"looping or replayed bag?): pairing and tracking start again")

    def _add_image(self, msg: Any, waiting: bool = True) -> Frame:
        """Register a new image."""
        key = _key(msg)
        now = self._clock()
        self.received += 1
        frame = Frame(msg, None, key[0], key[1], self._next_seq, now, paired=False, epoch=self.epoch)
        self._next_seq += 1
        if waiting:
            self._waiting[key] = frame
            while len(self._waiting) > _MAX_WAITING_IMAGES:
                self._drop(self._waiting.popitem(last=False)[1])
        return frame

    def _take_locked(self) -> Frame | None:
        frame = self._ready
        if frame is not None:
            self._ready = None
        else:
            now = self._clock()
            due = [f for f in self._waiting.values() if now - f.received_s >= self.camera_info_wait_s]
            if not due:
                return None
            newest = due[-1]
            del self._waiting[(newest.frame_id, newest.stamp_ns)]
            self._drop_waiting_before(newest.seq)
            info = self._infos.get(newest.frame_id)
            frame = Frame(newest.image, info[0] if info else None, newest.frame_id, newest.stamp_ns,
                          newest.seq, newest.received_s, paired=False,
                          camera_info_frames=tuple(sorted(self._infos)), epoch=newest.epoch)
        self._remember(self._handled, (frame.frame_id, frame.stamp_ns))
        self._last_taken_seq = frame.seq
        self.taken += 1
        return frame

    def _drop(self, frame: Frame) -> None:
        self.dropped += 1
        self._remember(self._handled, (frame.frame_id, frame.stamp_ns))

    def _drop_waiting_before(self, seq: int) -> None:
        for key in [k for k, f in self._waiting.items() if f.seq < seq]:
            self._drop(self._waiting.pop(key))

    @staticmethod
    def _remember(keys: OrderedDict, key: tuple[str, int]) -> None:
        keys[key] = None
        while len(keys) > _REMEMBERED_KEYS:
            keys.popitem(last=False)


def event_rate_hz(times_s: deque, now_s: float, window_s: float) -> float:
    """Events per second over the last ``window_s`` (0 with fewer than two events)."""
    recent = [t for t in times_s if now_s - t <= window_s]
    if len(recent) < 2 or recent[-1] <= recent[0]:
        return 0.0
    return (len(recent) - 1) / (recent[-1] - recent[0])
