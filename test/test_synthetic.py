"""body.py and synthetic.py: proportions, poses, ground truth of generated scenes, the dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mp3d_ros.data.mppe import read_3dmppe_json
from mp3d_ros.geometry.camera import Intrinsics, project
from mp3d_ros.geometry.skeleton import MUCO_21
from mp3d_ros.synthetic import body as bodies
from mp3d_ros.synthetic.bvh import load_mocap_poses
from mp3d_ros.synthetic.scenes import (
    SceneConfig,
    generate_image,
    generate_sequence,
    write_dataset,
)

torch.set_num_threads(1)
J = {name: i for i, name in enumerate(MUCO_21.joints)}


# ----------------------------------------------------------------------------- body


@pytest.mark.parametrize("height_m", [1.0, 1.35, 1.7, 2.0])
def test_shape_stands_exactly_its_height(height_m: float) -> None:
    shape = bodies.sample_shape(np.random.default_rng(7), height_m=height_m)
    joints = bodies.rest_pose(shape)
    assert joints[J["head_top"], 1] - bodies.lowest_point(joints, shape) == pytest.approx(
        height_m, abs=1e-9
    )
    placed = bodies.place(joints, shape, 0.0, (0.0, 0.0))
    assert placed[J["head_top"], 1] == pytest.approx(height_m, abs=1e-9)


@pytest.mark.parametrize("height_m", [1.2, 1.7, 1.95])
def test_a_flat_foot_stands_on_heel_and_toe_with_the_ankle_at_its_anthropometric_height(
        height_m: float) -> None:
    """The rest pose's feet are flat: the foot solid touches the floor behind and in front of the
    ankle, which stands 0.054 of stature up (malleolus 0.039 plus a sole), what the floor cue
    assumes; pointing the toes down lifts the ankle about the toe instead."""
    shape = bodies.sample_shape(np.random.default_rng(3), height_m=height_m)
    joints = bodies.place(bodies.rest_pose(shape), shape, 0.0, (0.0, 0.0))
    ankle = joints[J["left_ankle"]]
    foot = bodies.body_primitives(joints, shape)
    index = int(np.argmin(np.linalg.norm(foot.capsule_b_m - joints[J["left_toe"]], axis=1)))
    heel, toe, radius = foot.capsule_a_m[index], foot.capsule_b_m[index], foot.capsule_radius_m[index]
    assert heel[1] - radius == pytest.approx(0.0, abs=1e-9)
    assert toe[1] - radius == pytest.approx(0.0, abs=1e-9)
    assert heel[2] < ankle[2] < toe[2]  # the heel behind the ankle, the toe in front
    assert ankle[1] / height_m == pytest.approx(0.054, abs=0.002)
    pointed = bodies.pose_from_angles(shape, {"left_ankle": np.array([-30.0, 0.0, 0.0]),
                                              "right_ankle": np.array([-30.0, 0.0, 0.0])})
    on_toes = bodies.place(pointed, shape, 0.0, (0.0, 0.0))
    assert on_toes[J["left_ankle"], 1] > ankle[1] + 0.03 * height_m


def test_shapes_vary_and_children_have_bigger_heads() -> None:
    rng = np.random.default_rng(0)
    shapes = [bodies.sample_shape(rng) for _ in range(200)]
    heights = np.array([s.height_m for s in shapes])
    assert heights.min() >= 1.0 and heights.max() <= 2.0 and (heights < 1.4).sum() > 10
    legs = np.array([s.bone_lengths_m[J["left_knee"]] / s.height_m for s in shapes])
    assert legs.std() > 0.003  # limb ratios differ between people
    head = lambda s: s.bone_lengths_m[J["head_top"]] / s.height_m  # noqa: E731
    child, adult = (bodies.sample_shape(rng, height_m=h) for h in (1.0, 1.8))
    assert head(child) > 1.3 * head(adult)
    with pytest.raises(ValueError, match="height_m"):
        bodies.sample_shape(rng, height_m=3.0)


@given(seed=st.integers(0, 10**6), activity=st.sampled_from(bodies.ACTIVITIES))
def test_every_joint_lies_inside_its_own_body(seed: int, activity: str) -> None:
    """Visibility labels rely on it: a joint is seen through a primitive that contains it."""
    rng = np.random.default_rng(seed)
    shape = bodies.sample_shape(rng)
    joints = bodies.sample_pose(rng, activity, shape)
    prims = bodies.body_primitives(joints, shape)
    seg = prims.capsule_b_m - prims.capsule_a_m
    rel = joints[:, None] - prims.capsule_a_m
    s = np.clip((rel * seg).sum(-1) / (seg * seg).sum(-1), 0, 1)
    in_capsule = np.linalg.norm(rel - s[..., None] * seg, axis=-1) <= prims.capsule_radius_m + 1e-9
    local = np.einsum(
        "mij,kmj->kmi",
        np.linalg.inv(prims.ellipsoid_axes_m),
        joints[:, None] - prims.ellipsoid_center_m,
    )
    in_ellipsoid = np.linalg.norm(local, axis=-1) <= 1 + 1e-9
    assert np.all(in_capsule.any(1) | in_ellipsoid.any(1)), np.array(MUCO_21.joints)[
        ~(in_capsule.any(1) | in_ellipsoid.any(1))
    ]


def test_angles_are_clipped_to_anatomical_limits() -> None:
    shape = bodies.sample_shape(np.random.default_rng(0), height_m=1.7)
    bent = bodies.pose_from_angles(shape, {"left_knee": [150.0]})
    over = bodies.pose_from_angles(shape, {"left_knee": [260.0]})
    np.testing.assert_allclose(over, bent)
    bent = bodies.pose_from_angles(shape, {"left_knee": [90.0]})
    straight = bodies.pose_from_angles(shape, {"left_knee": [-40.0]})
    np.testing.assert_allclose(straight, bodies.rest_pose(shape), atol=1e-12)
    # Knee flexion takes the ankle backward (-Z), hip flexion the knee forward (+Z).
    assert bent[J["left_ankle"], 2] < -0.3
    flexed = bodies.pose_from_angles(shape, {"right_hip": [90.0, 0.0, 0.0]})
    assert (
        flexed[J["right_knee"], 2] > 0.3
        and abs(flexed[J["right_knee"], 1] - flexed[J["right_hip"], 1]) < 1e-9
    )


@given(seed=st.integers(0, 10**6))
def test_retarget_keeps_directions_and_takes_the_new_lengths(seed: int) -> None:
    rng = np.random.default_rng(seed)
    source, target = bodies.sample_shape(rng), bodies.sample_shape(rng)
    captured = bodies.sample_pose(rng, "reaching", source) + rng.normal(0, 1, 3)
    moved = bodies.retarget(captured, target)
    parents = MUCO_21.parents()
    child = parents >= 0
    bone_in, bone_out = (
        captured[child] - captured[parents[child]],
        moved[child] - moved[parents[child]],
    )
    np.testing.assert_allclose(
        np.linalg.norm(bone_out, axis=1), target.bone_lengths_m[child], rtol=1e-9
    )
    cosine = (
        (bone_in * bone_out).sum(1)
        / np.linalg.norm(bone_in, axis=1)
        / np.linalg.norm(bone_out, axis=1)
    )
    np.testing.assert_allclose(cosine, 1.0, atol=1e-9)
    np.testing.assert_allclose(moved[MUCO_21.root], captured[MUCO_21.root])


def test_activities_stand_sit_and_crouch_on_the_floor() -> None:
    rng = np.random.default_rng(3)
    shape = bodies.sample_shape(rng, height_m=1.7)
    for activity in bodies.ACTIVITIES:
        for _ in range(5):
            world = bodies.place(
                bodies.sample_pose(rng, activity, shape), shape, rng.uniform(0, 360), (1.0, 2.0)
            )
            assert bodies.lowest_point(world, shape) == pytest.approx(0.0, abs=1e-9)
            np.testing.assert_allclose(world[MUCO_21.root, [0, 2]], [1.0, 2.0], atol=1e-9)
            pelvis = world[MUCO_21.root, 1]
            if activity == "sitting":
                assert pelvis < 0.3
            elif activity == "crouching":
                assert pelvis < 0.75
            else:
                assert 0.8 < pelvis < 1.1
            toe = min(world[J["left_toe"], 1], world[J["right_toe"], 1])
            assert toe < (0.2 if activity == "sitting" else 0.1)  # a foot (nearly) down


def test_yaw_turns_the_facing_direction() -> None:
    shape = bodies.sample_shape(np.random.default_rng(0), height_m=1.7)
    world = bodies.place(bodies.rest_pose(shape), shape, 90.0, (0.0, 0.0))
    toe = world[J["left_toe"]] - world[J["left_ankle"]]
    assert toe[0] > 0.1 and abs(toe[2]) < 1e-9  # facing +X
    assert world[J["left_hip"], 2] < world[J["right_hip"], 2]  # its left now at -Z


# ----------------------------------------------------------------------------- scenes


SMALL = SceneConfig(size=(192, 128), people=(2, 4))


@pytest.mark.parametrize("distortion", ["none", "plumb_bob", "equidistant"])
def test_generated_ground_truth_is_consistent(distortion: str) -> None:
    config = SceneConfig(size=(192, 128), people=(3, 5), distortion=distortion)
    for index in range(3):
        frame = generate_image(config, seed=11, index=index)
        intr = frame.intrinsics
        assert intr.distortion_model == distortion and frame.image.shape == (128, 192, 3)
        np.testing.assert_allclose(
            project(frame.keypoints_cam_m, intr), frame.keypoints_img_px, atol=1e-6
        )
        uv, vis = frame.keypoints_img_px, frame.visible
        inside = (
            (uv[..., 0] >= -0.5)
            & (uv[..., 0] < 191.5)
            & (uv[..., 1] >= -0.5)
            & (uv[..., 1] < 127.5)
        )
        assert np.all(inside[vis]) and np.all(inside.any(axis=1))
        x, y, w, h = frame.bbox_px.T
        for p in range(len(vis)):
            pts = uv[p, vis[p]]
            assert np.all(pts[:, 0] >= x[p] - 2) and np.all(pts[:, 0] <= x[p] + w[p] + 2)
            assert np.all(pts[:, 1] >= y[p] - 2) and np.all(pts[:, 1] <= y[p] + h[p] + 2)
        # Back in the world (Y up, ground y = 0): every person stands on the floor.
        world = frame.keypoints_cam_m @ frame.R_cam_world + [0.0, frame.camera_height_m, 0.0]
        assert np.all(world[..., 1] > -1e-6) and np.all(world[..., 1].min(axis=1) < 0.3)
        assert len(set(frame.track_ids.tolist())) == len(frame.track_ids)


def test_same_seed_same_image_and_config_checks() -> None:
    first, again = generate_image(SMALL, 5, 2), generate_image(SMALL, 5, 2)
    np.testing.assert_array_equal(first.image, again.image)
    np.testing.assert_array_equal(first.keypoints_cam_m, again.keypoints_cam_m)
    assert not np.array_equal(first.image, generate_image(SMALL, 5, 3).image)
    with pytest.raises(ValueError, match="distortion"):
        SceneConfig(distortion="fisheye")
    with pytest.raises(ValueError, match="people"):
        SceneConfig(people=(3, 1))


def test_sequence_keeps_identities_and_moves_smoothly() -> None:
    config = SceneConfig(size=(192, 128), people=(3, 4), fps=10.0)
    frames = list(generate_sequence(config, seed=2, index=0, num_frames=12))
    stamps = np.array([f.stamp_ns for f in frames])
    np.testing.assert_array_equal(np.diff(stamps), 100_000_000)
    assert [f.frame_idx for f in frames] == list(range(12)) and {f.sequence for f in frames} == {0}
    parents = MUCO_21.parents()
    child = parents >= 0
    bones = lambda j: np.linalg.norm(j[child] - j[parents[child]], axis=-1)  # noqa: E731
    tracks: dict[int, list] = {}
    for frame in frames:
        assert frame.intrinsics is frames[0].intrinsics
        for track, joints in zip(frame.track_ids, frame.keypoints_cam_m):
            tracks.setdefault(int(track), []).append((frame.frame_idx, joints))
    moved = 0.0
    for seen in tracks.values():
        for (k0, j0), (k1, j1) in zip(seen, seen[1:]):
            np.testing.assert_allclose(bones(j0), bones(j1), rtol=1e-9)  # same body: same id
            if k1 == k0 + 1:
                step = np.linalg.norm(j1[MUCO_21.root] - j0[MUCO_21.root])
                assert step < 0.25  # at most 2.5 m/s
                moved = max(moved, step)
    assert moved > 0.02
    assert not np.array_equal(frames[0].image, frames[-1].image)


def test_mocap_sequence_plays_the_take(mocap_dir: Path, tmp_path: Path) -> None:
    mocap = mocap_dir / "cmu_daz"
    takes = load_mocap_poses(mocap / "09", MUCO_21, fps=30.0, takes=["09_01"])
    config = SceneConfig(size=(192, 128), people=(2, 2), fps=30.0)
    frames = list(generate_sequence(config, seed=0, index=0, num_frames=6, mocap=takes))
    steps = [
        np.linalg.norm(b.keypoints_cam_m[0] - a.keypoints_cam_m[0], axis=-1).max()
        for a, b in zip(frames, frames[1:])
        if len(a.track_ids) and len(b.track_ids) and a.track_ids[0] == b.track_ids[0]
    ]
    assert steps and 0.01 < max(steps) < 0.5  # a run: limbs move by centimetres per frame


# ----------------------------------------------------------------------------- dataset


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    config = SceneConfig(size=(160, 120), people=(2, 4), distortion="plumb_bob")
    one = write_dataset(
        tmp_path_factory.mktemp("one"),
        config,
        5,
        seed=4,
        workers=1,
        sequence_frames=3,
        progress=False,
    )
    two = write_dataset(
        tmp_path_factory.mktemp("two"),
        config,
        5,
        seed=4,
        workers=2,
        sequence_frames=3,
        progress=False,
    )
    return one, two


def test_dataset_is_identical_for_one_and_two_workers(datasets: tuple[Path, Path]) -> None:
    one, two = datasets
    assert one.read_bytes() == two.read_bytes()
    names = sorted(p.name for p in (one.parent / "images").iterdir())
    assert names == [f"{i:06d}.jpg" for i in range(5)]
    for name in names:
        assert (one.parent / "images" / name).read_bytes() == (
            two.parent / "images" / name
        ).read_bytes()


def _dataset_bytes(json_path: Path) -> dict[str, bytes]:
    """The annotation file and every image of a dataset, by name."""
    files = {p.name: p.read_bytes() for p in (json_path.parent / "images").iterdir()}
    return {json_path.name: json_path.read_bytes(), **files}


def test_batched_path_writes_the_per_image_dataset(
    datasets: tuple[Path, Path], tmp_path: Path
) -> None:
    """Scenes sampled ahead, rendered in batches (here on the CPU) and written by threads: the
    same bytes as the per-image path, for any batch size and number of workers."""
    config = SceneConfig(size=(160, 120), people=(2, 4), distortion="plumb_bob")
    expected = _dataset_bytes(datasets[0])
    for batch, workers in ((2, 1), (4, 2)):
        path = write_dataset(tmp_path / f"b{batch}w{workers}", config, 5, seed=4, workers=workers,
                             sequence_frames=3, progress=False, device="cpu", batch=batch)
        assert _dataset_bytes(path) == expected, (batch, workers)


def test_batched_path_renders_mixed_image_sizes_in_order(tmp_path: Path) -> None:
    config = SceneConfig(people=(1, 2), focal_range_px=(150.0, 300.0))  # sizes drawn per image
    one = write_dataset(tmp_path / "one", config, 4, seed=6, progress=False)
    batched = write_dataset(tmp_path / "batched", config, 4, seed=6, progress=False, batch=3)
    sizes = {(im["width"], im["height"]) for im in json.loads(one.read_text())["images"]}
    assert len(sizes) > 1
    assert _dataset_bytes(batched) == _dataset_bytes(one)


def test_dataset_arguments_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs batch >= 1"):
        write_dataset(tmp_path, SMALL, 1, seed=0, device="meta")
    with pytest.raises(ValueError, match="batch >= 0"):
        write_dataset(tmp_path, SMALL, 1, seed=0, batch=-1)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            write_dataset(tmp_path, SMALL, 1, seed=0, device="cuda", batch=4)


def test_dataset_json_layout_and_projection(datasets: tuple[Path, Path]) -> None:
    path, _ = datasets
    data = json.loads(path.read_text())
    assert [im["id"] for im in data["images"]] == list(range(5))
    assert [(im["sequence"], im["frame_idx"]) for im in data["images"]] == [
        (0, 0),
        (0, 1),
        (0, 2),
        (1, 0),
        (1, 1),
    ]
    by_id = {im["id"]: im for im in data["images"]}
    assert data["annotations"] and [a["id"] for a in data["annotations"]] == list(
        range(len(data["annotations"]))
    )
    for ann in data["annotations"]:
        im = by_id[ann["image_id"]]
        assert {
            "file_name",
            "width",
            "height",
            "f",
            "c",
            "distortion_model",
            "distortion",
            "stamp",
        } <= set(im)
        K = np.array([[im["f"][0], 0, im["c"][0]], [0, im["f"][1], im["c"][1]], [0, 0, 1]])
        intr = Intrinsics(
            K, im["width"], im["height"], im["distortion_model"], np.array(im["distortion"])
        )
        cam_m = np.array(ann["keypoints_cam"]) / 1000.0
        assert cam_m.shape == (21, 3) and len(ann["keypoints_vis"]) == 21 and len(ann["bbox"]) == 4
        assert np.abs(project(cam_m, intr) - np.array(ann["keypoints_img"])).max() < 1e-3
        assert isinstance(ann["track_id"], int) and ann["track_id"] >= 1
        assert (path.parent / im["file_name"]).is_file()


def test_dataset_loads_with_the_3dmppe_reader(datasets: tuple[Path, Path]) -> None:
    path, _ = datasets
    images = read_3dmppe_json(path, "muco_21")
    data = json.loads(path.read_text())
    assert len(images) == 5 and sum(len(im) for im in images) == len(data["annotations"])
    for image in images:
        assert image.intrinsics.distortion_model == "plumb_bob"
        np.testing.assert_allclose(
            project(image.keypoints_cam_m, image.intrinsics), image.keypoints_img_px, atol=1e-3
        )
        assert image.keypoints_vis.any(axis=1).sum() >= 1 or len(image) == 0
    assert images[1].stamp_s - images[0].stamp_s == pytest.approx(1 / 30, abs=1e-6)


def test_command_line_writes_images_and_a_contact_sheet(tmp_path: Path) -> None:
    import cv2

    from mp3d_ros.cli.synth import main

    sheet = tmp_path / "sheet.png"
    assert (
        main(
            [
                "--out",
                str(tmp_path / "out"),
                "--images",
                "2",
                "--seed",
                "1",
                "--size",
                "128x96",
                "--people",
                "1,2",
                "--focal-range",
                "100,140",
                "--contact-sheet",
                str(sheet),
            ]
        )
        == 0
    )
    data = json.loads((tmp_path / "out" / "annotations.json").read_text())
    assert [(im["width"], im["height"]) for im in data["images"]] == [(128, 96)] * 2
    assert all(100 <= im["f"][0] <= 140 for im in data["images"])
    picture = cv2.imread(str(sheet))
    assert picture is not None and picture.shape[1] >= 2 * 128
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--images", "1", "--size", "12by5"])


def test_command_line_batched_rendering(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from mp3d_ros.cli.synth import main

    common = ["--images", "3", "--seed", "2", "--size", "96x64", "--people", "1,2"]
    assert main(["--out", str(tmp_path / "one"), *common]) == 0
    assert main(["--out", str(tmp_path / "two"), "--device", "cpu", "--batch", "2", *common]) == 0
    assert _dataset_bytes(tmp_path / "two" / "annotations.json") == _dataset_bytes(
        tmp_path / "one" / "annotations.json")
    for bad in (["--batch", "-1"], ["--device", "nonsense"], ["--device", "meta", "--batch", "0"]):
        with pytest.raises(SystemExit):
            main(["--out", str(tmp_path / "bad"), *common, *bad])
    assert "--batch must be" in capsys.readouterr().err
