"""``mp3d-eval`` end to end on tiny generated datasets, the k-value baseline, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_mppe import write_h36m, write_muco_json
from test_panoptic_coco import SCENES, write_smap_json

from mp3d_ros.cli import evaluate as evaluate_cli
from mp3d_ros.data.mppe import AnnotatedImage, read_3dmppe_json
from mp3d_ros.evaluation import evaluate
from mp3d_ros.evaluation.predictions import ImagePredictions, load_predictions, save_predictions
from mp3d_ros.geometry.camera import Intrinsics, project
from mp3d_ros.geometry.people import People
from mp3d_ros.geometry.skeleton import MUPOTS_17, convert_joints, get_joint_set

REPO = Path(__file__).resolve().parents[1]
MUPOTS_SCENES = [[[0, 0, 3000], [900, 0, 5000]], [[10, 0, 3000], [910, 0, 5000]],
                 [[-500, 100, 4000]], [[-480, 100, 4000]]]
MUPOTS_SEQUENCES = ["TS1", "TS1", "TS2", "TS2"]


def perfect_people(image: AnnotatedImage, drop: int | None = None) -> People:
    """The image's ground truth as MuPoTS-17 predictions (person ``drop`` left out)."""
    source = get_joint_set(image.joint_set)
    keep = [p for p in range(len(image)) if p != drop]
    uv, _ = convert_joints(image.keypoints_img_px[keep], source, MUPOTS_17)
    xyz, _ = convert_joints(image.keypoints_cam_m[keep], source, MUPOTS_17)
    count = len(keep)
    return People("mupots_17", uv_px=uv, keypoints_m=xyz, confidence=np.ones((count, 17)),
                  inferred=np.zeros((count, 17), bool), score=np.linspace(0.9, 0.5, count),
                  root_sigma_m=np.full(count, 0.1))


def save_perfect(path, images, drop_first_person_of=None):
    save_predictions(path, [ImagePredictions(im.image_id, im.sequence,
                                             perfect_people(im, 0 if im.image_id == drop_first_person_of
                                                            else None)) for im in images])
    return path


@pytest.fixture
def mupots_dir(tmp_path):
    folder = tmp_path / "MuPoTS"
    folder.mkdir()
    write_muco_json(folder / "MuPoTS-3D.json", MUPOTS_SCENES, MUPOTS_SEQUENCES, "mupots_17",
                    mupots=True)
    return folder


def run(argv, capsys):
    code = evaluate_cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_mupots_predictions_file_end_to_end(mupots_dir, tmp_path, capsys):
    images = read_3dmppe_json(mupots_dir / "MuPoTS-3D.json", "mupots_17")
    predictions = save_perfect(tmp_path / "pred.json", images, drop_first_person_of=101)
    code, out, err = run(["--dataset", "mupots", "--data", mupots_dir, "--predictions", predictions,
                          "--metrics-out", tmp_path / "m.json"], capsys)
    assert code == 0, err
    metrics = json.loads((tmp_path / "m.json").read_text())
    # TS1: 4 people, 1 missing -> 3/4 = 75; TS2: 2/2 = 100; mean of sequences 87.5.
    assert metrics["all"]["pck_rel"] == pytest.approx(87.5)
    assert metrics["matched"]["pck_abs"] == 100.0 and metrics["matched"]["pcod"] == 100.0
    assert metrics["per_sequence"]["all"]["TS1"]["pck_rel"] == pytest.approx(75.0)
    # 5 predictions, all true positives, over 6 ground truths: sum of 1 * 1/6 for steps 2..5.
    assert metrics["ap_root_25"] == pytest.approx(100 * 4 / 6)
    for text in ("All people", "Matched people", "AP_root^25 66.7", "TS1", "TS2", "mean",
                 "PCK by joint group", "shoulder", "40 px", "mpii_mupots_multiperson_eval"):
        assert text in out


