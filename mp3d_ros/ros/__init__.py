"""The ROS 2 edge: the node, message conversion and RViz markers.

Only ``node.py`` imports rclpy; the conversion and frame-handling modules work with any message
classes built by keyword (rclpy's or the ``rosbags`` library's) and are tested without ROS.
"""
