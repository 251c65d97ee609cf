"""The bag's transform tree and the replay's floor: lookups against composed transforms, fallbacks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from mp3d_ros.evaluation.floor_source import FloorSource, TransformTree
from mp3d_ros.geometry.people import DEPTH_CUE_FLOOR
from mp3d_ros.messages.conversions import RigidTransform
from mp3d_ros.messages.typestore import typestore

STORE = typestore()


def tf_message(edges: list[tuple[str, str, int, RigidTransform]]):
    types = STORE.types
    transforms = []
    for parent, child, stamp_ns, pose in edges:
        q, t = pose.quaternion_xyzw(), pose.translation_m
        transforms.append(types["geometry_msgs/msg/TransformStamped"](
            header=types["std_msgs/msg/Header"](
                stamp=types["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9),
                frame_id=parent),
            child_frame_id=child,
            transform=types["geometry_msgs/msg/Transform"](
                translation=types["geometry_msgs/msg/Vector3"](x=t[0], y=t[1], z=t[2]),
                rotation=types["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3]))))
    return types["tf2_msgs/msg/TFMessage"](transforms=transforms)


def random_pose(rng) -> RigidTransform:
    return RigidTransform(Rotation.random(random_state=rng).as_matrix(), rng.normal(0, 1, 3))


def compose(a: RigidTransform, b: RigidTransform) -> RigidTransform:
    return RigidTransform(a.rotation @ b.rotation, a.rotation @ b.translation_m + a.translation_m)


def test_lookup_across_branches_equals_the_composed_chain() -> None:
    rng = np.random.default_rng(0)
    odom_base, base_cam, cam_optical, odom_ground = (random_pose(rng) for _ in range(4))
    tree = TransformTree()
    tree.add_message(tf_message([("odom", "base_link", 5, odom_base)]), static=False)
    tree.add_message(tf_message([("base_link", "camera", 0, base_cam), ("camera", "camera_optical", 0, cam_optical),
                                 ("odom", "ground", 0, odom_ground)]), static=True)
    got = tree.lookup("ground", "camera_optical", 10)
    inverse_ground = RigidTransform(odom_ground.rotation.T, -odom_ground.rotation.T @ odom_ground.translation_m)
    expected = compose(inverse_ground, compose(odom_base, compose(base_cam, cam_optical)))
    np.testing.assert_allclose(got.rotation, expected.rotation, atol=1e-9)
    np.testing.assert_allclose(got.translation_m, expected.translation_m, atol=1e-9)


def test_moving_edges_use_the_latest_transform_at_or_before_the_stamp() -> None:
    tree = TransformTree()
    for stamp, x in ((100, 1.0), (200, 2.0)):
        tree.add_message(tf_message([("map", "robot", stamp, RigidTransform(np.eye(3), np.array([x, 0, 0])))]),
                         static=False)
    assert tree.lookup("map", "robot", 150).translation_m[0] == 1.0
    assert tree.lookup("map", "robot", 250).translation_m[0] == 2.0
    assert tree.lookup("map", "robot", 50) is None  # before any data on a moving edge
    assert tree.lookup("map", "elsewhere", 150) is None  # not connected


def test_a_fixed_camera_gives_the_same_plane_every_frame() -> None:
    source = FloorSource.from_height_pitch(1.5, 10.0)
    assert source.plane("any", 0) is source.plane("other", 10**12)
    assert source.plane("any", 0).camera_height_m == 1.5


def test_the_plane_uncertainty_reaches_fixed_and_tf_planes() -> None:
    fixed = FloorSource.from_height_pitch(1.5, 10.0, tilt_sigma_rad=0.003, height_sigma_m=0.01).plane("c", 0)
    assert (fixed.tilt_sigma_rad, fixed.height_sigma_m) == (0.003, 0.01)
    source = FloorSource(ground_frame="ground", tilt_sigma_rad=0.004, height_sigma_m=0.0)
    source.tree.add_message(tf_message([("ground", "cam", 0, RigidTransform(np.eye(3), np.array([0, 0, 1.0])))]),
                            static=True)
    plane = source.plane("cam", 5)
    assert (plane.tilt_sigma_rad, plane.height_sigma_m, plane.camera_height_m) == (0.004, 0.0, 1.0)


@pytest.mark.parametrize("flag", ["--floor-tilt-sigma-rad=-0.1", "--floor-height-sigma-m=2"])
def test_replay_refuses_a_negative_or_huge_plane_sigma(flag, capsys) -> None:
    from mp3d_ros.cli.replay import main

    with pytest.raises(SystemExit) as exit_info:
        main(["some_bag", "--camera-height-m", "1.2", flag])
    assert exit_info.value.code == 2 and flag.split("=")[0] in capsys.readouterr().err


@pytest.mark.parametrize("flags, floor_people", [([], False), (["--ground-frame", "ground"], True),
                                                 (["--camera-height-m", "1.2", "--camera-pitch-deg", "5"], None)])
def test_replay_of_the_sample_bag_uses_its_tf_static_floor(flags, floor_people, tmp_path, capsys,
                                                          one_torch_thread) -> None:
    from pathlib import Path

    from mp3d_ros.cli.replay import main

    bag = Path(__file__).resolve().parents[1] / "models" / "sample_bag"
    out = tmp_path / "out"
    assert main([str(bag), "--max-frames", "6", "--out", str(out), "--device", "cpu", *flags]) == 0
    printed = capsys.readouterr().out
    assert ("floor from" in printed) == bool(flags)
    from rosbags.highlevel import AnyReader
    with AnyReader([out]) as reader:
        poses = [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages()
                 if c.msgtype == "mp3d_ros/msg/PoseArray3D"]
    cues = [person.depth_cues for message in poses for person in message.people]
    assert cues and all(c & 2 for c in cues)  # body size always
    if floor_people is not None:
        assert any(c & DEPTH_CUE_FLOOR for c in cues) == floor_people


def test_ground_frame_without_transforms_in_the_bag_is_refused(tmp_path, capsys) -> None:
    from mp3d_ros.cli.replay import main
    from mp3d_ros.geometry.camera import Intrinsics
    from mp3d_ros.messages.bags import BagFrame, write_bag

    intr = Intrinsics.pinhole(100, 100, 32, 24, 64, 48)
    write_bag(tmp_path / "bag", [BagFrame(10**9, np.zeros((48, 64, 3), np.uint8), intr)], storage="sqlite3")
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path / "bag"), "--ground-frame", "base_footprint"])
    assert exit_.value.code == 2 and "no tf2_msgs/msg/TFMessage topic" in capsys.readouterr().err
