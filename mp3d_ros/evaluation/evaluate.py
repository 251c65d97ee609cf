"""Evaluation of a model over a benchmark (``mp3d-eval``'s library): run the estimator over a benchmark (or load saved predictions) and print its metrics.

    mp3d-eval --model M --dataset mupots --data DIR [--out PRED.json] [--device cuda] [--batch 8]
    mp3d-eval --dataset mupots --data DIR --predictions PRED.json [--baseline kvalue]

Datasets and where ``--data`` points (a directory, or the annotation file itself):

- ``mupots``: ``MuPoTS-3D.json`` (3DMPPE layout), images under ``MultiPersonTestSet/`` beside it;
- ``synthetic``: our generated scenes (``mp3d-synth --out DIR``'s ``annotations.json``, or a
  ``MuCo-3DHP.json``), MuCo-3DHP layout (joint set ``muco_21``), images beside it; each
  ``sequence`` value is one sequence of the per-sequence table;
- ``panoptic``: one SMAP-layout JSON file (the only ``*.json`` in the directory), images beside it;
- ``h36m``: ``annotations/Human36M_subject<S>_data.json`` (+ ``_camera.json``, ``_joint_3d.json``)
  for the protocol-2 test subjects 9 and 11, every 64th frame, images under ``images/``.

Predictions are written (``--out``) exactly as the estimator returned them; ``--baseline kvalue``
is applied when scoring, so one predictions file serves both depth estimators.
"""

from __future__ import annotations

import logging
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from mp3d_ros.data.mppe import AnnotatedImage, h36m_action_name, read_3dmppe_json
from mp3d_ros.data.panoptic import panoptic_activity, read_panoptic_smap_json
from mp3d_ros.evaluation.depth_bias import DepthMatches, torso_in_image
from mp3d_ros.evaluation.identity_check import check_identities, format_identity_check
from mp3d_ros.evaluation.metrics import (
    H36M_CONVENTIONS,
    JOINT_GROUPS,
    MUPOTS_CONVENTIONS,
    PANOPTIC_CONVENTIONS,
    FrameGroundTruth,
    FramePrediction,
    evaluate_h36m,
    evaluate_mupots,
    evaluate_panoptic,
)
from mp3d_ros.evaluation.predictions import ImagePredictions
from mp3d_ros.geometry.camera import Intrinsics, back_project
from mp3d_ros.geometry.people import People
from mp3d_ros.geometry.skeleton import MUPOTS_17, convert_joints, get_joint_set, index_map
from mp3d_ros.messages.decode_ahead import decoded_ahead
from mp3d_ros.synthetic.scenes import ANNOTATION_FILE

__all__ = [
    "load_dataset", "pair_predictions", "check_prediction_skeleton", "report", "json_safe", "run_estimator", "ground_truth_frames", "prediction_frames", "kvalue_baseline",
    "rootnet_box_area_px2", "format_table", "mupots_summary_table", "mupots_sequence_table",
    "mupots_joint_group_table", "panoptic_table", "h36m_table",
]

DATASETS = ("mupots", "panoptic", "h36m", "synthetic")
H36M_TEST_SUBJECTS = (9, 11)  # protocol 2
H36M_TEST_EVERY = 64  # RootNet / PoseNet test on every 64th frame
_MM_PER_M = 1000.0
LOGGER = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- datasets


def _annotation_file(data: Path, names: Sequence[str], what: str) -> Path:
    if data.is_file():
        return data
    for name in names:
        if (data / name).is_file():
            return data / name
    raise ValueError(f"{what} annotation file not found: looked for {', '.join(names)} in {data}")


def load_dataset(name: str, data: str | Path) -> tuple[list[AnnotatedImage], Path]:
    """Annotated images of a benchmark and the folder their ``file_name`` is relative to.

    Raises:
        ValueError: when the data is missing or malformed, or two images share an id (the id is
            what ties predictions to images).
    """
    images, root = _load_images(name, Path(data))
    seen: set[int] = set()
    for image in images:
        if image.image_id in seen:
            raise ValueError(f"--data {data}: image id {image.image_id} appears twice")
        seen.add(image.image_id)
    return images, root


