"""People -> MarkerArray: structure RViz needs, colours per track, inferred joints, clean-up."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from rclpy_like import RclpyLikeTypes
from test_conversions import random_people

from mp3d_ros.messages.conversions import MessageClasses, make_header
from mp3d_ros.messages.markers import MarkerStyle, people_to_markers, track_colour
from mp3d_ros.messages.typestore import typestore

NAME = "visualization_msgs/msg/MarkerArray"


def classes_for(distribution: str) -> MessageClasses:
    return MessageClasses.from_typestore(typestore(distribution))


ROSBAGS = classes_for("ROS2_JAZZY")
RCLPY_LIKE = MessageClasses.from_lookup(RclpyLikeTypes(typestore()).__getitem__)


def markers_for(people, classes=ROSBAGS, **kwargs):
    return people_to_markers(people, make_header(classes, 5_000_000_000, "camera_optical"), classes,
                             **kwargs)


def by_namespace(array) -> dict[str, list]:
    out: dict[str, list] = {}
    for marker in array.markers[1:]:
        out.setdefault(marker.ns, []).append(marker)
    return out


@pytest.mark.parametrize("distribution", ["ROS2_HUMBLE", "ROS2_JAZZY"])
def test_marker_array_serialises_for_humble_and_jazzy(distribution: str) -> None:
    store = typestore(distribution)
    array = markers_for(random_people(0), classes_for(distribution))
    back = store.deserialize_cdr(store.serialize_cdr(array, NAME), NAME)
    assert len(back.markers) == len(array.markers)
    assert back.markers[0].action == store.types["visualization_msgs/msg/Marker"].DELETEALL


def test_rclpy_like_classes_accept_every_marker() -> None:
    array = markers_for(random_people(1), RCLPY_LIKE)
    assert len(array.markers) > 1
    assert isinstance(array.markers[1].points[0].x, float)


def test_deleteall_first_then_unique_markers_per_person() -> None:
    people = random_people(2, count=3)
    array = markers_for(people)
    first = array.markers[0]
    assert first.action == ROSBAGS.Marker.DELETEALL and first.ns == ""
    keys = [(m.ns, m.id) for m in array.markers]
    assert len(keys) == len(set(keys))  # RViz flags duplicate (ns, id) pairs as an error
    groups = by_namespace(array)
    assert [len(groups[ns]) for ns in ("bones", "joints", "labels")] == [3, 3, 3]
    for marker in array.markers[1:]:
        assert marker.header.frame_id == "camera_optical" and marker.header.stamp.sec == 5
        assert marker.lifetime.sec + marker.lifetime.nanosec * 1e-9 == pytest.approx(0.5)
        assert marker.pose.orientation.w == 1.0


def test_bones_and_joints_follow_the_skeleton() -> None:
    people = random_people(3, count=1)
    groups = by_namespace(markers_for(people))
    bones, joints = groups["bones"][0], groups["joints"][0]
    assert bones.type == ROSBAGS.Marker.LINE_LIST and joints.type == ROSBAGS.Marker.SPHERE_LIST
    skeleton_bones = np.asarray(people.joint_set.bones)
    assert len(bones.points) == 2 * len(skeleton_bones) == len(bones.colors)
    endpoints = np.array([[p.x, p.y, p.z] for p in bones.points])
    np.testing.assert_allclose(endpoints, people.keypoints_m[0][skeleton_bones.ravel()])
    assert len(joints.points) == people.joint_set.num_joints == len(joints.colors)
    alphas = np.array([c.a for c in joints.colors])
    np.testing.assert_allclose(alphas[people.inferred[0]], 0.35, rtol=1e-6)
    np.testing.assert_allclose(alphas[~people.inferred[0]], 1.0)


def test_colour_follows_track_id_and_untracked_is_grey() -> None:
    assert track_colour(3) == track_colour(3) and track_colour(3) != track_colour(4)
    hues = [track_colour(i) for i in range(1, 8)]
    assert len(set(hues)) == 7
    people = random_people(4, count=2)
    people = replace(people, track_id=np.array([5, 0]))
    groups = by_namespace(markers_for(people))
    first, second = groups["joints"][0].color, groups["joints"][1].color
    assert (first.r, first.g, first.b) == pytest.approx(track_colour(5))
    assert (second.r, second.g, second.b) == pytest.approx((0.75, 0.75, 0.75))


def test_label_shows_id_and_distance_above_the_head() -> None:
    people = random_people(5, count=1)
    root = people.root_m[0]
    people = replace(people, track_id=np.array([12]))
    keypoints = people.keypoints_m.copy()
    keypoints[0, people.joint_set.neck] = root + [0.0, -0.5, 0.0]  # optical frame: up is -y
    people = replace(people, keypoints_m=keypoints)
    label = by_namespace(markers_for(people))["labels"][0]
    assert label.type == ROSBAGS.Marker.TEXT_VIEW_FACING
    assert label.text == f"id 12  {np.linalg.norm(root):.1f} m"
    assert label.pose.position.y < keypoints[0, :, 1].min()
    label = by_namespace(markers_for(people, distance_m=np.array([3.25])))["labels"][0]
    assert label.text.endswith("3.2 m")


def test_velocity_arrow_only_for_moving_tracked_people() -> None:
    people = random_people(6, count=3)
    people = replace(people, track_id=np.array([1, 2, 0]),
                     velocity_mps=np.array([[1.0, 0.0, 0.0], [0.01, 0.0, 0.0], [1.0, 0.0, 0.0]]))
    arrows = by_namespace(markers_for(people, style=MarkerStyle(arrow_horizon_s=2.0))).get("velocity")
    assert [a.id for a in arrows] == [0]
    start, end = arrows[0].points
    assert end.x - start.x == pytest.approx(2.0)


def test_non_finite_joints_are_left_out_and_rootless_people_skipped() -> None:
    people = random_people(7, count=2)
    keypoints = people.keypoints_m.copy()
    keypoints[0, 0] = np.nan
    keypoints[1, people.joint_set.root] = np.nan
    groups = by_namespace(markers_for(replace(people, keypoints_m=keypoints)))
    assert len(groups["joints"]) == 1
    assert len(groups["joints"][0].points) == people.joint_set.num_joints - 1
    points = np.array([[p.x, p.y, p.z] for p in groups["bones"][0].points])
    assert np.all(np.isfinite(points))


def test_nobody_still_clears_the_display() -> None:
    from mp3d_ros.geometry.people import People

    array = markers_for(People.empty("mupots_17"))
    assert len(array.markers) == 1 and array.markers[0].action == ROSBAGS.Marker.DELETEALL
