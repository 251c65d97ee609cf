"""The papers' metrics (:mod:`~mp3d_ros.evaluation.metrics`), saved predictions, dataset
evaluation (``mp3d-eval``) and rosbag2 replay with its report (``mp3d-replay``), all without ROS."""
