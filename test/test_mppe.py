"""3DMPPE-layout reader: fixtures written here in the MuCo-3DHP, MuPoTS-3D and Human3.6M layouts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mp3d_ros.data.mppe import (
    AnnotatedImage,
    group_by_sequence,
    h36m_action_name,
    read_3dmppe_json,
    sequence_from_file_name,
)
from mp3d_ros.geometry.camera import Intrinsics
from mp3d_ros.geometry.skeleton import H36M_17, MUCO_21, convert_joints, get_joint_set

# A root-relative MuCo-21 pose (mm, y down): the MuPoTS-17 joints, then hands and toes.
POSE_MUCO_MM = np.array([
    [0, -720, 10], [0, -500, 0], [-180, -480, 0], [-200, -200, 50], [-210, 50, 120],
    [180, -480, 0], [200, -200, 50], [210, 50, 120], [-100, 0, 0], [-110, 420, -40],
    [-115, 830, 0], [100, 0, 0], [110, 420, -40], [115, 830, 0], [0, 0, 0], [0, -250, 20],
    [0, -620, 30], [-215, 120, 150], [215, 120, 150], [-120, 850, -120], [120, 850, -120],
], dtype=float)
F_PX, C_PX = (1400.0, 1450.0), (960.0, 540.0)


def project(xyz_mm: np.ndarray, f=F_PX, c=C_PX) -> np.ndarray:
    return xyz_mm[..., :2] / xyz_mm[..., 2:] * np.asarray(f) + np.asarray(c)


def muco_person(root_mm, joint_set: str = "muco_21") -> tuple[np.ndarray, np.ndarray]:
    """(J, 3) mm and (J, 2) px of the pose at ``root_mm`` in ``joint_set`` (a subset of MuCo-21)."""
    xyz = POSE_MUCO_MM + np.asarray(root_mm, dtype=float)
    if joint_set != "muco_21":
        xyz, _ = convert_joints(xyz, MUCO_21, get_joint_set(joint_set))
    return xyz, project(xyz)


def annotation(ann_id: int, image_id: int, xyz: np.ndarray, uv: np.ndarray, **extra) -> dict:
    low, high = uv.min(axis=0), uv.max(axis=0)
    return {"id": ann_id, "image_id": image_id, "keypoints_cam": xyz.tolist(),
            "keypoints_img": uv.tolist(), "keypoints_vis": [1] * len(xyz),
            "bbox": [*low.tolist(), *(high - low).tolist()], **extra}


def write_muco_json(path: Path, scenes: list[list[list[float]]], sequences: list[str] | None = None,
                    joint_set: str = "muco_21", mupots: bool = False) -> Path:
    """A MuCo-3DHP.json (``f``, ``c``, synthetic ``sequence``) or, with ``mupots``, a
    MuPoTS-3D.json (``intrinsic``, ``TS<n>/img_<frame>.jpg``, ``is_valid``)."""
    images, annotations = [], []
    for i, roots in enumerate(scenes):
        sequence = sequences[i] if sequences else f"scene{i // 2}"
        image = {"id": 100 + i, "width": 1920, "height": 1080}
        if mupots:
            image.update(file_name=f"{sequence}/img_{i:06d}.jpg", intrinsic=[*F_PX, *C_PX])
        else:
            image.update(file_name=f"images/{i:06d}.jpg", f=list(F_PX), c=list(C_PX),
                         sequence=sequence, frame_idx=i, stamp=0.5 * i)
        images.append(image)
        for k, root in enumerate(roots):
            xyz, uv = muco_person(root, joint_set)
            extra = {"is_valid": 1} if mupots else {"track_id": k}
            annotations.append(annotation(1000 + 10 * i + k, image["id"], xyz, uv, **extra))
    path.write_text(json.dumps({"images": images, "annotations": annotations}))
    return path


def write_h36m(folder: Path, subject: int = 9, frames=(0, 64)) -> Path:
    """Current 3DMPPE Human3.6M files: ``_data.json`` (no keypoints), ``_camera.json``,
    ``_joint_3d.json`` (world mm)."""
    angle = 0.3
    R = np.array([[np.cos(angle), 0, -np.sin(angle)], [0, 1, 0], [np.sin(angle), 0, np.cos(angle)]])
    t = np.array([100.0, -200.0, -4000.0])  # camera centre in the world, mm
    cameras = {"1": {"R": R.tolist(), "t": t[:, None].tolist(), "f": list(F_PX), "c": list(C_PX)}}
    pose = convert_joints(POSE_MUCO_MM, MUCO_21, H36M_17)[0]
    pose[H36M_17.index("nose")] = [0, -600, -80]  # MuCo has no nose; H36M does
    joints, images, annotations = {"2": {"1": {}}}, [], []
    for n, frame in enumerate(frames):
        world = pose + [10.0 * frame, 0, 0]
        joints["2"]["1"][str(frame)] = world.tolist()
        name = f"s_{subject:02d}_act_02_subact_01_ca_01"
        images.append({"id": 1000 * subject + n, "file_name": f"{name}/{name}_{frame + 1:06d}.jpg",
                       "width": 1000, "height": 1002, "subject": subject, "action_idx": 2, "subaction_idx": 1,
                       "cam_idx": 1, "frame_idx": frame})
        annotations.append({"id": n, "image_id": 1000 * subject + n, "bbox": [0, 0, 10, 10],
                            "keypoints_vis": [True] * 17})
    stem = folder / f"Human36M_subject{subject}"
    Path(f"{stem}_camera.json").write_text(json.dumps(cameras))
    Path(f"{stem}_joint_3d.json").write_text(json.dumps(joints))
    Path(f"{stem}_data.json").write_text(json.dumps({"images": images, "annotations": annotations}))
    return Path(f"{stem}_data.json")


def h36m_truth(frame: int) -> np.ndarray:
    """(17, 3) camera-frame mm the reader must produce for ``write_h36m``'s frame."""
    angle = 0.3
    R = np.array([[np.cos(angle), 0, -np.sin(angle)], [0, 1, 0], [np.sin(angle), 0, np.cos(angle)]])
    pose = convert_joints(POSE_MUCO_MM, MUCO_21, H36M_17)[0]
    pose[H36M_17.index("nose")] = [0, -600, -80]
    return (pose + [10.0 * frame, 0, 0] - [100.0, -200.0, -4000.0]) @ R.T


