"""Reader for the 3DMPPE COCO-style JSON layout: MuCo-3DHP, MuPoTS-3D, Human3.6M, synthetic scenes.

The layout (as released with RootNet/PoseNet, Moon et al. 2019) is a COCO-like file:

- ``images``: ``id``, ``file_name`` (relative to the image root), ``width``, ``height`` and the
  camera, one of: ``f`` + ``c`` (MuCo-3DHP, synthetic; pixels), ``intrinsic`` = [fx, fy, cx, cy]
  (MuPoTS-3D), ``cam_param`` = {``f``, ``c``, ...} (early Human3.6M files), or ``cam_idx`` +
  ``subject`` resolved through the sibling ``Human36M_subject<S>_camera.json`` (current Human3.6M
  files). Optional: ``distortion_model`` + ``distortion`` (a raw, distorted camera), ``frame_idx``,
  ``stamp`` (seconds), ``seq`` / ``sequence``.
- ``annotations``: ``id``, ``image_id``, ``keypoints_img`` (J x 2 pixels), ``keypoints_cam``
  (J x 3, millimetres, camera frame), ``bbox`` (x, y, w, h pixels), optional ``keypoints_vis``
  (J, default all visible: the 3DMPPE loaders themselves use ones for MuCo), ``is_valid``
  (MuPoTS: 0 = not evaluated) and ``track_id``. Current Human3.6M files omit the keypoints; they
  are computed from ``Human36M_subject<S>_joint_3d.json`` (world mm) with the camera's ``R``, ``t``
  as 3DMPPE does: ``X_cam = R (X_world - t)``, ``u = X/Z fx + cx``.

A ``null`` coordinate marks a joint as unlabelled (NaN, ``labelled`` False), never as zero.
Every image is returned, people in file order (the order the MuPoTS matching walks them).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from mp3d_ros.geometry.camera import Intrinsics
from mp3d_ros.geometry.floor import FloorPlane
from mp3d_ros.geometry.skeleton import get_joint_set

__all__ = [
    "AnnotatedImage",
    "read_3dmppe_json",
    "group_by_sequence",
    "load_json",
    "json_integer",
    "json_numbers",
    "sequence_from_file_name",
    "h36m_action_name",
    "H36M_ACTIONS",
]

DEFAULT_FPS = 30.0
_PROGRESS_MIN_IMAGES = 5000
# Sequence folders recognised in file names: MuPoTS-3D "TS3/img_000012.jpg" and Human3.6M
# "s_09_act_02_subact_01_ca_01/...". Other folders (MuCo's "augmented_set") are not sequences.
_SEQUENCE_FOLDER = re.compile(r"^(TS\d+|s_\d+_act_\d+_subact_\d+_ca_\d+)$")
# Human3.6M actions in the order of their ``act_02`` .. ``act_16`` folders (as 3DMPPE lists them).
H36M_ACTIONS = (
    "Directions", "Discussion", "Eating", "Greeting", "Phoning", "Posing", "Purchases", "Sitting",
    "SittingDown", "Smoking", "Photo", "Waiting", "Walking", "WalkDog", "WalkTogether",
)


@dataclass(frozen=True, eq=False)
class AnnotatedImage:
    """One annotated image: P people, J joints of ``joint_set``.

    Attributes:
        image_id: the file's image id.
        file_name: image path relative to the image root.
        width, height: image size in pixels.
        intrinsics: camera of this image (raw/distorted when the file gives distortion).
        sequence: sequence name ('TS1'.., a synthetic scene, a Human3.6M video); '' if unknown.
        frame_index: ``frame_idx`` when given, else the order of the image within its sequence.
        stamp_s: ``stamp`` when given, else ``frame_index / 30``.
        joint_set: name of the joint set of the arrays (:mod:`mp3d_ros.geometry.skeleton`).
        keypoints_cam_m: (P, J, 3) joints in metres in the camera frame (NaN where unlabelled or
            when ``has_3d`` is False).
        keypoints_img_px: (P, J, 2) joint pixels (NaN where unlabelled).
        keypoints_vis: (P, J) bool, joint visible in the image.
        labelled: (P, J) bool, joint annotated at all.
        bbox_px: (P, 4) person box x, y, w, h in pixels.
        track_id: (P,) int64 identity across frames, -1 when unknown.
        has_3d: False for 2D-only datasets (COCO): ``keypoints_cam_m`` is all NaN.
        valid: (P,) bool, False for people the evaluation ignores (MuPoTS ``is_valid`` = 0).
        floor: the floor plane in the camera frame when the file gives the camera's pose over it
            (``ground_from_camera``: ``rotation`` 3x3 and ``translation_m``, as ``mp3d-synth``
            writes), else None.
    """

    image_id: int
    file_name: str
    width: int
    height: int
    intrinsics: Intrinsics
    sequence: str
    frame_index: int
    stamp_s: float
    joint_set: str
    keypoints_cam_m: np.ndarray
    keypoints_img_px: np.ndarray
    keypoints_vis: np.ndarray
    labelled: np.ndarray
    bbox_px: np.ndarray
    track_id: np.ndarray
    has_3d: bool = True
    valid: np.ndarray = field(default=None)  # type: ignore[assignment]
    floor: FloorPlane | None = None

    def __post_init__(self) -> None:
        joints = get_joint_set(self.joint_set).num_joints
        count = len(np.asarray(self.track_id))
        if self.valid is None:
            object.__setattr__(self, "valid", np.ones(count, dtype=bool))
        specs = {
            "keypoints_cam_m": ((count, joints, 3), np.float64),
            "keypoints_img_px": ((count, joints, 2), np.float64),
            "keypoints_vis": ((count, joints), bool),
            "labelled": ((count, joints), bool),
            "bbox_px": ((count, 4), np.float64),
            "track_id": ((count,), np.int64),
            "valid": ((count,), bool),
        }
        for name, (shape, dtype) in specs.items():
            value = np.asarray(getattr(self, name), dtype=dtype)
            if value.shape != shape:
                raise ValueError(
                    f"AnnotatedImage {self.image_id} ({self.file_name}): {name} has shape "
                    f"{value.shape}, expected {shape} ({count} people, {self.joint_set})"
                )
            object.__setattr__(self, name, value)

    def __len__(self) -> int:
        return len(self.track_id)


def load_json(path: str | Path, what: str) -> Any:
    """Parse a JSON file; ``ValueError`` naming ``what`` and the path when missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} not found: {path}")
    try:
        with path.open("r", encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as error:
        raise ValueError(f"{what} {path} is not valid JSON: {error}") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"{what} {path} is not UTF-8 text (byte {error.start}: {error.reason})") from None


