"""msg/*.msg: parsed by rosbags, populated messages survive a CDR round trip, fields documented."""

from __future__ import annotations

import re

import numpy as np

from mp3d_ros.messages.typestore import find_msg_dir, typestore


def populated_pose_array(store):
    types = store.types
    Header, Time = types["std_msgs/msg/Header"], types["builtin_interfaces/msg/Time"]
    Point, Vector3 = types["geometry_msgs/msg/Point"], types["geometry_msgs/msg/Vector3"]
    Keypoint3D, Person3D = types["mp3d_ros/msg/Keypoint3D"], types["mp3d_ros/msg/Person3D"]
    people = [
        Person3D(
            track_id=7 + i, track_age=30, score=0.9 - 0.1 * i,
            root=Point(x=0.5 * i, y=0.2, z=4.0 + i),
            root_covariance=np.arange(9, dtype=np.float64) * (i + 1),
            velocity=Vector3(x=0.1, y=0.0, z=-0.3),
            velocity_covariance=np.eye(3).ravel() * 0.01,
            depth_cues=Person3D.DEPTH_CUE_FLOOR | Person3D.DEPTH_CUE_BODY_SIZE, height_m=1.62 + 0.1 * i,
            height_sigma_m=0.04,
            keypoints=[
                Keypoint3D(position=Point(x=j * 0.1, y=-j * 0.1, z=4.0 + 0.01 * j), u=100.0 + j,
                           v=200.5 - j, confidence=0.5, seen=bool(j % 2))
                for j in range(3)
            ],
        )
        for i in range(2)
    ]
    return types["mp3d_ros/msg/PoseArray3D"](
        header=Header(stamp=Time(sec=1700000000, nanosec=123456789), frame_id="camera_optical"),
        skeleton="mupots_17", joint_names=["pelvis", "neck", "head"], people=people,
    )


def test_messages_round_trip_through_cdr() -> None:
    store = typestore()
    message = populated_pose_array(store)
    raw = store.serialize_cdr(message, "mp3d_ros/msg/PoseArray3D")
    back = store.deserialize_cdr(raw, "mp3d_ros/msg/PoseArray3D")
    assert back.header.stamp.nanosec == 123456789 and back.header.frame_id == "camera_optical"
    assert back.joint_names == ["pelvis", "neck", "head"] and back.skeleton == "mupots_17"
    assert len(back.people) == 2
    for sent, received in zip(message.people, back.people):
        assert received.track_id == sent.track_id and received.root.z == sent.root.z
        np.testing.assert_array_equal(received.root_covariance, sent.root_covariance)
        np.testing.assert_array_equal(received.velocity_covariance, sent.velocity_covariance)
        assert [k.seen for k in received.keypoints] == [k.seen for k in sent.keypoints]
        assert [k.u for k in received.keypoints] == [k.u for k in sent.keypoints]
        assert received.score == np.float32(sent.score)
        assert received.depth_cues == sent.depth_cues == 6
        assert received.height_m == np.float32(sent.height_m)


def test_every_field_is_commented_with_unit_or_meaning() -> None:
    for path in sorted(find_msg_dir().glob("*.msg")):
        lines = path.read_text().splitlines()
        for index, line in enumerate(lines):
            if line and not line.startswith("#"):
                comment = [raw for raw in lines[max(0, index - 4):index] if raw.startswith("#")]
                assert comment, f"{path.name}: field {line!r} has no comment above it"
                field_type = line.split()[0]
                if re.match(r"(geometry_msgs/Point|geometry_msgs/Vector3|float64\[9\])", field_type):
                    assert re.search(r"metres|m/s|m\^2", " ".join(comment)), (path.name, line)


def test_depth_cue_bits_match_the_message_constants() -> None:
    from mp3d_ros.geometry import people

    person = typestore().types["mp3d_ros/msg/Person3D"]
    for name in ("DEPTH_CUE_NETWORK", "DEPTH_CUE_BODY_SIZE", "DEPTH_CUE_FLOOR"):
        assert getattr(person, name) == getattr(people, name), name
