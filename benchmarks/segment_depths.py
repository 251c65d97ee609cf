"""Which body segments put people too near or too far: the root depth each segment gives alone.

    python benchmarks/segment_depths.py [--mocap ../shared/mocap] [--images 40]
        [--fixtures ../shared/fixtures/coco] [--lifter models/lifter.safetensors]
        [--coco-input-sizes 192x160,288x224,512x384]

The body-size cue of ``movenet-lift`` fits the lifted segment lengths to the rays of the 2D
keypoints. When the lifted body and what the 2D model marks disagree on a segment (a narrower
shoulder span, a longer shin), that segment's own depth (MAR Eq. 7-8 on it alone,
:func:`~mp3d_ros.geometry.absolute_depth.segment_root_depths`) lies off the others'. Printed per
segment, the median ratio of its depth to a reference:

- rendered scenes (``mp3d-synth``'s bodies, everybody 1.70 m tall so that the size prior is exact):
  the true root depth, with the 2D keypoints from the renderer's joints and from MoveNet;
- the COCO fixtures (real photographs, no 3D, placeholder camera ``fx = fy = width``): the median
  depth of the same person's forearms and shins, whose ends (elbow, wrist, knee, ankle) annotators
  and joint centres agree on best, with the 2D from the annotations and from MoveNet.

A second table gives the 2D side alone: the median image length of the limb and width segments
as MoveNet marks them over their length in the truth (the renderer's joints by true distance;
the COCO annotations at each of ``--coco-input-sizes``). Segments shorter in the image than the
body they belong to put that body far.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from mp3d_ros.config import load_config
from mp3d_ros.data.coco import read_coco_keypoints
from mp3d_ros.evaluation.depth_bias import match_roots
from mp3d_ros.evaluation.evaluate import format_table
from mp3d_ros.geometry.absolute_depth import (
    SEGMENTS,
    estimate_root_depth,
    segment_root_depths,
)
from mp3d_ros.geometry.camera import Intrinsics, letterbox_transform, pixel_rays
from mp3d_ros.geometry.camera_torch import CameraBatch
from mp3d_ros.geometry.skeleton import COCO_17, MUCO_21, MUPOTS_17, convert_joints
from mp3d_ros.inference.movenet_lift import RAW_PIXELS, MoveNetLift
from mp3d_ros.inference.pipelines import LIFTER_WEIGHTS, MOVENET_WEIGHTS
from mp3d_ros.inference.preprocess import letterbox_batch
from mp3d_ros.model.lifter import lift
from mp3d_ros.resources import find_share_path
from mp3d_ros.synthetic.bvh import load_mocap_poses
from mp3d_ros.synthetic.scenes import SynthRecipe, SyntheticFrame, generate_image
from mp3d_ros.training.data import read_rgb

NAMES = [f"{a.replace('left_', 'l_').replace('right_', 'r_')}-{b.split('_')[-1]}" for a, b in SEGMENTS] + [
    "torso", "bones fit (all segments)", "fused with the torso (Eq. 12)"]
COCO_SEGMENTS = [(COCO_17.index(a), COCO_17.index(b)) for a, b in SEGMENTS]
BANDS_M = ((2.0, 4.0), (4.0, 6.0), (6.0, 8.0), (8.0, 10.0))
REFERENCE = [SEGMENTS.index(s) for s in (("left_elbow", "left_wrist"), ("right_elbow", "right_wrist"),
                                          ("left_knee", "left_ankle"), ("right_knee", "right_ankle"))]


def lifted_depths(model: MoveNetLift, uv_coco_px: np.ndarray, seen_coco: np.ndarray,
                  intrinsics: Intrinsics) -> np.ndarray:
    """(P, S + 3) root depths of people given as COCO-17 pixels and seen flags: each segment's, the
    torso's, the least-squares fit over all segments and its fusion with the torso (the pipeline's
    body-size depth)."""
    uv = np.where(seen_coco[..., None], uv_coco_px, 0.0)
    rays_coco = torch.from_numpy(pixel_rays(uv, intrinsics))
    with torch.no_grad():
        pose = lift(model.lifter, rays_coco.float(), torch.from_numpy(seen_coco.astype(np.float32)))
    rays, _ = convert_joints(rays_coco.numpy(), COCO_17, MUPOTS_17)
    seen, _ = convert_joints(seen_coco[..., None].astype(float), COCO_17, MUPOTS_17)
    rays, seen = torch.from_numpy(np.nan_to_num(rays)), torch.from_numpy(np.nan_to_num(seen[..., 0]) > 0)
    canonical = model.lifter.cfg.canonical_height_m
    segments = segment_root_depths(rays, seen, pose.double(), MUPOTS_17, canonical)
    depth = estimate_root_depth(rays, seen, pose.double(), MUPOTS_17, intrinsics.fx, canonical,
                                model.cfg.prior)
    nan = torch.full_like(depth.depth_m, np.nan)
    fits = [torch.where(depth.bones_valid, depth.bones_depth_m, nan), torch.where(depth.valid, depth.depth_m, nan)]
    return torch.cat([segments, torch.stack(fits, dim=-1)], dim=-1).numpy()


def movenet_people(model: MoveNetLift, image: np.ndarray, intrinsics: Intrinsics
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(P, 17, 2) COCO pixels and (P, 17) seen flags of the people MoveNet keeps in ``image``."""
    batch, transforms = letterbox_batch([image], model.cfg.input_size, RAW_PIXELS, model.device)
    cameras = CameraBatch.build(transforms, [intrinsics], model.device)
    with torch.no_grad():
        detections = model.decode(model(batch))
        uv, seen, *_ = model.lift_people(detections, cameras)
    keep = (detections.scores[0] >= model.cfg.min_person_score).numpy()
    return uv[0].numpy()[keep], seen[0].numpy()[keep]