def test_synthetic_scenes_use_the_muco_layout_and_their_sequences(tmp_path, capsys):
    folder = tmp_path / "synthetic"
    folder.mkdir()
    write_muco_json(folder / "MuCo-3DHP.json", MUPOTS_SCENES, ["kitchen", "kitchen", "yard", "yard"])
    images = read_3dmppe_json(folder / "MuCo-3DHP.json", "muco_21")
    predictions = save_perfect(tmp_path / "pred.json", images)
    code, out, err = run(["--dataset", "synthetic", "--data", folder, "--predictions", predictions,
                          "--metrics-out", tmp_path / "m.json"], capsys)
    assert code == 0, err
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert sorted(metrics["per_sequence"]["all"]) == ["kitchen", "yard"]
    assert metrics["all"]["pck_abs"] == 100.0 and metrics["all"]["pck_root"] == 100.0
    assert "kitchen" in out


def test_panoptic_end_to_end_reports_activities(tmp_path, capsys):
    folder = tmp_path / "panoptic"
    folder.mkdir()
    write_smap_json(folder / "test.json", SCENES)
    images, _ = evaluate.load_dataset("panoptic", folder)
    predictions = save_perfect(tmp_path / "pred.json", images)
    code, out, err = run(["--dataset", "panoptic", "--data", folder, "--predictions", predictions,
                          "--metrics-out", tmp_path / "m.json"], capsys)
    assert code == 0, err
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert sorted(metrics["per_group"]) == ["haggling", "pizza"]
    assert metrics["mean"] == {"mpjpe_mm": pytest.approx(0.0), "rt_error_mm": pytest.approx(0.0),
                               "recall": 100.0}
    assert "< 30 px" in out and "RtError" in out


def test_h36m_end_to_end_uses_test_subjects_every_64th_frame(tmp_path, capsys):
    annotations = tmp_path / "h36m" / "annotations"
    annotations.mkdir(parents=True)
    for subject in (9, 11):
        write_h36m(annotations, subject, frames=(0, 5, 64))
    images, root = evaluate.load_dataset("h36m", tmp_path / "h36m")
    assert len(images) == 4 and root == tmp_path / "h36m" / "images"  # frame 5 is not tested
    predictions = save_perfect(tmp_path / "pred.json", images)
    code, out, err = run(["--dataset", "h36m", "--data", tmp_path / "h36m", "--predictions",
                          predictions, "--metrics-out", tmp_path / "m.json"], capsys)
    assert code == 0, err
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["total"]["mrpe_mm"] == pytest.approx(0.0) and metrics["total"]["matched"] == 4
    assert "Directions" in out and "MRPE_z" in out


# ----------------------------------------------------------------------------- k-value baseline


def test_rootnet_box_and_kvalue_depth_by_hand():
    camera = Intrinsics.pinhole(1000, 1000, 500, 400, 1000, 800)
    uv = np.full((17, 2), np.nan)
    uv[0], uv[1], uv[2] = [100, 100], [300, 500], [200, 300]
    # Tight box 200 x 400; process_bbox: x2 = x1 + (w - 1) -> 199 x 399; square side 399 * 1.25.
    side = 399 * 1.25
    assert evaluate.rootnet_box_area_px2(uv, 1000, 800) == pytest.approx(side * side)
    keypoints = np.full((1, 17, 3), np.nan)
    keypoints[0, :3, 2] = [3.1, 3.0, 3.2]
    keypoints[0, MUPOTS_17.root] = [0, 0, 3.0]
    people = People("mupots_17", uv_px=uv[None], keypoints_m=keypoints, confidence=np.ones((1, 17)),
                    inferred=np.zeros((1, 17), bool), score=np.ones(1), root_sigma_m=np.ones(1))
    # Person 1 has no pelvis pixel, so its relative depths are kept and only joints 0-2 exist.
    out = evaluate.kvalue_baseline(people, camera)
    k = np.sqrt(1000 * 1000 * 4.0 / (side * side))  # = 2000 / 498.75 = 4.0100 m
    assert out.keypoints_m[0, :3, 2] == pytest.approx([k + 0.1, k, k + 0.2])
    assert np.allclose(project(out.keypoints_m[0, :3], camera), uv[:3])  # same pixels
    assert np.isnan(out.root_sigma_m).all()
    single = uv.copy()
    single[1:] = np.nan
    assert np.isnan(evaluate.rootnet_box_area_px2(single, 1000, 800))


