"""Datasets, training targets and synthetic scenes (no ROS)."""
