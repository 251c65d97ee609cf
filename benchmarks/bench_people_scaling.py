"""What 20 people cost against 1 after the network: lifting and depth, unpacking, tracking, messages.

    python benchmarks/bench_people_scaling.py [--device cuda|cpu] [--people 1,20] [--frames 300]

MoveNet finds only some of the people of a rendered crowd, so the stages after it get their people
directly: each frame's detections are the projected joints of a rendered scene of exactly N people
(``mp3d-synth``'s, 640x480), with 1.5 px of noise per frame and MoveNet-like scores, in
``movenet-lift``'s decoded form (:class:`~mp3d_ros.model.movenet.MoveNetPeople`, ``max_people``
20 slots). Timed per frame (median and p90, ms), each stage on its own:

- ``lift + depth``: :meth:`MoveNetLift.people_tensors` (lifter, rays, root depth, joints), eager, and
  on a GPU also replayed from a CUDA graph as the estimator runs it. On a GPU the eager calls run in
  a pass of their own before the frames: the estimator never runs them between its graph replays,
  and their tens of milliseconds of kernel launches left the host's caches cold for the tracker;
- ``unpack``: the packed rows to the host and into :class:`~mp3d_ros.geometry.people.People`;
- ``tracking``: :meth:`Tracker.update` on the sequence;
- ``PoseArray3D`` and ``markers``: the node's two messages, built from the tracked people;
- ``lift + depth + tracking``: the two summed per frame (the CUDA graph's lift on a GPU).

The crowd sizes take turns frame by frame, so a drift of the host's speed falls on all of them.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import fields
from typing import Callable

import numpy as np
import torch

from mp3d_ros.geometry.camera_torch import CameraBatch
from mp3d_ros.geometry.skeleton import COCO_17, MUCO_21, MUPOTS_17, convert_joints
from mp3d_ros.inference.movenet_lift import RAW_PIXELS, MoveNetLift, MoveNetLiftConfig
from mp3d_ros.inference.pipelines import LIFTER_WEIGHTS, MOVENET_WEIGHTS
from mp3d_ros.inference.preprocess import letterbox_batch
from mp3d_ros.messages.conversions import MessageClasses, make_header, people_to_pose_array
from mp3d_ros.messages.markers import people_to_markers
from mp3d_ros.messages.typestore import typestore
from mp3d_ros.model.codec.decode import PeopleTensors, unpack_people
from mp3d_ros.model.movenet import MoveNetPeople
from mp3d_ros.resources import find_share_path
from mp3d_ros.synthetic.scenes import SceneConfig, generate_image
from mp3d_ros.tracking.tracker import Tracker

SLOTS = 20


def scene_detections(people: int, frames: int, seed: int, model: MoveNetLift
                     ) -> tuple[list[MoveNetPeople], CameraBatch]:
    """``frames`` noisy copies of one scene's projected joints as decoded MoveNet people."""
    frame = generate_image(SceneConfig(size=(640, 480), people=(people, people), depth_range_m=(2.0, 8.0)),
                           seed, 0)
    _, transforms = letterbox_batch([frame.image], model.cfg.input_size, RAW_PIXELS, model.device)
    cameras = CameraBatch.build(transforms, [frame.intrinsics], model.device)
    uv, labelled = convert_joints(frame.keypoints_img_px, MUCO_21, COCO_17)
    uv_input = np.nan_to_num(uv) @ transforms[0].A[:2, :2].T + transforms[0].A[:2, 2]
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(frames):
        keypoints = np.zeros((1, SLOTS, COCO_17.num_joints, 2))
        scores = np.zeros((1, SLOTS, COCO_17.num_joints))
        keypoints[0, :people] = uv_input + rng.normal(0.0, 1.5, uv_input.shape)
        scores[0, :people] = np.where(labelled, rng.uniform(0.6, 0.95, labelled.shape), 0.0)
        person = np.zeros((1, SLOTS))
        person[0, :people] = 0.8
        batches.append(MoveNetPeople(*(torch.as_tensor(values, dtype=torch.float32, device=model.device)
                                       for values in (keypoints, scores, np.zeros((1, SLOTS, 4)), person,
                                                      person))))
    return batches, cameras


def timed_ms(function: Callable[[], object], device: torch.device) -> tuple[object, float]:
    """``function()`` and its wall time in ms, the device synchronised on both sides."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    result = function()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return result, 1e3 * (time.perf_counter() - start)


def graph_replayer(model: MoveNetLift, first: MoveNetPeople, cameras: CameraBatch
                   ) -> Callable[[MoveNetPeople], tuple[torch.Tensor, float]]:
    """A CUDA graph of ``people_tensors`` captured on ``first``; the returned function copies a
    frame's detections in, replays the graph and returns its packed people and ms."""
    static = MoveNetPeople(*(getattr(first, f.name).clone() for f in fields(MoveNetPeople)))
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            model.people_tensors(static, cameras)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        packed = model.people_tensors(static, cameras).pack()

    def replay(batch: MoveNetPeople) -> float:
        static.keypoints_px.copy_(batch.keypoints_px)
        static.keypoint_scores.copy_(batch.keypoint_scores)
        return packed, timed_ms(graph.replay, model.device)[1]

    return replay