# ----------------------------------------------------------------------------- layouts


def test_muco_layout_reads_metres_camera_sequence_and_tracks(tmp_path):
    path = write_muco_json(tmp_path / "MuCo-3DHP.json", [[[0, 0, 3000], [800, 0, 5000]], []])
    images = read_3dmppe_json(path, "muco_21")
    assert [im.image_id for im in images] == [100, 101] and len(images[1]) == 0
    first = images[0]
    xyz, uv = muco_person([800, 0, 5000])
    assert np.allclose(first.keypoints_cam_m[1], xyz / 1000.0)  # the file stores mm
    assert np.allclose(first.keypoints_img_px[1], uv)
    assert first.intrinsics.fx == F_PX[0] and first.intrinsics.cy == C_PX[1]
    assert (first.sequence, first.frame_index, first.stamp_s) == ("scene0", 0, 0.0)
    assert images[1].stamp_s == 0.5 and first.track_id.tolist() == [0, 1]
    assert first.labelled.all() and first.keypoints_vis.all() and first.valid.all()
    assert first.bbox_px.shape == (2, 4) and first.has_3d
    # Projecting the 3D joints with the image's camera lands on the 2D joints.
    assert np.allclose(project(first.keypoints_cam_m * 1000), first.keypoints_img_px)


def test_mupots_layout_intrinsic_field_sequence_folders_and_validity(tmp_path):
    path = write_muco_json(tmp_path / "MuPoTS-3D.json", [[[0, 0, 3000]], [[0, 0, 3100]],
                                                         [[0, 0, 4000]]],
                           sequences=["TS1", "TS1", "TS2"], joint_set="mupots_17", mupots=True)
    data = json.loads(path.read_text())
    data["annotations"][1]["is_valid"] = 0
    path.write_text(json.dumps(data))
    images = read_3dmppe_json(path, "mupots_17")
    assert [(im.sequence, im.frame_index) for im in images] == [("TS1", 0), ("TS1", 1), ("TS2", 0)]
    assert images[0].intrinsics.fy == F_PX[1] and images[0].stamp_s == 0.0
    assert images[1].valid.tolist() == [False] and images[0].valid.tolist() == [True]
    groups = group_by_sequence(images)
    assert list(groups) == ["TS1", "TS2"] and [im.image_id for im in groups["TS1"]] == [100, 101]


