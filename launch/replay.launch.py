"""Run the pose node on a recorded bag and record its outputs: ``ros2 launch mp3d_ros replay.launch.py
bag:=/path/to/bag``.

``ros2 bag record`` writes ``~/poses``, ``~/markers`` and ``/diagnostics`` to ``out:=`` (default: a
new ``mp3d_replay_<date>_<time>`` folder in the current directory, ``~/.ros`` when that is not
writable), and ``ros2 bag play --clock`` feeds the node (on the bag's clock, so tf lookups and the
stamp age follow the recording) once the node logs that it is ready, so no frame is lost to a slow
start. When the bag ends the launch waits a moment for the last frames and shuts down, which closes
the recorded bag cleanly; if the node or the recorder exits first, everything stops. For evaluation
against ground truth without ROS, use ``mp3d-replay`` instead.
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.actions import (
    DeclareLaunchArgument,
    EmitEvent,
    ExecuteProcess,
    LogInfo,
    OpaqueFunction,
    RegisterEventHandler,
    TimerAction,
)
from launch.event_handlers import OnProcessExit, OnProcessIO
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription
from mp3d_ros.ros.launch_support import REPLAY_ARGUMENTS, ReadyGate, plan_replay

# Time the node gets after the last message to publish its last poses before everything stops.
_DRAIN_S = 3.0


def _setup(context):
    share_dir = Path(get_package_share_directory("mp3d_ros"))
    args = {name: LaunchConfiguration(name).perform(context) for name, _, _ in REPLAY_ARGUMENTS}
    plan = plan_replay(args, share_dir)
    record = ExecuteProcess(cmd=plan.bag_record, output="screen", name="record_outputs")
    node = Node(
        package="mp3d_ros", executable="pose_node", name="pose_node",
        namespace=args["namespace"].strip("/") or None,
        parameters=[*plan.node.parameter_files, plan.node.overrides],
        remappings=plan.node.remappings, output="screen",
    )
    play = ExecuteProcess(cmd=plan.bag_play, output="screen", name="play_input")
    ready = ReadyGate()

    def start_when_ready(event):
        # rclpy logs to stderr; the ProcessIO event carries the raw bytes of each chunk.
        return [LogInfo(msg="the pose node is ready: playing the bag"), play] if ready(event.text) else None

    start_play = RegisterEventHandler(OnProcessIO(
        target_action=node, on_stdout=start_when_ready, on_stderr=start_when_ready))
    stop_after_play = RegisterEventHandler(OnProcessExit(
        target_action=play,
        on_exit=[TimerAction(period=_DRAIN_S, actions=[
            EmitEvent(event=Shutdown(reason="the input bag has been played"))])],
    ))
    stop_on_failure = [RegisterEventHandler(OnProcessExit(
        target_action=action, on_exit=[EmitEvent(event=Shutdown(reason=f"{what} exited"))]))
        for action, what in ((node, "the pose node"), (record, "the recorder"))]
    return [*(LogInfo(msg=m) for m in plan.messages), start_play, stop_after_play, *stop_on_failure,
            record, node]


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=description)
         for name, default, description in REPLAY_ARGUMENTS]
        + [OpaqueFunction(function=_setup)]
    )
