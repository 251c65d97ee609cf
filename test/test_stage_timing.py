"""Issue 19: the node's per-stage latency in /diagnostics, and the start-up line naming the backend.

Durations are injected through fake clocks, so every median and p90 is exact (no timed tests).
"""

from __future__ import annotations

import threading

import cv2
import pytest
import torch
from test_frames import (
    FakeClock,
    FakeEstimator,
    frame_for,
    image_msg,
    info_msg,
    make_processor,
)

from mp3d_ros.ros.frame_buffer import FrameBuffer
from mp3d_ros.ros.frames import FrameWorker
from mp3d_ros.ros.health import (
    DiagnosticsMonitor,
    LoadedEstimator,
    describe_backend,
    describe_estimator,
    estimator_stage_timing,
    startup_line,
)
from mp3d_ros.ros.timing import (
    NODE_STAGES,
    StageSamples,
    StageTimes,
    Stopwatch,
    stage_statistics,
)

MS = 1_000_000  # nanoseconds per millisecond


# ----------------------------------------------------------------------------- statistics


def test_median_and_p90_of_known_durations() -> None:
    values = stage_statistics({"decode": [float(ms) for ms in range(10, 0, -1)], "markers": [2.5]},
                              ["decode", "markers", "tracking"])
    assert values == {
        "stage_decode_ms_median": "5.500", "stage_decode_ms_p90": "9.100",  # 1..10 ms, any order
        "stage_markers_ms_median": "2.500", "stage_markers_ms_p90": "2.500",
        "stage_tracking_ms_median": "n/a", "stage_tracking_ms_p90": "n/a",  # did not run
    }
    assert list(values) == [f"stage_{s}_ms_{q}" for s in ("decode", "markers", "tracking")
                            for q in ("median", "p90")]


def test_stopwatch_laps_add_up_per_stage_and_skip_stages_that_did_not_run() -> None:
    clock = FakeClock(10.0)
    watch = Stopwatch(clock, start_s=9.999)
    watch.lap("decode")  # 1 ms since the start
    clock.advance(0.002)
    watch.lap("select")
    clock.advance(0.003)
    watch.lap("tf_lookup")
    clock.advance(0.004)
    watch.lap("select")  # a second lap of the same stage adds to it
    times = watch.stage_times({"network": 7.0})
    assert times.tracking_ms is None and times.decode_ms == pytest.approx(1.0)
    named = times.named_ms()
    assert set(named) == {"decode", "select", "tf_lookup", "estimator_network"}
    assert named["select"] == pytest.approx(6.0) and named["tf_lookup"] == pytest.approx(3.0)
    assert named["estimator_network"] == 7.0


def test_samples_are_per_period_and_bounded() -> None:
    samples = StageSamples(max_samples=3)
    for ms in (1.0, 2.0, 3.0, 4.0):
        samples.add_frame(StageTimes(decode_ms=ms, estimator_stages_ms={"network": 10 * ms}))
    frames, per_stage = samples.drain()
    assert frames == 4 and per_stage == {"decode": [2.0, 3.0, 4.0], "estimator_network": [20.0, 30.0, 40.0]}
    assert samples.drain() == (0, {})  # a new period


# ----------------------------------------------------------------------------- in the node's core


class SteppingEstimator(FakeEstimator):
    """Takes ``durations_ms[i]`` (on the fake clock) for the i-th frame and reports its own stages."""

    def __init__(self, clock: FakeClock, durations_ms) -> None:
        super().__init__()
        self.clock, self.durations_ms = clock, list(durations_ms)
        self.last_timings_ms: dict[str, float] = {}

    def estimate(self, image_rgb, intrinsics):
        ms = self.durations_ms[len(self.calls)]
        people = super().estimate(image_rgb, intrinsics)
        self.clock.advance(ms * 1e-3)
        self.last_timings_ms = {"preprocess": 0.1 * ms, "network": 0.8 * ms, "decode": 0.1 * ms}
        return people


