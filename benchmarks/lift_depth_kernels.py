"""How many kernels ``movenet-lift``'s lift + depth launches, by the function that issues them.

    python benchmarks/lift_depth_kernels.py [--people 20]

On a GPU the CUDA graph replays every non-view tensor operation of
:meth:`~mp3d_ros.inference.movenet_lift.MoveNetLift.people_tensors` as one small kernel, so their
number bounds what the graph's lift + depth costs. Counted on the CPU with a ``TorchDispatchMode``
over one call on the 20 decoded slots of a rendered crowd (``bench_people_scaling.py``'s
detections); each operation is credited to the innermost ``mp3d_ros`` function on the stack.
"""

from __future__ import annotations

import argparse
import traceback
from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from bench_people_scaling import SLOTS, scene_detections
from mp3d_ros.inference.movenet_lift import MoveNetLift, MoveNetLiftConfig
from mp3d_ros.inference.pipelines import LIFTER_WEIGHTS, MOVENET_WEIGHTS
from mp3d_ros.resources import find_share_path

# Operations that only make views: no kernel.
VIEWS = frozenset({"view", "_unsafe_view", "expand", "t", "transpose", "unsqueeze", "squeeze", "select",
                   "slice", "permute", "alias", "as_strided", "detach", "unbind", "split",
                   "split_with_sizes", "_reshape_alias", "diagonal", "unfold", "lift_fresh", "chunk"})


class KernelCount(TorchDispatchMode):
    """Counts the non-view operations dispatched inside it, by operation and by calling function."""

    def __init__(self) -> None:
        super().__init__()
        self.by_function: Counter[str] = Counter()
        self.by_operation: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        if name not in VIEWS:
            self.by_operation[name] += 1
            frames = [f for f in traceback.extract_stack() if "/mp3d_ros/" in f.filename]
            where = f"{frames[-1].filename.split('mp3d_ros/')[-1]}:{frames[-1].name}" if frames else "?"
            self.by_function[where] += 1
        return func(*args, **(kwargs or {}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=20, help="rendered people in the crowd")
    parser.add_argument("--top", type=int, default=15, help="functions listed")
    args = parser.parse_args()
    model = MoveNetLift.from_files(find_share_path(MOVENET_WEIGHTS), find_share_path(LIFTER_WEIGHTS),
                                   MoveNetLiftConfig(max_people=SLOTS), device="cpu")
    batches, cameras = scene_detections(args.people, 2, 3, model)
    with torch.inference_mode():
        model.people_tensors(batches[0], cameras).pack()
        with KernelCount() as count:
            model.people_tensors(batches[1], cameras).pack()
    print(f"lift + depth of {SLOTS} slots ({args.people} people): "
          f"{sum(count.by_operation.values())} non-view operations\n")
    for where, number in count.by_function.most_common(args.top):
        print(f"{number:6d}  {where}")


if __name__ == "__main__":
    main()
