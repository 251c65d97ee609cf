"""render.py, raycast.py: intersections, depth buffer, occlusion labels, distortion, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mp3d_ros.geometry.camera import Intrinsics, project
from mp3d_ros.geometry.skeleton import MUCO_21
from mp3d_ros.synthetic import body as bodies
from mp3d_ros.synthetic.raycast import joint_visibility, ray_capsule_depth, ray_ellipsoid_depth
from mp3d_ros.synthetic.render import Scene, render, render_batch, sample_appearance, sample_environment
from mp3d_ros.synthetic.scenes import camera_rotation

torch.set_num_threads(1)

coordinate = st.floats(-1.0, 1.0)
point = st.tuples(coordinate, coordinate, st.floats(2.0, 4.0))


def first_hit_by_marching(inside, direction: np.ndarray, t_max: float = 10.0) -> float:
    """First t with inside(t d) by fine sampling then bisection (inf when none)."""
    ts = np.linspace(0.0, t_max, 40001)
    hits = np.nonzero(inside(ts[:, None] * direction))[0]
    if not len(hits):
        return math.inf
    low, high = ts[max(hits[0] - 1, 0)], ts[hits[0]]
    for _ in range(60):
        mid = 0.5 * (low + high)
        low, high = (low, mid) if inside(mid * direction[None])[0] else (mid, high)
    return high


def segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    s = np.clip(((p - a) @ (b - a)) / max((b - a) @ (b - a), 1e-300), 0, 1)
    return np.linalg.norm(p - (a + s[:, None] * (b - a)), axis=1)


@given(
    a=point,
    b=point,
    radius=st.floats(0.05, 0.6),
    ray=st.tuples(st.floats(-0.5, 0.5), st.floats(-0.5, 0.5)),
)
def test_capsule_depth_matches_ray_marching(a, b, radius, ray) -> None:
    a, b = np.array(a), np.array(b)
    x, y = ray
    direction = np.array([x, y, 1.0])
    expected = first_hit_by_marching(lambda p: segment_distance(p, a, b) <= radius, direction)
    got = ray_capsule_depth(*(torch.tensor(v, dtype=torch.float64) for v in (x, y, a, b, radius)))
    if math.isinf(expected):
        # Grazing rays may touch the surface between samples: accept a hit within a sample step.
        assert (
            math.isinf(got)
            or segment_distance(float(got) * direction[None], a, b)[0] <= radius + 1e-3
        )
    else:
        assert float(got) == pytest.approx(expected, abs=2e-3)


@given(
    center=point,
    radii=st.tuples(*[st.floats(0.05, 0.6)] * 3),
    angles=st.tuples(*[st.floats(-3.0, 3.0)] * 3),
    ray=st.tuples(st.floats(-0.5, 0.5), st.floats(-0.5, 0.5)),
)
def test_ellipsoid_depth_matches_ray_marching(center, radii, angles, ray) -> None:
    from scipy.spatial.transform import Rotation

    axes = Rotation.from_euler("xyz", angles).as_matrix() * np.array(radii)
    inverse = np.linalg.inv(axes)
    c = np.array(center)
    x, y = ray
    direction = np.array([x, y, 1.0])
    expected = first_hit_by_marching(
        lambda p: np.linalg.norm((p - c) @ inverse.T, axis=1) <= 1.0, direction
    )
    got = ray_ellipsoid_depth(
        torch.tensor(x, dtype=torch.float64),
        torch.tensor(y, dtype=torch.float64),
        torch.tensor(c),
        torch.tensor(inverse),
    )
    if math.isinf(expected):
        assert math.isinf(got) or np.linalg.norm((float(got) * direction - c) @ inverse.T) <= 1.001
    else:
        assert float(got) == pytest.approx(expected, abs=2e-3)


def test_float32_depth_is_precise_at_15_m() -> None:
    rng = np.random.default_rng(0)
    a = np.array([0.3, -0.2, 15.0]) + rng.normal(0, 0.1, (64, 3))
    b = a + rng.normal(0, 0.3, (64, 3))
    r = rng.uniform(0.03, 0.1, 64)
    mid = 0.5 * (a + b)
    x = mid[:, 0] / mid[:, 2] + rng.normal(0, 0.005, 64)  # aimed at the capsules, some miss
    y = mid[:, 1] / mid[:, 2] + rng.normal(0, 0.005, 64)
    args64 = [torch.tensor(v, dtype=torch.float64) for v in (x, y, a, b, r)]
    exact = ray_capsule_depth(*args64)
    single = ray_capsule_depth(*(v.float() for v in args64)).double()
    hit = torch.isfinite(exact)
    assert 20 < hit.sum() < 64
    assert torch.equal(hit, torch.isfinite(single))
    assert (single[hit] - exact[hit]).abs().max() < 2e-4  # metres


# ----------------------------------------------------------------------------- scenes


WIDTH, HEIGHT = 320, 240
CAMERA_HEIGHT_M = 1.0


def standing(shape: bodies.BodyShape) -> np.ndarray:
    """Upright, arms away from the body (so the hands are not inside the thighs)."""
    angles = {
        "left_shoulder": [0, 20, 0],
        "right_shoulder": [0, 20, 0],
        "left_elbow": [10],
        "right_elbow": [10],
    }
    return bodies.pose_from_angles(shape, angles)


def build_scene(
    placements,
    intr: Intrinsics,
    seed: int = 0,
    pitch_deg: float = 0.0,
    camera_height_m: float = CAMERA_HEIGHT_M,
):
    """Scene of people at ((x, z) ground position, yaw[, height_m]) placements (1.7 m tall by
    default); returns the scene and the (P, J, 3) camera joints."""
    rng = np.random.default_rng(seed)
    R = camera_rotation(pitch_deg, 0.0)
    joints, prims = [], []
    for i, (xz, yaw, *height) in enumerate(placements):
        shape = bodies.sample_shape(np.random.default_rng(1), height_m=height[0] if height else 1.7)
        world = bodies.place(standing(shape), shape, yaw, xz)
        cam = (world - [0.0, camera_height_m, 0.0]) @ R.T
        joints.append(cam)
        prims.append(bodies.body_primitives(cam, shape, person=i))
    joints = np.array(joints)
    scene = Scene(
        intr,
        bodies.concatenate_primitives(prims),
        sample_appearance(rng, len(placements)),
        joints[:, MUCO_21.root],
        sample_environment(rng, R, camera_height_m, WIDTH, HEIGHT),
    )
    return scene, joints


PINHOLE = Intrinsics.pinhole(260.0, 260.0, 159.5, 119.5, WIDTH, HEIGHT)


def test_person_behind_another_is_hidden_and_the_front_one_visible() -> None:
    # A 2 m adult at 3 m faces the camera; a 1 m child stands exactly behind at 10 m. Seen from
    # 1.6 m up, the child's rays cross the adult's plane 1.12-1.42 m high: belly and chest, well
    # above the crotch whatever the drawn proportions.
    wide = Intrinsics.pinhole(180.0, 180.0, 159.5, 119.5, WIDTH, HEIGHT)
    people = [((0.0, 3.0), 180.0, 2.0), ((0.0, 10.0), 180.0, 1.0)]
    scene, joints = build_scene(people, wide, camera_height_m=1.6)
    visible = joint_visibility(joints, scene.primitives, wide)
    assert visible[0].all(), np.array(MUCO_21.joints)[~visible[0]]
    assert not visible[1].any(), np.array(MUCO_21.joints)[visible[1]]
    _, _, person = render(scene)
    assert (person == 0).sum() > 1000 and (person == 1).sum() == 0
    # With the adult moved aside, the child is seen again.
    people[0] = ((1.5, 3.0), 180.0, 2.0)
    scene, joints = build_scene(people, wide, camera_height_m=1.6)
    assert joint_visibility(joints, scene.primitives, wide)[1].sum() >= 19
    assert (render(scene)[2] == 1).sum() > 40  # 1 m at 10 m with f = 180 px: about 18 x 4 px


def test_visible_joints_land_on_their_person_in_the_image() -> None:
    scene, joints = build_scene(
        [((-0.8, 4.0), 170.0), ((0.6, 5.0), 200.0), ((0.2, 8.0), 90.0)], PINHOLE
    )
    visible = joint_visibility(joints, scene.primitives, PINHOLE)
    _, depth, person = render(scene)
    uv = np.round(project(joints, PINHOLE)).astype(int)
    for p in range(len(joints)):
        seen = visible[p]
        assert seen.sum() >= 8
        labels = person[uv[p, seen, 1], uv[p, seen, 0]]
        assert np.mean(labels == p) >= 0.9  # a joint on a silhouette may round onto a neighbour
        # The depth buffer in front of a visible joint is the surface of its own body.
        gap = joints[p, seen, 2] - depth[uv[p, seen, 1], uv[p, seen, 0]]
        assert np.median(gap) > 0 and np.max(gap[labels == p]) < 0.3


def test_person_half_outside_the_image() -> None:
    # Pelvis on the right border: the right half of the body is outside.
    x_border = -(WIDTH / 2 / PINHOLE.fx) * 4.0
    scene, joints = build_scene([((x_border, 4.0), 180.0)], PINHOLE)
    visible = joint_visibility(joints, scene.primitives, PINHOLE)[0]
    uv = project(joints, PINHOLE)[0]
    outside = (
        (uv[:, 0] >= WIDTH - 0.5)
        | (uv[:, 0] < -0.5)
        | (uv[:, 1] < -0.5)
        | (uv[:, 1] >= HEIGHT - 0.5)
    )
    assert 4 <= outside.sum() <= 17
    assert not visible[outside].any()
    assert np.all(uv[outside, 0] >= WIDTH - 0.5)  # coordinates kept, outside the bounds
    assert visible[~outside].sum() >= (~outside).sum() - 2


@pytest.mark.parametrize(
    ("model", "D"),
    [("plumb_bob", [-0.3, 0.08, 1e-3, -5e-4, 0.0]), ("equidistant", [0.05, -0.02, 0.004, -0.001])],
)
def test_distorted_image_matches_projection(model: str, D: list) -> None:
    intr = Intrinsics(PINHOLE.K, WIDTH, HEIGHT, model, np.array(D))
    scene, joints = build_scene([((-1.0, 3.0), 160.0), ((0.9, 4.0), 210.0)], intr)
    visible = joint_visibility(joints, scene.primitives, intr)
    _, _, person = render(scene)
    uv = np.round(project(joints, intr)).astype(int)
    for p in range(len(joints)):
        labels = person[uv[p, visible[p], 1], uv[p, visible[p], 0]]
        assert visible[p].sum() >= 10 and np.mean(labels == p) >= 0.9
    # The undistorted camera would draw the people elsewhere: the distortion is really rendered.
    pinhole_person = render(build_scene([((-1.0, 3.0), 160.0), ((0.9, 4.0), 210.0)], PINHOLE)[0])[2]
    assert np.mean(pinhole_person != person) > 0.01


def test_joint_folded_back_by_the_lens_model_is_not_visible() -> None:
    # k1 = -0.4 peaks at r = 0.91: a point at r = 1.3 projects back inside the image.
    intr = Intrinsics(
        np.array([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]]),
        640,
        480,
        "plumb_bob",
        np.array([-0.4, 0, 0, 0, 0]),
    )
    shape = bodies.sample_shape(np.random.default_rng(0), height_m=1.7)
    joints = standing(shape) + [1.3, 0.0, 1.0]  # the pelvis 52 deg off the axis, 1 m ahead
    uv = project(joints, intr)
    radius = np.linalg.norm(joints[:, :2] / joints[:, 2:], axis=1)
    folded = (
        (radius > 1.0) & (uv[:, 0] >= 0) & (uv[:, 0] < 640) & (uv[:, 1] >= 0) & (uv[:, 1] < 480)
    )
    assert folded.sum() >= 5  # the lens model brings them back into the image
    visible = joint_visibility(joints[None], bodies.body_primitives(joints, shape), intr)[0]
    assert not visible[folded].any()


def test_render_is_deterministic_and_batch_independent() -> None:
    first, _ = build_scene([((0.0, 3.0), 180.0)], PINHOLE, seed=3)
    second, _ = build_scene([((0.5, 5.0), 90.0), ((-1.0, 6.0), 0.0)], PINHOLE, seed=4)
    alone = [render(first)[0], render(second)[0]]
    batch = render_batch([first, second]).image.numpy()
    np.testing.assert_array_equal(batch[0], alone[0])
    np.testing.assert_array_equal(batch[1], alone[1])
    np.testing.assert_array_equal(render(first)[0], alone[0])
    assert alone[0].dtype == np.uint8 and alone[0].shape == (HEIGHT, WIDTH, 3)


def test_empty_scene_and_bad_batches() -> None:
    rng = np.random.default_rng(0)
    R = camera_rotation(-10.0, 0.0)
    scene = Scene(
        PINHOLE,
        bodies.concatenate_primitives([]),
        sample_appearance(rng, 0),
        np.zeros((0, 3)),
        sample_environment(rng, R, 1.2, WIDTH, HEIGHT),
    )
    image, depth, person = render(scene)
    assert np.isinf(depth).all() and (person == -1).all() and image.std() > 1
    # The ground (lower half, camera looking down) differs from the background (top rows).
    small = Intrinsics.pinhole(100.0, 100.0, 31.5, 31.5, 64, 64)
    with pytest.raises(ValueError, match="different image sizes"):
        render_batch(
            [
                scene,
                Scene(
                    small,
                    scene.primitives,
                    scene.appearance,
                    scene.anchors_cam_m,
                    scene.environment,
                ),
            ]
        )
    with pytest.raises(ValueError, match="scenes is empty"):
        render_batch([])


@pytest.mark.parametrize(
    ("model", "D"),
    [
        ("plumb_bob", [-0.35, 0.12, 1e-3, -1e-3, 0.02]),
        ("equidistant", [0.06, -0.02, 0.005, -0.002]),
    ],
)
def test_interpolated_ray_map_is_within_a_hundredth_of_a_pixel(model: str, D: list) -> None:
    from mp3d_ros.geometry.camera import pixel_rays
    from mp3d_ros.synthetic.raycast import image_rays

    intr = Intrinsics(
        np.array([[300.0, 0, 207.5], [0, 300.0, 127.5], [0, 0, 1]]), 416, 256, model, np.array(D)
    )
    rays = image_rays(intr, 256, 416, "cpu").numpy().astype(np.float64)
    rng = np.random.default_rng(0)
    u, v = rng.integers(0, 416, 2000), rng.integers(0, 256, 2000)
    exact = pixel_rays(np.stack([u, v], axis=1).astype(np.float64), intr)[:, :2]
    error_px = np.abs(rays[v, u] - exact).max() * intr.fx
    assert error_px < 0.01
    # Pinhole rays are exact.
    rays = image_rays(PINHOLE, HEIGHT, WIDTH, "cpu").numpy()
    np.testing.assert_allclose(
        rays[17, 33], [(33 - 159.5) / 260.0, (17 - 119.5) / 260.0], atol=1e-7
    )
