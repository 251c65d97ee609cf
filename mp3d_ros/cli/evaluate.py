"""``mp3d-eval``: run the estimator over a benchmark (or load saved predictions) and print its metrics.

    mp3d-eval --model M --dataset mupots --data DIR [--out PRED.json] [--device cuda] [--batch 8]
    mp3d-eval --dataset mupots --data DIR --predictions PRED.json [--baseline kvalue]

The datasets and the layout ``--data`` points at are described in :mod:`mp3d_ros.evaluation.evaluate`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

from mp3d_ros.cli.errors import BAD_INPUT, report_bad_input
from mp3d_ros.config import size_wxh
from mp3d_ros.evaluation.depth_bias import depth_bias_table, found_summary
from mp3d_ros.evaluation.evaluate import (
    DATASETS,
    check_prediction_skeleton,
    format_depth_bias,
    format_found,
    image_depth_matches,
    ground_truth_frames,
    json_safe,
    kvalue_baseline,
    load_dataset,
    pair_predictions,
    prediction_frames,
    report,
    run_estimator,
)
from mp3d_ros.evaluation.predictions import load_predictions, save_predictions


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mp3d-eval", description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="trained checkpoint of the papers' network")
    source.add_argument("--model", help="model name or exported model file for the Estimator")
    source.add_argument("--predictions", type=Path, help="score a saved predictions JSON instead")
    parser.add_argument("--dataset", required=True, choices=DATASETS)
    parser.add_argument("--data", required=True, type=Path, help="dataset folder or annotation file")
    parser.add_argument("--out", type=Path, help="write the estimator's predictions here (JSON; default "
                                                 "predictions_<dataset>.json in the working directory)")
    parser.add_argument("--baseline", choices=["kvalue"],
                        help="replace each person's root depth by RootNet's k-value before scoring")
    parser.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    parser.add_argument("--batch", type=int, default=8, help="images per estimator call")
    parser.add_argument("--floor", action="store_true",
                        help="give the estimator each image's floor plane from the annotations "
                             "(the camera's pose over the floor that mp3d-synth writes)")
    parser.add_argument("--input-size", type=size_wxh, default=None,
                        help="network input WxH, multiples of 32 (default: the model's own for the device)")
    parser.add_argument("--metrics-out", type=Path, help="also write the metrics as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mp3d-eval``; returns the exit status (0 ok, 2 bad input)."""
    args = _parser().parse_args(argv)
    if args.batch < 1:
        _parser().error("--batch must be at least 1")
    try:
        images, image_root = load_dataset(args.dataset, args.data)
        if args.predictions is not None:
            saved, _ = load_predictions(args.predictions)
            check_prediction_skeleton(saved, str(args.predictions))
        else:
            model = args.checkpoint or args.model
            if args.floor and not any(image.floor is not None for image in images):
                raise ValueError(f"{args.data}: --floor, but no image has a ground_from_camera pose")
            saved = run_estimator(model, images, image_root, args.device, args.batch, use_floor=args.floor,
                                  input_size=args.input_size)
            out = args.out or Path(f"predictions_{args.dataset}.json")
            meta = {"model": model, "dataset": args.dataset, "data": str(args.data)}
            if args.input_size is not None:
                meta["input_size"] = list(args.input_size)
            save_predictions(out, saved, meta)
            print(f"predictions written to {out}")
        people = pair_predictions(images, saved)
        if args.baseline == "kvalue":
            people = [kvalue_baseline(p, im.intrinsics) for p, im in zip(people, images)]
        text, result = report(args.dataset, (prediction_frames(people), ground_truth_frames(images)))
        matches = image_depth_matches(images, people)
        result["depth_by_distance"] = depth_bias_table(matches)
        result["found"] = found_summary(matches)
    except BAD_INPUT as error:
        return report_bad_input("mp3d-eval", error)
    depth = "RootNet k-value root depth (box of the predicted 2D joints)" if args.baseline else \
        "the estimator's root depth"
    print(f"mp3d-eval: {args.dataset}, {len(images)} images, depth from {depth}\n")
    print(text)
    print("\nRoot depth by true distance: median predicted / true depth, and the fraction of errors "
          "inside the reported 1 and 2 sigma (68 % and 95 % if the sigma is honest)\n")
    print(format_depth_bias(result["depth_by_distance"]))
    print(format_found(result["found"]))
    if args.metrics_out is not None:
        args.metrics_out.write_text(json.dumps(json_safe(result), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