def json_integer(value: Any) -> int:
    """A JSON integer as ``int``; ``TypeError`` for anything else (``0.9``, ``"3"``, ``true``),
    which ``int()`` would turn into another id."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def json_numbers(value: Any) -> np.ndarray:
    """Nested JSON numbers as a float64 array, ``null`` as NaN; ``TypeError`` for text or booleans
    (which ``np.array(..., float)`` would read as numbers) and for ragged nesting."""
    try:
        array = np.array(value)
    except ValueError:  # ragged nesting (numpy >= 1.24)
        raise TypeError("ragged nesting") from None
    if array.dtype.kind in "iuf":
        return array.astype(np.float64)
    if array.dtype.kind == "O" and all(
            v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
            for v in array.reshape(-1)):
        return np.array(array.reshape(-1).tolist(), dtype=np.float64).reshape(array.shape)
    raise TypeError(f"expected numbers, got {array.dtype.kind!r} values")


def sequence_from_file_name(file_name: str) -> str:
    """The sequence folder of a MuPoTS-3D or Human3.6M image path, '' for other paths."""
    for part in reversed(Path(file_name).parts[:-1]):
        if _SEQUENCE_FOLDER.match(part):
            return part
    return ""


def h36m_action_name(sequence: str) -> str:
    """Action of a Human3.6M sequence folder (``s_09_act_02_...`` -> ``'Directions'``), else ''."""
    match = re.search(r"act_(\d+)", sequence)
    index = int(match.group(1)) - 2 if match else -1
    return H36M_ACTIONS[index] if 0 <= index < len(H36M_ACTIONS) else ""


def group_by_sequence(images: Sequence[AnnotatedImage]) -> dict[str, list[AnnotatedImage]]:
    """Images per sequence name (in order of first appearance), each list sorted by frame index."""
    groups: dict[str, list[AnnotatedImage]] = defaultdict(list)
    for image in images:
        groups[image.sequence].append(image)
    return {name: sorted(group, key=lambda im: im.frame_index) for name, group in groups.items()}


class _Context:
    """Where a value came from, for error messages."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, where: str, message: str) -> ValueError:
        return ValueError(f"{self.path}: {where}: {message}")


def _require(entry: dict, key: str, ctx: _Context, where: str) -> Any:
    if not isinstance(entry, dict) or key not in entry:
        raise ctx.error(where, f"missing field {key!r}")
    return entry[key]