class PeopleStages:
    """One crowd size's frames and the stages' state (tracker, messages, graph)."""

    def __init__(self, model: MoveNetLift, people: int, frames: int, seed: int) -> None:
        self.model = model
        self.batches, self.cameras = scene_detections(people, frames, seed, model)
        self.classes = MessageClasses.from_typestore(typestore())
        self.tracker = Tracker()
        self.replay = (graph_replayer(model, self.batches[0], self.cameras)
                       if model.device.type == "cuda" else None)
        self.spans: dict[str, list[float]] = {name: [] for name in (
            "lift + depth (eager)", "unpack", "tracking", "PoseArray3D", "markers", "people")}
        if self.replay is not None:
            self.spans["lift + depth (CUDA graph)"] = []

    def eager(self, index: int) -> PeopleTensors:
        """Time the eager lift + depth of frame ``index``; its people."""
        batch = self.batches[index]
        tensors, ms = timed_ms(lambda: self.model.people_tensors(batch, self.cameras), self.model.device)
        self.spans["lift + depth (eager)"].append(ms)
        return tensors

    def frame(self, index: int) -> None:
        """Run and time the stages of frame ``index`` in the estimator's order (on a GPU the CUDA
        graph's lift; the eager one ran in :meth:`eager`'s own pass)."""
        batch, cpu = self.batches[index], torch.device("cpu")
        if self.replay is None:
            tensors = self.eager(index)
            found, ms = timed_ms(lambda: unpack_people(tensors.pack().cpu().numpy(), MUPOTS_17.name)[0], cpu)
        else:
            packed, graph_ms = self.replay(batch)  # the graph packs the rows itself
            self.spans["lift + depth (CUDA graph)"].append(graph_ms)
            found, ms = timed_ms(lambda: unpack_people(packed.cpu().numpy(), MUPOTS_17.name)[0], cpu)
        self.spans["unpack"].append(ms)
        stamp_ns = 1_700_000_000_000_000_000 + index * 33_333_333
        tracked, ms = timed_ms(lambda: self.tracker.update(found, stamp_ns * 1e-9), cpu)
        self.spans["tracking"].append(ms)
        header = make_header(self.classes, stamp_ns, "camera")
        self.spans["PoseArray3D"].append(
            timed_ms(lambda: people_to_pose_array(tracked, header, self.classes), cpu)[1])
        self.spans["markers"].append(timed_ms(lambda: people_to_markers(tracked, header, self.classes), cpu)[1])
        self.spans["people"].append(float(len(found)))


def measure(model: MoveNetLift, counts: list[int], frames: int, seed: int) -> dict[int, dict[str, list[float]]]:
    """Per-stage ms of ``frames`` frames for each crowd size in ``counts``.

    The crowd sizes take turns frame by frame (in alternating order), so a drift of the host's
    speed during the run, which was larger than the differences measured, falls on all of them
    alike. The last row adds each frame's lift + depth (the graph on a GPU) and tracking: the sum
    issue 19's "flat in people" is about.
    """
    crowds = {count: PeopleStages(model, count, frames, seed) for count in counts}
    if model.device.type == "cuda":
        for index in range(frames):
            for count in (counts if index % 2 == 0 else counts[::-1]):
                crowds[count].eager(index)
    for index in range(frames):
        for count in (counts if index % 2 == 0 else counts[::-1]):
            crowds[count].frame(index)
    lift = "lift + depth (CUDA graph)" if model.device.type == "cuda" else "lift + depth (eager)"
    for crowd in crowds.values():
        crowd.spans["lift + depth + tracking"] = [
            a + b for a, b in zip(crowd.spans[lift], crowd.spans["tracking"])]
    return {count: crowd.spans for count, crowd in crowds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--people", default="1,20")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    counts = [int(v) for v in args.people.split(",")]
    model = MoveNetLift.from_files(find_share_path(MOVENET_WEIGHTS), find_share_path(LIFTER_WEIGHTS),
                                   MoveNetLiftConfig(max_people=SLOTS), device=args.device)
    results = {count: {name: values[args.warmup:] for name, values in spans.items()}
               for count, spans in measure(model, counts, args.frames + args.warmup, args.seed).items()}
    stages = [s for s in results[counts[0]] if s != "people"]
    name = torch.cuda.get_device_name() if model.device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"\n{name}, {args.frames} frames; people found per frame: "
          + ", ".join(f"{c}: {statistics.median(results[c]['people']):.0f}" for c in counts))
    header = f"{'stage':<28}" + "".join(f"{f'{c} people median (p90)':>26}" for c in counts) + f"{'ratio':>8}"
    print(header + "\n" + "-" * len(header))
    for stage in stages:
        cells = [(statistics.median(results[c][stage]), float(np.percentile(results[c][stage], 90)))
                 for c in counts]
        ratio = cells[-1][0] / cells[0][0]
        print(f"{stage:<28}" + "".join(f"{m:>18.3f} ({p:.3f})" for m, p in cells) + f"{ratio:>8.2f}")


if __name__ == "__main__":
    main()