def _load_images(name: str, data: Path) -> tuple[list[AnnotatedImage], Path]:
    if not data.exists():
        raise ValueError(f"--data {data} does not exist")
    if name == "mupots":
        path = _annotation_file(data, ["MuPoTS-3D.json"], "MuPoTS-3D")
        root = path.parent / "MultiPersonTestSet"
        return read_3dmppe_json(path, "mupots_17"), root if root.is_dir() else path.parent
    if name == "synthetic":
        path = _annotation_file(data, [ANNOTATION_FILE, "MuCo-3DHP.json"],
                                "synthetic (MuCo-3DHP layout)")
        return read_3dmppe_json(path, "muco_21"), path.parent
    if name == "panoptic":
        candidates = [data] if data.is_file() else sorted(data.glob("*.json"))
        if len(candidates) != 1:
            raise ValueError(f"--data {data}: expected one SMAP-layout *.json, found {len(candidates)}")
        return read_panoptic_smap_json(candidates[0]), candidates[0].parent
    if name == "h36m":
        return _load_h36m(data)
    raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")


def _load_h36m(data: Path) -> tuple[list[AnnotatedImage], Path]:
    if data.is_file():
        files, root = [data], data.parent
    else:
        files = [data / "annotations" / f"Human36M_subject{s}_data.json" for s in H36M_TEST_SUBJECTS]
        root = data / "images"
    images = []
    for path in files:
        images += [im for im in read_3dmppe_json(path, "h36m_17")
                   if im.frame_index % H36M_TEST_EVERY == 0]
    return images, root


# ----------------------------------------------------------------------------- frames for metrics


def ground_truth_frames(images: Sequence[AnnotatedImage]) -> list[FrameGroundTruth]:
    """Annotated images as MuPoTS-17 ground truth in millimetres (missing joints unlabelled)."""
    frames = []
    for image in images:
        source = get_joint_set(image.joint_set)
        xyz, mapped = convert_joints(image.keypoints_cam_m * _MM_PER_M, source, MUPOTS_17)
        uv, _ = convert_joints(image.keypoints_img_px, source, MUPOTS_17)
        flags = np.stack([image.labelled, image.keypoints_vis], axis=-1).astype(float)
        flags, _ = convert_joints(flags, source, MUPOTS_17)
        flags = np.nan_to_num(flags) > 0
        labelled = mapped & flags[..., 0] & np.isfinite(xyz).all(-1) & np.isfinite(uv).all(-1)
        frames.append(FrameGroundTruth(image.sequence, uv, xyz, labelled, flags[..., 1],
                                       image.valid))
    return frames


def prediction_frames(people: Sequence[People]) -> list[FramePrediction]:
    """Estimator outputs as MuPoTS-17 metric inputs in millimetres (missing joints NaN)."""
    frames = []
    for found in people:
        source = found.joint_set
        uv, _ = convert_joints(found.uv_px, source, MUPOTS_17)
        xyz, _ = convert_joints(found.keypoints_m * _MM_PER_M, source, MUPOTS_17)
        frames.append(FramePrediction(uv, xyz, found.score))
    return frames


def check_prediction_skeleton(saved: Sequence[ImagePredictions], source: str) -> None:
    """Refuse predictions whose skeleton cannot be scored: without the root (pelvis) joint every
    person's absolute pose is NaN and every 3D metric would silently read 0. A skeleton that lacks
    some of the evaluated joints is scored (those joints count as missed) with a warning.

    Raises:
        ValueError: naming ``source``, the field ``skeleton`` and the skeleton.
    """
    root_name = MUPOTS_17.joints[MUPOTS_17.root]
    for name in sorted({image.people.skeleton for image in saved}):
        mapping = index_map(get_joint_set(name), MUPOTS_17)
        if mapping[MUPOTS_17.root] < 0:
            raise ValueError(f"{source}: field 'skeleton' is {name!r}, which has no {root_name!r} "
                             "(root) joint: every person would score 0 on the 3D metrics; save the "
                             "predictions in a 3D skeleton such as 'mupots_17'")
        missing = [MUPOTS_17.joints[j] for j in np.flatnonzero(mapping < 0)]
        if missing:
            LOGGER.warning("%s: skeleton %r lacks the evaluated joints %s; they count as missed",
                           source, name, missing)


