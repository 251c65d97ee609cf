"""Reader for COCO person keypoints (``person_keypoints_<split>.json``): 2D only.

COCO layout: ``images`` (``id``, ``file_name``, ``width``, ``height``), ``annotations`` (``id``,
``image_id``, ``category_id``, ``keypoints`` = 17 x (x, y, v) flattened, ``bbox`` x, y, w, h,
``iscrowd``), ``categories``. ``v`` = 0 not labelled (x = y = 0), 1 labelled but not visible,
2 visible.

Conventions of the returned :class:`~mp3d_ros.data.mppe.AnnotatedImage`:

- joint set ``coco_17``; ``has_3d`` False and ``keypoints_cam_m`` all NaN;
- ``labelled`` is ``v > 0`` and ``keypoints_vis`` is ``v == 2``; unlabelled pixels are NaN, not the
  file's (0, 0);
- COCO has no calibration. ``intrinsics`` is the placeholder SMAP uses for internet images,
  ``fx = fy = width``, ``(cx, cy) = (width / 2, height / 2)``: it keeps the geometry code well
  defined (augmentation moves it consistently) and no 3D target depends on it;
- crowd annotations (``iscrowd`` = 1) are regions, not people, and are left out unless
  ``include_crowd`` is set; every image is returned, including those without people.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from mp3d_ros.data.mppe import DEFAULT_FPS, AnnotatedImage, load_json
from mp3d_ros.geometry.camera import Intrinsics
from mp3d_ros.geometry.skeleton import COCO_17

__all__ = ["read_coco_keypoints", "PERSON_CATEGORY_ID"]

PERSON_CATEGORY_ID = 1


def _person(ann: Any, path: Path) -> dict[str, Any]:
    where = f"{path}: annotation {ann.get('id', '?') if isinstance(ann, dict) else '?'}"
    for key in ("keypoints", "bbox"):
        if not isinstance(ann, dict) or key not in ann:
            raise ValueError(f"{where}: missing field {key!r}")
    joints = COCO_17.num_joints
    try:
        keypoints = np.array(ann["keypoints"], dtype=np.float64)
        bbox = np.array(ann["bbox"], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: 'keypoints' and 'bbox' must be numeric") from None
    if keypoints.shape != (joints * 3,):
        raise ValueError(
            f"{where}: field 'keypoints' has {keypoints.size} values, expected {joints * 3} "
            f"({joints} joints of coco_17 as x, y, v)"
        )
    if bbox.shape != (4,):
        raise ValueError(f"{where}: field 'bbox' has {bbox.size} values, expected 4 (x, y, w, h)")
    keypoints = keypoints.reshape(joints, 3)
    labelled = keypoints[:, 2] > 0
    return {
        "keypoints_img_px": np.where(labelled[:, None], keypoints[:, :2], np.nan),
        "keypoints_vis": keypoints[:, 2] >= 2,
        "labelled": labelled,
        "bbox_px": bbox,
        "track_id": int(ann.get("track_id", -1)),
    }


def _image(entry: Any, people: list[dict[str, Any]], index: int, path: Path) -> AnnotatedImage:
    where = f"{path}: image {entry.get('id', '?') if isinstance(entry, dict) else '?'}"
    for key in ("id", "file_name", "width", "height"):
        if not isinstance(entry, dict) or key not in entry:
            raise ValueError(f"{where}: missing field {key!r}")
    width, height = int(entry["width"]), int(entry["height"])
    if width <= 0 or height <= 0:
        raise ValueError(f"{where}: image size must be positive, got {width}x{height}")
    joints = COCO_17.num_joints
    count = len(people)

    def stacked(key: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        if not people:
            return np.zeros((0,) + shape, dtype=dtype)
        return np.stack([np.asarray(p[key], dtype=dtype) for p in people])

    return AnnotatedImage(
        image_id=int(entry["id"]),
        file_name=str(entry["file_name"]),
        width=width,
        height=height,
        intrinsics=Intrinsics.pinhole(width, width, width / 2, height / 2, width, height),
        sequence="",
        frame_index=index,
        stamp_s=index / DEFAULT_FPS,
        joint_set=COCO_17.name,
        keypoints_cam_m=np.full((count, joints, 3), np.nan),
        keypoints_img_px=stacked("keypoints_img_px", (joints, 2), np.float64),
        keypoints_vis=stacked("keypoints_vis", (joints,), bool),
        labelled=stacked("labelled", (joints,), bool),
        bbox_px=stacked("bbox_px", (4,), np.float64),
        track_id=stacked("track_id", (), np.int64),
        has_3d=False,
    )


def read_coco_keypoints(json_path: str | Path, include_crowd: bool = False) -> list[AnnotatedImage]:
    """Read a COCO person-keypoints file into ``coco_17`` images (conventions: module docstring).

    Raises:
        ValueError: naming the file, image or annotation id and field when the file is missing,
            not JSON, or an entry is malformed (wrong keypoint count, missing field).
    """
    path = Path(json_path)
    data = load_json(path, "COCO keypoint annotation file")
    for key in ("images", "annotations"):
        if not isinstance(data, dict) or not isinstance(data.get(key), list):
            raise ValueError(f"{path}: missing field {key!r} (a list)")
    image_ids = {entry.get("id") for entry in data["images"] if isinstance(entry, dict)}
    people: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for ann in data["annotations"]:
        if not isinstance(ann, dict) or "image_id" not in ann:
            ann_id = ann.get("id", "?") if isinstance(ann, dict) else "?"
            raise ValueError(f"{path}: annotation {ann_id}: missing field 'image_id'")
        if ann.get("category_id", PERSON_CATEGORY_ID) != PERSON_CATEGORY_ID:
            continue  # other categories have no keypoints; a keypoint file holds only people
        if ann.get("iscrowd", 0) and not include_crowd:
            continue
        if ann["image_id"] not in image_ids:
            raise ValueError(f"{path}: annotation {ann.get('id', '?')}: image_id "
                             f"{ann['image_id']} is not in 'images'")
        people[ann["image_id"]].append(_person(ann, path))
    return [
        _image(entry, people.get(entry.get("id") if isinstance(entry, dict) else None, []), i, path)
        for i, entry in enumerate(data["images"])
    ]