class RenderedPeople(NamedTuple):
    """One render of 1.70 m people: the frame, its people's true COCO-17 pixels and visibility,
    and what MoveNet found in it."""

    frame: SyntheticFrame
    uv_true: np.ndarray
    seen_true: np.ndarray
    uv: np.ndarray
    seen: np.ndarray


def render_detections(model: MoveNetLift, images: int, seed: int,
                      mocap_dir: str | None) -> list[RenderedPeople]:
    """``images`` renders of ``depth_scenes.yaml`` with everybody 1.70 m tall (so that the size
    prior is exact), each run through MoveNet once."""
    config = replace(load_config(SynthRecipe, find_share_path("config/synth/depth_scenes.yaml")).scene,
                     height_range_m=(1.70, 1.70))
    mocap = load_mocap_poses(mocap_dir, MUCO_21, fps=config.fps) if mocap_dir else None
    rendered = []
    for index in range(images):
        frame = generate_image(config, seed, index, mocap)
        uv_true, _ = convert_joints(frame.keypoints_img_px, MUCO_21, COCO_17)
        visible, _ = convert_joints(frame.visible[..., None].astype(float), MUCO_21, COCO_17)
        uv, seen = movenet_people(model, frame.image, frame.intrinsics)
        rendered.append(RenderedPeople(frame, uv_true, np.nan_to_num(visible[..., 0]) > 0, uv, seen))
    return rendered


def render_ratios(model: MoveNetLift, rendered: list[RenderedPeople]) -> dict[str, list[np.ndarray]]:
    """Per-segment depth / true depth on the renders, 2D from the joints and MoveNet."""
    out: dict[str, list[np.ndarray]] = {"renders, 2D = joints": [], "renders, 2D = MoveNet": []}
    hips = [COCO_17.index("left_hip"), COCO_17.index("right_hip")]
    for frame, uv_true, seen_true, uv, seen in rendered:
        depth_true = frame.keypoints_cam_m[:, MUCO_21.root, 2]
        out["renders, 2D = joints"].append(
            lifted_depths(model, np.nan_to_num(uv_true), seen_true, frame.intrinsics) / depth_true[:, None])
        pairs = match_roots(uv[:, hips].mean(1), frame.keypoints_img_px[:, MUCO_21.root])
        if pairs:
            truth, found = (list(t) for t in zip(*pairs))
            depths = lifted_depths(model, uv[found], seen[found], frame.intrinsics)
            out["renders, 2D = MoveNet"].append(depths / depth_true[truth, None])
    return out