def _array(value: Any, shape: tuple[int, ...], ctx: _Context, where: str, name: str) -> np.ndarray:
    """Float array of ``shape`` (``null`` entries become NaN); extra trailing columns are dropped."""
    try:
        array = json_numbers(value)
    except TypeError:
        raise ctx.error(where, f"field {name!r} is not numeric: {_short(value)}") from None
    if array.ndim == len(shape) and len(shape) == 2 and array.shape[0] == shape[0]:
        if array.shape[1] >= shape[1]:
            array = array[:, : shape[1]]
    if array.shape != shape:
        raise ctx.error(where, f"field {name!r} has shape {array.shape}, expected {shape}")
    return array


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _integer(entry: dict, key: str, ctx: _Context, where: str, default: Any = None) -> int:
    """Field ``key`` of ``entry``, a JSON integer (``default`` when absent and a default is given)."""
    value = entry.get(key, default) if default is not None else _require(entry, key, ctx, where)
    try:
        return json_integer(value)
    except TypeError:
        raise ctx.error(where, f"field {key!r} must be an integer, got {_short(value)}") from None


def _number(entry: dict, key: str, default: float, ctx: _Context, where: str) -> float:
    value = entry.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ctx.error(where, f"field {key!r} must be a number, got {_short(value)}")
    return float(value)


def _intrinsics(image: dict, cameras: dict | None, ctx: _Context, where: str) -> Intrinsics:
    """The camera of one image entry, from whichever of the layout's fields it carries."""
    if "f" in image and "c" in image:
        f = _array(image["f"], (2,), ctx, where, "f")
        c = _array(image["c"], (2,), ctx, where, "c")
    elif "intrinsic" in image:
        fx, fy, cx, cy = _array(image["intrinsic"], (4,), ctx, where, "intrinsic")
        f, c = np.array([fx, fy]), np.array([cx, cy])
    elif "cam_param" in image:
        f = _array(_require(image["cam_param"], "f", ctx, where + " cam_param"), (2,), ctx, where, "f")
        c = _array(_require(image["cam_param"], "c", ctx, where + " cam_param"), (2,), ctx, where, "c")
    elif "cam_idx" in image and cameras is not None:
        camera = _camera(image, cameras, ctx, where)
        f, c = camera["f"], camera["c"]
    else:
        raise ctx.error(where, "missing camera: expected 'f' and 'c', 'intrinsic', 'cam_param' "
                               "or 'cam_idx' with a Human36M_subject<S>_camera.json beside the file")
    K = np.array([[f[0], 0.0, c[0]], [0.0, f[1], c[1]], [0.0, 0.0, 1.0]])
    model = str(image.get("distortion_model", "none")) or "none"
    D = image.get("distortion", [])
    try:
        D = json_numbers(D)
    except TypeError:
        raise ctx.error(where, f"field 'distortion' is not numeric: {_short(D)}") from None
    width, height = _integer(image, "width", ctx, where), _integer(image, "height", ctx, where)
    try:
        return Intrinsics(K, width, height, model, D)
    except ValueError as error:
        raise ctx.error(where, f"invalid camera: {error}") from None


def _camera(image: dict, cameras: dict, ctx: _Context, where: str) -> dict[str, np.ndarray]:
    subject = str(_require(image, "subject", ctx, where))
    cam = str(image["cam_idx"])
    if subject not in cameras or cam not in cameras[subject]:
        raise ctx.error(where, f"camera {cam} of subject {subject} is not in the camera file")
    entry = cameras[subject][cam]
    cam_where = f"camera {cam} of subject {subject}"
    return {
        "R": _array(_require(entry, "R", ctx, cam_where), (3, 3), ctx, cam_where, "R"),
        # 3DMPPE stores t as 3 numbers or as a 3 x 1 column; both are the camera centre in mm.
        "t": _array(np.ravel(_require(entry, "t", ctx, cam_where)).tolist(), (3,), ctx, cam_where, "t"),
        "f": _array(_require(entry, "f", ctx, cam_where), (2,), ctx, cam_where, "f"),
        "c": _array(_require(entry, "c", ctx, cam_where), (2,), ctx, cam_where, "c"),
    }


