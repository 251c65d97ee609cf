"""What a replay measured: metrics against the bag's ground truth, latency, skipped frames.

The metrics are the evaluator's own (:func:`mp3d_ros.evaluation.metrics.evaluate_mupots` over MuPoTS-17
frames), the bag being one sequence. Every ground-truth message is scored (:func:`scored_frames`):
against the people of its image (same stamp, same occurrence of that stamp), or as an empty
prediction when that image was skipped or could not be read, so skipping frames never raises a
score. The report folder holds ``summary.md``, ``metrics.json`` and
three plots: 3DPCK against the threshold, root depth error against distance, per-frame latency.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mp3d_ros.evaluation.depth_bias import DepthMatches, depth_bias_table, found_summary
from mp3d_ros.evaluation.identities import IdentitySummary, identity_summary
from mp3d_ros.evaluation.identity_check import check_identities, format_identity_check
from mp3d_ros.evaluation.evaluate import (
    format_depth_bias,
    format_found,
    json_safe,
    mupots_summary_table,
    prediction_frames,
)
from mp3d_ros.evaluation.metrics import (
    AUC_THRESHOLDS_MM,
    FrameGroundTruth,
    evaluate_mupots,
    match_people_mupots,
)
from mp3d_ros.evaluation.replay import GroundTruthMessage, ReplayResult
from mp3d_ros.geometry.people import DEPTH_CUE_FLOOR, People
from mp3d_ros.geometry.skeleton import MUPOTS_17, convert_joints

__all__ = ["ground_truth_from_people", "ScoredFrames", "scored_frames", "replay_metrics",
           "latency_summary_ms", "summary_text", "write_report"]

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


@dataclass
class ScoredFrames:
    """Ground truth paired with predictions, and what was scored as missed or left out."""

    predictions: list[People] = field(default_factory=list)
    truth: list[People] = field(default_factory=list)
    missed_frames: int = 0  # ground-truth messages scored against no people: frame skipped/unread
    missed_people: int = 0  # ground-truth people in those messages
    unpaired: int = 0  # ground-truth messages with no image of their stamp in an undamaged bag
    after_stop: int = 0  # ground truth after the last image read (--max-frames, interrupt)


def _prediction_for(result: ReplayResult, message: GroundTruthMessage) -> People | None | bool:
    """The people to score ``message`` against; None to score it as missed; False to leave it out."""
    if message.key in result.processed_keys:
        return result.frames[result.processed_keys[message.key]].people
    if message.key in result.image_keys or result.images_lost:
        return None
    return False


def scored_frames(result: ReplayResult) -> ScoredFrames:
    """Pair every ground-truth message with its frame's prediction (see the module docstring)."""
    scored = ScoredFrames()
    stop = result.last_image_stamp_ns if result.stopped_early else None
    for message in result.ground_truth:
        if result.stopped_early and (stop is None or message.key[0] > stop):
            scored.after_stop += 1
            continue
        people = _prediction_for(result, message)
        if people is False:
            scored.unpaired += 1
            continue
        if people is None:
            scored.missed_frames += 1
            scored.missed_people += len(message.people)
            people = People.empty(MUPOTS_17.name)
        scored.predictions.append(people)
        scored.truth.append(message.people)
    return scored


def _scored_frames(result: ReplayResult, sequence: str) -> tuple[list, list]:
    scored = scored_frames(result)
    return (prediction_frames(scored.predictions),
            [ground_truth_from_people(people, sequence) for people in scored.truth])


def replay_metrics(result: ReplayResult, sequence: str) -> dict | None:
    """The MuPoTS-3D protocol over every scored ground-truth message, with the identity check of
    its matches (:mod:`mp3d_ros.evaluation.identity_check`); None when there is none."""
    predictions, truth = _scored_frames(result, sequence)
    if not truth:
        return None
    return {**evaluate_mupots(predictions, truth), "identity_check": check_identities(predictions, truth)}


def latency_summary_ms(result: ReplayResult) -> dict[str, float]:
    """Median, p90, p99 and mean estimator latency per frame in milliseconds."""
    latency = np.array([f.latency_ms for f in result.frames])
    if latency.size == 0:
        return {}
    return {"median": float(np.median(latency)), "p90": float(np.percentile(latency, 90)),
            "p99": float(np.percentile(latency, 99)), "mean": float(latency.mean()),
            "frames": int(latency.size)}


def _reading_lines(result: ReplayResult) -> list[str]:
    """What could not be read, and the pairing and stamp warnings."""
    lines = [f"could not read: {damage}" for damage in result.read_damage]
    if result.camera_info_fallbacks:
        lines.append(f"warning: {result.camera_info_fallbacks} frames had no CameraInfo within the "
                     "slop and used the latest earlier one")
    if result.duplicate_images:
        lines.append(f"warning: {result.duplicate_images} images repeat an earlier image's stamp; only "
                     "the first of each stamp was processed (as the node does)")
    if result.duplicate_ground_truth:
        lines.append(f"warning: {result.duplicate_ground_truth} ground-truth messages repeat an earlier "
                     "stamp; each is scored with the image of the same stamp in bag order")
    if result.backward_stamps or result.tracker_resets:
        lines.append(f"image stamps went backwards {result.backward_stamps} times; the tracker was "
                     f"reset {result.tracker_resets} times")
    return lines


