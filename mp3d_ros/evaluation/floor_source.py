"""Where a replay gets each frame's floor plane: a bag's ``/tf`` and ``/tf_static``, or a fixed
camera height and pitch.

The transforms of a bag form tf2's tree (parent -> child edges). For a camera frame at a stamp the
transform ``ground_frame <- camera`` is composed through the common root, each edge taken at the
latest stamp at or before the image's (static edges at any stamp), as tf2's buffer would give it
for a tree that does not move faster than its messages.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mp3d_ros.geometry.floor import FloorPlane
from mp3d_ros.messages.conversions import RigidTransform, stamp_to_ns

__all__ = ["TF_TYPE", "FloorSource", "TransformTree"]

TF_TYPE = "tf2_msgs/msg/TFMessage"


@dataclass
class TransformTree:
    """Parent <- child transforms of a bag, by child frame, kept in stamp order."""

    parents: dict[str, str] = field(default_factory=dict)
    stamps: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    transforms: dict[str, list[RigidTransform]] = field(default_factory=lambda: defaultdict(list))
    static: set[str] = field(default_factory=set)

    def add_message(self, message: Any, static: bool) -> None:
        """Every ``TransformStamped`` of a ``tf2_msgs/TFMessage``."""
        for stamped in message.transforms:
            child = stamped.child_frame_id.lstrip("/")
            parent = stamped.header.frame_id.lstrip("/")
            self.parents[child] = parent
            stamp = stamp_to_ns(stamped.header.stamp)
            index = bisect.bisect_right(self.stamps[child], stamp)
            self.stamps[child].insert(index, stamp)
            self.transforms[child].insert(index, RigidTransform.from_msg(stamped.transform))
            if static:
                self.static.add(child)

    def _edge(self, child: str, stamp_ns: int) -> RigidTransform | None:
        stamps = self.stamps[child]
        index = bisect.bisect_right(stamps, stamp_ns) - 1
        if child in self.static:
            index = max(index, 0)  # a static transform holds at every stamp
        return self.transforms[child][index] if index >= 0 else None

    def _to_root(self, frame: str, stamp_ns: int) -> tuple[str, RigidTransform] | None:
        """``(root, root <- frame)`` walking up the parents (None when an edge has no data yet)."""
        rotation, translation, seen = np.eye(3), np.zeros(3), {frame}
        while frame in self.parents:
            edge = self._edge(frame, stamp_ns)
            if edge is None:
                return None
            rotation, translation = edge.rotation @ rotation, edge.rotation @ translation + edge.translation_m
            frame = self.parents[frame]
            if frame in seen:
                return None  # a cycle in the tree: no answer rather than a loop
            seen.add(frame)
        return frame, RigidTransform(rotation, translation)

    def lookup(self, target: str, source: str, stamp_ns: int) -> RigidTransform | None:
        """``target <- source`` at ``stamp_ns`` (``p_target = R p_source + t``), None if not connected."""
        up_target, up_source = self._to_root(target.lstrip("/"), stamp_ns), self._to_root(source.lstrip("/"), stamp_ns)
        if up_target is None or up_source is None or up_target[0] != up_source[0]:
            return None
        root_target, root_source = up_target[1], up_source[1]
        rotation = root_target.rotation.T @ root_source.rotation
        translation = root_target.rotation.T @ (root_source.translation_m - root_target.translation_m)
        return RigidTransform(rotation, translation)


@dataclass
class FloorSource:
    """The floor plane for an image: from the bag's transforms to ``ground_frame``, or one fixed
    plane (``--camera-height-m`` / ``--camera-pitch-deg``)."""

    ground_frame: str | None = None
    fixed: FloorPlane | None = None
    tree: TransformTree = field(default_factory=TransformTree)
    misses: int = 0
    tilt_sigma_rad: float = FloorPlane.tilt_sigma_rad
    height_sigma_m: float = FloorPlane.height_sigma_m

    @classmethod
    def from_height_pitch(cls, camera_height_m: float, pitch_deg: float,
                          tilt_sigma_rad: float = FloorPlane.tilt_sigma_rad,
                          height_sigma_m: float = FloorPlane.height_sigma_m) -> "FloorSource":
        plane = FloorPlane.from_height_pitch(camera_height_m, pitch_deg, tilt_sigma_rad=tilt_sigma_rad,
                                             height_sigma_m=height_sigma_m)
        return cls(fixed=plane, tilt_sigma_rad=tilt_sigma_rad, height_sigma_m=height_sigma_m)

    def plane(self, camera_frame: str, stamp_ns: int) -> FloorPlane | None:
        """The floor in ``camera_frame`` at ``stamp_ns``; None (and counted) when TF cannot say."""
        if self.fixed is not None:
            return self.fixed
        pose = self.tree.lookup(self.ground_frame, camera_frame, stamp_ns)
        if pose is None:
            self.misses += 1
            return None
        return FloorPlane.from_camera_pose(pose.rotation, pose.translation_m,
                                           tilt_sigma_rad=self.tilt_sigma_rad, height_sigma_m=self.height_sigma_m)
