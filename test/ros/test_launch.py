"""launch_testing smoke test of ``camera.launch.py`` with the real estimator on the CPU.

Run by ``colcon test`` (CMakeLists.txt: ``add_launch_test(test/ros/test_launch.py)``); skipped where
launch_testing is missing. The launch file starts the installed pose node on a camera topic; the test
publishes an image and its CameraInfo and expects a PoseArray3D stamped like the image.
"""

from __future__ import annotations

import time
import unittest

import numpy as np
import pytest

pytest.importorskip("launch_testing", reason="needs launch_testing (ROS 2)")
rclpy = pytest.importorskip("rclpy", reason="needs a ROS 2 installation (rclpy)")

import launch_testing  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
from ament_index_python.packages import get_package_share_directory  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from mp3d_ros.msg import PoseArray3D  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from launch import LaunchDescription  # noqa: E402
from mp3d_ros.messages.conversions import make_camera_info, make_header, stamp_to_ns  # noqa: E402
from mp3d_ros.messages.images import rgb_to_image  # noqa: E402
from mp3d_ros.ros.node import message_classes  # noqa: E402

pytestmark = pytest.mark.ros

IMAGE_TOPIC = "/launch_test_cam/image_raw"
# Model loading and the first CPU inference can take a while on a CI machine.
TIMEOUT_S = 120.0


@pytest.mark.launch_test
def generate_test_description():
    launch_file = f"{get_package_share_directory('mp3d_ros')}/launch/camera.launch.py"
    camera = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(launch_file),
        launch_arguments={"image_topic": IMAGE_TOPIC, "device": "cpu", "rviz": "false"}.items(),
    )
    return LaunchDescription([camera, launch_testing.actions.ReadyToTest()])


class TestPosesFollowTheImage(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        rclpy.init()
        cls.node = rclpy.create_node("camera_launch_tester")

    @classmethod
    def tearDownClass(cls) -> None:
        cls.node.destroy_node()
        rclpy.shutdown()

    def test_poses_are_published_with_the_image_stamp(self) -> None:
        classes = message_classes()
        received: list = []
        self.node.create_subscription(PoseArray3D, "/pose_node/poses", received.append,
                                      QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        image_pub = self.node.create_publisher(Image, IMAGE_TOPIC, qos_profile_sensor_data)
        info_pub = self.node.create_publisher(CameraInfo, "/launch_test_cam/camera_info",
                                              qos_profile_sensor_data)
        K = np.array([[500.0, 0.0, 319.5], [0.0, 500.0, 239.5], [0.0, 0.0, 1.0]])
        rgb = np.full((480, 640, 3), 128, dtype=np.uint8)
        sent: set[int] = set()
        deadline = time.monotonic() + TIMEOUT_S
        stamp_ns = 1_700_000_000_000_000_000
        while time.monotonic() < deadline and not received:
            header = make_header(classes, stamp_ns, "launch_test_camera")
            image_pub.publish(rgb_to_image(rgb, "bgr8", header, Image))
            info_pub.publish(make_camera_info(classes, header, K, 640, 480))
            sent.add(stamp_ns)
            stamp_ns += 200_000_000
            rclpy.spin_once(self.node, timeout_sec=0.2)
        self.assertTrue(received, "no PoseArray3D from the launched node")
        self.assertIn(stamp_to_ns(received[0].header.stamp), sent)
        self.assertEqual(received[0].header.frame_id, "launch_test_camera")


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_processes_exit_cleanly(self, proc_info) -> None:
        # 0: clean exit; -2 / -15: stopped by SIGINT / SIGTERM at the end of the test.
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, -15])
