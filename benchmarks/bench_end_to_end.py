"""End-to-end cost per frame of a bag, stage by stage, as the node pays it (no ROS needed).

    python benchmarks/bench_end_to_end.py [BAG] [--device cpu|cuda] [--backend auto|torch|onnxruntime]
        [--model movenet-lift] [--input-size 256x256] [--threads N] [--cuda-graph auto|on|off]
        [--compile] [--people N]

For every image of BAG (default ``models/sample_bag``) paired with the newest CameraInfo, times:
CDR deserialisation (image + CameraInfo), image decode and conversion to RGB
(:func:`mp3d_ros.messages.images.any_image_to_rgb`), the Estimator's own stages
(``last_timings_ms``), tracking, PoseArray3D building, MarkerArray building and CDR serialisation
of both. Prints median and p90 of each stage in ms, the total, and frames per second from the
median total; then the same frames once more with the next frame read and decoded in a second
thread while the current one runs (:mod:`mp3d_ros.messages.decode_ahead`, as ``mp3d-replay`` and the
node's ``decode_ahead`` do on a GPU): the median and p90 time between finished frames, and its
frames per second. ``--people N`` replaces the bag by rendered 640x480 scenes of N people (JPEG
CompressedImage messages), to compare 1 and 20 people. ``--backend auto`` (the default) chooses as
the node does (onnxruntime through the cached export on a CPU, torch on a GPU);
``--backend onnxruntime`` exports the model to a temporary ONNX file first, at the input size the
model runs at on ``--device``. ``--compile`` runs the network and its decoding through
``torch.compile`` (the node's ``compile: true``), and the start-to-ready time printed last (the
Estimator built and the warm-up frames run) then includes the compilation.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from mp3d_ros.config import size_wxh
from mp3d_ros.messages.conversions import (MessageClasses, camera_info_to_intrinsics, make_camera_info,
                                           make_header, people_to_pose_array, stamp_to_ns)
from mp3d_ros.messages.decode_ahead import decoded_ahead
from mp3d_ros.messages.images import any_image_to_rgb, rgb_to_compressed_image
from mp3d_ros.messages.markers import people_to_markers
from mp3d_ros.messages.typestore import typestore
from mp3d_ros.tracking.tracker import Tracker

DEFAULT_BAG = Path(__file__).resolve().parents[1] / "models" / "sample_bag"
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
INFO_TYPE = "sensor_msgs/msg/CameraInfo"


def bag_frames(bag: Path) -> Iterator[tuple[bytes, str, bytes]]:
    """(image CDR, image type, newest CameraInfo CDR) of every image after a CameraInfo."""
    from rosbags.rosbag2 import Reader

    info = None
    with Reader(bag) as reader:
        for connection, _, raw in reader.messages():
            if connection.msgtype == INFO_TYPE:
                info = bytes(raw)
            elif connection.msgtype in IMAGE_TYPES and info is not None:
                yield bytes(raw), connection.msgtype, info


def synthetic_frames(people: int, count: int, store: Any) -> Iterator[tuple[bytes, str, bytes]]:
    """Rendered 640x480 scenes of exactly ``people`` people, serialised like a camera driver's."""
    from mp3d_ros.cli.bench import scene_images

    classes = MessageClasses.from_typestore(store)
    images, cameras = scene_images(people, (640, 480), count)
    for index, (image, intr) in enumerate(zip(images, cameras)):
        header = make_header(classes, 1_700_000_000_000_000_000 + index * 33_333_333, "camera")
        image_msg = rgb_to_compressed_image(image, header, classes.CompressedImage)
        info = make_camera_info(classes, header, intr.K, intr.width, intr.height, intr.distortion_model,
                                intr.D)
        yield (bytes(store.serialize_cdr(image_msg, IMAGE_TYPES[1])), IMAGE_TYPES[1],
               bytes(store.serialize_cdr(info, INFO_TYPE)))


class Stopwatch:
    """Durations in ms of named stages of one frame."""

    def __init__(self) -> None:
        self.spans: dict[str, float] = {}
        self._last = time.perf_counter()

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.spans[name] = 1e3 * (now - self._last)
        self._last = now


def finish_frame(people: Any, message: Any, store: Any, classes: MessageClasses, tracker: Tracker,
                 watch: Stopwatch) -> Any:
    """What follows the estimator: tracking, both messages and their serialisation; the people."""
    people = tracker.update(people, stamp_to_ns(message.header.stamp) * 1e-9)
    watch.mark("tracking")
    poses = people_to_pose_array(people, message.header, classes)
    watch.mark("PoseArray3D")
    markers = people_to_markers(people, message.header, classes)
    watch.mark("markers")
    store.serialize_cdr(poses, "mp3d_ros/msg/PoseArray3D")
    store.serialize_cdr(markers, "visualization_msgs/msg/MarkerArray")
    watch.mark("serialise")
    return people


def run_frame(raw: bytes, msgtype: str, info_raw: bytes, store: Any, classes: MessageClasses,
              estimator: Any, tracker: Tracker) -> dict[str, float]:
    """One frame through everything the node does; ms per stage (estimator stages prefixed)."""
    watch = Stopwatch()
    message = store.deserialize_cdr(raw, msgtype)
    info = store.deserialize_cdr(info_raw, INFO_TYPE)
    watch.mark("deserialise")
    rgb = any_image_to_rgb(message)
    intrinsics = camera_info_to_intrinsics(info, rectified=False)
    watch.mark("image decode")
    people = estimator.estimate(rgb, intrinsics)
    watch.mark("estimator")
    people = finish_frame(people, message, store, classes, tracker, watch)
    spans = dict(watch.spans)
    spans.update({f"  est. {name}": ms for name, ms in estimator.last_timings_ms.items()})
    spans["people"] = float(len(people))
    return spans


