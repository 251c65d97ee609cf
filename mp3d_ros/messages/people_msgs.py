"""``people_msgs/msg/People`` for navigation (e.g. a nav2 social costmap layer), without ROS.

wg-perception/people's ``people_msgs``: ``People`` is ``std_msgs/Header header`` and
``people_msgs/Person[] people``; ``Person`` is ``string name``, ``geometry_msgs/Point position``,
``geometry_msgs/Point velocity``, ``float64 reliability``, ``string[] tagnames``, ``string[] tags``.
Only tracked people are sent (track id > 0): a navigation layer needs stable names and velocities.
The same names, ``person_<track id>``, are used for the TF frames of :func:`track_frames`.

Built with keyword arguments and plain Python scalars, like :mod:`mp3d_ros.messages.conversions`, so
the same code works with rclpy's generated classes and with test stand-ins.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mp3d_ros.geometry.people import People

__all__ = ["PeopleMsgClasses", "person_name", "people_to_people_msg", "track_frames"]


@dataclass(frozen=True)
class PeopleMsgClasses:
    """The message classes :func:`people_to_people_msg` builds with."""

    People: Any  # people_msgs/msg/People
    Person: Any  # people_msgs/msg/Person
    Point: Any  # geometry_msgs/msg/Point


def person_name(track_id: int) -> str:
    """The name (and TF child frame) of a track: ``person_<track id>``."""
    return f"person_{int(track_id)}"


def _tracked(people: People) -> np.ndarray:
    return np.flatnonzero(np.asarray(people.track_id) > 0)


def people_to_people_msg(people: People, header: Any, classes: PeopleMsgClasses) -> Any:
    """``people_msgs/People`` of the tracked ``people``, in ``header``'s frame.

    Per person: name ``person_<track id>``, position = the root (pelvis), velocity = the track's
    velocity (m/s, as a Point, which is what people_msgs uses), reliability = the score in [0, 1],
    tags ``track_age`` (frames) and ``height_m`` (0 when not measured).
    """
    roots = np.asarray(people.root_m, dtype=np.float64)
    velocities = np.asarray(people.velocity_mps, dtype=np.float64)
    persons = []
    for i in _tracked(people):
        root, velocity = roots[i].tolist(), velocities[i].tolist()
        persons.append(classes.Person(
            name=person_name(people.track_id[i]),
            position=classes.Point(x=root[0], y=root[1], z=root[2]),
            velocity=classes.Point(x=velocity[0], y=velocity[1], z=velocity[2]),
            reliability=float(np.clip(float(people.score[i]), 0.0, 1.0)),
            tagnames=["track_age", "height_m"],
            tags=[str(int(people.track_age[i])), f"{float(people.height_m[i]):.3f}"],
        ))
    return classes.People(header=header, people=persons)


def track_frames(people: People) -> list[tuple[str, tuple[float, float, float]]]:
    """(child frame name, root position in metres) of each tracked person, for a TF broadcaster."""
    roots = np.asarray(people.root_m, dtype=np.float64)
    return [(person_name(people.track_id[i]), tuple(roots[i].tolist())) for i in _tracked(people)]
