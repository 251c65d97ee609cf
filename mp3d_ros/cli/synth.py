"""``mp3d-synth``: write a synthetic multi-person dataset in the MuCo-3DHP (3DMPPE) layout.

Example (20 images of 832x512, two workers, with a contact sheet to look at)::

    mp3d-synth --out /tmp/synth --images 20 --seed 0 --size 832x512 --workers 2 \\
        --contact-sheet /tmp/synth/sheet.png

A recipe file (``--recipe config/synth/train.yaml``) fixes the image count, the seed and every
scene setting, so the benchmark's train / validation / test splits are reproducible by name.

On a GPU (``--device cuda``), ``--workers`` processes sample the scenes and their ground truth,
the GPU renders them ``--batch`` at a time (64 by default) and as many threads write the JPEGs::

    mp3d-synth --out /tmp/synth --images 20000 --seed 0 --size 832x512 --device cuda --workers 12

The annotations are the CPU path's, byte for byte; the images may differ from the CPU's by a
level in a few pixels (float arithmetic), never with ``--batch`` or ``--workers``.

Output: ``OUT/images/000000.jpg``... and ``OUT/annotations.json`` (see
:func:`mp3d_ros.synthetic.scenes.write_dataset`). The contact sheet draws each image with its
projected skeletons: visible joints as filled dots joined by solid bones, hidden or outside ones
(inferred) as hollow rings joined by thin lines, one colour per person, and the person's box.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from mp3d_ros.cli.errors import BAD_INPUT, report_bad_input
from mp3d_ros.config import load_config, size_wxh
from mp3d_ros.geometry.skeleton import MUCO_21
from mp3d_ros.messages.synthetic_bag import write_synthetic_bag
from mp3d_ros.synthetic.scenes import SceneConfig, SynthRecipe, write_dataset

__all__ = ["main", "parse_args", "contact_sheet"]


_COLORS_BGR = [(60, 220, 60), (60, 160, 255), (255, 120, 60), (220, 60, 220), (60, 230, 230),
               (230, 230, 60), (140, 90, 255), (255, 255, 255)]


def _pair(text: str, kind: type, name: str) -> tuple:
    parts = text.split(",")
    try:
        values = tuple(kind(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"{name} must be two numbers as A,B, got {text!r}")
    return values


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="mp3d-synth",
        description="Render synthetic multi-person scenes with exact 3D ground truth "
                    "(MuCo-3DHP / 3DMPPE JSON layout).",
    )
    parser.add_argument("--out", type=Path, help="output folder of the dataset")
    parser.add_argument("--images", type=int, help="number of images of the dataset")
    parser.add_argument("--seed", type=int, default=None,
                        help="random seed (same seed, same bytes); default 0, or the recipe's")
    parser.add_argument("--recipe", type=Path, default=None,
                        help="YAML recipe (images, seed, scene settings), e.g. config/synth/train.yaml; "
                             "--images and --seed override it, scene options cannot be combined with it")
    parser.add_argument("--size", type=size_wxh, default=None,
                        help="WxH of every image; default: drawn from landscape and portrait sizes")
    parser.add_argument("--focal-range", type=lambda t: _pair(t, float, "--focal-range"),
                        default=None,
                        help="F0,F1 focal length range in pixels; default: 45-100 deg horizontal "
                             "field of view")
    parser.add_argument("--people", type=lambda t: _pair(t, int, "--people"), default=None,
                        help="P0,P1 people per scene (default 2,8)")
    parser.add_argument("--distortion", choices=["none", "plumb_bob", "equidistant"],
                        default=None,
                        help="lens distortion rendered into the images and recorded")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes (with --batch: scene-sampling processes and as "
                             "many JPEG-writing threads)")
    parser.add_argument("--device", default="cpu",
                        help="render device: cpu (default) or cuda[:N]")
    parser.add_argument("--batch", type=int, default=None,
                        help="images rendered together on --device by this process; default 64 "
                             "on a GPU, and on the CPU 0: each worker renders its own images one "
                             "at a time (the fastest on a CPU)")
    parser.add_argument("--mocap", type=Path, default=None,
                        help="folder of CMU BVH takes (../shared/mocap) for the poses")
    parser.add_argument("--sequence-frames", type=int, default=0,
                        help="frames per sequence (people move, ids persist); 0: independent "
                             "images")
    parser.add_argument("--fps", type=float, default=None, help="frame rate of sequences (default 30)")
    parser.add_argument("--contact-sheet", type=Path, default=None,
                        help="write a PNG of the first images with their skeletons")
    parser.add_argument("--sheet-images", type=int, default=12, help="images on the contact sheet")
    bag = parser.add_argument_group("sequence bag (instead of a dataset)")
    bag.add_argument("--bag", type=Path, default=None,
                     help="write one sequence as a rosbag2 bag (Image or CompressedImage, "
                          "CameraInfo, ground-truth PoseArray3D) to this new folder")
    bag.add_argument("--frames", type=int, default=90, help="frames of the bag's sequence")
    bag.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap",
                     help="rosbag2 storage of the bag")
    bag.add_argument("--encoding", default="jpeg",
                     help="jpeg or png (CompressedImage) or an Image encoding such as rgb8, bgr8")
    args = parser.parse_args(argv)
    scene_options = (args.size, args.focal_range, args.people, args.distortion, args.fps)
    if args.recipe is not None and any(option is not None for option in scene_options):
        parser.error("--recipe fixes the scene settings: drop --size, --focal-range, --people, "
                     "--distortion and --fps, or edit a copy of the recipe")
    if args.bag is None and (args.out is None or (args.images is None and args.recipe is None)):
        parser.error("give --out and --images (or --recipe) for a dataset, or --bag for a sequence bag")
    if (args.images or 0) < 0 or args.workers < 1 or args.sequence_frames < 0 or args.frames < 1:
        parser.error("--images must be >= 0, --workers >= 1, --sequence-frames >= 0, --frames >= 1")
    try:
        device = torch.device(args.device)
    except RuntimeError as error:
        parser.error(f"--device {args.device!r}: {error}")
    if args.batch is None:
        args.batch = 0 if device.type == "cpu" else 64
    if args.batch < 0 or (args.batch == 0 and device.type != "cpu"):
        parser.error(f"--batch must be >= 1 with --device {args.device} (>= 0 on the CPU)")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA device is available")
    return args


def _draw_person(
    image: np.ndarray, uv: np.ndarray, vis: np.ndarray, box: np.ndarray, color: tuple
) -> None:
    height, width = image.shape[:2]
    # Joints far outside (or folded back by a strong lens model) would draw lines across the image.
    near = np.all(np.isfinite(uv), axis=1) & (np.abs(uv[:, 0] - width / 2) < width) & (
        np.abs(uv[:, 1] - height / 2) < height)
    for a, b in MUCO_21.bones:
        if near[a] and near[b]:
            pa, pb = tuple(np.round(uv[a]).astype(int)), tuple(np.round(uv[b]).astype(int))
            cv2.line(image, pa, pb, color, 2 if vis[a] and vis[b] else 1, cv2.LINE_AA)
    for point, seen, shown in zip(uv, vis, near):
        if shown:
            center = tuple(np.round(point).astype(int))
            cv2.circle(image, center, 3, color, -1 if seen else 1, cv2.LINE_AA)
            if seen:
                cv2.circle(image, center, 3, (0, 0, 0), 1, cv2.LINE_AA)
    x, y, w, h = np.round(box).astype(int)
    cv2.rectangle(image, (x, y), (x + w, y + h), color, 1)


def contact_sheet(
    json_path: Path, count: int = 12, columns: int = 4, cell_width: int = 480
) -> np.ndarray:
    """(H, W, 3) BGR grid of the first ``count`` images of a dataset with skeletons drawn.

    Images are scaled by one factor so that the largest side of the largest image is
    ``cell_width`` pixels.
    """
    root = Path(json_path).parent
    data = json.loads(Path(json_path).read_text())
    by_image: dict[int, list[dict]] = {}
    for ann in data["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    entries = data["images"][:count]
    scale = min(cell_width / max(e["width"], e["height"]) for e in entries) if entries else 1.0
    cell_height = max((round(e["height"] * scale) for e in entries), default=0)
    cell_width = max((round(e["width"] * scale) for e in entries), default=0)
    cells = []
    for entry in entries:
        image = cv2.imread(str(root / entry["file_name"]))
        if image is None:
            raise ValueError(f"cannot read image {root / entry['file_name']}")
        for k, ann in enumerate(by_image.get(entry["id"], [])):
            color = _COLORS_BGR[(ann.get("track_id", k) - 1) % len(_COLORS_BGR)]
            _draw_person(image, np.array(ann["keypoints_img"], float),
                         np.array(ann["keypoints_vis"], bool), np.array(ann["bbox"], float), color)
        label = f"{entry['id']}  {entry['width']}x{entry['height']}  f={entry['f'][0]:.0f}"
        if "distortion_model" in entry:
            label += f"  {entry['distortion_model']}"
        size = (round(entry["width"] * scale), round(entry["height"] * scale))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        cell = np.full((cell_height + 24, cell_width + 4, 3), 32, np.uint8)
        cell[24:24 + size[1], :size[0]] = image
        cv2.putText(cell, label, (4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1,
                    cv2.LINE_AA)
        cells.append(cell)
    if not cells:
        raise ValueError(f"{json_path} has no images")
    while len(cells) % columns:
        cells.append(np.full_like(cells[0], 32))
    rows = [np.concatenate(cells[i:i + columns], axis=1) for i in range(0, len(cells), columns)]
    return np.concatenate(rows, axis=0)


def scene_from_args(args: argparse.Namespace) -> tuple[SceneConfig, int | None, int]:
    """The scene config, image count and seed the command line (and its recipe) ask for."""
    if args.recipe is not None:
        recipe = load_config(SynthRecipe, args.recipe)
        images = args.images if args.images is not None else recipe.images
        return recipe.scene, images, args.seed if args.seed is not None else recipe.seed
    config = SceneConfig(
        size=args.size,
        focal_range_px=args.focal_range,
        people=args.people or (2, 8),
        distortion=args.distortion or "none",
        fps=args.fps or 30.0,
    )
    return config, args.images, args.seed or 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return _run(args)
    except BAD_INPUT as error:
        return report_bad_input("mp3d-synth", error)


def _run(args: argparse.Namespace) -> int:
    config, images, seed = scene_from_args(args)
    if args.bag is not None:
        count = write_synthetic_bag(args.bag, config, seed, args.frames, args.storage,
                                    args.encoding, args.mocap, device=args.device)
        print(f"wrote {count} frames to {args.bag}")
        return 0
    json_path = write_dataset(args.out, config, images, seed, workers=args.workers,
                              mocap_dir=args.mocap, sequence_frames=args.sequence_frames,
                              device=args.device, batch=args.batch)
    print(f"wrote {images} images and {json_path}")
    if args.contact_sheet is not None:
        args.contact_sheet.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(args.contact_sheet), contact_sheet(json_path, args.sheet_images))
        print(f"wrote {args.contact_sheet}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