def test_kvalue_baseline_end_to_end(mupots_dir, tmp_path, capsys):
    images = read_3dmppe_json(mupots_dir / "MuPoTS-3D.json", "mupots_17")
    predictions = save_perfect(tmp_path / "pred.json", images)
    code, out, err = run(["--dataset", "mupots", "--data", mupots_dir, "--predictions", predictions,
                          "--baseline", "kvalue", "--metrics-out", tmp_path / "m.json"], capsys)
    assert code == 0, err
    assert "k-value" in out
    metrics = json.loads((tmp_path / "m.json").read_text())
    expected = []
    for image in images:
        for p in range(len(image)):
            area = evaluate.rootnet_box_area_px2(image.keypoints_img_px[p], image.width, image.height)
            k_m = np.sqrt(image.intrinsics.fx * image.intrinsics.fy * 4.0 / area)
            expected.append(abs(k_m - image.keypoints_cam_m[p, MUPOTS_17.root, 2]) * 1000)
    assert metrics["mrpe_mm"]["z"] == pytest.approx(np.mean(expected))
    assert metrics["matched"]["pck_rel"] > 90.0  # same 2D poses and relative depths


# ----------------------------------------------------------------------------- the estimator path


def test_estimator_path_writes_predictions_and_scores_them(tmp_path, capsys):
    """The real path: mp3d-eval runs the shipped lite network on generated scenes in batches of 2
    (``Estimator.estimate_batch``), writes the predictions in dataset order and scores them; each
    image's people equal the estimator's one-image result."""
    from mp3d_ros.inference.estimator import Estimator
    from mp3d_ros.synthetic.scenes import SceneConfig, write_dataset

    data = tmp_path / "scenes"
    write_dataset(data, SceneConfig(size=(320, 240), people=(1, 2)), 3, seed=0)
    images, root = evaluate.load_dataset("synthetic", data)
    model = str(REPO / "models" / "synthetic_lite.pt")
    out_path = tmp_path / "written.json"
    code, out, err = run(["--model", model, "--dataset", "synthetic", "--data", data, "--out", out_path,
                          "--device", "cpu", "--batch", "2", "--metrics-out", tmp_path / "m.json"], capsys)
    assert code == 0, err
    saved, metadata = load_predictions(out_path)
    assert [s.image_id for s in saved] == [im.image_id for im in images]
    assert metadata["model"] == model
    estimator = Estimator(model, device="cpu")
    for prediction, image in zip(saved, images):
        rgb = cv2.cvtColor(cv2.imread(str(root / image.file_name)), cv2.COLOR_BGR2RGB)
        alone = estimator.estimate(rgb, image.intrinsics)
        assert len(prediction.people) == len(alone)
        np.testing.assert_allclose(prediction.people.keypoints_m, alone.keypoints_m, atol=1e-4)
        np.testing.assert_allclose(prediction.people.uv_px, alone.uv_px, atol=1e-2)
    assert sum(len(p.people) for p in saved) > 0
    assert "pck_abs" in json.loads((tmp_path / "m.json").read_text())["all"]
    # The next batch read and decoded in a second thread (the GPU default): the same people.
    ahead = evaluate.run_estimator(model, images, root, "cpu", 2, decode_ahead=True)
    assert [a.image_id for a in ahead] == [s.image_id for s in saved]
    for got, want in zip(ahead, saved):
        np.testing.assert_allclose(got.people.keypoints_m, want.people.keypoints_m, atol=1e-6)
    # --input-size reaches the estimator and the predictions file says so.
    resized = tmp_path / "resized.json"
    code, out, err = run(["--model", model, "--dataset", "synthetic", "--data", data, "--out", resized,
                          "--device", "cpu", "--input-size", "224x160"], capsys)
    assert code == 0, err
    small, metadata = load_predictions(resized)
    assert metadata["input_size"] == [224, 160]
    at_size = Estimator(model, device="cpu", input_size=(224, 160))
    rgb = cv2.cvtColor(cv2.imread(str(root / images[0].file_name)), cv2.COLOR_BGR2RGB)
    np.testing.assert_allclose(small[0].people.uv_px, at_size.estimate(rgb, images[0].intrinsics).uv_px,
                               atol=1e-2)
    assert any(len(a.people) != len(b.people) or not np.allclose(a.people.uv_px, b.people.uv_px, atol=1e-2)
               for a, b in zip(small, saved))