def timed_node_core(durations_ms, **overrides):
    clock = FakeClock()
    estimator = SteppingEstimator(clock, durations_ms)
    processor, _, _, lookups = make_processor(estimator, clock=clock, **overrides)
    processor._estimator_timings = lambda: estimator.last_timings_ms  # as the node wires it
    monitor = DiagnosticsMonitor(FrameBuffer(0.0, clock), processor,
                                 LoadedEstimator(estimator, "cpu", "fp32", "torch:cpu:fp32", None),
                                 clock=clock)
    return processor, monitor, clock, lookups


def test_stage_medians_and_p90s_appear_in_the_diagnostics() -> None:
    processor, monitor, _, _ = timed_node_core(range(10, 110, 10))  # 10, 20, ..., 100 ms
    for k in range(10):
        assert processor.process(frame_for(image_msg(k * MS), info_msg(k * MS))) is not None
    for ms in (1.0, 2.0, 3.0, 4.0):
        processor.record_publish(ms * 1e-3)
    values = monitor.report().values
    assert values["stage_timing_frames"] == "10"
    assert values["stage_estimator_ms_median"] == "55.000" and values["stage_estimator_ms_p90"] == "91.000"
    assert values["stage_estimator_network_ms_median"] == "44.000"  # 0.8 x 55 ms
    assert values["stage_estimator_network_ms_p90"] == "72.800"
    assert values["stage_estimator_preprocess_ms_median"] == "5.500"
    assert values["stage_publish_ms_median"] == "2.500" and values["stage_publish_ms_p90"] == "3.700"
    assert values["stage_decode_ms_median"] == "0.000"  # the fake clock stands still elsewhere
    assert values["stage_tf_lookup_ms_median"] == "n/a"  # no target_frame, no ground_frame
    keys = [k for k in values if k.startswith("stage_") and k.endswith("_median")]
    assert keys == [f"stage_{s}_ms_median" for s in (
        "decode", "tf_lookup", "estimator", "estimator_preprocess", "estimator_network",
        "estimator_decode", "select", "tracking", "pose_message", "markers", "publish")]
    # The next period has no frames: the same keys, n/a.
    later = monitor.report().values
    assert later["stage_timing_frames"] == "0"
    assert [k for k in later if k.startswith("stage_")] == [k for k in values if k.startswith("stage_")]
    assert later["stage_estimator_network_ms_p90"] == "n/a"


def test_tf_lookups_are_their_own_stage() -> None:
    processor, monitor, clock, _ = timed_node_core([1.0], target_frame="odom")
    real_lookup = processor._lookup

    def slow_lookup(target, source, stamp_ns):
        clock.advance(0.005)
        return real_lookup(target, source, stamp_ns)

    processor._lookup = slow_lookup
    result = processor.process(frame_for(image_msg(0), info_msg(0)))
    assert result.stage_times.tf_lookup_ms == pytest.approx(5.0)
    assert result.stage_times.estimator_ms == pytest.approx(1.0)
    assert monitor.report().values["stage_tf_lookup_ms_median"] == "5.000"


def test_stages_that_are_off_read_not_available() -> None:
    processor, monitor, _, _ = timed_node_core([1.0], **{"tracking.enabled": False,
                                                         "publish_markers": False})
    processor.process(frame_for(image_msg(0), info_msg(0)))
    values = monitor.report().values
    assert values["stage_tracking_ms_median"] == "n/a" and values["stage_markers_ms_p90"] == "n/a"
    assert values["stage_estimator_ms_median"] == "1.000"


def test_stage_timing_off_records_nothing() -> None:
    processor, monitor, _, _ = timed_node_core([1.0, 2.0], stage_timing="off")
    processor._estimator_timings = lambda: pytest.fail("the estimator's timings were read")
    processor.process(frame_for(image_msg(0), info_msg(0)))
    processor.record_publish(0.001)
    values = monitor.report().values
    assert values["stage_timing"] == "off"
    assert not [key for key in values if key.startswith("stage_") and key != "stage_timing"]