def replay_depth_matches(result: ReplayResult) -> DepthMatches:
    """The people found matched to the ground truth over the frames that have it."""
    matches = DepthMatches()
    for frame in result.frames:
        if frame.ground_truth is not None:
            matches.add(frame.people, frame.ground_truth, image_size=frame.image_size)
    return matches


def replay_identities(result: ReplayResult) -> IdentitySummary | None:
    """Track ids against the ground truth's ids over the frames that have it, in replay order."""
    return identity_summary((frame.people, frame.ground_truth) for frame in result.frames
                            if frame.ground_truth is not None)


def format_identities(summary: IdentitySummary | None) -> str:
    if summary is None:
        return "track ids: the ground truth carries no ids"
    return (f"track ids: {summary.people} people matched, {summary.ids_per_person:.2f} ids each, "
            f"{summary.id_switches} id switches; {summary.tracked} of {summary.matched} matched "
            "people carried an id")


def summary_text(result: ReplayResult, sequence: str, metrics: dict | None = None) -> str:
    """Plain-text summary: topics, frames, skipped frames by reason, damage, latency, metrics."""
    lines = list(result.notes)
    lines.append(f"images: {result.images_seen} read, {len(result.frames)} processed, "
                 f"{sum(result.skipped.values())} skipped" + (" (interrupted)" if result.interrupted else ""))
    for reason, count in sorted(result.skipped.items()):
        lines.append(f"  skipped {count} x {reason}: e.g. {result.skip_examples[reason]}")
    for reason, count in sorted(result.unreadable.items()):
        lines.append(f"{count} x {reason}: e.g. {result.skip_examples[reason]}")
    lines += _reading_lines(result)
    if result.floor:
        people = [frame.people for frame in result.frames]
        on_floor = sum(int(np.count_nonzero(p.depth_cues & DEPTH_CUE_FLOOR)) for p in people)
        lines.append(f"floor from {result.floor}: depth from the floor for {on_floor} of "
                     f"{sum(len(p) for p in people)} people found"
                     + (f"; {result.floor_unavailable} frames without a transform to the ground"
                        if result.floor_unavailable else ""))
    latency = latency_summary_ms(result)
    if latency:
        lines.append(f"latency per frame: median {latency['median']:.1f} ms, p90 {latency['p90']:.1f} "
                     f"ms, p99 {latency['p99']:.1f} ms")
    metrics = metrics if metrics is not None else replay_metrics(result, sequence)
    scored = scored_frames(result)
    if metrics is None:
        if result.ground_truth:
            lines.append("no ground truth paired with the frames read: no accuracy metrics")
        elif result.topics.ground_truth and result.unreadable:
            lines.append("no ground-truth message could be read: no accuracy metrics")
        else:
            lines.append("no ground truth in the bag: no accuracy metrics")
    else:
        lines.append(f"ground truth in {metrics['counts']['frames']} frames, "
                     f"{metrics['counts']['gt_people']} people; {scored.missed_people} people in "
                     f"{scored.missed_frames} skipped or unreadable frames counted as missed")
        lines.append(mupots_summary_table(metrics))
        if "identity_check" in metrics:
            lines.append(format_identity_check(metrics["identity_check"]))
        lines.append("root depth by true distance (median predicted / true; share of errors inside 1 and 2 "
                     "reported sigma):")
        matches = replay_depth_matches(result)
        lines.append(format_depth_bias(depth_bias_table(matches)))
        lines.append(format_found(found_summary(matches)))
        lines.append(format_identities(replay_identities(result)))
    if scored.unpaired:
        lines.append(f"{scored.unpaired} ground-truth messages have no image of their stamp: not scored")
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
    scored = scored_frames(result)
    matches = replay_depth_matches(result)
    identities = replay_identities(result)
    content = {
        "bag": sequence, "topics": vars(result.topics), "images_read": result.images_seen,
        "frames_processed": len(result.frames), "skipped": dict(result.skipped),
        "unreadable_messages": dict(result.unreadable), "skip_examples": result.skip_examples,
        "interrupted": result.interrupted,
        "read_damage": result.read_damage,
        "ground_truth_missed": {"frames": scored.missed_frames, "people": scored.missed_people},
        "ground_truth_unpaired": scored.unpaired, "ground_truth_after_stop": scored.after_stop,
        "camera_info_fallbacks": result.camera_info_fallbacks,
        "duplicate_stamps": {"images": result.duplicate_images,
                             "ground_truth": result.duplicate_ground_truth},
        "backward_stamps": result.backward_stamps, "tracker_resets": result.tracker_resets,
        "latency_ms": latency_summary_ms(result), "metrics": metrics,
        "depth_by_distance": depth_bias_table(matches), "found": found_summary(matches),
        "identities": None if identities is None else asdict(identities), "floor": result.floor,
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