def pair_predictions(images: Sequence[AnnotatedImage], saved: Sequence[ImagePredictions]) -> list[People]:
    """The saved people of every annotated image, in the images' order."""
    by_id = {p.image_id: p.people for p in saved}
    missing = [im.image_id for im in images if im.image_id not in by_id]
    if missing:
        raise ValueError(f"predictions lack {len(missing)} of the dataset's {len(images)} images "
                         f"(image ids {missing[:5]}{' ...' if len(missing) > 5 else ''})")
    known = {im.image_id for im in images}
    extra = [i for i in by_id if i not in known]
    if extra:
        raise ValueError(f"predictions name {len(extra)} image ids the dataset does not have "
                         f"({extra[:5]}{' ...' if len(extra) > 5 else ''}); wrong --dataset/--data?")
    return [by_id[im.image_id] for im in images]


# ----------------------------------------------------------------------------- k-value baseline


def rootnet_box_area_px2(uv_px: np.ndarray, width: int, height: int) -> float:
    """Area of RootNet's box around (J, 2) joints: ``process_bbox`` on the joints' tight box.

    The box is clipped to the image, made square (RootNet's 256x256 input) and enlarged 1.25x,
    as RootNet does to its detector boxes before computing k. NaN when fewer than two joints are
    present or the clipped box is empty. Missing joints are non-finite or exactly (0, 0).
    """
    uv = np.asarray(uv_px, dtype=np.float64)
    present = np.isfinite(uv).all(-1) & ~(np.nan_to_num(uv) == 0).all(-1)
    if present.sum() < 2:
        return float("nan")
    low, high = uv[present].min(axis=0), uv[present].max(axis=0)
    w, h = high - low
    x1, y1 = max(0.0, low[0]), max(0.0, low[1])
    x2 = min(width - 1.0, x1 + max(0.0, w - 1))
    y2 = min(height - 1.0, y1 + max(0.0, h - 1))
    if w * h <= 0 or x2 < x1 or y2 < y1:
        return float("nan")
    side = 1.25 * max(x2 - x1, y2 - y1)
    return side * side


def kvalue_baseline(people: People, intrinsics: Intrinsics) -> People:
    """Each person's root depth replaced by RootNet's k-value (same 2D pose, same relative depths).

    ``Z_root = k = sqrt(fx fy A_real / A_box)`` (:func:`mp3d_ros.geometry.depth.k_value_depth`,
    ``A_real`` = 2 m x 2 m) with ``A_box`` from :func:`rootnet_box_area_px2`; every joint keeps its
    predicted depth relative to the pelvis and is back-projected through its predicted pixel with
    the frame's intrinsics. ``root_sigma_m`` becomes NaN (the k-value has no uncertainty).
    """
    import torch

    from mp3d_ros.geometry.depth import k_value_depth

    root = people.joint_set.root
    keypoints = np.full_like(people.keypoints_m, np.nan)
    for p in range(len(people)):
        area = rootnet_box_area_px2(people.uv_px[p], intrinsics.width, intrinsics.height)
        if not np.isfinite(area):
            continue
        area_px2 = torch.tensor(area, dtype=torch.float64)
        depth_m = float(k_value_depth(intrinsics.fx, intrinsics.fy, area_px2))
        relative_m = people.keypoints_m[p, :, 2] - people.keypoints_m[p, root, 2]
        keypoints[p] = back_project(people.uv_px[p], depth_m + relative_m, intrinsics)
    return replace(people, keypoints_m=keypoints, root_sigma_m=np.full(len(people), np.nan))


# ----------------------------------------------------------------------------- running the estimator


