"""``mp3d-bench``: per-frame latency of every model, backend, input size and batch, by stage.

For each configuration the three stages of :class:`~mp3d_ros.inference.estimator.Estimator` are timed over
``--runs`` runs after ``--warmup`` runs: pre-processing (letterbox + normalisation on the device),
the network, and decoding (to :class:`~mp3d_ros.geometry.people.People` in the source image's pixels and
the camera's metres), as the Estimator times them: CUDA events on a GPU, a monotonic clock on the
CPU. With ``torch-graph`` the pre-processing replays as one CUDA graph and the network with the
device-side decoding (back-projection with the live intrinsics included) as another, so "net"
includes that decoding and "decode" is the one copy to the host and the slicing into People.
The median, p90 and p99 of the total and the median of each stage are printed per frame (a
batch's time divided by its size). Rows with 1, 5 and 20 rendered people show that the cost does
not grow with the number of people. Networks carry random weights (speed does not depend on them)
except ``movenet-lift``, which is the shipped model. ``--lenses`` renders the scenes through
distorted lenses (undistortion then runs in the decoding). Rows of one model, backend and size
share one Estimator, so a compiled network is compiled once for them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from mp3d_ros.config import size_wxh
from mp3d_ros.geometry.camera import Intrinsics
from mp3d_ros.inference.preprocess import IMAGENET
from mp3d_ros.model.checkpoint import Checkpoint, save_checkpoint
from mp3d_ros.model.config import lite_mobilenet_fpn_config, mar_hrnet_w32_config
from mp3d_ros.model.network import build_network

__all__ = ["BenchCase", "make_estimator", "time_case", "main"]

MODELS = ("full", "lite", "movenet-lift")
BACKENDS = ("torch", "torch-graph", "torch-compile", "torch-compile-graph", "onnxruntime")


@dataclass(frozen=True)
class BenchCase:
    """One row of the table."""

    model: str
    backend: str
    input_size: tuple[int, int]
    batch: int
    people: int
    lens: str = "none"


@dataclass(frozen=True)
class BenchResult:
    case: BenchCase
    total_ms: list[float]
    stages_ms: dict[str, list[float]]
    people_found: float


def _checkpoint_for(model: str, input_size: tuple[int, int], folder: Path) -> str:
    """A checkpoint of random weights for the papers' network (``full``: HRNet-W32, ``lite``)."""
    if model == "movenet-lift":
        return model
    make_config = mar_hrnet_w32_config if model == "full" else lite_mobilenet_fpn_config
    config = make_config(input_size=input_size)
    torch.manual_seed(0)
    network = build_network(config)
    path = folder / f"{model}_{input_size[0]}x{input_size[1]}.pt"
    save_checkpoint(path, Checkpoint(network.state_dict(), config.to_dict(), config.joint_set,
                                     input_size, IMAGENET.to_dict()))
    return str(path)


def scene_images(people: int, size: tuple[int, int], count: int,
                 lens: str = "none") -> tuple[list[np.ndarray], list[Intrinsics]]:
    """``count`` rendered scenes of ``size`` with exactly ``people`` people each, and their cameras
    (``lens``: ``none``, ``plumb_bob`` or ``equidistant``)."""
    from mp3d_ros.synthetic.scenes import SceneConfig, generate_image

    config = SceneConfig(size=size, people=(people, people), depth_range_m=(2.0, 12.0),
                         distortion=lens)
    frames = [generate_image(config, 0, index) for index in range(count)]
    return [f.image for f in frames], [f.intrinsics for f in frames]


def make_estimator(case: BenchCase, device: torch.device, folder: Path):
    """The Estimator of a case's model, backend and input size (random weights but movenet-lift)."""
    from mp3d_ros.inference.estimator import Estimator
    from mp3d_ros.inference.export import export_onnx
    from mp3d_ros.inference.pipelines import load_pipeline

    model = _checkpoint_for(case.model, case.input_size, folder)
    if case.backend == "onnxruntime":
        onnx_path = folder / f"{case.model}_{case.input_size[0]}x{case.input_size[1]}.onnx"
        if not onnx_path.exists():
            export_onnx(load_pipeline(model, input_size=case.input_size), onnx_path)
        model = str(onnx_path)
    return Estimator(model, device=str(device), input_size=None if model.endswith(".onnx")
                     else case.input_size, cuda_graph=case.backend.endswith("-graph"),
                     compile_network=case.backend.startswith("torch-compile"))


