"""The ROS 2 edge: the node, its ROS-free frame core, diagnostics, settings and launch support.

Only ``node.py`` imports rclpy; message building lives in :mod:`mp3d_ros.messages`, below this layer.
"""