def _read_rgb(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"image not found or unreadable: {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def run_estimator(model: str, images: Sequence[AnnotatedImage], image_root: Path, device: str | None,
                  batch: int, use_floor: bool = False, decode_ahead: bool | None = None,
                  input_size: tuple[int, int] | None = None) -> list[ImagePredictions]:
    """Predictions of ``Estimator(model, input_size=input_size)`` for every image, ``batch`` images
    per call (``input_size`` None: the model's own for the device).

    With ``use_floor`` each image's floor plane from its annotation (``mp3d-synth`` writes the
    camera's pose over the floor) is given to the estimator; images without one get none. With
    ``decode_ahead`` (default: on a GPU) the next batch's files are read and decoded in a second
    thread while the estimator runs (:mod:`mp3d_ros.messages.decode_ahead`); the results are the same.
    """
    import torch
    from tqdm import tqdm

    from mp3d_ros.inference.estimator import Estimator

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    estimator = Estimator(model, device=device, input_size=input_size)
    ahead = device.startswith("cuda") if decode_ahead is None else decode_ahead
    chunks = [images[start:start + batch] for start in range(0, len(images), batch)]

    def read(chunk: Sequence[AnnotatedImage]) -> list[np.ndarray]:
        return [_read_rgb(image_root / im.file_name) for im in chunk]

    out: list[ImagePredictions] = []
    with tqdm(total=len(images), desc="mp3d-eval", unit="img") as progress:
        for chunk, decoded in decoded_ahead(chunks, read, ahead):
            rgb = decoded.get()
            intrinsics = [im.intrinsics for im in chunk]
            floors = [im.floor for im in chunk] if use_floor else None
            found = estimator.estimate_batch(rgb, intrinsics, floors)
            out += [ImagePredictions(im.image_id, im.sequence, p, im.file_name)
                    for im, p in zip(chunk, found)]
            progress.update(len(chunk))
    return out


