"""Image + live intrinsics -> ``People``: the Estimator (:mod:`~mp3d_ros.inference.estimator`) over
one pipeline per model, device pre-processing, the ``movenet-lift`` model and ONNX export."""

from mp3d_ros.inference.estimator import Estimator

__all__ = ["Estimator"]