# ----------------------------------------------------------------------------- bad input


def test_predictions_that_do_not_cover_the_dataset_are_refused(mupots_dir, tmp_path, capsys):
    images = read_3dmppe_json(mupots_dir / "MuPoTS-3D.json", "mupots_17")
    partial = save_perfect(tmp_path / "partial.json", images[:3])
    code, _, err = run(["--dataset", "mupots", "--data", mupots_dir, "--predictions", partial], capsys)
    assert code == 2 and "predictions lack 1 of the dataset's 4 images (image ids [103])" in err
    foreign = tmp_path / "foreign.json"
    shifted = [ImagePredictions(im.image_id + 50, "", perfect_people(im)) for im in images]
    own = [ImagePredictions(im.image_id, "", perfect_people(im)) for im in images]
    save_predictions(foreign, shifted + own)
    code, _, err = run(["--dataset", "mupots", "--data", mupots_dir, "--predictions", foreign], capsys)
    assert code == 2 and "image ids the dataset does not have" in err


def test_missing_data_and_bad_arguments(tmp_path, capsys):
    code, _, err = run(["--dataset", "mupots", "--data", tmp_path / "nowhere", "--predictions",
                        tmp_path / "p.json"], capsys)
    assert code == 2 and "nowhere does not exist" in err
    code, _, err = run(["--dataset", "mupots", "--data", tmp_path, "--predictions",
                        tmp_path / "p.json"], capsys)
    assert code == 2 and "MuPoTS-3D annotation file not found" in err
    with pytest.raises(SystemExit):
        evaluate_cli.main(["--dataset", "mupots", "--data", str(tmp_path)])  # no model nor predictions
    with pytest.raises(SystemExit):
        evaluate_cli.main(["--model", "m", "--predictions", "p", "--dataset", "mupots", "--data", "d"])


def test_duplicate_image_ids_in_the_dataset_are_refused(tmp_path):
    path = write_muco_json(tmp_path / "MuCo-3DHP.json", MUPOTS_SCENES[:2])
    data = json.loads(path.read_text())
    data["images"][1]["id"] = data["images"][0]["id"]
    for ann in data["annotations"]:
        ann["image_id"] = data["images"][0]["id"]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="image id 100 appears twice"):
        evaluate.load_dataset("synthetic", tmp_path)


def test_generated_scenes_load_as_the_synthetic_dataset(tmp_path):
    """What ``mp3d-synth --out DIR`` writes is what ``mp3d-eval --dataset synthetic --data DIR`` reads."""
    from mp3d_ros.evaluation.evaluate import ground_truth_frames, load_dataset
    from mp3d_ros.synthetic.scenes import SceneConfig, write_dataset

    write_dataset(tmp_path, SceneConfig(size=(96, 64), people=(1, 2)), 2, seed=0)
    images, root = load_dataset("synthetic", tmp_path)
    assert len(images) == 2 and images[0].joint_set == "muco_21"
    assert (root / images[0].file_name).is_file()
    assert all(frame.keypoints_mm.shape[1] == 17 for frame in ground_truth_frames(images))
