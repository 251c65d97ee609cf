"""Saved-predictions JSON: round trip through ``People`` and refusal of malformed files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mp3d_ros.evaluation.predictions import ImagePredictions, load_predictions, save_predictions
from mp3d_ros.geometry.people import People

J = 17


def sample_people(count: int, seed: int) -> People:
    rng = np.random.default_rng(seed)
    keypoints = rng.normal(0, 0.3, (count, J, 3)) + [0, 0, 4.0]
    uv = rng.uniform(0, 1000, (count, J, 2))
    if count:
        uv[0, 3] = np.nan  # a joint the model could not place
        keypoints[0, 3] = np.nan
    return People("mupots_17", uv_px=uv, keypoints_m=keypoints,
                  confidence=rng.uniform(0, 1, (count, J)),
                  inferred=rng.uniform(0, 1, (count, J)) > 0.5,
                  score=np.sort(rng.uniform(0, 1, count))[::-1],
                  root_sigma_m=rng.uniform(0.05, 0.5, count),
                  track_id=np.arange(count, dtype=np.int64) + 4)


def test_round_trip_keeps_every_field_and_nan(tmp_path):
    images = [ImagePredictions(7, "TS1", sample_people(3, 0), "TS1/img_000000.jpg"),
              ImagePredictions(8, "TS1", sample_people(0, 1))]
    path = tmp_path / "out" / "pred.json"
    save_predictions(path, images, {"model": "lite"})
    loaded, metadata = load_predictions(path)
    assert metadata == {"model": "lite"}
    assert [(im.image_id, im.sequence, im.file_name) for im in loaded] == \
        [(7, "TS1", "TS1/img_000000.jpg"), (8, "TS1", "")]
    for original, back in zip(images, loaded):
        for name in ("uv_px", "keypoints_m", "confidence", "inferred", "score", "root_sigma_m",
                     "track_id"):
            np.testing.assert_array_equal(getattr(back.people, name), getattr(original.people, name))
    assert np.isnan(loaded[0].people.keypoints_m[0, 3]).all()
    assert "NaN" not in path.read_text()  # strict JSON: NaN is written as null
    assert list(tmp_path.joinpath("out").iterdir()) == [path]  # no temp file left


def write(tmp_path, mutate) -> object:
    path = tmp_path / "pred.json"
    save_predictions(path, [ImagePredictions(7, "TS1", sample_people(2, 0))])
    document = json.loads(path.read_text())
    mutate(document)
    path.write_text(json.dumps(document))
    return path


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(format="other"), "not an mp3d_ros predictions file"),
    (lambda d: d.update(version=99), "version 99 is not supported"),
    (lambda d: d.update(skeleton="nope"), "field 'skeleton'"),
    (lambda d: d.pop("images"), "missing field 'images'"),
    (lambda d: d["images"].append(dict(d["images"][0])), r"images\[1\]: image_id 7 appears twice"),
    (lambda d: d["images"][0]["people"][1].pop("score"),
     r"image_id 7\) person 1: missing field 'score'"),
    (lambda d: d["images"][0]["people"][0]["uv_px"].pop(),
     r"person 0: field 'uv_px' has shape \(16, 2\), expected \(17, 2\)"),
    (lambda d: d["images"][0]["people"][0].update(score=None), r"'score' must be a number in \[0, 1\], got nan"),
    (lambda d: d["images"][0]["people"][0].update(inferred=[1] * 17), "'inferred' must be 17 booleans"),
    (lambda d: d["images"][0]["people"][0].update(keypoints_m="x"), "'keypoints_m'"),
])
def test_malformed_files_are_refused_with_the_place(tmp_path, mutate, message):
    with pytest.raises(ValueError, match=message):
        load_predictions(write(tmp_path, mutate))


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ValueError, match="predictions file not found"):
        load_predictions(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("[1, 2")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_predictions(tmp_path / "bad.json")


def test_saving_refuses_mixed_skeletons_and_nan_scores(tmp_path):
    coco = People.empty("coco_17")
    with pytest.raises(ValueError, match="mix skeletons"):
        save_predictions(tmp_path / "p.json", [ImagePredictions(1, "", sample_people(1, 0)),
                                               ImagePredictions(2, "", coco)])
    people = sample_people(1, 0)
    bad = People("mupots_17", people.uv_px, people.keypoints_m, people.confidence, people.inferred,
                 np.array([np.nan]), people.root_sigma_m)
    with pytest.raises(ValueError, match="scores must be finite"):
        save_predictions(tmp_path / "p.json", [ImagePredictions(1, "", bad)])
    assert not (tmp_path / "p.json").exists()