def _h36m_keypoints(
    image: dict, cameras: dict, joints_world: dict, num_joints: int, ctx: _Context, where: str
) -> tuple[np.ndarray, np.ndarray]:
    """Camera (mm) and pixel joints of a current-layout Human3.6M image from its world joints."""
    camera = _camera(image, cameras, ctx, where)
    keys = [str(_require(image, k, ctx, where)) for k in ("action_idx", "subaction_idx", "frame_idx")]
    try:
        world = joints_world[keys[0]][keys[1]][keys[2]]
    except KeyError:
        raise ctx.error(where, f"no world joints for action/subaction/frame {'/'.join(keys)} "
                               "in the joint_3d file") from None
    world_mm = _array(world, (num_joints, 3), ctx, where, "joint_3d")
    cam_mm = (world_mm - camera["t"]) @ camera["R"].T
    uv = cam_mm[:, :2] / cam_mm[:, 2:3] * camera["f"] + camera["c"]
    return cam_mm, uv


def _h36m_side_files(json_path: Path) -> tuple[dict | None, dict | None]:
    """Camera and world-joint files beside a ``Human36M_subject<S>_data.json``, keyed by subject.

    Returns ``({subject: {cam_idx: camera}}, {subject: {action: {subaction: {frame: joints}}}})``,
    None for a file that is not there (then the images must carry their own camera / keypoints).
    """
    match = re.fullmatch(r"(.*subject(\d+))_data\.json", json_path.name)
    if match is None:
        return None, None
    stem, subject = json_path.with_name(match.group(1)), match.group(2)
    found = []
    for suffix, what in (("_camera.json", "Human3.6M camera file"),
                         ("_joint_3d.json", "Human3.6M joint file")):
        side = Path(str(stem) + suffix)
        found.append({subject: load_json(side, what)} if side.exists() else None)
    return found[0], found[1]


def _person(
    ann: dict,
    image: dict,
    num_joints: int,
    h36m: tuple[dict | None, dict | None],
    ctx: _Context,
) -> dict[str, Any]:
    """Arrays of one annotation; missing or mis-shaped fields raise naming the annotation id."""
    where = f"annotation {ann.get('id', '?')} (image {ann.get('image_id', '?')})"
    cameras, joints_world = h36m
    if "keypoints_cam" in ann:
        cam_mm = _array(ann["keypoints_cam"], (num_joints, 3), ctx, where, "keypoints_cam")
        uv = _array(_require(ann, "keypoints_img", ctx, where), (num_joints, 2), ctx, where,
                    "keypoints_img")
    elif cameras is not None and joints_world is not None and "cam_idx" in image:
        subject_joints = joints_world.get(str(image.get("subject")), {})
        cam_mm, uv = _h36m_keypoints(image, cameras, subject_joints, num_joints, ctx, where)
    else:
        raise ctx.error(where, "missing field 'keypoints_cam'")
    vis_raw = ann.get("keypoints_vis")
    if vis_raw is None:
        vis = np.ones(num_joints, dtype=bool)
    else:
        # Visibility may be written as booleans (Human3.6M) or 0 / 1 numbers (MuCo, MuPoTS).
        flat = [int(v) if isinstance(v, bool) else v
                for v in np.reshape(np.asarray(vis_raw, dtype=object), -1).tolist()]
        vis = _array(flat, (num_joints,), ctx, where, "keypoints_vis") > 0
    labelled = np.isfinite(cam_mm).all(axis=1) & np.isfinite(uv).all(axis=1)
    cam_mm = np.where(labelled[:, None], cam_mm, np.nan)
    uv = np.where(labelled[:, None], uv, np.nan)
    return {
        "keypoints_cam_m": cam_mm / 1000.0,
        "keypoints_img_px": uv,
        "keypoints_vis": vis & labelled,
        "labelled": labelled,
        "bbox_px": _array(_require(ann, "bbox", ctx, where), (4,), ctx, where, "bbox"),
        "track_id": _integer(ann, "track_id", ctx, where, default=-1),
        "valid": _flag(ann, "is_valid", ctx, where),
    }


def _flag(entry: dict, key: str, ctx: _Context, where: str) -> bool:
    """An optional 0 / 1 / true / false field (default true)."""
    value = entry.get(key, 1)
    if value not in (0, 1) or not isinstance(value, (int, bool)):
        raise ctx.error(where, f"field {key!r} must be 0, 1, true or false, got {_short(value)}")
    return bool(value)


def _stack(people: list[dict[str, Any]], num_joints: int) -> dict[str, np.ndarray]:
    empty = {
        "keypoints_cam_m": np.zeros((0, num_joints, 3)),
        "keypoints_img_px": np.zeros((0, num_joints, 2)),
        "keypoints_vis": np.zeros((0, num_joints), dtype=bool),
        "labelled": np.zeros((0, num_joints), dtype=bool),
        "bbox_px": np.zeros((0, 4)),
        "track_id": np.zeros(0, dtype=np.int64),
        "valid": np.zeros(0, dtype=bool),
    }
    if not people:
        return empty
    return {key: np.stack([np.asarray(p[key]) for p in people]) for key in empty}


