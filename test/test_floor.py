"""The floor cue: ray-plane depth against brute force, its sigma against Monte Carlo, fusion and fallbacks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq
from scipy.spatial.transform import Rotation

from mp3d_ros.geometry.camera import Intrinsics, project
from mp3d_ros.geometry.floor import FloorConfig, FloorPlane, apply_floor, floor_depth, ray_floor_depth
from mp3d_ros.geometry.people import DEPTH_CUE_BODY_SIZE, DEPTH_CUE_FLOOR, People
from mp3d_ros.geometry.skeleton import get_joint_set

CAMERA = Intrinsics.pinhole(500.0, 500.0, 320.0, 240.0, 640, 480)
CONFIG = FloorConfig()
# A standing adult, ground frame metres: (lateral, height); depth offset 0. MuPoTS-17 order.
STANDING = {
    "head_top": (0.0, 1.72), "neck": (0.0, 1.47), "right_shoulder": (-0.19, 1.43),
    "right_elbow": (-0.22, 1.13), "right_wrist": (-0.23, 0.86), "left_shoulder": (0.19, 1.43),
    "left_elbow": (0.22, 1.13), "left_wrist": (0.23, 0.86), "right_hip": (-0.10, 0.93),
    "right_knee": (-0.10, 0.51), "right_ankle": (-0.10, 0.07), "left_hip": (0.10, 0.93),
    "left_knee": (0.10, 0.51), "left_ankle": (0.10, 0.07), "pelvis": (0.0, 0.93),
    "spine": (0.0, 1.15), "head": (0.0, 1.60),
}


def camera_pose(height_m: float, pitch_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """(R ground<-camera, camera position) of a camera looking along ground +x, pitched down."""
    pitch = np.radians(pitch_deg)
    forward = np.array([np.cos(pitch), 0.0, -np.sin(pitch)])
    right = np.array([0.0, -1.0, 0.0])
    down = np.cross(forward, right)
    return np.stack([right, down, forward], axis=1), np.array([0.0, 0.0, height_m])


def standing_person(distance_m: float, lateral_m: float, stature_scale: float,
                    pose: tuple[np.ndarray, np.ndarray], sitting: bool = False) -> np.ndarray:
    """(17, 3) camera-frame joints of a person standing (or sitting) on the floor."""
    rotation, position = pose
    joints = get_joint_set("mupots_17").joints
    points = []
    for name in joints:
        side, up = STANDING[name]
        forward = 0.0
        if sitting and name in ("right_knee", "left_knee"):
            forward, up = -0.45, 0.48  # thighs horizontal, towards the camera
        if sitting and name in ("right_ankle", "left_ankle"):
            forward, up = -0.45, 0.07
        if sitting and name not in ("right_knee", "left_knee", "right_ankle", "left_ankle"):
            up -= 0.45
        points.append([distance_m + forward * stature_scale, lateral_m + side * stature_scale,
                       up * stature_scale])
    ground = np.asarray(points)
    return (ground - position) @ rotation  # R^T (p - t) for row vectors


def people_of(keypoints_m: np.ndarray, sigma_m: float, seen_ankles: bool = True) -> People:
    keypoints_m = np.asarray(keypoints_m, dtype=np.float64)
    count, joints = keypoints_m.shape[:2]
    inferred = np.zeros((count, joints), dtype=bool)
    if not seen_ankles:
        inferred[:, [10, 13]] = True
    return People(
        "mupots_17", uv_px=project(keypoints_m, CAMERA), keypoints_m=keypoints_m,
        confidence=np.full((count, joints), 0.9), inferred=inferred, score=np.full(count, 0.8),
        root_sigma_m=np.full(count, sigma_m), depth_cues=np.full(count, DEPTH_CUE_BODY_SIZE, np.uint8),
    )


@settings(max_examples=60, deadline=None)
@given(height=st.floats(0.3, 3.0), rotvec=st.lists(st.floats(-1.5, 1.5), min_size=3, max_size=3),
       x=st.floats(-1.0, 1.0), y=st.floats(-1.0, 1.0))
def test_ray_floor_depth_matches_a_brute_force_root(height, rotvec, x, y) -> None:
    plane = FloorPlane.from_camera_pose(Rotation.from_rotvec(rotvec).as_matrix(), [0.3, -0.2, height])
    ray = np.array([x, y, 1.0])
    depth, _, _ = ray_floor_depth(ray[None], plane, 500.0, 500.0, CONFIG)

    def above_raised_plane(t: float) -> float:
        return float(plane.up_cam @ (t * ray)) + plane.camera_height_m - CONFIG.ankle_height_m

    far = 1e4
    if above_raised_plane(1e-9) * above_raised_plane(far) < 0:
        assert depth[0] == pytest.approx(brentq(above_raised_plane, 1e-9, far, xtol=1e-12), rel=1e-7)
    else:  # the ray never meets the plane in front of the camera (or only beyond 10 km)
        assert np.isnan(depth[0]) or depth[0] > far * 0.99


def test_height_and_pitch_give_the_pose_plane() -> None:
    for pitch in (0.0, 12.0, 45.0, 89.0):
        rotation, position = camera_pose(1.3, pitch)
        from_pose = FloorPlane.from_camera_pose(rotation, position)
        from_pitch = FloorPlane.from_height_pitch(1.3, pitch)
        np.testing.assert_allclose(from_pitch.up_cam, from_pose.up_cam, atol=1e-12)
        assert from_pitch.camera_height_m == from_pose.camera_height_m


def test_sigma_matches_monte_carlo() -> None:
    """The propagated sigma of the noise model itself (so without the measured inflation)."""
    rng = np.random.default_rng(0)
    pose = camera_pose(1.2, 10.0)
    plane = FloorPlane.from_camera_pose(*pose, tilt_sigma_rad=0.01, height_sigma_m=0.02)
    ankle = standing_person(5.0, 0.4, 1.0, pose)[13]
    uv = project(ankle, CAMERA)
    model = FloorConfig(sigma_inflation=1.0)
    depth, sigma_ind, sigma_com = ray_floor_depth(ankle[None] / ankle[2], plane, 500.0, 500.0, model)
    samples = []
    for _ in range(4000):
        tilt = Rotation.from_rotvec(np.r_[rng.normal(0, 0.01, 2), 0.0] @ np.eye(3)).as_matrix()
        noisy_pose = (pose[0] @ tilt, pose[1] + [0, 0, rng.normal(0, 0.02)])
        noisy = FloorPlane.from_camera_pose(*noisy_pose)
        config = FloorConfig(ankle_height_m=model.ankle_height_m + rng.normal(0, model.ankle_height_sigma_m))
        pixel = uv + rng.normal(0, model.sigma_px, 2)
        ray = np.r_[(pixel - CAMERA.K[:2, 2]) / np.diag(CAMERA.K)[:2], 1.0]
        samples.append(ray_floor_depth(ray[None], noisy, 500.0, 500.0, config)[0][0])
    assert np.std(samples) == pytest.approx(float(np.hypot(sigma_ind, sigma_com)[0]), rel=0.1)
    assert np.median(samples) == pytest.approx(depth[0], rel=0.01)


def test_sigma_grows_as_the_ray_grazes_the_floor() -> None:
    plane = FloorPlane.from_height_pitch(1.0, 0.0)
    rays = np.array([[0.0, y, 1.0] for y in (0.5, 0.2, 0.1, 0.05)])
    depth, sigma_ind, sigma_com = ray_floor_depth(rays, plane, 500.0, 500.0, CONFIG)
    relative = np.hypot(sigma_ind, sigma_com) / depth
    assert np.all(np.diff(depth) > 0) and np.all(np.diff(relative) > 0)


@pytest.mark.parametrize("distance", [2.5, 5.0, 8.0])
def test_a_standing_person_placed_too_near_is_put_back_on_the_floor(distance: float) -> None:
    pose = camera_pose(1.4, 8.0)
    truth = standing_person(distance, 0.5, 0.95, pose)
    people = people_of(truth[None] * 0.8, sigma_m=2.0)  # body-size depth 20 % too near, unsure
    plane = FloorPlane.from_camera_pose(*pose)
    # This person's own ankle height; exact 2D, so the noise model's own sigma (no inflation).
    config = FloorConfig(ankle_height_m=0.07 * 0.95, sigma_inflation=1.0)
    cue = floor_depth(people, CAMERA, plane, config)
    floor_z, floor_sigma = cue.scale[0] * people.root_m[0, 2], cue.scale_sigma[0] * people.root_m[0, 2]
    assert cue.valid[0] and floor_z == pytest.approx(truth[14, 2], rel=1e-6)  # exact 2D: exact depth
    out = apply_floor(people, CAMERA, plane, config)
    body_z = people.root_m[0, 2]
    eq12 = (body_z / 2.0 + floor_z / floor_sigma) / (1 / 2.0 + 1 / floor_sigma)
    assert out.root_m[0, 2] == pytest.approx(eq12, rel=1e-9)
    assert abs(out.root_m[0, 2] - truth[14, 2]) < 0.5 * abs(body_z - truth[14, 2])
    assert out.depth_cues[0] == DEPTH_CUE_BODY_SIZE | DEPTH_CUE_FLOOR
    assert out.height_m[0] == pytest.approx(1.72 * 0.95, abs=1e-6)
    assert 0 < out.height_sigma_m[0] < 0.2 and 0 < out.root_sigma_m[0] < 2.0
    np.testing.assert_allclose(project(out.keypoints_m, CAMERA), people.uv_px, atol=1e-6)  # same rays


@pytest.mark.parametrize("distance", [3.0, 6.0, 10.0])
def test_a_walkers_raised_ankle_meets_its_own_raised_plane(distance: float) -> None:
    """Heel off: the back ankle stands 4 cm over the front one. Its ray meets the floor raised by
    that rise (at the floor's scale, from the lifted pose), so both ankles give the true depth."""
    pose = camera_pose(1.3, 5.0)
    truth = standing_person(distance, 0.3, 1.0, pose)
    up = FloorPlane.from_camera_pose(*pose).up_cam
    truth[10] += 0.04 * up  # the right ankle rises straight up
    people = people_of(truth[None] * 0.8, sigma_m=2.0)
    plane = FloorPlane.from_camera_pose(*pose)
    config = FloorConfig(ankle_height_m=0.07, sigma_inflation=1.0)
    cue = floor_depth(people, CAMERA, plane, config)
    assert cue.valid[0] and cue.ankle[0].all()
    assert cue.scale[0] == pytest.approx(1 / 0.8, rel=1e-9)
    out = apply_floor(people, CAMERA, plane, config)
    assert out.height_m[0] == pytest.approx(1.72, abs=1e-6)  # from the lower ankle


def test_fusion_weighs_the_two_cues_by_their_sigmas() -> None:
    pose = camera_pose(1.4, 8.0)
    truth = standing_person(4.0, 0.0, 1.0, pose)
    plane = FloorPlane.from_camera_pose(*pose)
    sure = apply_floor(people_of(truth[None] * 0.8, sigma_m=0.01), CAMERA, plane)
    unsure = apply_floor(people_of(truth[None] * 0.8, sigma_m=5.0), CAMERA, plane)
    assert abs(sure.root_m[0, 2] - 0.8 * truth[14, 2]) < abs(unsure.root_m[0, 2] - 0.8 * truth[14, 2])


@pytest.mark.parametrize("case", ["no plane", "ankles hidden", "sitting", "camera below the floor",
                                  "nobody"])
def test_the_floor_cue_falls_back_cleanly(case: str) -> None:
    pose = camera_pose(1.4, 8.0)
    plane = FloorPlane.from_camera_pose(*pose)
    truth = standing_person(4.0, 0.0, 1.0, pose, sitting=case == "sitting")
    people = people_of(truth[None] * 0.8, sigma_m=0.5, seen_ankles=case != "ankles hidden")
    if case == "no plane":
        plane = None
    elif case == "camera below the floor":
        plane = FloorPlane.from_camera_pose(pose[0], -pose[1])
    elif case == "nobody":
        people = people.select(np.zeros(0, dtype=int))
    out = apply_floor(people, CAMERA, plane)
    np.testing.assert_array_equal(out.keypoints_m, people.keypoints_m)
    np.testing.assert_array_equal(out.depth_cues, people.depth_cues)
    assert np.all(out.height_m == 0) and np.all(np.isfinite(out.root_sigma_m))
    if len(people):
        assert not floor_depth(people, CAMERA, plane).valid[0] if plane is not None else True


def test_only_the_standing_people_of_a_group_use_the_floor() -> None:
    pose = camera_pose(1.4, 8.0)
    standing = standing_person(4.0, -0.8, 1.0, pose)
    sitting = standing_person(4.5, 0.9, 1.0, pose, sitting=True)
    people = people_of(np.stack([standing, sitting]) * 0.8, sigma_m=0.5)
    out = apply_floor(people, CAMERA, FloorPlane.from_camera_pose(*pose))
    assert out.depth_cues.tolist() == [DEPTH_CUE_BODY_SIZE | DEPTH_CUE_FLOOR, DEPTH_CUE_BODY_SIZE]
    np.testing.assert_array_equal(out.keypoints_m[1], people.keypoints_m[1])


def test_synthetic_cameras_pose_puts_the_rendered_feet_on_the_floor() -> None:
    from mp3d_ros.messages.synthetic_bag import ground_truth_people
    from mp3d_ros.synthetic.scenes import SceneConfig, frame_records, ground_from_camera, prepare_image

    config = SceneConfig(size=(160, 120), people=(3, 3), depth_range_m=(2.0, 8.0), pitch_deg=(-20.0, 5.0),
                         roll_deg=(-6.0, 6.0))
    for index in range(3):
        truth = prepare_image(config, 5, index).truth
        image, _ = frame_records(truth, "x.jpg")
        pose = image["ground_from_camera"]
        plane = FloorPlane.from_camera_pose(np.array(pose["rotation"]), np.array(pose["translation_m"]))
        people = ground_truth_people(truth)
        ankles_over_floor = people.keypoints_m[:, [10, 13]] @ plane.up_cam + plane.camera_height_m
        heads_over_floor = people.keypoints_m[:, 0] @ plane.up_cam + plane.camera_height_m
        assert np.all((ankles_over_floor > 0.0) & (ankles_over_floor < 0.5))
        assert np.all(heads_over_floor > 0.9)
        rotation, translation = ground_from_camera(truth.R_cam_world, truth.camera_height_m)
        assert np.linalg.det(rotation) == pytest.approx(1.0) and translation[2] == truth.camera_height_m


def test_a_synthetic_bag_carries_the_cameras_pose_as_latched_tf_static(tmp_path) -> None:
    from rosbags.highlevel import AnyReader
    from rosbags.interfaces import QosDurability

    from mp3d_ros.messages.conversions import RigidTransform
    from mp3d_ros.messages.synthetic_bag import write_synthetic_bag
    from mp3d_ros.synthetic.scenes import SceneConfig, ground_from_camera, prepare_sequence

    config = SceneConfig(size=(96, 64), people=(1, 1), fps=10.0)
    write_synthetic_bag(tmp_path / "bag", config, seed=3, num_frames=2, storage="sqlite3", progress=False)
    first = next(prepare_sequence(config, 3, 0, 2)).truth
    with AnyReader([tmp_path / "bag"]) as reader:
        tf = [c for c in reader.connections if c.topic == "/tf_static"]
        assert len(tf) == 1 and tf[0].ext.offered_qos_profiles[0].durability == QosDurability.TRANSIENT_LOCAL
        messages = [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages(connections=tf)]
    assert len(messages) == 1
    stamped = messages[0].transforms[0]
    assert (stamped.header.frame_id, stamped.child_frame_id) == ("ground", "camera_optical_frame")
    rotation, translation = ground_from_camera(first.R_cam_world, first.camera_height_m)
    sent = RigidTransform.from_msg(stamped.transform)
    np.testing.assert_allclose(sent.rotation, rotation, atol=1e-9)
    np.testing.assert_allclose(sent.translation_m, translation, atol=1e-12)


@pytest.mark.parametrize("pose, message", [
    ({"rotation": np.eye(3).tolist(), "translation_m": [0, 0, 1.5]}, None),
    ({"rotation": (2 * np.eye(3)).tolist(), "translation_m": [0, 0, 1.5]}, "not a finite rigid pose"),
    ({"rotation": np.eye(3).tolist(), "translation_m": [0, 0, None]}, "not a finite rigid pose"),
    ({"rotation": [[1, 0], [0, 1]], "translation_m": [0, 0, 1]}, "ground_from_camera.rotation"),
    ("up", "must be an object"),
])
def test_annotation_files_give_the_floor_or_name_what_is_wrong(tmp_path, pose, message) -> None:
    import json

    from mp3d_ros.data.mppe import read_3dmppe_json

    image = {"id": 1, "file_name": "a.jpg", "width": 64, "height": 48, "f": [50, 50], "c": [32, 24],
             "ground_from_camera": pose}
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps({"images": [image], "annotations": []}))
    if message is None:
        floor = read_3dmppe_json(path, "muco_21")[0].floor
        np.testing.assert_allclose(floor.up_cam, [0, 0, 1]) and floor.camera_height_m == 1.5
    else:
        with pytest.raises(ValueError, match=message) as error:
            read_3dmppe_json(path, "muco_21")
        assert str(path) in str(error.value)


