"""Bad evaluation files (3DMPPE annotations, saved predictions) are refused with an error naming the
file, the entry and the field, never read as other values (``image_id: 0.9`` as image 0)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mp3d_ros.data.mppe import read_3dmppe_json
from mp3d_ros.evaluation.evaluate import check_prediction_skeleton
from mp3d_ros.evaluation.predictions import ImagePredictions, load_predictions, save_predictions
from mp3d_ros.geometry.people import People

MUCO_JOINTS = 21
PERSON = r"images\[0\] \(image_id 5\) person 0: "


def annotation_file(tmp_path: Path, image: dict | None = None, ann: dict | None = None) -> Path:
    """A one-image, one-person MuCo-layout file with ``image`` / ``ann`` fields replaced."""
    xyz = np.linspace([-300.0, -800.0, 3000.0], [300.0, 800.0, 3200.0], MUCO_JOINTS)
    uv = xyz[:, :2] / xyz[:, 2:] * 500.0 + [320.0, 240.0]
    entry = {"id": 1, "file_name": "images/0.jpg", "width": 640, "height": 480,
             "f": [500.0, 500.0], "c": [320.0, 240.0], **(image or {})}
    person = {"id": 10, "image_id": 1, "keypoints_cam": xyz.tolist(), "keypoints_img": uv.tolist(),
              "keypoints_vis": [1] * MUCO_JOINTS, "bbox": [10.0, 20.0, 100.0, 300.0], **(ann or {})}
    path = tmp_path / "MuCo-3DHP.json"
    path.write_text(json.dumps({"images": [entry], "annotations": [person]}))
    return path




@pytest.mark.parametrize("image, ann, message", [
    ({"id": 0.9}, {"image_id": 0.9}, r"annotation 10 \(annotations\[0\]\): field 'image_id' must be an integer, got 0\.9"),
    ({"id": "1"}, {}, r"images\[0\]: field 'id' must be an integer, got '1'"),
    ({}, {"image_id": True}, r"annotation 10 \(annotations\[0\]\): field 'image_id' must be an integer, got True"),
    ({"width": 640.5}, {}, r"image 1: field 'width' must be an integer, got 640\.5"),
    ({"frame_idx": "3"}, {}, r"image 1: field 'frame_idx' must be an integer, got '3'"),
    ({"stamp": "noon"}, {}, r"image 1: field 'stamp' must be a number, got 'noon'"),
    ({"f": ["500", 500]}, {}, r"image 1: field 'f' is not numeric: \['500', 500\]"),
    ({"file_name": 7}, {}, r"image 1: field 'file_name' must be a string, got 7"),
    ({}, {"track_id": 1.5}, r"annotation 10 \(image 1\): field 'track_id' must be an integer, got 1\.5"),
    ({}, {"is_valid": 0.5}, r"annotation 10 \(image 1\): field 'is_valid' must be 0, 1, true or false"),
    ({}, {"bbox": [1, 2, "w", 4]}, r"annotation 10 \(image 1\): field 'bbox' is not numeric"),
    ({}, {"keypoints_vis": ["yes"] * MUCO_JOINTS}, r"annotation 10 \(image 1\): field 'keypoints_vis' is not numeric"),
])
def test_annotation_fields_of_the_wrong_type(tmp_path, image, ann, message) -> None:
    path = annotation_file(tmp_path, image, ann)
    with pytest.raises(ValueError, match=rf"{path}: ({message})"):
        read_3dmppe_json(path, "muco_21")


def test_non_utf8_files_name_the_file(tmp_path) -> None:
    path = annotation_file(tmp_path)
    path.write_bytes(path.read_bytes().replace(b'"images/0.jpg"', b'"images/\xe9.jpg"'))
    with pytest.raises(ValueError, match=rf"3DMPPE annotation file {path} is not UTF-8 text \(byte \d+"):
        read_3dmppe_json(path, "muco_21")
    predictions = tmp_path / "pred.json"
    predictions.write_bytes(b'{"format": "mp3d_ros.predictions", "x": "\xff"}')
    with pytest.raises(ValueError, match=rf"predictions file {predictions} is not UTF-8 text"):
        load_predictions(predictions)


def one_person(skeleton: str = "mupots_17") -> People:
    people = People.empty(skeleton)
    joints = people.keypoints_m.shape[1]
    return People(skeleton, uv_px=np.full((1, joints, 2), 100.0),
                  keypoints_m=np.full((1, joints, 3), 3.0), confidence=np.full((1, joints), 0.5),
                  inferred=np.zeros((1, joints), bool), score=np.array([0.8]),
                  root_sigma_m=np.array([0.2]), track_id=np.array([0]))


def predictions_file(tmp_path: Path, change) -> Path:
    path = tmp_path / "pred.json"
    save_predictions(path, [ImagePredictions(5, "TS1", one_person())])
    document = json.loads(path.read_text())
    change(document["images"][0])
    path.write_text(json.dumps(document))
    return path


@pytest.mark.parametrize("change, message", [
    (lambda e: e.update(image_id=0.9), r"images\[0\]: field 'image_id' must be an integer, got 0\.9"),
    (lambda e: e.update(image_id="5"), r"images\[0\]: field 'image_id' must be an integer, got '5'"),
    (lambda e: e.update(sequence=3), r"images\[0\]: field 'sequence' must be a string, got 3"),
    (lambda e: e["people"][0].update(score=1.5),
     r"images\[0\] \(image_id 5\) person 0: field 'score' must be a number in \[0, 1\], got 1\.5"),
    (lambda e: e["people"][0].update(score=-0.1), PERSON + r"field 'score' must be a number in \[0, 1\]"),
    (lambda e: e["people"][0].update(score="0.5"), PERSON + r"field 'score' is not numeric: 0\.5"),
    (lambda e: e["people"][0].update(score=True), PERSON + r"field 'score' is not numeric: True"),
    (lambda e: e["people"][0].update(track_id=2.5), PERSON + r"field 'track_id' must be an integer, got 2\.5"),
    (lambda e: e["people"][0]["confidence"].__setitem__(0, 7.0),
     PERSON + r"field 'confidence' must lie in \[0, 1\]"),
    (lambda e: e["people"][0].update(root_sigma_m=-1.0), PERSON + r"field 'root_sigma_m' must be >= 0"),
])
def test_prediction_fields_of_the_wrong_type_or_range(tmp_path, change, message) -> None:
    path = predictions_file(tmp_path, change)
    with pytest.raises(ValueError, match=rf"{path}: {message}"):
        load_predictions(path)


def test_predictions_in_a_skeleton_without_a_root_are_refused(tmp_path, caplog) -> None:
    path = tmp_path / "coco.json"
    save_predictions(path, [ImagePredictions(5, "TS1", one_person("coco_17"))])
    saved, _ = load_predictions(path)
    with pytest.raises(ValueError, match=rf"{path}: field 'skeleton' is 'coco_17', which has no "
                                         r"'pelvis' \(root\) joint: every person would score 0"):
        check_prediction_skeleton(saved, str(path))
    panoptic = [ImagePredictions(5, "TS1", one_person("panoptic_15"))]
    check_prediction_skeleton(panoptic, "panoptic.json")  # has a pelvis: scored, with a warning
    assert "skeleton 'panoptic_15' lacks the evaluated joints" in caplog.text


def test_eval_script_refuses_them_with_one_line_and_status_2(tmp_path, capsys) -> None:
    from mp3d_ros.cli.evaluate import main

    data = annotation_file(tmp_path)
    predictions = tmp_path / "coco.json"
    save_predictions(predictions, [ImagePredictions(1, "", one_person("coco_17"))])
    code = main(["--dataset", "synthetic", "--data", str(data), "--predictions", str(predictions)])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"mp3d-eval: error: {predictions}: field 'skeleton' is 'coco_17'")