# ----------------------------------------------------------------------------- text tables


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]], digits: int = 1) -> str:
    """Right-aligned text table; floats with ``digits`` decimals, NaN as ``-``."""

    def cell(value: object) -> str:
        if isinstance(value, (float, np.floating)):
            return "-" if not np.isfinite(value) else f"{value:.{digits}f}"
        return str(value)

    cells = [list(header)] + [[cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [" ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in cells]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


_MODES = (("all", "All people"), ("matched", "Matched people"))


def format_depth_bias(rows: Sequence[dict]) -> str:
    """The rows of :func:`depth_bias_table` as a text table."""
    return format_table(
        ["distance (m)", "matched", "missed", "median Z/Z_true", "within 1 sigma", "within 2 sigma"],
        [[r["band_m"], r["matched"], r["missed"], r["median_ratio"], r["within_1_sigma"], r["within_2_sigma"]]
         for r in rows], digits=3)


def mupots_summary_table(result: dict) -> str:
    """The papers' MuPoTS-3D table: both modes, then AP_root^25 and MRPE."""
    keys = ("pck_rel", "pck_abs", "pck_root", "auc_rel", "pcod")
    rows = [[label] + [result[mode][k] for k in keys] for mode, label in _MODES if result[mode]]
    mrpe = result["mrpe_mm"]
    return (format_table(["MuPoTS-3D", "PCK_rel", "PCK_abs", "PCK_root", "AUC_rel", "PCOD"], rows)
            + f"\nAP_root^25 {result['ap_root_25']:.1f}   MRPE {mrpe['total']:.1f} mm "
              f"(x {mrpe['x']:.1f}, y {mrpe['y']:.1f}, z {mrpe['z']:.1f}) over matched people")


def mupots_sequence_table(result: dict, mode: str = "all") -> str:
    """Per-sequence PCK_rel / PCK_abs / PCK_root / AUC_rel / PCOD of one mode, plus their mean."""
    keys = ("pck_rel", "pck_abs", "pck_root", "auc_rel", "pcod")
    table = result["per_sequence"][mode]
    rows = [[name] + [row[k] for k in keys] + [int(row["people"])] for name, row in table.items()]
    rows.append(["mean"] + [result[mode].get(k, float("nan")) for k in keys] + [""])
    return format_table([f"{dict(_MODES)[mode]}", "PCK_rel", "PCK_abs", "PCK_root", "AUC_rel",
                         "PCOD", "people"], rows)


def mupots_joint_group_table(result: dict) -> str:
    """PCK per joint group (means over sequences), relative and absolute, both modes."""
    rows = [[f"{label} {kind}"] + [result[mode].get(f"{kind}_{g}", float("nan")) for g in JOINT_GROUPS]
            for mode, label in _MODES for kind in ("rel", "abs")]
    return format_table(["PCK by joint group"] + list(JOINT_GROUPS), rows)


def panoptic_table(result: dict) -> str:
    """MPJPE / RtError / recall per activity and their mean."""
    rows = [[name, row["mpjpe_mm"], row["rt_error_mm"], row["recall"], int(row["people"])]
            for name, row in result["per_group"].items()]
    mean = result["mean"]
    rows.append(["mean", mean["mpjpe_mm"], mean["rt_error_mm"], mean["recall"], ""])
    return format_table(["CMU Panoptic", "MPJPE mm", "RtError mm", "recall %", "people"], rows)


def h36m_table(result: dict) -> str:
    """MRPE (x, y, z) and MPJPE per action and in total."""
    keys = ("mrpe_mm", "mrpe_x_mm", "mrpe_y_mm", "mrpe_z_mm", "mpjpe_mm")
    rows = [[name] + [row[k] for k in keys] + [f"{int(row['matched'])}/{int(row['people'])}"]
            for name, row in list(result["per_group"].items()) + [("total", result["total"])]]
    return format_table(["Human3.6M", "MRPE", "MRPE_x", "MRPE_y", "MRPE_z", "MPJPE", "matched"], rows)


def image_depth_matches(images: Sequence[AnnotatedImage], people: Sequence[People]) -> DepthMatches:
    """Predictions paired with images matched to the evaluated, valid people with a labelled 3D
    root (with whether each one's torso is in the image)."""
    matches = DepthMatches()
    for image, found in zip(images, people):
        if not image.has_3d:
            continue
        joint_set = get_joint_set(image.joint_set)
        keep = image.valid & image.labelled[:, joint_set.root]
        torso = torso_in_image(image.keypoints_img_px[keep], joint_set.joints, (image.width, image.height))
        matches.add_roots(found, image.keypoints_img_px[keep, joint_set.root],
                          image.keypoints_cam_m[keep, joint_set.root, 2], torso_seen=torso)
    return matches


def format_found(summary: dict | None) -> str:
    """One line on who was found of :func:`~mp3d_ros.evaluation.depth_bias.found_summary`."""
    if summary is None:
        return "people found: unknown (no image size or torso joints in the ground truth)"
    limit = f"{summary['max_depth_m']:g} m"
    return (f"people within {limit} whose torso is in the image: {summary['found']} of "
            f"{summary['people']} found ({100 * summary['share']:.1f} %); within {limit} with the torso "
            f"cut off: {summary['torso_cut_off_found']} of {summary['torso_cut_off']} found")


def report(dataset: str, frames: tuple[list, list]) -> tuple[str, dict]:
    predictions, truth = frames
    if dataset in ("mupots", "synthetic"):
        result = evaluate_mupots(predictions, truth)
        result["identity_check"] = check_identities(predictions, truth)
        text = "\n\n".join([_wrap(MUPOTS_CONVENTIONS), mupots_summary_table(result),
                             mupots_sequence_table(result, "all"),
                             mupots_sequence_table(result, "matched"),
                             mupots_joint_group_table(result),
                             format_identity_check(result["identity_check"])])
    elif dataset == "panoptic":
        result = evaluate_panoptic(predictions, truth, group_of=panoptic_activity)
        text = _wrap(PANOPTIC_CONVENTIONS) + "\n\n" + panoptic_table(result)
    else:
        result = evaluate_h36m(predictions, truth, group_of=h36m_action_name)
        text = _wrap(H36M_CONVENTIONS) + "\n\n" + h36m_table(result)
    return text, result


def _wrap(text: str) -> str:
    return textwrap.fill(text, width=100)


def json_safe(value: object) -> object:
    """Plain JSON data of nested metrics: NaN and infinities become ``null``, numpy scalars Python."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value