def read_3dmppe_json(json_path: str | Path, joint_set: str) -> list[AnnotatedImage]:
    """Read a 3DMPPE-layout annotation file (see the module docstring) into annotated images.

    Args:
        json_path: ``MuCo-3DHP.json``, ``MuPoTS-3D.json``, a synthetic scene file, or a
            ``Human36M_subject<S>_data.json`` (its ``_camera.json`` / ``_joint_3d.json`` siblings
            are read when the images need them).
        joint_set: joint set of the file's arrays (``'muco_21'``, ``'mupots_17'``, ``'h36m_17'``).

    Returns:
        One :class:`AnnotatedImage` per image entry, in file order.

    Raises:
        ValueError: naming the file, image or annotation id and field when the file is missing,
            not JSON, or a field is missing or has the wrong joint count.
    """
    path = Path(json_path)
    ctx = _Context(path)
    num_joints = get_joint_set(joint_set).num_joints
    data = load_json(path, "3DMPPE annotation file")
    images = _require(data, "images", ctx, "top level")
    annotations = _require(data, "annotations", ctx, "top level")
    if not isinstance(images, list) or not isinstance(annotations, list):
        raise ctx.error("top level", "'images' and 'annotations' must be lists")
    h36m = _h36m_side_files(path)

    by_image: dict[Any, list[dict]] = defaultdict(list)
    for index, ann in enumerate(annotations):
        if not isinstance(ann, dict):
            raise ctx.error(f"annotations[{index}]", f"expected an object, got {_short(ann)}")
        where = f"annotation {ann.get('id', '?')} (annotations[{index}])"
        by_image[_integer(ann, "image_id", ctx, where)].append(ann)
    known_ids = {_integer(image, "id", ctx, f"images[{index}]") for index, image in enumerate(images)}
    orphans = [key for key in by_image if key not in known_ids]
    if orphans:
        raise ctx.error(f"annotations of image ids {orphans[:5]}", "no such image in 'images'")

    out: list[AnnotatedImage] = []
    order_in_sequence: dict[str, int] = defaultdict(int)
    # Big files (MuCo-3DHP has ~200k images) take a while: show progress, but not for small ones.
    for image in tqdm(images, desc=f"reading {path.name}", unit="img", leave=False,
                      disable=len(images) < _PROGRESS_MIN_IMAGES):
        where = f"image {image.get('id', '?') if isinstance(image, dict) else '?'}"
        image_id = _integer(image, "id", ctx, where)
        file_name = _require(image, "file_name", ctx, where)
        if not isinstance(file_name, str):
            raise ctx.error(where, f"field 'file_name' must be a string, got {_short(file_name)}")
        intrinsics = _intrinsics(image, h36m[0], ctx, where)
        sequence = str(image.get("sequence", image.get("seq", sequence_from_file_name(file_name))))
        frame_index = _integer(image, "frame_idx", ctx, where, default=order_in_sequence[sequence])
        order_in_sequence[sequence] += 1
        people = [_person(ann, image, num_joints, h36m, ctx) for ann in by_image.get(image_id, [])]
        out.append(AnnotatedImage(
            image_id=image_id,
            file_name=file_name,
            width=intrinsics.width,
            height=intrinsics.height,
            intrinsics=intrinsics,
            sequence=sequence,
            frame_index=frame_index,
            stamp_s=_number(image, "stamp", frame_index / DEFAULT_FPS, ctx, where),
            joint_set=joint_set,
            floor=_floor(image, ctx, where),
            **_stack(people, num_joints),
        ))
    return out


def _floor(image: dict, ctx: "_Context", where: str) -> FloorPlane | None:
    """The image's floor plane from its ``ground_from_camera`` entry, if it has one."""
    pose = image.get("ground_from_camera")
    if pose is None:
        return None
    if not isinstance(pose, dict):
        raise ctx.error(where, f"field 'ground_from_camera' must be an object, got {_short(pose)}")
    rotation = _array(pose.get("rotation"), (3, 3), ctx, where, "ground_from_camera.rotation")
    translation = _array(pose.get("translation_m"), (3,), ctx, where, "ground_from_camera.translation_m")
    if not np.all(np.isfinite(translation)) or not abs(np.linalg.det(rotation) - 1.0) <= 1e-3:
        raise ctx.error(where, "ground_from_camera is not a finite rigid pose (rotation determinant "
                               f"{np.linalg.det(rotation):.3g}, translation {translation.tolist()})")
    return FloorPlane.from_camera_pose(rotation, translation)
