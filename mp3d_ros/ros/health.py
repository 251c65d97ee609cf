"""Estimator start-up with a CPU fallback, and the node's /diagnostics report. No ROS import.

Start-up: ``device: auto`` becomes the GPU when CUDA is available and the CPU otherwise (logged at
INFO); the CPU always runs fp32 (fp16 on a CPU is slower than fp32). The estimator is built on that
device and run once on a blank frame, so a missing GPU, CUDA out-of-memory or a broken backend shows
up at start; then it is built again on the CPU (fp32) with an error log. Only when the CPU fails too
does the node stop, with both errors. OpenCV's thread pool is then sized like torch's: by default it
takes every core, and its idle workers spin after each decode and resize, which doubled the node's
CPU use on a 2-core robot (docs/ros.md). :func:`startup_line` is the one INFO line that then says
what was chosen: model, backend (torch eager / CUDA graph / compiled, or onnxruntime and its
execution provider), device, dtype, input size, torch's intra-op and OpenCV's thread counts.

Diagnostics: one status per period with the frame rates, latency, processing time, drops, every
error kind, CameraInfo fallbacks and age, the backend, and (``stage_timing``) each stage's median
and p90 over the frames of the period (:mod:`mp3d_ros.ros.timing`). Its level is ERROR when frames
failed and none succeeded since the last report, WARN when some failed (or used a fallback
CameraInfo, or the input stopped), OK otherwise.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import cv2
import numpy as np

from mp3d_ros.geometry.camera import Intrinsics
from mp3d_ros.ros.frame_buffer import FrameBuffer, event_rate_hz
from mp3d_ros.ros.frames import ErrorKind, FrameProcessor, Log
from mp3d_ros.ros.settings import NodeSettings
from mp3d_ros.ros.timing import NODE_STAGES, stage_statistics

__all__ = [
    "LoadedEstimator", "resolve_device", "precision_for", "load_estimator", "match_opencv_threads",
    "estimator_stage_timing", "decodes_ahead", "describe_backend", "describe_estimator", "startup_line",
    "DiagnosticsReport",
    "DiagnosticsMonitor",
]

# Blank frame for the start-up check: small enough to be quick on a CPU, a common camera shape.
_WARMUP_SIZE = (640, 480)
_CUDA_GRAPH = {"auto": "auto", "on": True, "off": False}  # node parameter -> Estimator(cuda_graph=)


@dataclass(frozen=True, eq=False)
class LoadedEstimator:
    estimator: Any
    device: str
    precision: str
    backend: str  # the estimator's backend_name
    fallback_reason: str | None  # why the requested device was not used, None when it was


def _torch_cuda_available() -> bool:
    import torch  # heavy; only when a node starts

    return bool(torch.cuda.is_available())


def resolve_device(requested: str, cuda_available: Callable[[], bool]) -> tuple[str, str | None]:
    """The device to start on, and an INFO line saying what ``auto`` chose (None otherwise)."""
    if requested != "auto":
        return requested, None
    if cuda_available():
        return "cuda", "device auto: CUDA is available, running on the GPU"
    return "cpu", "device auto: no CUDA device, running on the CPU (fp32)"


def precision_for(device: str, precision: str) -> str:
    """``precision`` on a GPU; fp32 on the CPU, where fp16 runs slower than fp32."""
    return precision if device.startswith("cuda") else "fp32"


def estimator_stage_timing(stage_timing: str, device: str) -> bool:
    """Whether the estimator times its own stages: ``on`` yes, ``off`` no, ``auto`` on the CPU only
    (a clock read there; CUDA events cost 0.1-0.2 ms per frame on an H200 with CUDA graphs)."""
    return stage_timing == "on" or (stage_timing == "auto" and device == "cpu")


def decodes_ahead(decode_ahead: str, device: str) -> bool:
    """Whether the worker decodes the next image while the estimator runs: ``on`` yes, ``off``
    no, ``auto`` on a GPU only (where the estimator waits for the device and frees the host)."""
    return decode_ahead == "on" or (decode_ahead == "auto" and device.startswith("cuda"))


def load_estimator(factory: Callable[..., Any], settings: NodeSettings, log: Log,
                   cuda_available: Callable[[], bool] = _torch_cuda_available) -> LoadedEstimator:
    """Build and warm up the estimator; on failure retry on the CPU in fp32.

    Args:
        factory: ``Estimator``-like callable taking ``model_path, backend, device, precision,
            input_size, cuda_graph, compile_network, stage_timing`` keywords; the result has
            ``estimate(image_rgb, intrinsics)`` and ``backend_name``.
        cuda_available: whether a CUDA device exists (for ``device: auto``).

    Raises:
        RuntimeError: naming every attempt and its error when no device works.
    """
    device, chosen = resolve_device(settings.device, cuda_available)
    if chosen:
        log("info", chosen)
    attempts = [(device, precision_for(device, settings.precision))]
    if device != "cpu":
        attempts.append(("cpu", "fp32"))
    errors: list[str] = []
    for index, (device, precision) in enumerate(attempts):
        try:
            started = time.perf_counter()
            # A CPU fallback leaves the graphs to "auto" (off there): "on" asked for them on the GPU.
            graph = _CUDA_GRAPH[settings.cuda_graph] if index == 0 else "auto"
            estimator = factory(model_path=settings.model_path or None, backend=settings.backend,
                                device=device, precision=precision, input_size=settings.input_size,
                                cuda_graph=graph, compile_network=settings.compile,
                                stage_timing=estimator_stage_timing(settings.stage_timing, device))
            width, height = _WARMUP_SIZE
            estimator.estimate(np.zeros((height, width, 3), dtype=np.uint8),
                               Intrinsics.pinhole(500.0, 500.0, width / 2 - 0.5, height / 2 - 0.5,
                                                  width, height))
        except Exception as error:  # noqa: BLE001 - CUDA, OOM, import and model errors alike
            errors.append(f"{device} ({precision}): {type(error).__name__}: {error}")
            fallback = index + 1 < len(attempts)
            log("error", f"the estimator could not start on {device} ({precision}): "
                         f"{type(error).__name__}: {error}"
                + ("; falling back to the CPU (fp32), which is much slower" if fallback else ""))
            continue
        log("info", f"estimator started on {device} in {time.perf_counter() - started:.2f} s "
                    f"(model load, graph capture and one warm-up frame)")
        return LoadedEstimator(estimator, device, precision, str(getattr(estimator, "backend_name", "?")),
                               errors[0] if errors else None)
    raise RuntimeError("the estimator could not start: " + "; ".join(errors))


def match_opencv_threads(threads: int | None = None) -> int:
    """Size OpenCV's thread pool to ``threads`` (default: torch's intra-op count); returns the old size."""
    if threads is None:
        import torch  # already loaded by the estimator

        threads = torch.get_num_threads()
    previous = cv2.getNumThreads()
    cv2.setNumThreads(max(1, int(threads)))
    return previous


def describe_backend(backend_name: str) -> str:
    """The estimator's ``backend_name`` in words: ``torch:cuda:fp16:cuda-graph`` is ``torch CUDA graph,
    fp16``, ``torch:cpu:fp32`` is ``torch eager, fp32``, ``onnxruntime:CPUExecutionProvider`` is
    ``onnxruntime CPUExecutionProvider, fp32`` (the exported graph computes in float32); any other
    name is returned as it is."""
    parts = backend_name.split(":")
    if parts[0] == "torch" and len(parts) >= 3:
        flags = set(parts[3:])
        mode = " + ".join(name for flag, name in (("compiled", "compiled"), ("cuda-graph", "CUDA graph"))
                          if flag in flags) or "eager"
        return f"torch {mode}, {parts[2]}"
    if parts[0] == "onnxruntime" and len(parts) == 2:
        return f"onnxruntime {parts[1]}, fp32"
    return backend_name


def describe_estimator(loaded: LoadedEstimator, torch_threads: int, opencv_threads: int,
                       stage_timing: str) -> str:
    """The start-up line: model, device, backend, dtype, input size (W x H), thread counts and what
    ``stage_timing`` times, e.g. ``estimator ready: movenet-lift on cpu: onnxruntime
    CPUExecutionProvider, fp32, input 288x224, torch intra-op threads 1, OpenCV threads 1, stage
    timing auto (estimator stages too)``."""
    estimator = loaded.estimator
    model = getattr(estimator, "model_name", None) or "model"
    size = getattr(estimator, "input_size", None)
    fallback = " (CPU fallback)" if loaded.fallback_reason else ""
    if stage_timing == "off":
        timing = "off"
    elif getattr(estimator, "stage_timing", False):
        timing = f"{stage_timing} (estimator stages too)"
    else:
        timing = f"{stage_timing} (not the estimator's own stages: stage_timing 'on' adds them)"
    return (f"estimator ready: {model} on {loaded.device}{fallback}: {describe_backend(loaded.backend)}, "
            f"input {f'{size[0]}x{size[1]}' if size else 'unknown'}, torch intra-op threads "
            f"{torch_threads}, OpenCV threads {opencv_threads}, stage timing {timing}")


def startup_line(loaded: LoadedEstimator, stage_timing: str) -> str:
    """:func:`describe_estimator` with the thread counts in force now (call after
    :func:`match_opencv_threads`)."""
    import torch  # already loaded by the estimator

    return describe_estimator(loaded, torch.get_num_threads(), cv2.getNumThreads(), stage_timing)


@dataclass(frozen=True)
class DiagnosticsReport:
    level: str  # "OK" | "WARN" | "ERROR"
    message: str
    values: dict[str, str]


def _fmt(value: float | None, unit_digits: int = 3) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.{unit_digits}f}"


class DiagnosticsMonitor:
    """Builds one :class:`DiagnosticsReport` per call from the buffer's and processor's counters."""

    def __init__(self, buffer: FrameBuffer, processor: FrameProcessor, loaded: LoadedEstimator,
                 stale_after_s: float = 3.0, window_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._buffer, self._processor, self._loaded = buffer, processor, loaded
        self.stale_after_s, self.window_s, self._clock = stale_after_s, window_s, clock
        self._previous: dict[str, int] = {}
        self._estimator_stages: list[str] = []  # seen so far: their keys stay once they appeared

    def report(self) -> DiagnosticsReport:
        stats, log = self._processor.stats, self._processor.log
        with stats.lock:
            processed, fallbacks, people = stats.processed, stats.camera_info_fallbacks, stats.last_people
            frame_rate = event_rate_hz(stats.processed_s, self._clock(), self.window_s)
            processing = float(np.mean(stats.processing_s)) if stats.processing_s else None
            latency = stats.latency_s[-1] if stats.latency_s else None
            latency_mean = float(np.mean(stats.latency_s)) if stats.latency_s else None
            stamp_age = stats.stamp_age_s[-1] if stats.stamp_age_s and not stats.stamp_age_note else None
            stamp_note, non_finite = stats.stamp_age_note, stats.non_finite_people
            floor_unavailable = stats.floor_unavailable
            timed_frames, stage_ms = stats.stages.drain()
        errors = {kind.value: log.counts.get(kind.value, 0) for kind in ErrorKind}
        counters = {"processed": processed, "fallbacks": fallbacks, **errors}
        delta = {k: v - self._previous.get(k, 0) for k, v in counters.items()}
        self._previous = counters
        info_age = self._buffer.camera_info_age_s()
        image_age = self._buffer.last_image_age_s()
        values = {
            "frame_rate_hz": _fmt(frame_rate, 2),
            "input_rate_hz": _fmt(self._buffer.input_rate_hz(self.window_s), 2),
            # Arrival (monotonic) to poses built: the node's own delay, whatever the clocks say.
            "latency_s": _fmt(latency),
            "latency_mean_s": _fmt(latency_mean),
            "stamp_age_s": stamp_note or _fmt(stamp_age),
            "processing_time_mean_s": _fmt(processing),
            "frames_received": str(self._buffer.received),
            "frames_processed": str(processed),
            "frames_dropped": str(self._buffer.dropped),
            "frames_duplicate": str(self._buffer.duplicates),
            "frames_failed": str(sum(errors.values())),
            "frames_waiting": str(self._buffer.waiting),
            "time_jumps": str(self._buffer.time_jumps),
            "non_finite_people": str(non_finite),
            "floor_unavailable": str(floor_unavailable),
            **{f"errors.{kind}": str(count) for kind, count in errors.items()},
            "camera_info_fallbacks": str(fallbacks),
            "camera_info_age_s": _fmt(info_age),
            "people": str(people),
            "backend": self._loaded.backend,
            "device": f"{self._loaded.device} ({self._loaded.precision})",
        }
        if self._loaded.fallback_reason:
            values["device_fallback_reason"] = self._loaded.fallback_reason
        values.update(self._stage_values(timed_frames, stage_ms))
        level, message = self._level(delta, errors, image_age, frame_rate, people)
        return DiagnosticsReport(level, message, values)

    def _stage_values(self, frames: int, stage_ms: dict[str, list[float]]) -> dict[str, str]:
        """Median and p90 of each stage over this period's frames (:mod:`mp3d_ros.ros.timing`)."""
        if not self._processor.settings.times_stages:
            return {"stage_timing": "off"}
        self._estimator_stages += [stage for stage in stage_ms
                                   if stage.startswith("estimator_") and stage not in self._estimator_stages]
        at = NODE_STAGES.index("estimator") + 1
        stages = [*NODE_STAGES[:at], *self._estimator_stages, *NODE_STAGES[at:]]
        return {"stage_timing_frames": str(frames), **stage_statistics(stage_ms, stages)}

    def _level(self, delta: dict[str, int], errors: dict[str, int], image_age_s: float | None,
               frame_rate_hz: float, people: int) -> tuple[str, str]:
        failed_now = {kind: delta[kind] for kind in errors if delta[kind]}
        described = "; ".join(
            f"{count} {kind} (last: {self._processor.log.last_message.get(kind, '')})"
            for kind, count in failed_now.items())
        if image_age_s is None:
            return "WARN", "waiting for images"
        if failed_now and not delta["processed"]:
            # Failures and no success since the last report (a frame still being processed by a slow
            # estimator is neither).
            return "ERROR", f"no frame could be processed: {described}"
        if image_age_s > self.stale_after_s:
            return "WARN", f"no image for {image_age_s:.1f} s"
        if failed_now:
            return "WARN", f"some frames were skipped: {described}"
        if delta["fallbacks"]:
            return "WARN", f"{delta['fallbacks']} frames used the latest CameraInfo (no stamp match)"
        suffix = " on the CPU fallback" if self._loaded.fallback_reason else ""
        return "OK", f"{frame_rate_hz:.1f} Hz, {people} people{suffix}"
