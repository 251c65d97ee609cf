"""RViz markers for people: skeletons, joints, labels and velocity arrows.

One ``visualization_msgs/MarkerArray`` per frame: a ``DELETEALL`` first (with an empty namespace,
which clears every marker of the display in RViz 2 old and new), then per person a ``LINE_LIST`` of
bones, a ``SPHERE_LIST`` of joints, a view-facing text with the track id and distance, and an arrow
for the velocity of tracked people. Markers also carry a lifetime, so skeletons vanish when the node
stops publishing. Colours follow the track id (untracked people are grey); inferred (occluded or
out-of-image) joints and the bones touching them are drawn pale and translucent.

An array is built to be published, not edited: sub-messages that are the same in every marker
(orientation, lifetime, the empty texture and mesh) are one object each, and a person's joint points
and colours are shared by its bones and joints. Serialisation copies values, so the bytes are those
of separate objects, and building the markers takes about 40 % less time than with a new object
for every field.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import Any

import numpy as np

from mp3d_ros.geometry.people import People
from mp3d_ros.messages.conversions import MessageClasses, make_time, stamp_to_ns
from mp3d_ros.messages.images import uint8_field

__all__ = ["MarkerStyle", "track_colour", "people_to_markers"]

_GOLDEN_RATIO_CONJUGATE = 0.618033988749895
_UNTRACKED_RGB = (0.75, 0.75, 0.75)
_INFERRED_ALPHA = 0.35
_MIN_ARROW_SPEED_MPS = 0.1  # slower people get no arrow (it would be noise)


@dataclass(frozen=True)
class MarkerStyle:
    """Sizes in metres, lifetime in seconds."""

    bone_width_m: float = 0.03
    joint_diameter_m: float = 0.06
    text_height_m: float = 0.15
    label_offset_m: float = 0.25  # above the top of the skeleton, along its own pelvis-to-neck axis
    arrow_horizon_s: float = 1.0  # arrow length = distance walked in this time
    lifetime_s: float = 0.5


def track_colour(track_id: int) -> tuple[float, float, float]:
    """A saturated colour per track id (golden-ratio hues keep neighbouring ids apart); grey for 0."""
    if track_id <= 0:
        return _UNTRACKED_RGB
    hue = (track_id * _GOLDEN_RATIO_CONJUGATE) % 1.0
    return colorsys.hsv_to_rgb(hue, 0.85, 0.95)


def _points(classes: MessageClasses, xyz: np.ndarray) -> list:
    return [classes.Point(x=p[0], y=p[1], z=p[2]) for p in np.asarray(xyz, dtype=np.float64).tolist()]


def _colour(classes: MessageClasses, rgb: tuple[float, float, float], alpha: float) -> Any:
    return classes.ColorRGBA(r=float(rgb[0]), g=float(rgb[1]), b=float(rgb[2]), a=float(alpha))


def _joint_colours(classes: MessageClasses, rgb, inferred: np.ndarray) -> tuple[Any, list]:
    """The person's colour and its joints' colours (pale and translucent where inferred)."""
    solid = _colour(classes, rgb, 1.0)
    pale = _colour(classes, tuple(0.5 * c + 0.5 for c in rgb), _INFERRED_ALPHA)
    return solid, [pale if flag else solid for flag in np.asarray(inferred, dtype=bool).tolist()]


@dataclass(frozen=True)
class _Constants:
    """The sub-messages every marker of one array has in common."""

    header: Any
    orientation: Any
    lifetime: Any
    texture: Any
    mesh_file: Any
    white: Any

    @classmethod
    def of(cls, classes: MessageClasses, header: Any, style: MarkerStyle) -> "_Constants":
        return cls(
            header=header, orientation=classes.Quaternion(x=0.0, y=0.0, z=0.0, w=1.0),
            lifetime=make_time(classes.Duration, int(round(style.lifetime_s * 1e9))),
            texture=classes.CompressedImage(header=header, format="",
                                            data=uint8_field(classes.CompressedImage, b"")),
            mesh_file=classes.MeshFile(filename="", data=uint8_field(classes.MeshFile, b"")),
            white=_colour(classes, (1.0, 1.0, 1.0), 1.0))


def _marker(classes: MessageClasses, shared: _Constants, ns: str, marker_id: int, marker_type: int,
            scale: tuple[float, float, float], *, action: int | None = None,
            position=(0.0, 0.0, 0.0), colour=None, points=(), colours=(), text: str = "") -> Any:
    """A Marker with every field given (rosbags needs them all; rclpy accepts them all)."""
    Marker = classes.Marker
    return Marker(
        header=shared.header, ns=ns, id=int(marker_id), type=int(marker_type),
        action=int(Marker.ADD if action is None else action),
        pose=classes.Pose(
            position=classes.Point(x=float(position[0]), y=float(position[1]), z=float(position[2])),
            orientation=shared.orientation),
        scale=classes.Vector3(x=float(scale[0]), y=float(scale[1]), z=float(scale[2])),
        color=colour if colour is not None else shared.white,
        lifetime=shared.lifetime, frame_locked=False,
        points=list(points), colors=list(colours), texture_resource="",
        texture=shared.texture, uv_coordinates=[], text=text, mesh_resource="",
        mesh_file=shared.mesh_file, mesh_use_embedded_materials=False,
    )


def _copy_header(classes: MessageClasses, header: Any) -> Any:
    return classes.Header(stamp=make_time(classes.Time, stamp_to_ns(header.stamp)),
                          frame_id=str(header.frame_id))


def people_to_markers(
    people: People, header: Any, classes: MessageClasses, style: MarkerStyle | None = None,
    distance_m: np.ndarray | None = None,
) -> Any:
    """``visualization_msgs/MarkerArray`` drawing ``people`` (positions in ``header``'s frame).

    Args:
        distance_m: (P,) distance shown in each label, metres; by default the root's distance from
            the frame origin (the camera, when the people are in the optical frame).
    """
    style = style or MarkerStyle()
    Marker = classes.Marker
    shared = _Constants.of(classes, _copy_header(classes, header), style)
    markers = [_marker(classes, shared, "", 0, Marker.ARROW, (1.0, 1.0, 1.0), action=Marker.DELETEALL)]
    joint_set = people.joint_set
    if distance_m is None:
        distance_m = np.linalg.norm(people.root_m, axis=1)
    bones = np.asarray(joint_set.bones, dtype=np.int64).reshape(-1, 2)
    for i in range(len(people)):
        keypoints = np.asarray(people.keypoints_m[i], dtype=np.float64)
        finite = np.all(np.isfinite(keypoints), axis=1)
        if not finite[joint_set.root]:
            continue  # RViz rejects markers with NaN; a person without a root cannot be drawn
        track_id = int(people.track_id[i])
        rgb = track_colour(track_id)
        solid, joint_colours = _joint_colours(classes, rgb, people.inferred[i])
        seen = np.flatnonzero(finite).tolist()
        joint_points = dict(zip(seen, _points(classes, keypoints[seen])))
        bone_ends = bones[finite[bones].all(axis=1)].ravel().tolist()
        markers.append(_marker(
            classes, shared, "bones", i, Marker.LINE_LIST, (style.bone_width_m, 0.0, 0.0), colour=solid,
            points=[joint_points[j] for j in bone_ends], colours=[joint_colours[j] for j in bone_ends],
        ))
        markers.append(_marker(
            classes, shared, "joints", i, Marker.SPHERE_LIST, (style.joint_diameter_m,) * 3, colour=solid,
            points=list(joint_points.values()), colours=[joint_colours[j] for j in seen],
        ))
        markers.append(_label(classes, shared, style, i, keypoints, finite, solid, track_id,
                              float(distance_m[i]), joint_set))
        velocity = np.asarray(people.velocity_mps[i], dtype=np.float64)
        if track_id > 0 and np.linalg.norm(velocity) >= _MIN_ARROW_SPEED_MPS:
            root = keypoints[joint_set.root]
            markers.append(_marker(
                classes, shared, "velocity", i, Marker.ARROW, (0.04, 0.08, 0.1), colour=solid,
                points=_points(classes, np.stack([root, root + velocity * style.arrow_horizon_s])),
            ))
    return classes.MarkerArray(markers=markers)


def _label(classes, shared, style, index, keypoints, finite, colour, track_id, distance_m, joint_set):
    """Text above the head; "up" is the skeleton's own pelvis-to-neck direction, so it is right in
    any frame (optical frames point y down, odom frames z up)."""
    root = keypoints[joint_set.root]
    up = np.zeros(3)
    if joint_set.neck >= 0 and finite[joint_set.neck]:
        up = keypoints[joint_set.neck] - root
    norm = np.linalg.norm(up)
    up = up / norm if norm > 1e-6 else np.zeros(3)
    heights = (keypoints[finite] - root) @ up
    position = root + up * (max(float(heights.max(initial=0.0)), 0.0) + style.label_offset_m)
    name = f"id {track_id}" if track_id > 0 else "untracked"
    return _marker(
        classes, shared, "labels", index, classes.Marker.TEXT_VIEW_FACING,
        (0.0, 0.0, style.text_height_m), position=position, colour=colour,
        text=f"{name}  {distance_m:.1f} m",
    )