def image_lengths_px(uv_coco_px: np.ndarray, seen_coco: np.ndarray) -> np.ndarray:
    """(P, S) image length of each of :data:`SEGMENTS` in COCO-17 pixels, NaN unless both ends
    are seen."""
    i, j = (list(ends) for ends in zip(*COCO_SEGMENTS))
    lengths = np.linalg.norm(uv_coco_px[:, i] - uv_coco_px[:, j], axis=-1)
    return np.where(seen_coco[:, i] & seen_coco[:, j], lengths, np.nan)


def matched_lengths(uv: np.ndarray, seen: np.ndarray, uv_true: np.ndarray,
                    seen_true: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Detected and true image lengths (each (P_matched, S), px) of the detected people matched to
    true ones by their hip midpoints, and the matched true people's indices."""
    hips = [COCO_17.index("left_hip"), COCO_17.index("right_hip")]
    pairs = match_roots(uv[:, hips].mean(1), np.nanmean(uv_true[:, hips], axis=1))
    if not pairs:
        empty = np.zeros((0, len(SEGMENTS)))
        return empty, empty, []
    truth, found = (list(t) for t in zip(*pairs))
    detected_px = image_lengths_px(uv[found], seen[found])
    return detected_px, image_lengths_px(uv_true[truth], seen_true[truth]), truth


def length_row(name: str, detected_px: np.ndarray, true_px: np.ndarray) -> list[object]:
    """Median detected / true length, median shortening (the units of the lengths), segment count."""
    both = np.isfinite(detected_px) & np.isfinite(true_px) & (true_px > 0)
    detected, true = detected_px[both], true_px[both]
    if not detected.size:
        return [name, float("nan"), float("nan"), 0]
    return [name, float(np.median(detected / true)), float(np.median(true - detected)), int(detected.size)]


def input_scale(model: MoveNetLift, width: int, height: int) -> float:
    """Network-input pixels per image pixel of the letterbox."""
    return float(letterbox_transform((width, height), model.cfg.input_size).A[0, 0])


def render_length_rows(model: MoveNetLift, rendered: list[RenderedPeople]) -> list[list[object]]:
    """Per distance band: MoveNet's median image length / the rendered joints', over all segments,
    in network-input pixels."""
    detected, true, depths = [], [], []
    for frame, uv_true, seen_true, uv, seen in rendered:
        lengths = matched_lengths(uv, seen, uv_true, seen_true)
        scale = input_scale(model, frame.intrinsics.width, frame.intrinsics.height)
        detected.append(lengths[0] * scale)
        true.append(lengths[1] * scale)
        depths.append(frame.keypoints_cam_m[lengths[2], MUCO_21.root, 2])
    detected_px, true_px, depth = np.concatenate(detected), np.concatenate(true), np.concatenate(depths)
    return [length_row(f"renders, {near:g}-{far:g} m", detected_px[band], true_px[band])
            for near, far in BANDS_M for band in [(depth >= near) & (depth < far)]]


def coco_length_rows(model: MoveNetLift, fixtures: Path,
                     input_sizes: list[tuple[int, int]]) -> list[list[object]]:
    """Per MoveNet input size: its median image length / the COCO annotations', over all segments,
    in network-input pixels."""
    annotated_images = read_coco_keypoints(fixtures / "test_coco.json")
    rows = []
    for size in input_sizes:
        sized = MoveNetLift(model.movenet, model.lifter, replace(model.cfg, input_size=size)).eval()
        detected, true = [], []
        for annotated in annotated_images:
            image = read_rgb(fixtures / annotated.file_name)
            height, width = image.shape[:2]
            camera = Intrinsics.pinhole(float(width), float(width), width / 2.0, height / 2.0, width, height)
            uv, seen = movenet_people(sized, image, camera)
            if len(uv):
                lengths = matched_lengths(uv, seen, annotated.keypoints_img_px, annotated.labelled)
                scale = input_scale(sized, width, height)  # per image: the fixtures differ in size
                detected.append(lengths[0] * scale)
                true.append(lengths[1] * scale)
        empty = np.zeros((0, len(SEGMENTS)))
        rows.append(length_row(f"COCO fixtures, input {size[0]}x{size[1]}",
                               np.concatenate(detected) if detected else empty,
                               np.concatenate(true) if true else empty))
    return rows


def coco_ratios(model: MoveNetLift, fixtures: Path) -> dict[str, list[np.ndarray]]:
    """Per-segment depth / the person's forearm-and-shin depth on the COCO fixtures."""
    out: dict[str, list[np.ndarray]] = {"COCO, 2D = annotations": [], "COCO, 2D = MoveNet": []}
    for annotated in read_coco_keypoints(fixtures / "test_coco.json"):
        image = read_rgb(fixtures / annotated.file_name)
        height, width = image.shape[:2]
        camera = Intrinsics.pinhole(float(width), float(width), width / 2.0, height / 2.0, width, height)
        for name, (uv, seen) in (
                ("COCO, 2D = annotations", (np.nan_to_num(annotated.keypoints_img_px), annotated.labelled)),
                ("COCO, 2D = MoveNet", movenet_people(model, image, camera))):
            if len(uv):
                depths = lifted_depths(model, uv, seen, camera)
                out[name].append(depths / np.nanmedian(depths[:, REFERENCE], axis=1, keepdims=True))
    return out


def ratio_table(ratios: dict[str, list[np.ndarray]]) -> str:
    """Rows: segments; columns: each source's median ratio and people count."""
    header, columns = ["segment"], []
    for name, parts in ratios.items():
        values = np.concatenate(parts) if parts else np.full((0, len(NAMES)), np.nan)
        header += [name, "n"]
        columns.append(values)
    rows = []
    for s, segment in enumerate(NAMES):
        row: list[object] = [segment]
        for values in columns:
            finite = values[:, s][np.isfinite(values[:, s])]
            row += [float(np.median(finite)) if finite.size else float("nan"), int(finite.size)]
        rows.append(row)
    return format_table(header, rows, digits=3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mocap", default=None, help="CMU mocap folder for the rendered poses")
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--fixtures", type=Path, default=Path("../shared/fixtures/coco"))
    parser.add_argument("--lifter", type=Path, default=None, help="lifter weights (default: shipped)")
    parser.add_argument("--coco-input-sizes", default="192x160,288x224,512x384",
                        help="MoveNet input sizes (width x height) for the COCO image-length table")
    args = parser.parse_args()
    model = MoveNetLift.from_files(find_share_path(MOVENET_WEIGHTS),
                                   args.lifter or find_share_path(LIFTER_WEIGHTS))
    rendered = render_detections(model, args.images, args.seed, args.mocap)
    ratios = render_ratios(model, rendered)
    lengths = render_length_rows(model, rendered)
    if (args.fixtures / "test_coco.json").exists():
        ratios.update(coco_ratios(model, args.fixtures))
        sizes = [tuple(int(v) for v in size.split("x")) for size in args.coco_input_sizes.split(",")]
        lengths += coco_length_rows(model, args.fixtures, sizes)  # type: ignore[arg-type]
    else:
        print(f"no COCO fixtures at {args.fixtures}: renders only")
    print(ratio_table(ratios))
    print(f"\nimage length of the limb and width segments, MoveNet / truth (input {model.cfg.input_size[0]}x"
          f"{model.cfg.input_size[1]} on renders), median over segments")
    print(format_table(["2D against", "detected / true", "shortening (input px)", "segments"], lengths,
                       digits=3))


if __name__ == "__main__":
    main()
