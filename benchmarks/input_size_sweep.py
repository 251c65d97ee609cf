"""Score a checkpoint of the papers' network at several network input sizes on one split, and
optionally write the best one into it as its GPU input (issue 16 item 4: the input size follows the
device; issue 20: the network trained at 416 x 256 sees far people at a few pixels).

    python benchmarks/input_size_sweep.py --checkpoint models/synthetic_lite.pt \
        --data data/synthetic/val [--sizes 416x256,640x384,832x512,1024x640] [--device cpu] \
        [--write-cuda-input-size]

Each size runs the split as ``mp3d-eval --input-size`` does. The table gives, for all annotated
people, PCK_rel, PCK_abs, PCK_root, AP_root^25, MRPE over matched people, the share of people within
8 m (torso in the image) found, and the root errors within the published 1 sigma. With
``--write-cuda-input-size`` the size with the highest PCK_abs is written into the checkpoint as
``extra["cuda_input_size"]``: the Estimator runs it there on CUDA unless told another size (the CPU
keeps the trained size, for its cost). Choose on a validation split and report the test split with a
second run without the flag.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from mp3d_ros.config import size_wxh
from mp3d_ros.evaluation.depth_bias import depth_bias_table, found_summary
from mp3d_ros.evaluation.evaluate import (
    ground_truth_frames,
    image_depth_matches,
    load_dataset,
    pair_predictions,
    prediction_frames,
    report,
    run_estimator,
)
from mp3d_ros.data.mppe import AnnotatedImage
from mp3d_ros.model.checkpoint import load_checkpoint, save_checkpoint

COLUMNS = ("input", "PCK_rel", "PCK_abs", "PCK_root", "AP25", "MRPE mm", "found %", "1 sigma %", "s/img")


def score_size(checkpoint: Path, images: list[AnnotatedImage], root: Path, size: tuple[int, int],
               device: str | None) -> dict:
    """The split's metrics for ``checkpoint`` run at network input ``size``."""
    started = time.perf_counter()
    saved = run_estimator(str(checkpoint), images, root, device, batch=8, input_size=size)
    seconds = (time.perf_counter() - started) / max(len(images), 1)
    people = pair_predictions(images, saved)
    _, result = report("synthetic", (prediction_frames(people), ground_truth_frames(images)))
    matches = image_depth_matches(images, people)
    overall = depth_bias_table(matches)[-1]
    found = found_summary(matches)
    return {"input": f"{size[0]}x{size[1]}", "PCK_rel": result["all"]["pck_rel"],
            "PCK_abs": result["all"]["pck_abs"], "PCK_root": result["all"]["pck_root"],
            "AP25": result["ap_root_25"], "MRPE mm": result["mrpe_mm"]["total"],
            "found %": 100 * found["share"] if found else float("nan"),
            "1 sigma %": 100 * overall["within_1_sigma"], "s/img": seconds}


def format_rows(rows: list[dict]) -> str:
    lines = ["".join(f"{name:>11}" for name in COLUMNS), "-" * 11 * len(COLUMNS)]
    for row in rows:
        lines.append(f"{row['input']:>11}" + "".join(
            f"{row[name]:>11.2f}" if name == "s/img" else f"{row[name]:>11.1f}" for name in COLUMNS[1:]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--data", required=True, type=Path, help="a synthetic split (mp3d-synth's folder)")
    parser.add_argument("--sizes", default="416x256,640x384,832x512,1024x640",
                        help="network input sizes WxH, multiples of 32, comma-separated")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--write-cuda-input-size", action="store_true",
                        help="write the size with the highest PCK_abs into the checkpoint as its GPU input")
    args = parser.parse_args(argv)
    sizes = [size_wxh(text) for text in args.sizes.split(",")]
    images, root = load_dataset("synthetic", args.data)
    rows = [score_size(args.checkpoint, images, root, size, args.device) for size in sizes]
    print(f"{args.checkpoint} on {args.data} ({args.device or 'default device'}), all people:\n")
    print(format_rows(rows))
    if args.write_cuda_input_size:
        best = max(zip(rows, sizes), key=lambda pair: pair[0]["PCK_abs"])
        checkpoint = load_checkpoint(args.checkpoint)
        extra = {**checkpoint.extra, "cuda_input_size": list(best[1]),
                 "cuda_input_size_choice": {"data": str(args.data), "rows": rows}}
        save_checkpoint(args.checkpoint, replace(checkpoint, extra=extra))
        print(f"\nwrote cuda_input_size {best[0]['input']} (highest PCK_abs) into {args.checkpoint}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
