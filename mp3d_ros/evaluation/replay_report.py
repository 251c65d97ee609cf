"""What a replay measured: metrics against the bag's ground truth, latency, skipped frames.

The metrics are the evaluator's own (:func:`mp3d_ros.evaluation.metrics.evaluate_mupots` over MuPoTS-17
frames), the bag being one sequence. The report folder holds ``summary.md``, ``metrics.json`` and
three plots: 3DPCK against the threshold, root depth error against distance, per-frame latency.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mp3d_ros.evaluation.evaluate import json_safe, mupots_summary_table, prediction_frames
from mp3d_ros.evaluation.metrics import (
    AUC_THRESHOLDS_MM,
    FrameGroundTruth,
    evaluate_mupots,
    match_people_mupots,
)
from mp3d_ros.evaluation.replay import ReplayResult
from mp3d_ros.geometry.people import People
from mp3d_ros.geometry.skeleton import MUPOTS_17, convert_joints

__all__ = ["ground_truth_from_people", "replay_metrics", "latency_summary_ms", "summary_text",
           "write_report"]

_MM_PER_M = 1000.0


def ground_truth_from_people(people: People, sequence: str) -> FrameGroundTruth:
    """Ground truth published as ``PoseArray3D`` (read back as People) in MuPoTS-17 millimetres.

    Joints with non-finite values are unlabelled; ``inferred`` joints are labelled but not visible.
    """
    source = people.joint_set
    xyz, mapped = convert_joints(people.keypoints_m * _MM_PER_M, source, MUPOTS_17)
    uv, _ = convert_joints(people.uv_px, source, MUPOTS_17)
    seen, _ = convert_joints((~people.inferred).astype(float)[..., None], source, MUPOTS_17)
    labelled = mapped & np.isfinite(xyz).all(-1) & np.isfinite(uv).all(-1)
    return FrameGroundTruth(sequence, uv, xyz, labelled, np.nan_to_num(seen[..., 0]) > 0)


def _scored_frames(result: ReplayResult, sequence: str) -> tuple[list, list]:
    frames = [f for f in result.frames if f.ground_truth is not None]
    return (prediction_frames([f.people for f in frames]),
            [ground_truth_from_people(f.ground_truth, sequence) for f in frames])


def replay_metrics(result: ReplayResult, sequence: str) -> dict | None:
    """The MuPoTS-3D protocol over the frames that have ground truth (None when none do)."""
    predictions, truth = _scored_frames(result, sequence)
    return evaluate_mupots(predictions, truth) if truth else None


def latency_summary_ms(result: ReplayResult) -> dict[str, float]:
    """Median, p90, p99 and mean estimator latency per frame in milliseconds."""
    latency = np.array([f.latency_ms for f in result.frames])
    if latency.size == 0:
        return {}
    return {"median": float(np.median(latency)), "p90": float(np.percentile(latency, 90)),
            "p99": float(np.percentile(latency, 99)), "mean": float(latency.mean()),
            "frames": int(latency.size)}


def summary_text(result: ReplayResult, sequence: str, metrics: dict | None = None) -> str:
    """Plain-text summary: topics, frames, skipped frames with reasons, latency, metrics table."""
    lines = list(result.notes)
    lines.append(f"images: {result.images_seen} read, {len(result.frames)} processed, "
                 f"{sum(result.skipped.values())} skipped" + (" (interrupted)" if result.interrupted else ""))
    for reason, count in sorted(result.skipped.items()):
        lines.append(f"  skipped {count} x {reason}: e.g. {result.skip_examples[reason]}")
    latency = latency_summary_ms(result)
    if latency:
        lines.append(f"latency per frame: median {latency['median']:.1f} ms, p90 {latency['p90']:.1f} "
                     f"ms, p99 {latency['p99']:.1f} ms")
    metrics = metrics if metrics is not None else replay_metrics(result, sequence)
    if metrics is None:
        lines.append("no ground truth in the bag: no accuracy metrics")
    else:
        lines.append(f"ground truth in {metrics['counts']['frames']} frames, "
                     f"{metrics['counts']['gt_people']} people")
        lines.append(mupots_summary_table(metrics))
    return "\n".join(lines)


def _pck_curve(result: ReplayResult, sequence: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    predictions, truth = _scored_frames(result, sequence)
    thresholds = np.asarray(AUC_THRESHOLDS_MM, dtype=float)
    rel, abs_ = [], []
    for threshold in thresholds:
        scores = evaluate_mupots(predictions, truth, pck_threshold_mm=float(threshold))["all"]
        rel.append(scores["pck_rel"])
        abs_.append(scores["pck_abs"])
    return thresholds, np.array(rel), np.array(abs_)


def _root_depth_errors(result: ReplayResult, sequence: str) -> tuple[np.ndarray, np.ndarray]:
    """(distance_m, signed root depth error_m) of every matched ground-truth person."""
    predictions, truth = _scored_frames(result, sequence)
    distance, error = [], []
    root = MUPOTS_17.root
    for prediction, gt in zip(predictions, truth):
        matching = match_people_mupots(gt.uv_px, gt.labelled, prediction.uv_px)
        for g, p in enumerate(matching):
            if p >= 0 and gt.labelled[g, root]:
                distance.append(np.linalg.norm(gt.keypoints_mm[g, root]) / _MM_PER_M)
                error.append((prediction.keypoints_mm[p, root, 2] - gt.keypoints_mm[g, root, 2])
                             / _MM_PER_M)
    return np.array(distance), np.array(error)


def _plot(path: Path, draw) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4), dpi=100)
    draw(axes)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def write_report(result: ReplayResult, folder: str | Path, sequence: str) -> dict:
    """Write ``summary.md``, ``metrics.json`` and the PNG plots; returns the metrics JSON content."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    metrics = replay_metrics(result, sequence)
    content = {
        "bag": sequence, "topics": vars(result.topics), "images_read": result.images_seen,
        "frames_processed": len(result.frames), "skipped": dict(result.skipped),
        "skip_examples": result.skip_examples, "interrupted": result.interrupted,
        "latency_ms": latency_summary_ms(result), "metrics": metrics,
    }
    (folder / "metrics.json").write_text(json.dumps(json_safe(content), indent=2))
    plots: list[tuple[str, str]] = []
    latency = np.array([f.latency_ms for f in result.frames])
    if latency.size:
        _plot(folder / "latency.png", lambda ax: (
            ax.plot(latency, lw=0.8), ax.set_xlabel("frame"), ax.set_ylabel("estimator latency [ms]"),
            ax.set_title("Per-frame latency")))
        plots.append(("Per-frame latency", "latency.png"))
    if metrics is not None:
        thresholds, rel, abs_ = _pck_curve(result, sequence)
        _plot(folder / "pck.png", lambda ax: (
            ax.plot(thresholds, rel, label="PCK_rel"), ax.plot(thresholds, abs_, label="PCK_abs"),
            ax.set_xlabel("threshold [mm]"), ax.set_ylabel("3DPCK [%] (all people)"),
            ax.set_ylim(0, 100), ax.legend(), ax.set_title("3DPCK vs threshold")))
        distance, error = _root_depth_errors(result, sequence)
        _plot(folder / "root_depth_error.png", lambda ax: (
            ax.scatter(distance, error, s=6), ax.axhline(0, color="k", lw=0.5),
            ax.set_xlabel("ground-truth root distance [m]"), ax.set_ylabel("root depth error [m]"),
            ax.set_title("Root depth error vs distance")))
        plots += [("3DPCK vs threshold", "pck.png"), ("Root depth error vs distance",
                                                       "root_depth_error.png")]
    summary = summary_text(result, sequence, metrics)
    markdown = [f"# Replay of `{sequence}`", "", "```", summary, "```", ""]
    markdown += [f"## {title}\n\n![{title}]({name})\n" for title, name in plots]
    (folder / "summary.md").write_text("\n".join(markdown))
    return content
