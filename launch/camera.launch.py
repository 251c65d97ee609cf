"""3D poses of the people a camera sees: ``ros2 launch mp3d_ros camera.launch.py``.

Without arguments it plays the shipped sample bag in a loop on its own clock, so the whole system
runs with no hardware; RViz opens where it is installed (``rviz:=auto``). Name a camera to use it
instead:

    ros2 launch mp3d_ros camera.launch.py camera_driver:=v4l2_camera video_device:=/dev/video0
    ros2 launch mp3d_ros camera.launch.py image_topic:=/camera/color/image_raw device:=cpu
    ros2 launch mp3d_ros camera.launch.py image_topic:=/cam/image_raw image_transport:=compressed

When the bag player, the camera driver, the transform publisher or the pose node exits, the whole
launch shuts down (no orphans); closing RViz leaves the rest running. All arguments:
``ros2 launch mp3d_ros camera.launch.py --show-args``. The decisions (which source, topics, RViz
set-up) are made by :mod:`mp3d_ros.ros.launch_support`, tested without ROS.
"""

import tempfile
from pathlib import Path

from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
from launch.actions import (
    DeclareLaunchArgument,
    EmitEvent,
    ExecuteProcess,
    LogInfo,
    OpaqueFunction,
    RegisterEventHandler,
)
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription
from mp3d_ros.ros.launch_support import CAMERA_ARGUMENTS, plan_camera, render_rviz_config


def _package_exists(package: str) -> bool:
    try:
        get_package_share_directory(package)
    except PackageNotFoundError:
        return False
    return True


def _shutdown_when_it_exits(action, what: str):
    return RegisterEventHandler(OnProcessExit(
        target_action=action,
        on_exit=[EmitEvent(event=Shutdown(reason=f"{what} exited"))]))


def _setup(context):
    share_dir = Path(get_package_share_directory("mp3d_ros"))
    args = {name: LaunchConfiguration(name).perform(context) for name, _, _ in CAMERA_ARGUMENTS}
    plan = plan_camera(args, share_dir, _package_exists)
    namespace = args["namespace"].strip("/")
    actions = [LogInfo(msg=message) for message in plan.messages]
    essential = []  # (action, name): when one exits, everything stops
    if plan.bag_play is not None:
        essential.append((ExecuteProcess(cmd=plan.bag_play, output="screen", name="sample_bag_play"),
                          "the sample bag player"))
    if plan.driver is not None:
        package, executable, parameters = plan.driver
        essential.append((Node(package=package, executable=executable, namespace=namespace or None,
                               parameters=[parameters], output="screen"), f"the camera driver {executable}"))
    if plan.view_transform is not None:
        essential.append((Node(package="tf2_ros", executable="static_transform_publisher",
                               name="mp3d_view_transform", arguments=plan.view_transform),
                          "the view transform publisher"))
    essential.append((Node(
        package="mp3d_ros", executable="pose_node", name="pose_node", namespace=namespace or None,
        parameters=[*plan.node.parameter_files, plan.node.overrides],
        remappings=plan.node.remappings, output="screen",
    ), "the pose node"))
    for action, what in essential:
        actions += [_shutdown_when_it_exits(action, what), action]
    if plan.rviz:
        template = (share_dir / "config" / "mp3d.rviz").read_text()
        rendered = render_rviz_config(template, plan.fixed_frame, plan.node_prefix, plan.rviz_image_topic)
        with tempfile.NamedTemporaryFile("w", suffix=".rviz", prefix="mp3d_", delete=False) as file:
            file.write(rendered)
        # On the bag's clock too, or it cannot look up tf at the bag's stamps.
        sim_time = bool(plan.node.overrides.get("use_sim_time", False))
        actions.append(Node(package="rviz2", executable="rviz2", arguments=["-d", file.name],
                            parameters=[{"use_sim_time": sim_time}], output="screen"))
    return actions


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=description)
         for name, default, description in CAMERA_ARGUMENTS]
        + [OpaqueFunction(function=_setup)]
    )
