"""mp3d_ros: absolute multi-person 3D pose estimation from one RGB camera (ROS 2 and plain Python).

This file stays a docstring only: under colcon, rosidl generates ``mp3d_ros/__init__.py`` for the
message package and the two must merge (see DESIGN.md, "Packaging").
"""
