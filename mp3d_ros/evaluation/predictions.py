"""Saved predictions: what the estimator found in every image, so metrics run without the network.

File layout (JSON, written atomically)::

    {"format": "mp3d_ros.predictions", "version": 1,
     "skeleton": "mupots_17",                 # joint set of every person
     "metadata": {...},                       # free-form: model, dataset, command line
     "images": [
        {"image_id": 17, "sequence": "TS1", "file_name": "TS1/img_000000.jpg",
         "people": [
            {"uv_px": J x [u, v],              # source-image pixels
             "keypoints_m": J x [x, y, z],     # metres, camera optical frame
             "confidence": J, "inferred": J (bool),
             "score": s, "root_sigma_m": s, "track_id": i}]}]}

Non-finite numbers are written as ``null`` (JSON has no NaN) and read back as NaN. Reading is
strict: ids and track ids must be JSON integers (``0.9`` is no image id), numbers must be numbers
(not text or booleans), scores finite and in [0, 1], confidences in [0, 1] or ``null``; every
refusal names the file, the entry and the field.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mp3d_ros.data.mppe import json_integer, json_numbers, load_json
from mp3d_ros.geometry.people import People
from mp3d_ros.geometry.skeleton import get_joint_set

__all__ = ["ImagePredictions", "save_predictions", "load_predictions", "FORMAT", "VERSION"]

FORMAT = "mp3d_ros.predictions"
VERSION = 1


@dataclass(frozen=True, eq=False)
class ImagePredictions:
    """The people predicted in one image.

    Attributes:
        image_id: the dataset's image id.
        sequence: the image's sequence ('' if none).
        file_name: the image path relative to the dataset's image root ('' if unknown).
        people: what the estimator returned for it.
    """

    image_id: int
    sequence: str
    people: People
    file_name: str = ""


def _plain(array: np.ndarray) -> Any:
    """Nested lists with ``None`` where the value is not finite."""
    array = np.asarray(array, dtype=np.float64)
    return np.where(np.isfinite(array), array, None).tolist() if array.size else array.tolist()


def _person(people: People, p: int) -> dict[str, Any]:
    return {
        "uv_px": _plain(people.uv_px[p]),
        "keypoints_m": _plain(people.keypoints_m[p]),
        "confidence": _plain(people.confidence[p]),
        "inferred": [bool(v) for v in people.inferred[p]],
        "score": _plain(people.score[p]),
        "root_sigma_m": _plain(people.root_sigma_m[p]),
        "track_id": int(people.track_id[p]),
        "depth_cues": int(people.depth_cues[p]),
        "height_m": _plain(people.height_m[p]),
        "height_sigma_m": _plain(people.height_sigma_m[p]),
    }


def save_predictions(
    path: str | Path, images: Sequence[ImagePredictions], metadata: dict[str, Any] | None = None
) -> None:
    """Write predictions (layout in the module docstring); all images must share one skeleton."""
    for image in images:
        if not np.all(np.isfinite(image.people.score)):
            raise ValueError(f"image {image.image_id}: person scores must be finite, got "
                             f"{image.people.score.tolist()}")
    skeletons = {image.people.skeleton for image in images}
    if len(skeletons) > 1:
        raise ValueError(f"predictions mix skeletons {sorted(skeletons)}; save one skeleton per file")
    document = {
        "format": FORMAT,
        "version": VERSION,
        "skeleton": skeletons.pop() if skeletons else "mupots_17",
        "metadata": metadata or {},
        "images": [
            {
                "image_id": int(image.image_id),
                "sequence": image.sequence,
                "file_name": image.file_name,
                "people": [_person(image.people, p) for p in range(len(image.people))],
            }
            for image in images
        ],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Temp file + rename: an interrupted run never leaves a truncated file that later loads.
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            json.dump(document, f, allow_nan=False)
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise


def _numbers(value: Any, shape: tuple[int, ...], where: str, name: str) -> np.ndarray:
    try:
        array = json_numbers(value)  # None -> NaN
    except TypeError:
        raise ValueError(f"{where}: field {name!r} is not numeric: {str(value)[:60]}") from None
    if array.shape != shape:
        raise ValueError(f"{where}: field {name!r} has shape {array.shape}, expected {shape}")
    return array


def _people(entry: dict, skeleton: str, where: str) -> People:
    joints = get_joint_set(skeleton).num_joints
    people = entry.get("people")
    if not isinstance(people, list):
        raise ValueError(f"{where}: missing field 'people' (a list)")
    fields: dict[str, list] = {k: [] for k in (
        "uv_px", "keypoints_m", "confidence", "inferred", "score", "root_sigma_m", "track_id",
        "depth_cues", "height_m", "height_sigma_m")}
    for p, person in enumerate(people):
        at = f"{where} person {p}"
        if not isinstance(person, dict):
            raise ValueError(f"{at}: expected an object")
        for key in ("uv_px", "keypoints_m", "confidence", "inferred", "score", "root_sigma_m"):
            if key not in person:
                raise ValueError(f"{at}: missing field {key!r}")
        fields["uv_px"].append(_numbers(person["uv_px"], (joints, 2), at, "uv_px"))
        fields["keypoints_m"].append(_numbers(person["keypoints_m"], (joints, 3), at, "keypoints_m"))
        confidence = _numbers(person["confidence"], (joints,), at, "confidence")
        if np.any((confidence < 0) | (confidence > 1)):
            raise ValueError(f"{at}: field 'confidence' must lie in [0, 1] (or be null), got "
                             f"{confidence.tolist()}")
        fields["confidence"].append(confidence)
        inferred = person["inferred"]
        if not isinstance(inferred, list) or len(inferred) != joints or not all(
                isinstance(v, bool) for v in inferred):
            raise ValueError(f"{at}: field 'inferred' must be {joints} booleans")
        fields["inferred"].append(np.array(inferred, dtype=bool))
        score = _numbers(person["score"], (), at, "score")
        if not 0.0 <= score <= 1.0:  # also refuses NaN
            raise ValueError(f"{at}: field 'score' must be a number in [0, 1], got {float(score)}")
        fields["score"].append(score)
        sigma = _numbers(person["root_sigma_m"], (), at, "root_sigma_m")
        if sigma < 0:
            raise ValueError(f"{at}: field 'root_sigma_m' must be >= 0 (or null), got {float(sigma)}")
        fields["root_sigma_m"].append(sigma)
        try:
            fields["track_id"].append(json_integer(person.get("track_id", 0)))
        except TypeError:
            raise ValueError(f"{at}: field 'track_id' must be an integer, got "
                             f"{person.get('track_id')!r}") from None
        # Written since the floor cue; files from before it have none (0 = unknown).
        try:
            cues = json_integer(person.get("depth_cues", 0))
        except TypeError:
            cues = -1
        if not 0 <= cues <= 255:
            raise ValueError(f"{at}: field 'depth_cues' must be an integer bit mask in [0, 255], got "
                             f"{person.get('depth_cues')!r}")
        fields["depth_cues"].append(cues)
        for key in ("height_m", "height_sigma_m"):
            value = _numbers(person.get(key, 0.0), (), at, key)
            if not value >= 0:
                raise ValueError(f"{at}: field {key!r} must be a number >= 0, got {person.get(key)!r}")
            fields[key].append(value)
    if not people:
        return People.empty(skeleton)
    return People(skeleton, **{k: np.stack([np.asarray(v) for v in values]).astype(
        {"track_id": np.int64, "depth_cues": np.uint8, "inferred": bool}.get(k, np.float64))
        for k, values in fields.items()})


def load_predictions(path: str | Path) -> tuple[list[ImagePredictions], dict[str, Any]]:
    """Read a predictions file; returns ``(images, metadata)``.

    Raises:
        ValueError: naming the file, image and person when the file is missing, not JSON, of
            another format or version, or an entry is malformed (missing field, wrong joint count,
            non-finite score, duplicate image id).
    """
    path = Path(path)
    document = load_json(path, "predictions file")
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError(f"{path} is not an mp3d_ros predictions file (expected format {FORMAT!r})")
    if document.get("version") != VERSION:
        raise ValueError(f"{path}: predictions version {document.get('version')!r} is not supported "
                         f"(this reader knows version {VERSION})")
    skeleton = document.get("skeleton")
    try:
        get_joint_set(str(skeleton))
    except KeyError as error:
        raise ValueError(f"{path}: field 'skeleton': {error}") from None
    entries = document.get("images")
    if not isinstance(entries, list):
        raise ValueError(f"{path}: missing field 'images' (a list)")
    images, seen = [], set()
    for i, entry in enumerate(entries):
        where = f"{path}: images[{i}]"
        if not isinstance(entry, dict) or "image_id" not in entry:
            raise ValueError(f"{where}: missing field 'image_id'")
        try:
            image_id = json_integer(entry["image_id"])
        except TypeError:
            raise ValueError(f"{where}: field 'image_id' must be an integer, got "
                             f"{entry['image_id']!r}") from None
        for key in ("sequence", "file_name"):
            if not isinstance(entry.get(key, ""), str):
                raise ValueError(f"{where}: field {key!r} must be a string, got {entry[key]!r}")
        if image_id in seen:
            raise ValueError(f"{where}: image_id {image_id} appears twice")
        seen.add(image_id)
        where = f"{where} (image_id {image_id})"
        images.append(ImagePredictions(image_id, str(entry.get("sequence", "")),
                                       _people(entry, str(skeleton), where),
                                       str(entry.get("file_name", ""))))
    metadata = document.get("metadata", {})
    return images, metadata if isinstance(metadata, dict) else {}
