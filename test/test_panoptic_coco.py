"""CMU Panoptic (SMAP layout) and COCO keypoint readers, on fixtures written in those layouts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_mppe import POSE_MUCO_MM

from mp3d_ros.data.coco import read_coco_keypoints
from mp3d_ros.data.panoptic import panoptic_activity, read_panoptic_smap_json
from mp3d_ros.geometry.skeleton import MUCO_21, PANOPTIC_15, convert_joints

CAMERA = (1395.0, 1392.0, 960.0, 540.0)  # fx, fy, cx, cy of an HD Panoptic camera


def panoptic_pose_cm(root_cm) -> np.ndarray:
    """(15, 3) cm in SMAP's MPI15 order; the head point is 10 cm in front of the MuCo head."""
    xyz, _ = convert_joints(POSE_MUCO_MM / 10.0, MUCO_21, PANOPTIC_15)
    xyz[PANOPTIC_15.index("nose")] = POSE_MUCO_MM[16] / 10.0 + [0, 0, -10]
    return xyz + np.asarray(root_cm, dtype=float)


def smap_body(root_cm, state: int = 2) -> np.ndarray:
    """(15, 11) rows ``[x, y, Z, v, X, Y, Z, fx, fy, cx, cy]`` as SMAP writes them."""
    xyz = panoptic_pose_cm(root_cm)
    fx, fy, cx, cy = CAMERA
    uv = xyz[:, :2] / xyz[:, 2:] * [fx, fy] + [cx, cy]
    body = np.zeros((PANOPTIC_15.num_joints, 11))
    body[:, :2], body[:, 2], body[:, 3], body[:, 4:7] = uv, xyz[:, 2], state, xyz
    body[:, 7:] = CAMERA
    return body


def write_smap_json(path: Path, scenes: dict[str, list[list[float]]]) -> Path:
    """One image per entry of ``{img_paths: [root_cm, ...]}``."""
    root = [{"img_paths": name, "img_width": 1920, "img_height": 1080, "dataset": "CMUP",
             "isValidation": 1, "bodys": [smap_body(r).tolist() for r in roots]}
            for name, roots in scenes.items()]
    path.write_text(json.dumps({"root": root}))
    return path


SCENES = {
    "160422_haggling1/00_16/00_16_00000120.jpg": [[0, 0, 300], [90, 5, 420]],
    "160422_haggling1/00_16/00_16_00000121.jpg": [[1, 0, 300]],
    "160906_pizza1/00_03/00_03_00002000.jpg": [[-50, 0, 350]],
}


def test_smap_layout_reads_centimetres_visibility_and_camera(tmp_path):
    path = write_smap_json(tmp_path / "panoptic_test.json", SCENES)
    data = json.loads(path.read_text())
    data["root"][0]["bodys"][1][PANOPTIC_15.index("left_wrist")][3] = 1  # occluded
    data["root"][0]["bodys"][1][PANOPTIC_15.index("right_ankle")][3] = 0  # not labelled
    path.write_text(json.dumps(data))
    images = read_panoptic_smap_json(path)
    assert [len(im) for im in images] == [2, 1, 1]
    first = images[0]
    assert first.joint_set == "panoptic_15" and first.has_3d
    assert np.allclose(first.keypoints_cam_m[0], panoptic_pose_cm([0, 0, 300]) / 100.0)
    assert first.intrinsics.fx == CAMERA[0] and first.intrinsics.cy == CAMERA[3]
    wrist, ankle = PANOPTIC_15.index("left_wrist"), PANOPTIC_15.index("right_ankle")
    assert first.labelled[1, wrist] and not first.keypoints_vis[1, wrist]
    assert not first.labelled[1, ankle] and np.isnan(first.keypoints_cam_m[1, ankle]).all()
    assert (first.sequence, first.frame_index) == ("160422_haggling1", 120)
    assert panoptic_activity(images[2].sequence) == "pizza"
    # The box is the labelled joints' box.
    uv = first.keypoints_img_px[0]
    assert np.allclose(first.bbox_px[0, :2], uv.min(axis=0))


def test_smap_coco_entries_are_2d_only(tmp_path):
    path = write_smap_json(tmp_path / "mixed.json", {"train2017/000001.jpg": [[0, 0, 300]]})
    data = json.loads(path.read_text())
    data["root"][0]["dataset"] = "COCO"
    path.write_text(json.dumps(data))
    image = read_panoptic_smap_json(path)[0]
    assert not image.has_3d and np.isnan(image.keypoints_cam_m).all()
    assert np.isfinite(image.keypoints_img_px).all()