def test_h36m_per_subject_files_project_world_joints_with_the_camera(tmp_path):
    images = read_3dmppe_json(write_h36m(tmp_path), "h36m_17")
    assert [im.frame_index for im in images] == [0, 64]
    truth_mm = h36m_truth(64)  # X_cam = R (X_world - t)
    assert np.allclose(images[1].keypoints_cam_m[0], truth_mm / 1000.0)
    assert np.allclose(images[1].keypoints_img_px[0], project(truth_mm))
    assert images[1].sequence == "s_09_act_02_subact_01_ca_01"
    assert h36m_action_name(images[1].sequence) == "Directions"
    assert images[0].intrinsics.width == 1000


def test_null_joints_are_unlabelled_and_distortion_gives_a_raw_camera(tmp_path):
    path = write_muco_json(tmp_path / "MuCo-3DHP.json", [[[0, 0, 3000]]])
    data = json.loads(path.read_text())
    data["annotations"][0]["keypoints_cam"][3] = [None, None, None]
    data["images"][0].update(distortion_model="plumb_bob", distortion=[0.1, -0.05, 0, 0, 0])
    path.write_text(json.dumps(data))
    image = read_3dmppe_json(path, "muco_21")[0]
    assert not image.labelled[0, 3] and image.labelled[0, [0, 4]].all()
    assert np.isnan(image.keypoints_cam_m[0, 3]).all() and np.isnan(image.keypoints_img_px[0, 3]).all()
    assert not image.keypoints_vis[0, 3]
    assert image.intrinsics.distortion_model == "plumb_bob" and image.intrinsics.D[0] == 0.1


def test_sequence_names_from_file_names():
    assert sequence_from_file_name("TS12/img_000003.jpg") == "TS12"
    assert sequence_from_file_name("augmented_set/1_000001.jpg") == ""
    assert h36m_action_name("s_11_act_16_subact_02_ca_04") == "WalkTogether"


# ----------------------------------------------------------------------------- malformed files


def test_missing_or_broken_files_are_named(tmp_path):
    with pytest.raises(ValueError, match="not found.*nothere.json"):
        read_3dmppe_json(tmp_path / "nothere.json", "muco_21")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json is not valid JSON"):
        read_3dmppe_json(tmp_path / "bad.json", "muco_21")
    (tmp_path / "top.json").write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match="top level.*'annotations'"):
        read_3dmppe_json(tmp_path / "top.json", "muco_21")


@pytest.mark.parametrize("mutation, message", [
    (lambda d: d["annotations"][0].pop("keypoints_cam"), r"annotation 1000 .*'keypoints_cam'"),
    (lambda d: d["annotations"][0].pop("bbox"), r"annotation 1000 .*'bbox'"),
    (lambda d: d["annotations"][0]["keypoints_img"].pop(),
     r"'keypoints_img' has shape \(20, 2\), expected \(21, 2\)"),
    (lambda d: d["images"][0].pop("f"), r"image 100: missing camera"),
    (lambda d: d["images"][0].pop("width"), r"image 100: missing field 'width'"),
    (lambda d: d["images"][0].update(f=[-5, 1400]), r"image 100: invalid camera"),
    (lambda d: d["annotations"][0].update(image_id=7), r"image ids \[7\].*no such image"),
])
def test_malformed_entries_name_the_entry_and_field(tmp_path, mutation, message):
    path = write_muco_json(tmp_path / "MuCo-3DHP.json", [[[0, 0, 3000]]])
    data = json.loads(path.read_text())
    mutation(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message):
        read_3dmppe_json(path, "muco_21")


def test_wrong_joint_set_is_refused(tmp_path):
    path = write_muco_json(tmp_path / "MuCo-3DHP.json", [[[0, 0, 3000]]])
    with pytest.raises(ValueError, match=r"'keypoints_cam' has shape \(21, 3\), expected \(17, 3\)"):
        read_3dmppe_json(path, "mupots_17")


def test_h36m_missing_world_joints_are_named(tmp_path):
    path = write_h36m(tmp_path)
    data = json.loads(path.read_text())
    data["images"][1]["frame_idx"] = 5
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="no world joints for action/subaction/frame 2/1/5"):
        read_3dmppe_json(path, "h36m_17")


def test_annotated_image_checks_shapes():
    with pytest.raises(ValueError, match="keypoints_cam_m has shape"):
        AnnotatedImage(0, "a.jpg", 10, 10, Intrinsics.pinhole(100, 100, 5, 5, 10, 10), "", 0, 0.0,
                       "mupots_17",
                       np.zeros((1, 16, 3)), np.zeros((1, 17, 2)), np.ones((1, 17), bool),
                       np.ones((1, 17), bool), np.zeros((1, 4)), np.zeros(1, np.int64))
