"""Reader for CMU Panoptic in the layout SMAP (Zhen et al., ECCV 2020) trains and tests on.

SMAP's ``lib/preprocess/data_format.md`` describes one JSON file per split::

    {"root": [                                   # one entry per image
        {"img_paths": "160422_ultimatum1/...jpg",  # relative to the image root
         "img_width": int, "img_height": int,
         "dataset": "CMUP",                     # "COCO" marks 2D-only entries (Z = 0)
         "isValidation": 0 | 1,
         "bodys": N x 15 x 11},                 # per joint [x, y, Z, v, X, Y, Z, fx, fy, cx, cy]
        ...]}

- joints in SMAP's "MPI15" order, which is :data:`mp3d_ros.geometry.skeleton.PANOPTIC_15` (neck, head/nose,
  pelvis, left arm, left leg, right arm, right leg; the first 15 of Panoptic's ``coco19``);
- ``x, y`` pixels; ``X, Y, Z`` the camera-frame joint in **centimetres**; ``v`` 0 = not labelled,
  1 = labelled but occluded, 2 = visible;
- ``fx, fy, cx, cy`` the camera, repeated on every joint (SMAP writes the same values for all
  joints of all people of an image; we check that they agree). Images without people carry no
  camera, which is why SMAP's converters never write them; we refuse them with a clear message.

Optional per-image ``image_id`` and ``cam_id`` (SMAP writes them for COCO) are used when present.
The sequence is the first folder of ``img_paths`` (Panoptic's ``<date>_<activity><n>`` capture
name), the frame index the last group of digits of the file name (Panoptic's HD frame number).
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from mp3d_ros.data.mppe import DEFAULT_FPS, AnnotatedImage, load_json
from mp3d_ros.geometry.camera import Intrinsics
from mp3d_ros.geometry.skeleton import PANOPTIC_15

__all__ = ["read_panoptic_smap_json", "panoptic_activity"]

_BODY_COLUMNS = 11
_CM_TO_M = 0.01


def panoptic_activity(sequence: str) -> str:
    """Activity of a Panoptic capture: ``'160422_haggling1'`` -> ``'haggling'``; else the name."""
    match = re.fullmatch(r"(?:\d+_)?([A-Za-z]+?)(?:\d+)?", sequence)
    return match.group(1).lower() if match else sequence


def _frame_from_path(path: str) -> int | None:
    digits = re.findall(r"\d+", Path(path).stem)
    return int(digits[-1]) if digits else None


def _image(entry: Any, index: int, path: Path, order: dict[str, int]) -> AnnotatedImage:
    where = f"{path}: root[{index}]"
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected an object, got {type(entry).__name__}")
    for key in ("img_paths", "img_width", "img_height", "bodys"):
        if key not in entry:
            raise ValueError(f"{where}: missing field {key!r}")
    file_name = str(entry["img_paths"])
    where = f"{where} ({file_name})"
    try:
        bodys = np.array(entry["bodys"], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: field 'bodys' is not an N x 15 x 11 numeric array") from None
    if bodys.size == 0:
        raise ValueError(f"{where}: no bodys, so no camera (SMAP stores fx, fy, cx, cy per joint)")
    if bodys.ndim != 3 or bodys.shape[1:] != (PANOPTIC_15.num_joints, _BODY_COLUMNS):
        raise ValueError(
            f"{where}: field 'bodys' has shape {bodys.shape}, expected (N, "
            f"{PANOPTIC_15.num_joints}, {_BODY_COLUMNS}) (joints of panoptic_15, "
            "[x, y, Z, v, X, Y, Z, fx, fy, cx, cy])"
        )
    camera = bodys[:, :, 7:11].reshape(-1, 4)
    if not np.allclose(camera, camera[0]):
        raise ValueError(f"{where}: the joints disagree on fx, fy, cx, cy")
    fx, fy, cx, cy = camera[0]
    width, height = int(entry["img_width"]), int(entry["img_height"])
    try:
        intrinsics = Intrinsics.pinhole(fx, fy, cx, cy, width, height)
    except ValueError as error:
        raise ValueError(f"{where}: invalid camera: {error}") from None

    state = bodys[:, :, 3]
    labelled = state > 0
    has_3d = str(entry.get("dataset", "")).upper() != "COCO"
    cam_m = bodys[:, :, 4:7] * _CM_TO_M
    cam_m = np.where(labelled[..., None] & has_3d, cam_m, np.nan)
    uv = np.where(labelled[..., None], bodys[:, :, 0:2], np.nan)
    sequence = Path(file_name).parts[0] if len(Path(file_name).parts) > 1 else ""
    frame = _frame_from_path(file_name)
    if frame is None:
        frame = order[sequence]
    order[sequence] += 1
    return AnnotatedImage(
        image_id=int(entry.get("image_id", index)),
        file_name=file_name,
        width=width,
        height=height,
        intrinsics=intrinsics,
        sequence=sequence,
        frame_index=frame,
        stamp_s=frame / DEFAULT_FPS,
        joint_set=PANOPTIC_15.name,
        keypoints_cam_m=cam_m,
        keypoints_img_px=uv,
        keypoints_vis=state >= 2,
        labelled=labelled,
        bbox_px=_joint_boxes(uv),
        track_id=np.full(len(bodys), -1, dtype=np.int64),
        has_3d=has_3d,
    )


def _joint_boxes(uv_px: np.ndarray) -> np.ndarray:
    """(P, 4) x, y, w, h of the labelled joints of each person (SMAP stores no boxes)."""
    boxes = np.zeros((len(uv_px), 4))
    for p, joints in enumerate(uv_px):
        finite = joints[np.isfinite(joints).all(axis=1)]
        if len(finite):
            low, high = finite.min(axis=0), finite.max(axis=0)
            boxes[p] = [low[0], low[1], high[0] - low[0], high[1] - low[1]]
    return boxes


def read_panoptic_smap_json(json_path: str | Path) -> list[AnnotatedImage]:
    """Read a SMAP-layout CMU Panoptic file (module docstring) into ``panoptic_15`` images.

    ``bbox_px`` is the box of each person's labelled 2D joints (the layout has no boxes);
    ``keypoints_vis`` is ``v == 2``, ``labelled`` is ``v > 0``. Entries whose ``dataset`` is
    ``COCO`` are 2D-only (``has_3d`` False, 3D joints NaN).

    Raises:
        ValueError: naming the file, the image (index and path) and the field at fault.
    """
    path = Path(json_path)
    data = load_json(path, "Panoptic (SMAP layout) annotation file")
    if not isinstance(data, dict) or not isinstance(data.get("root"), list):
        raise ValueError(f"{path}: missing field 'root' (a list of images)")
    order: dict[str, int] = defaultdict(int)
    return [_image(entry, i, path, order) for i, entry in enumerate(data["root"])]
