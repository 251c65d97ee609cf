"""The pose node in a live ROS graph (needs rclpy; run by ``colcon test`` on a ROS 2 machine).

A fake estimator stands in for the network, so these tests check the ROS wiring: QoS, pairing through
message_filters, the worker thread, outputs stamped with the image's header, compressed transport,
/diagnostics counting bad input, and parameter validation at start.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="needs a ROS 2 installation (rclpy)")

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from mp3d_ros.msg import PoseArray3D  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402
from visualization_msgs.msg import MarkerArray  # noqa: E402

from mp3d_ros.geometry.camera import Intrinsics  # noqa: E402
from mp3d_ros.geometry.people import People  # noqa: E402
from mp3d_ros.geometry.skeleton import get_joint_set  # noqa: E402
from mp3d_ros.messages.conversions import make_camera_info, make_header, stamp_to_ns  # noqa: E402
from mp3d_ros.messages.images import rgb_to_compressed_image, rgb_to_image  # noqa: E402
from mp3d_ros.ros.node import PoseNode, message_classes  # noqa: E402
from mp3d_ros.ros.settings import SettingsError  # noqa: E402

pytestmark = pytest.mark.ros

WIDTH, HEIGHT = 64, 48
K = np.array([[60.0, 0.0, 31.5], [0.0, 60.0, 23.5], [0.0, 0.0, 1.0]])
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


class FakeEstimator:
    """One person 4 m in front of the camera, whatever the image."""

    backend_name = "fake"

    def __init__(self, **kwargs) -> None:
        self.kwargs = kwargs

    def estimate(self, image_rgb: np.ndarray, intrinsics: Intrinsics) -> People:
        joints = get_joint_set("mupots_17").num_joints
        keypoints = np.tile([0.0, 0.2, 4.0], (1, joints, 1))
        return People("mupots_17", uv_px=np.zeros((1, joints, 2)), keypoints_m=keypoints,
                      confidence=np.ones((1, joints)), inferred=np.zeros((1, joints), dtype=bool),
                      score=np.array([0.9]), root_sigma_m=np.array([0.2]))


@pytest.fixture
def ros():
    rclpy.init()
    yield
    rclpy.shutdown()


class Harness:
    """A tester node that publishes camera messages and collects the pose node's outputs."""

    def __init__(self, pose_node: PoseNode, compressed: bool = False) -> None:
        self.pose_node = pose_node
        self.node = rclpy.create_node("mp3d_tester")
        self.classes = message_classes()
        image_type, topic = (CompressedImage, "/image/compressed") if compressed else (Image, "/image")
        self.image_pub = self.node.create_publisher(image_type, topic, qos_profile_sensor_data)
        self.info_pub = self.node.create_publisher(CameraInfo, "/camera_info", qos_profile_sensor_data)
        self.compressed = compressed
        self.encoding = "rgb8"  # what raw images claim to be
        self.published: set[int] = set()
        self.received: dict[str, list] = {"poses": [], "markers": [], "diagnostics": []}
        self.node.create_subscription(PoseArray3D, "/pose_node/poses",
                                      self.received["poses"].append, RELIABLE)
        self.node.create_subscription(MarkerArray, "/pose_node/markers",
                                      self.received["markers"].append, RELIABLE)
        self.node.create_subscription(DiagnosticArray, "/diagnostics",
                                      self.received["diagnostics"].append, RELIABLE)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(pose_node)
        self.executor.add_node(self.node)
        self._spinning = True
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while self._spinning and rclpy.ok():
            self.executor.spin_once(timeout_sec=0.05)

    def publish(self, stamp_ns: int) -> None:
        self.published.add(stamp_ns)
        header = make_header(self.classes, stamp_ns, "test_camera")
        rgb = np.full((HEIGHT, WIDTH, 3), 120, dtype=np.uint8)
        if self.compressed:
            image = rgb_to_compressed_image(rgb, header, CompressedImage)
        else:
            image = rgb_to_image(rgb, "rgb8", header, Image)
            image.encoding = self.encoding
        self.image_pub.publish(image)
        self.info_pub.publish(make_camera_info(self.classes, header, K, WIDTH, HEIGHT))

    def wait_for(self, key: str, predicate, timeout_s: float = 15.0, stamp_ns: int = 1_000_000_000):
        """Publish a frame every 0.1 s until a received ``key`` message satisfies ``predicate``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.publish(stamp_ns)
            stamp_ns += 100_000_000
            time.sleep(0.1)
            matches = [m for m in list(self.received[key]) if predicate(m)]
            if matches:
                return matches[0]
        raise AssertionError(f"no matching {key} message within {timeout_s} s")

    def close(self) -> None:
        self._spinning = False
        self._thread.join(2.0)
        self.executor.shutdown()
        self.pose_node.shutdown()
        self.pose_node.destroy_node()
        self.node.destroy_node()


def make_node(**parameters) -> PoseNode:
    overrides = [Parameter("device", value="cpu"), Parameter("tracking.birth_hits", value=1)]
    overrides += [Parameter(name, value=value) for name, value in parameters.items()]
    return PoseNode(FakeEstimator, parameter_overrides=overrides)


def values_of(diagnostics: DiagnosticArray) -> dict[str, str]:
    return {v.key: v.value for v in diagnostics.status[0].values} if diagnostics.status else {}


def test_poses_and_markers_carry_the_image_header(ros) -> None:
    harness = Harness(make_node(diagnostics_period_s=0.2))
    try:
        poses = harness.wait_for("poses", lambda m: len(m.people) == 1)
        assert stamp_to_ns(poses.header.stamp) in harness.published
        assert poses.header.frame_id == "test_camera" and poses.skeleton == "mupots_17"
        assert poses.people[0].root.z == pytest.approx(4.0)
        markers = harness.wait_for("markers", lambda m: len(m.markers) > 1)
        assert markers.markers[0].action == markers.markers[0].DELETEALL
        diagnostics = harness.wait_for(
            "diagnostics", lambda m: int(values_of(m).get("frames_processed", 0)) > 0)
        assert diagnostics.status[0].name == "mp3d_ros: pose_node"
        assert values_of(diagnostics)["backend"] == "fake"
    finally:
        harness.close()


def test_compressed_transport(ros) -> None:
    harness = Harness(make_node(image_transport="compressed"), compressed=True)
    try:
        assert len(harness.wait_for("poses", lambda m: True).people) == 1
    finally:
        harness.close()


def test_unsupported_encoding_is_counted_in_diagnostics_and_the_node_stays_up(ros) -> None:
    harness = Harness(make_node(diagnostics_period_s=0.2))
    harness.encoding = "mono16"
    try:
        status = harness.wait_for(
            "diagnostics", lambda m: int(values_of(m).get("errors.unsupported_encoding", 0)) > 0).status[0]
        assert status.level in (DiagnosticStatus.WARN, DiagnosticStatus.ERROR)
        harness.encoding = "rgb8"  # good frames are processed again
        assert len(harness.wait_for("poses", lambda m: True, stamp_ns=50_000_000_000).people) == 1
    finally:
        harness.close()


@pytest.mark.parametrize("parameters, match", [
    ({"precision": "fp8"}, "precision"),
    ({"sync_slop_s": 5.0}, "sync_slop_s"),
    ({"max_people": 1.5}, "max_people"),
])
def test_invalid_parameters_are_refused_at_start(ros, parameters, match) -> None:
    with pytest.raises(SettingsError, match=match):
        make_node(**parameters)