def test_a_floor_depth_far_from_the_other_cues_is_an_outlier() -> None:
    pose = camera_pose(1.4, 8.0)
    truth = standing_person(4.0, 0.0, 1.0, pose)
    plane = FloorPlane.from_camera_pose(*pose)
    people = people_of(truth[None] * 0.5, sigma_m=0.05)  # sure of a depth 2 m off: the ankle is wrong
    out = apply_floor(people, CAMERA, plane)
    np.testing.assert_array_equal(out.keypoints_m, people.keypoints_m)
    assert out.depth_cues[0] == DEPTH_CUE_BODY_SIZE
    assert apply_floor(people, CAMERA, plane, FloorConfig(max_disagreement=1e6)).depth_cues[0] & DEPTH_CUE_FLOOR


def test_sigma_inflation_scales_the_persons_terms_not_the_planes() -> None:
    pose = camera_pose(1.2, 10.0)
    rays = np.array([[0.1, y, 1.0] for y in (0.4, 0.2, 0.1)])
    plain, wide = FloorConfig(sigma_inflation=1.0), FloorConfig(sigma_inflation=1.7)
    exact = FloorPlane.from_camera_pose(*pose, tilt_sigma_rad=0.0, height_sigma_m=0.0)
    depth_a, ind_a, com_a = ray_floor_depth(rays, exact, 500.0, 500.0, plain)
    depth_b, ind_b, com_b = ray_floor_depth(rays, exact, 500.0, 500.0, wide)
    np.testing.assert_array_equal(depth_a, depth_b)
    np.testing.assert_allclose(ind_b, 1.7 * ind_a, rtol=1e-12)
    np.testing.assert_allclose(com_b, 1.7 * com_a, rtol=1e-12)  # the ankle height alone
    tf = FloorPlane.from_camera_pose(*pose, tilt_sigma_rad=0.01, height_sigma_m=0.02)
    _, _, com_tf_a = ray_floor_depth(rays, tf, 500.0, 500.0, plain)
    _, _, com_tf_b = ray_floor_depth(rays, tf, 500.0, 500.0, wide)
    plane_part_sq = com_tf_a**2 - com_a**2
    np.testing.assert_allclose(com_tf_b, np.sqrt(plane_part_sq + (1.7 * com_a) ** 2), rtol=1e-12)
