"""Multi-person tracking on 3D roots (:mod:`~mp3d_ros.tracking.tracker`)."""

from mp3d_ros.tracking.tracker import Tracker, TrackerConfig

__all__ = ["Tracker", "TrackerConfig"]
