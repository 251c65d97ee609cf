"""How long each stage of the node's frames takes, and its median and p90 per diagnostics period.

One frame's stages, in the order they run (:class:`~mp3d_ros.ros.frames.FrameProcessor`, then the
worker's publishing):

``decode``        CameraInfo -> intrinsics, image message -> RGB (:mod:`mp3d_ros.messages.images`;
                  with ``decode_ahead``, the decoding thread's time for the image)
``tf_lookup``     tf2 lookups at the image stamp (``ground_frame``, ``target_frame``)
``estimator``     the whole ``Estimator.estimate`` call; its own stages (``preprocess``,
                  ``network``, ``decode``, ``floor``: ``Estimator.last_timings_ms``) are reported as
                  ``estimator_<stage>``
``select``        finite check, ``score_threshold`` / ``max_people``, covariances, the transform
                  into ``target_frame``
``tracking``      the tracker (:mod:`mp3d_ros.tracking.tracker`)
``pose_message``  building the PoseArray3D (:mod:`mp3d_ros.messages.conversions`)
``markers``       building the MarkerArray (:mod:`mp3d_ros.messages.markers`)
``publish``       handing the messages to rclpy (poses, markers, people, TF)

A frame's durations are one :class:`StageTimes`; :class:`StageSamples` collects them until the
diagnostics drain them once per period, and :func:`stage_statistics` gives the keys
``stage_<stage>_ms_median`` and ``stage_<stage>_ms_p90`` (linear interpolation between samples,
numpy's default). A stage that did not run in the period (tracking off, no tf2 frames set, ...)
reads ``n/a``. No ROS import.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, fields
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

__all__ = ["NODE_STAGES", "StageTimes", "Stopwatch", "StageSamples", "stage_statistics"]

# The node's stages in pipeline order; the estimator's own stages go right after "estimator".
NODE_STAGES = ("decode", "tf_lookup", "estimator", "select", "tracking", "pose_message", "markers",
               "publish")
_MAX_SAMPLES = 4096  # per stage and period: 60 s (the longest period) of a 60 Hz camera and more


@dataclass(frozen=True)
class StageTimes:
    """Durations of one frame's stages in ms (see the module docstring); None: the stage did not run.

    ``publish`` is not here: it happens after the frame's messages exist (the worker records it).
    """

    decode_ms: float | None = None
    tf_lookup_ms: float | None = None
    estimator_ms: float | None = None
    select_ms: float | None = None
    tracking_ms: float | None = None
    pose_message_ms: float | None = None
    markers_ms: float | None = None
    estimator_stages_ms: Mapping[str, float] = field(default_factory=dict)  # last_timings_ms

    def named_ms(self) -> dict[str, float]:
        """Every stage that ran, by its diagnostics name (estimator stages as ``estimator_<stage>``)."""
        named = {f.name[:-3]: getattr(self, f.name) for f in fields(self) if f.name != "estimator_stages_ms"}
        named.update({f"estimator_{stage}": float(ms) for stage, ms in self.estimator_stages_ms.items()})
        return {name: ms for name, ms in named.items() if ms is not None}


class Stopwatch:
    """Adds the time since the previous :meth:`lap` to a named stage (ms), on ``clock`` (seconds)."""

    def __init__(self, clock: Callable[[], float], start_s: float | None = None) -> None:
        self._clock = clock
        self._last_s = clock() if start_s is None else start_s
        self.ms: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        now_s = self._clock()
        self.ms[stage] = self.ms.get(stage, 0.0) + 1e3 * (now_s - self._last_s)
        self._last_s = now_s

    def add(self, stage: str, ms: float) -> None:
        """Add ``ms`` spent elsewhere (another thread) to ``stage``."""
        self.ms[stage] = self.ms.get(stage, 0.0) + ms

    def skip(self) -> None:
        """Start the next lap now (the time since the last lap belongs to no stage)."""
        self._last_s = self._clock()

    def stage_times(self, estimator_stages_ms: Mapping[str, float] | None = None) -> StageTimes:
        return StageTimes(**{f"{stage}_ms": ms for stage, ms in self.ms.items()},
                          estimator_stages_ms=dict(estimator_stages_ms or {}))


class StageSamples:
    """Durations (ms) per stage since the last :meth:`drain`, at most ``max_samples`` (newest) each.

    Not thread-safe: the processor guards it with its statistics lock.
    """

    def __init__(self, max_samples: int = _MAX_SAMPLES) -> None:
        self._max = max_samples
        self._samples: dict[str, deque] = {}
        self.frames = 0  # frames added since the last drain

    def add(self, stage: str, ms: float) -> None:
        self._samples.setdefault(stage, deque(maxlen=self._max)).append(float(ms))

    def add_frame(self, times: StageTimes) -> None:
        self.frames += 1
        for stage, ms in times.named_ms().items():
            self.add(stage, ms)

    def drain(self) -> tuple[int, dict[str, list[float]]]:
        """(frames, samples per stage) since the last drain; starts a new period."""
        frames, samples = self.frames, {stage: list(d) for stage, d in self._samples.items()}
        self.frames, self._samples = 0, {}
        return frames, samples


def stage_statistics(samples: Mapping[str, Sequence[float]], stages: Iterable[str]) -> dict[str, str]:
    """``stage_<stage>_ms_median`` and ``stage_<stage>_ms_p90`` for each of ``stages`` (ms, three
    decimals; ``n/a`` without samples), in the order given."""
    values = {}
    for stage in stages:
        durations = np.asarray(samples.get(stage, ()), dtype=np.float64)
        for name, statistic in (("median", 50.0), ("p90", 90.0)):
            values[f"stage_{stage}_ms_{name}"] = (
                f"{float(np.percentile(durations, statistic)):.3f}" if durations.size else "n/a")
    return values
