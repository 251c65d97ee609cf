"""Pure geometry (numpy/torch, no networks, no ROS): the bottom layer.

- :mod:`~mp3d_ros.geometry.camera`: intrinsics from CameraInfo, lens models, projection, image transforms;
- :mod:`~mp3d_ros.geometry.camera_torch`: the same camera model batched in torch, for the device;
- :mod:`~mp3d_ros.geometry.depth`: closed-form root depth (MAR Eq. 7-8), fusion (Eq. 12), k-value;
- :mod:`~mp3d_ros.geometry.absolute_depth`: root depth of lifted people from body-size priors;
- :mod:`~mp3d_ros.geometry.skeleton`: joint sets and the maps between them;
- :mod:`~mp3d_ros.geometry.people`: ``People``, the one output every model produces.
"""

from mp3d_ros.geometry.camera import Intrinsics

__all__ = ["Intrinsics"]
