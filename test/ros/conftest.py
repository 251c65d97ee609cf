"""Tests that need ROS 2. ``test_launch.py`` is a launch_testing file: ``colcon test`` runs it through
``add_launch_test`` (its own runner), so plain pytest leaves it out instead of starting the launch a
second time."""

collect_ignore = ["test_launch.py"]
