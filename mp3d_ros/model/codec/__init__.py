"""The structured 2.5D pose representation as one codec: ground truth -> training maps
(:mod:`~mp3d_ros.model.codec.targets`) beside maps -> people (:mod:`~mp3d_ros.model.codec.decode`),
so the round trip is one test."""