@pytest.mark.parametrize("mutation, message", [
    (lambda e: e.pop("bodys"), r"root\[0\]: missing field 'bodys'"),
    (lambda e: [b.pop() for b in e["bodys"]],
     r"root\[0\] \(.*00000120.jpg\): field 'bodys' has shape \(2, 14, 11\)"),
    (lambda e: e["bodys"][0].pop(), r"root\[0\] \(.*\): field 'bodys' is not an N x 15 x 11"),
    (lambda e: e.update(bodys=[]), r"no bodys, so no camera"),
    (lambda e: e["bodys"][1][0].__setitem__(7, 900.0), r"disagree on fx, fy, cx, cy"),
])
def test_malformed_smap_entries_are_named(tmp_path, mutation, message):
    path = write_smap_json(tmp_path / "p.json", SCENES)
    data = json.loads(path.read_text())
    mutation(data["root"][0])
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message):
        read_panoptic_smap_json(path)
    (tmp_path / "q.json").write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match="missing field 'root'"):
        read_panoptic_smap_json(tmp_path / "q.json")


# ----------------------------------------------------------------------------- COCO


def coco_keypoints(labelled: int = 17) -> list[float]:
    """17 x (x, y, v): the first ``labelled`` joints visible (v = 2), the rest v = 0 at (0, 0)."""
    values = []
    for j in range(17):
        values += [100.0 + 5 * j, 50.0 + 10 * j, 2] if j < labelled else [0, 0, 0]
    return values


def write_coco(path: Path) -> Path:
    images = [{"id": 1, "file_name": "a.jpg", "width": 640, "height": 480},
              {"id": 2, "file_name": "b.jpg", "width": 320, "height": 240}]
    keypoints = coco_keypoints(12)
    keypoints[2] = 1  # nose labelled but occluded
    annotations = [
        {"id": 10, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [90, 40, 100, 200],
         "keypoints": keypoints, "num_keypoints": 12},
        {"id": 11, "image_id": 1, "category_id": 1, "iscrowd": 1, "bbox": [0, 0, 50, 50],
         "keypoints": coco_keypoints(0), "num_keypoints": 0},
    ]
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "person"}]}))
    return path


def test_coco_reader_labels_visibility_and_placeholder_camera(tmp_path):
    images = read_coco_keypoints(write_coco(tmp_path / "person_keypoints_val2017.json"))
    assert [len(im) for im in images] == [1, 0]  # the crowd region is not a person
    first = images[0]
    assert first.joint_set == "coco_17" and not first.has_3d
    assert first.labelled[0].tolist() == [True] * 12 + [False] * 5
    assert not first.keypoints_vis[0, 0] and first.keypoints_vis[0, 1]  # v = 1 vs v = 2
    assert np.isnan(first.keypoints_img_px[0, 12:]).all()  # never the file's (0, 0)
    assert np.allclose(first.keypoints_img_px[0, 1], [105, 60])
    assert np.isnan(first.keypoints_cam_m).all()
    assert (first.intrinsics.fx, first.intrinsics.cx, first.intrinsics.cy) == (640, 320, 240)
    with_crowd = read_coco_keypoints(tmp_path / "person_keypoints_val2017.json", include_crowd=True)
    assert len(with_crowd[0]) == 2 and not with_crowd[0].labelled[1].any()


@pytest.mark.parametrize("mutation, message", [
    (lambda d: d["annotations"][0]["keypoints"].pop(), r"annotation 10: field 'keypoints' has 50"),
    (lambda d: d["annotations"][0].pop("bbox"), r"annotation 10: missing field 'bbox'"),
    (lambda d: d["annotations"][0].update(image_id=9), r"annotation 10: image_id 9 is not in"),
    (lambda d: d["images"][1].pop("height"), r"image 2: missing field 'height'"),
    (lambda d: d.pop("annotations"), r"missing field 'annotations'"),
])
def test_malformed_coco_entries_are_named(tmp_path, mutation, message):
    path = write_coco(tmp_path / "c.json")
    data = json.loads(path.read_text())
    mutation(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message):
        read_coco_keypoints(path)


def test_real_coco_fixture(shared_dir):
    images = read_coco_keypoints(shared_dir / "fixtures" / "coco" / "test_coco.json")
    by_id = {im.image_id: im for im in images}
    assert sorted(by_id) == [785, 40083, 196141, 197388]
    assert sum(len(im) for im in images) == 14  # the README: 14 annotations, none crowd
    assert by_id[785].labelled.sum() == 17 and (by_id[785].width, by_id[785].height) == (640, 425)
    # 40083: keypoint counts 14, 15 and a box with none (README).
    assert sorted(by_id[40083].labelled.sum(axis=1).tolist()) == [0, 14, 15]
