"""ROS-free message building: PoseArray3D and CameraInfo conversions, images, RViz markers and
rosbag2 files, with any message classes built by keyword (rclpy's, or the ``rosbags`` library's
registered from our ``msg/*.msg`` by :mod:`~mp3d_ros.messages.typestore`)."""