def time_case(case: BenchCase, estimator, runs: int, warmup: int) -> BenchResult:
    """Time one configuration; returns per-frame totals and stages of every timed run."""
    images, cameras = scene_images(case.people, (640, 480), case.batch, case.lens)
    totals, stages, found = [], {"preprocess": [], "network": [], "decode": []}, []
    for run in range(warmup + runs):
        people = estimator.estimate_batch(images, cameras)
        if run >= warmup:
            timings = estimator.last_timings_ms
            for name in stages:
                stages[name].append(timings[name] / case.batch)
            totals.append(sum(timings.values()) / case.batch)
            found.append(float(np.mean([len(p) for p in people])))
    return BenchResult(case, totals, stages, float(np.mean(found)))


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def format_results(results: Sequence[BenchResult], device_name: str) -> str:
    """The printed table: one row per case, milliseconds per frame."""
    header = (f"{'model':<13}{'backend':<20}{'lens':<12}{'input':>9}{'batch':>6}{'people':>7}{'found':>7}"
              f"{'median':>9}{'p90':>8}{'p99':>8}{'pre':>8}{'net':>8}{'decode':>8}{'fps':>8}")
    lines = [f"mp3d-bench on {device_name} (ms per frame)", header, "-" * len(header)]
    for r in results:
        c = r.case
        median = statistics.median(r.total_ms)
        lines.append(
            f"{c.model:<13}{c.backend:<20}{c.lens:<12}{c.input_size[0]:>5}x{c.input_size[1]:<3}{c.batch:>6}"
            f"{c.people:>7}{r.people_found:>7.1f}{median:>9.2f}{_percentile(r.total_ms, 90):>8.2f}"
            f"{_percentile(r.total_ms, 99):>8.2f}"
            + "".join(f"{statistics.median(r.stages_ms[s]):>8.2f}" for s in ("preprocess", "network", "decode"))
            + f"{1000.0 / median:>8.1f}")
    return "\n".join(lines)


def _sizes(text: str) -> list[tuple[int, int]]:
    return [size_wxh(item) for item in text.split(",")]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mp3d-bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    parser.add_argument("--models", default="full,lite,movenet-lift",
                        help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument("--backends", default=None,
                        help=f"comma-separated, of {', '.join(BACKENDS)} (default: all that apply)")
    parser.add_argument("--sizes", type=_sizes, default=_sizes("832x512,416x256"),
                        help="network input sizes WxH, comma-separated")
    parser.add_argument("--batches", default="1,8", help="batch sizes, comma-separated")
    parser.add_argument("--people", default="1,5,20",
                        help="people per image of the people rows (each model, first backend and "
                             "size, batch 1); empty for none")
    parser.add_argument("--lenses", default="none",
                        help="lenses the scenes are rendered through, comma-separated, of none, "
                             "plumb_bob, equidistant (the people rows use the first)")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: Estimator's)")
    return parser


def _cases(args: argparse.Namespace, device: torch.device) -> list[BenchCase]:
    models = args.models.split(",")
    unknown = set(models) - set(MODELS)
    if unknown:
        raise SystemExit(f"unknown models {sorted(unknown)}; known: {MODELS}")
    default = BACKENDS if device.type == "cuda" else ("torch", "onnxruntime")
    backends = args.backends.split(",") if args.backends else list(default)
    batches = [int(b) for b in args.batches.split(",")]
    people_rows = [int(p) for p in args.people.split(",") if p]
    lenses = args.lenses.split(",")
    unknown = set(lenses) - {"none", "plumb_bob", "equidistant"}
    if unknown:
        raise SystemExit(f"unknown lenses {sorted(unknown)}; known: none, plumb_bob, equidistant")
    cases = []
    for model in models:
        # movenet-lift runs at its own 256-pixel input and the 416x256 / 832x512 sizes alike
        for size in args.sizes:
            for backend in backends:
                cases += [BenchCase(model, backend, tuple(size), batch, 5, lenses[0]) for batch in batches]
                if (backend, size) == (backends[0], args.sizes[0]):
                    cases += [BenchCase(model, backend, tuple(size), 1, people, lenses[0])
                              for people in people_rows]
                cases += [BenchCase(model, backend, tuple(size), batch, 5, lens)
                          for lens in lenses[1:] for batch in batches]
    return cases


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.threads:
        torch.set_num_threads(args.threads)
    results = []
    with tempfile.TemporaryDirectory() as folder:
        estimator, estimator_key = None, None
        for case in _cases(args, device):
            try:
                key = (case.model, case.backend, case.input_size)
                if key != estimator_key:  # consecutive rows share it; one at a time on the GPU
                    estimator, estimator_key = None, None
                    estimator, estimator_key = make_estimator(case, device, Path(folder)), key
                results.append(time_case(case, estimator, args.runs, args.warmup))
            except Exception as error:  # one failing backend must not hide the other rows
                print(f"skipped {case}: {type(error).__name__}: {error}", file=sys.stderr)
                continue
            print(format_results(results[-1:], "").splitlines()[-1], file=sys.stderr, flush=True)
    # Named after the runs: the Estimator picks the CPU thread count.
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU ({torch.get_num_threads()} threads)"
    print(format_results(results, name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