def test_the_worker_times_publishing() -> None:
    buffer = FrameBuffer(0.0)
    processor, _, _, _ = make_processor()
    worker_clock = FakeClock()
    done = threading.Event()

    def publish(result):
        worker_clock.advance(0.004)  # publishing takes 4 ms
        done.set()

    worker = FrameWorker(buffer, processor, publish, lambda *a: None, poll_s=0.01, clock=worker_clock)
    worker.start()
    image, info = image_msg(0), info_msg(0)
    buffer.on_image(image)
    buffer.on_pair(image, info)
    assert done.wait(5.0)
    worker.stop()
    with processor.stats.lock:
        frames, samples = processor.stats.stages.drain()
    assert frames == 1 and samples["publish"] == [pytest.approx(4.0)]


def test_node_stage_names_are_stage_times_fields() -> None:
    fields = {name[:-3] for name in StageTimes.__dataclass_fields__ if name != "estimator_stages_ms"}
    assert fields == set(NODE_STAGES) - {"publish"}


# ----------------------------------------------------------------------------- start-up line


def test_backend_names_in_words() -> None:
    assert describe_backend("torch:cpu:fp32") == "torch eager, fp32"
    assert describe_backend("torch:cuda:fp16:cuda-graph") == "torch CUDA graph, fp16"
    assert describe_backend("torch:cuda:bf16:compiled") == "torch compiled, bf16"
    assert describe_backend("torch:cuda:fp16:cuda-graph:compiled") == "torch compiled + CUDA graph, fp16"
    assert describe_backend("onnxruntime:CUDAExecutionProvider") == "onnxruntime CUDAExecutionProvider, fp32"
    assert describe_backend("fake") == "fake"


def test_the_estimators_own_stages_are_timed_on_the_cpu_or_when_asked() -> None:
    assert estimator_stage_timing("auto", "cpu") and not estimator_stage_timing("auto", "cuda:1")
    assert estimator_stage_timing("on", "cuda") and not estimator_stage_timing("off", "cpu")


class NamedEstimator(FakeEstimator):
    model_name = "movenet-lift"
    input_size = (512, 384)
    stage_timing = False


def test_the_start_up_line_names_backend_device_input_and_threads() -> None:
    loaded = LoadedEstimator(NamedEstimator(), "cuda", "fp16", "torch:cuda:fp16:cuda-graph", None)
    assert describe_estimator(loaded, torch_threads=8, opencv_threads=8, stage_timing="auto") == (
        "estimator ready: movenet-lift on cuda: torch CUDA graph, fp16, input 512x384, "
        "torch intra-op threads 8, OpenCV threads 8, stage timing auto (not the estimator's own "
        "stages: stage_timing 'on' adds them)")
    loaded.estimator.stage_timing = True
    assert describe_estimator(loaded, 8, 8, "on").endswith("stage timing on (estimator stages too)")
    fallback = LoadedEstimator(FakeEstimator(), "cpu", "fp32", "torch:cpu:fp32", "CUDA missing")
    assert describe_estimator(fallback, 1, 1, "off") == (
        "estimator ready: model on cpu (CPU fallback): torch eager, fp32, input unknown, "
        "torch intra-op threads 1, OpenCV threads 1, stage timing off")


def test_the_start_up_line_reads_the_thread_counts_in_force() -> None:
    line = startup_line(LoadedEstimator(NamedEstimator(), "cpu", "fp32", "torch:cpu:fp32", None), "auto")
    assert f"torch intra-op threads {torch.get_num_threads()}," in line
    assert f"OpenCV threads {cv2.getNumThreads()}," in line
    assert all(word in line for word in ("movenet-lift", "torch eager", "fp32", "512x384"))
