"""Measure the papers' network's root-depth sigma factor on a split and write it into the checkpoint
(issues 16 and 20: a published sigma that means what it says, for the network too).

    python benchmarks/calibrate_network_sigma.py --checkpoint models/synthetic_lite.pt \
        --data data/synthetic/val [--out CALIBRATED.pt] [--device cpu]

Runs the checkpoint over the split as ``mp3d-eval`` does, matches its people to the annotated ones,
and takes the factor that puts 68.3 % of the matched people's root-depth errors within 1 sigma
(:func:`mp3d_ros.evaluation.depth_calibration.inflation_for_coverage`). It multiplies the factor the
checkpoint already has, and ``--out`` gets the checkpoint with the product in
``extra["calibration"]`` (the Estimator applies it to both root-depth cues, so the fused depth does
not change). Prints the coverage by distance before and after, on this split; check it on another
one with ``mp3d-eval``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from mp3d_ros.evaluation.depth_bias import DepthMatches, depth_bias_table
from mp3d_ros.evaluation.depth_calibration import inflation_for_coverage
from mp3d_ros.evaluation.evaluate import image_depth_matches, load_dataset, pair_predictions, run_estimator
from mp3d_ros.model.checkpoint import load_checkpoint, save_checkpoint


def coverage_table(matches: DepthMatches) -> str:
    lines = [f"{'band (m)':<10}{'matched':>8}{'within 1 sigma':>16}{'within 2 sigma':>16}", "-" * 50]
    for row in depth_bias_table(matches):
        lines.append(f"{row['band_m']:<10}{row['matched']:>8}{100 * row['within_1_sigma']:>15.1f}%"
                     f"{100 * row['within_2_sigma']:>15.1f}%")
    return "\n".join(lines)


def calibrated_factor(matches: DepthMatches) -> float:
    """The factor on the published sigmas that covers 68.3 % of the matched errors at 1 sigma."""
    errors = np.asarray(matches.predicted_m) - np.asarray(matches.true_m)
    sigma = np.asarray(matches.sigma_m)
    usable = np.isfinite(errors) & np.isfinite(sigma) & (sigma > 0)
    if not usable.any():
        raise SystemExit("no matched person with a finite sigma: nothing to calibrate on")
    return inflation_for_coverage(errors[usable], sigma[usable])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--data", required=True, type=Path, help="a synthetic split (mp3d-synth's folder)")
    parser.add_argument("--out", type=Path, help="write the calibrated checkpoint here")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    args = parser.parse_args(argv)
    images, root = load_dataset("synthetic", args.data)
    people = pair_predictions(images, run_estimator(str(args.checkpoint), images, root, args.device, batch=8))
    matches = image_depth_matches(images, people)
    factor = calibrated_factor(matches)
    checkpoint = load_checkpoint(args.checkpoint)
    calibration = dict(checkpoint.extra.get("calibration", {}))
    before = float(calibration.get("sigma_inflation", 1.0))
    print(f"{args.checkpoint} on {args.data} ({len(images)} images, {len(matches.true_m)} matched people)")
    print(f"\nas published (sigma factor {before:g}):\n{coverage_table(matches)}")
    scaled = replace(matches, sigma_m=[factor * s for s in matches.sigma_m])
    print(f"\nwith the sigmas times {factor:.3f} (factor {before * factor:.3f}):\n{coverage_table(scaled)}")
    if args.out:
        calibration.update(sigma_inflation=before * factor, measured_on=str(args.data),
                           matched_people=len(matches.true_m))
        save_checkpoint(args.out, replace(checkpoint, extra={**checkpoint.extra, "calibration": calibration}))
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