def decoded_ahead_periods_ms(frames: list[tuple[bytes, str, bytes]], store: Any, classes: MessageClasses,
                            estimator: Any, tracker: Tracker) -> list[float]:
    """Milliseconds between finished frames when each frame's deserialisation and image decode
    run in a second thread while the frame before is estimated (the first frame left out)."""
    def read(frame: tuple[bytes, str, bytes]) -> tuple[Any, np.ndarray, Any]:
        raw, msgtype, info_raw = frame
        message = store.deserialize_cdr(raw, msgtype)
        info = camera_info_to_intrinsics(store.deserialize_cdr(info_raw, INFO_TYPE), rectified=False)
        return message, any_image_to_rgb(message), info

    finished_s = []
    for _, decoded in decoded_ahead(frames, read):
        message, rgb, intrinsics = decoded.get()
        finish_frame(estimator.estimate(rgb, intrinsics), message, store, classes, tracker, Stopwatch())
        finished_s.append(time.perf_counter())
    return [1e3 * (b - a) for a, b in zip(finished_s, finished_s[1:])]


def make_estimator(args: argparse.Namespace, folder: Path):
    from mp3d_ros.inference.estimator import Estimator

    model = args.model
    if args.backend == "onnxruntime" and not model.endswith(".onnx"):
        from mp3d_ros.inference.export import export_onnx
        from mp3d_ros.inference.pipelines import load_pipeline

        path = folder / "model.onnx"
        # At the input the model runs at on that device (movenet-lift: 512 x 384 on a GPU).
        export_onnx(load_pipeline(model, input_size=args.input_size, cuda=args.device == "cuda"), path)
        model = str(path)
    graph = {"auto": "auto", "on": True, "off": False}[args.cuda_graph]
    return Estimator(model, backend=args.backend, device=args.device, threads=args.threads,
                     input_size=None if model.endswith(".onnx") else args.input_size, cuda_graph=graph,
                     compile_network=args.compile)


def format_table(rows: list[dict[str, float]], title: str) -> str:
    names = [n for n in rows[0] if n != "people"]
    totals = [sum(v for n, v in row.items() if n in rows[0] and not n.startswith("  ") and n != "people")
              for row in rows]
    lines = [title, f"{'stage':<22}{'median ms':>11}{'p90 ms':>9}", "-" * 42]
    for name in names:
        values = [row.get(name, 0.0) for row in rows]
        lines.append(f"{name:<22}{statistics.median(values):>11.2f}{np.percentile(values, 90):>9.2f}")
    median = statistics.median(totals)
    lines += ["-" * 42, f"{'total':<22}{median:>11.2f}{np.percentile(totals, 90):>9.2f}",
              f"frames/s {1e3 / median:.1f}  (people per frame {np.mean([r['people'] for r in rows]):.1f}, "
              f"{len(rows)} frames)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bag", nargs="?", type=Path, default=DEFAULT_BAG)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: Estimator's)")
    parser.add_argument("--backend", default="auto", choices=("auto", "torch", "onnxruntime"))
    parser.add_argument("--model", default="movenet-lift")
    parser.add_argument("--input-size", type=size_wxh, default=None, help="WxH, multiples of 32")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: Estimator's)")
    parser.add_argument("--cuda-graph", default="auto", choices=("auto", "on", "off"))
    parser.add_argument("--compile", action="store_true", help="torch.compile the network and decoding")
    parser.add_argument("--people", type=int, default=None, help="rendered scenes of N people instead of BAG")
    parser.add_argument("--frames", type=int, default=60, help="frames of --people scenes")
    parser.add_argument("--warmup", type=int, default=5, help="frames run before timing")
    args = parser.parse_args(argv)
    store = typestore()
    classes = MessageClasses.from_typestore(store)
    frames = list(synthetic_frames(args.people, args.frames, store) if args.people is not None
                  else bag_frames(args.bag))
    if not frames:
        raise SystemExit(f"{args.bag}: no image after a CameraInfo")
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        estimator = make_estimator(args, Path(folder))
        tracker = Tracker()
        for raw, msgtype, info in frames[:args.warmup]:
            run_frame(raw, msgtype, info, store, classes, estimator, tracker)
        ready_s = time.perf_counter() - started
        tracker = Tracker()
        rows = [run_frame(raw, msgtype, info, store, classes, estimator, tracker)
                for raw, msgtype, info in frames]
        periods = decoded_ahead_periods_ms(frames, store, classes, estimator, Tracker())
    import torch

    source = f"{args.people} rendered people" if args.people is not None else str(args.bag)
    print(format_table(rows, f"{source}: {estimator.backend_name}, input {estimator.input_size}, "
                             f"{torch.get_num_threads()} threads"))
    median = statistics.median(periods)
    print(f"{'decode-ahead':<22}{median:>11.2f}{np.percentile(periods, 90):>9.2f}"
          f"  ms between finished frames, the next frame decoded meanwhile: {1e3 / median:.1f} frames/s")
    print(f"{'start-to-ready':<22}{ready_s:>11.2f}  s: the Estimator built and {args.warmup} warm-up frames run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
