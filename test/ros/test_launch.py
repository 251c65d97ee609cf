"""launch_testing test of ``camera.launch.py`` exactly as a user starts it: no arguments.

Run by ``colcon test`` (CMakeLists.txt: ``add_launch_test(test/ros/test_launch.py)``); skipped where
launch_testing is missing. With no arguments the launch plays the shipped sample bag in a loop on
its clock, runs the real estimator (``device: auto``: the CPU on a CI machine) and no RViz where
rviz2 is absent. The test expects poses for longer than one pass of the bag (about 8 s), so a loop
must not silence the node, and after shutdown no process of the launch may be left running.
"""

from __future__ import annotations

import os
import time
from itertools import pairwise
import unittest
from pathlib import Path

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
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402

from launch import LaunchDescription  # noqa: E402
from mp3d_ros.messages.conversions import stamp_to_ns  # noqa: E402

pytestmark = pytest.mark.ros

SHARE_DIR = Path(get_package_share_directory("mp3d_ros"))
# Model loading and the first CPU inference can take a while on a CI machine.
START_TIMEOUT_S = 120.0
# Longer than one pass of the sample bag (7.9 s), so the test crosses at least one loop.
WATCH_S = 20.0
LONGEST_GAP_S = 4.0  # the node may not fall silent for longer than this
# Command-line pieces of the launch's processes, to find any left running after shutdown.
OUR_PROCESSES = (str(SHARE_DIR / "models" / "sample_bag"), "lib/mp3d_ros/pose_node", "mp3d_view_transform")


@pytest.mark.launch_test
def generate_test_description():
    camera = IncludeLaunchDescription(PythonLaunchDescriptionSource(str(SHARE_DIR / "launch" / "camera.launch.py")))
    return LaunchDescription([camera, launch_testing.actions.ReadyToTest()])


def running_processes(markers: tuple[str, ...]) -> list[str]:
    """Command lines of live processes (other than this one) containing any of ``markers``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # exited meanwhile
        if any(marker in cmdline for marker in markers):
            found.append(f"{entry.name}: {cmdline}")
    return found


class TestPosesOutliveABagLoop(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        rclpy.init()
        cls.node = rclpy.create_node("camera_launch_tester")

    @classmethod
    def tearDownClass(cls) -> None:
        cls.node.destroy_node()
        rclpy.shutdown()

    def test_poses_keep_coming_across_a_bag_loop(self) -> None:
        arrivals: list[tuple[float, int]] = []
        self.node.create_subscription(
            PoseArray3D, "/pose_node/poses",
            lambda msg: arrivals.append((time.monotonic(), stamp_to_ns(msg.header.stamp))),
            QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
        deadline = time.monotonic() + START_TIMEOUT_S
        while not arrivals and time.monotonic() < deadline:
            rclpy.spin_once(self.node, timeout_sec=0.2)
        self.assertTrue(arrivals, f"no PoseArray3D within {START_TIMEOUT_S} s of the launch")
        end = arrivals[0][0] + WATCH_S
        while time.monotonic() < end:
            rclpy.spin_once(self.node, timeout_sec=0.2)
        times = [t for t, _ in arrivals] + [time.monotonic()]
        longest_gap = max(b - a for a, b in pairwise(times))
        self.assertLess(longest_gap, LONGEST_GAP_S, "the node fell silent (a bag loop?)")
        stamps = [s for _, s in arrivals]
        self.assertTrue(any(b < a for a, b in pairwise(stamps)),
                        "the stamps never went back: the test did not cross a bag loop")


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_processes_exit_cleanly(self, proc_info) -> None:
        # 0: clean exit; -2 / -15: stopped by SIGINT / SIGTERM at the end of the test.
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, -15])

    def test_no_process_is_left_running(self) -> None:
        deadline = time.monotonic() + 10.0
        while running_processes(OUR_PROCESSES) and time.monotonic() < deadline:
            time.sleep(0.2)
        self.assertEqual(running_processes(OUR_PROCESSES), [])
