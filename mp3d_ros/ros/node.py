"""``ros2 run mp3d_ros pose_node``: absolute 3D poses of all people seen by one camera.

Subscribes ``image`` (``sensor_msgs/Image``; ``sensor_msgs/CompressedImage`` on ``<image>/compressed``
with ``image_transport:=compressed``) and ``camera_info`` with sensor-data QoS; publishes
``~/poses`` (``mp3d_ros/PoseArray3D``), ``~/markers`` (``visualization_msgs/MarkerArray``),
``~/people`` (``people_msgs/People``, when that package is installed), optionally TF frames
``person_<id>`` and ``/diagnostics``, all reliable. It logs :data:`READY_LINE` once it listens (the
launch files start bag playback on that line). Parameters: see ``config/mp3d.yaml`` (and
:data:`mp3d_ros.ros.settings.PARAMETERS`).

This module is the thin ROS edge: every decision lives in :mod:`mp3d_ros.ros.frames` (pairing,
latest-frame buffer, processing, error counting), :mod:`mp3d_ros.ros.health` (CPU fallback,
diagnostics) and :mod:`mp3d_ros.ros.settings`, which are tested without ROS. The ROS calls used here
are common to Humble and Jazzy (rclpy, message_filters, tf2_ros).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable

import message_filters
import rclpy
import tf2_ros
from builtin_interfaces.msg import Duration as DurationMsg
from builtin_interfaces.msg import Time as TimeMsg
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, Pose, Quaternion, Transform, TransformStamped, Vector3
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException
from rclpy.logging import get_logger
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, RegionOfInterest
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray, MeshFile

from mp3d_ros.messages.conversions import (
    MessageClasses,
    RigidTransform,
    make_diagnostic_array,
    make_header,
    make_time,
)
from mp3d_ros.messages.people_msgs import PeopleMsgClasses, people_to_people_msg, track_frames
from mp3d_ros.msg import Keypoint3D, Person3D, PoseArray3D
from mp3d_ros.ros.frame_buffer import FrameBuffer
from mp3d_ros.ros.frames import FrameProcessor, FrameResult, FrameWorker, ThrottledLog
from mp3d_ros.ros.health import (DiagnosticsMonitor, decodes_ahead, load_estimator, match_opencv_threads,
                                  startup_line)
from mp3d_ros.ros.launch_support import READY_LINE
from mp3d_ros.ros.settings import PARAMETERS, NodeSettings, ParameterSpec, SettingsError

# Outputs are reliable with a short queue: a slow subscriber gets the newest poses, never a backlog.
_OUTPUT_QOS = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=5)
_DIAGNOSTIC_NAME = "mp3d_ros: pose_node"


def message_classes() -> MessageClasses:
    return MessageClasses(
        Time=TimeMsg, Duration=DurationMsg, Header=Header, Point=Point, Vector3=Vector3,
        Quaternion=Quaternion, Pose=Pose, ColorRGBA=ColorRGBA, Image=Image,
        CompressedImage=CompressedImage, CameraInfo=CameraInfo, RegionOfInterest=RegionOfInterest,
        Keypoint3D=Keypoint3D, Person3D=Person3D, PoseArray3D=PoseArray3D, Marker=Marker,
        MarkerArray=MarkerArray, MeshFile=MeshFile, DiagnosticArray=DiagnosticArray,
        DiagnosticStatus=DiagnosticStatus, KeyValue=KeyValue,
    )


def people_msgs_classes() -> PeopleMsgClasses | None:
    """people_msgs' classes, or None where the package is not installed (an optional dependency)."""
    try:
        module = importlib.import_module("people_msgs.msg")
    except ImportError:
        return None
    return PeopleMsgClasses(People=module.People, Person=module.Person, Point=Point)


def _descriptor(spec: ParameterSpec) -> ParameterDescriptor:
    """Description and range of one parameter; read-only, as the node reads them once at start."""
    descriptor = ParameterDescriptor(description=spec.description,
                                     additional_constraints=spec.constraints, read_only=True)
    if spec.low is not None and isinstance(spec.default, float):
        descriptor.floating_point_range = [
            FloatingPointRange(from_value=float(spec.low), to_value=float(spec.high), step=0.0)]
    elif spec.low is not None and isinstance(spec.default, int) and not isinstance(spec.default, bool):
        descriptor.integer_range = [
            IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=0)]
    return descriptor


class PoseNode(Node):
    """Wires ROS callbacks, publishers and timers to the ROS-free frame-handling core."""

    def __init__(self, estimator_factory: Callable[..., Any] | None = None, **node_kwargs: Any) -> None:
        """``estimator_factory`` defaults to :class:`mp3d_ros.inference.estimator.Estimator`; ``node_kwargs``
        go to rclpy's ``Node`` (``namespace``, ``parameter_overrides``, ...)."""
        super().__init__("pose_node", **node_kwargs)
        self.settings = self._read_settings()
        settings = self.settings
        if estimator_factory is None:
            from mp3d_ros.inference.estimator import Estimator  # heavy (torch); imported only when running

            estimator_factory = Estimator
        self.loaded = load_estimator(estimator_factory, settings, self._log)
        match_opencv_threads()
        self.get_logger().info(startup_line(self.loaded, settings.stage_timing))
        self._classes = message_classes()
        lookup = None
        if settings.target_frame or settings.ground_frame:
            self._tf_buffer = tf2_ros.Buffer()
            self._tf_listener = tf2_ros.TransformListener(self._tf_buffer, self)
            lookup = self._lookup_transform
        self._buffer = FrameBuffer(settings.camera_info_wait_s, on_time_jump=self._on_time_jump)
        self._processor = FrameProcessor(
            self.loaded.estimator.estimate, settings, self._classes,
            ThrottledLog(self._log, settings.log_throttle_s), lookup_transform=lookup,
            ros_now_s=lambda: self.get_clock().now().nanoseconds * 1e-9,
            estimator_timings=lambda: getattr(self.loaded.estimator, "last_timings_ms", {}),
        )
        self._diagnostics = DiagnosticsMonitor(self._buffer, self._processor, self.loaded)
        self._poses_pub = self.create_publisher(PoseArray3D, "~/poses", _OUTPUT_QOS)
        self._markers_pub = self.create_publisher(MarkerArray, "~/markers", _OUTPUT_QOS)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", _OUTPUT_QOS)
        self._people_classes = people_msgs_classes() if settings.publish_people else None
        self._people_pub = None
        if self._people_classes is not None:
            self._people_pub = self.create_publisher(self._people_classes.People, "~/people", _OUTPUT_QOS)
        elif settings.publish_people:
            self.get_logger().info("people_msgs is not installed: ~/people is not published "
                                   "(sudo apt install ros-$ROS_DISTRO-people-msgs to get it)")
        self._tf_broadcaster = tf2_ros.TransformBroadcaster(self) if settings.publish_tf else None
        self._subscribe(settings)
        self._worker = FrameWorker(self._buffer, self._processor, self._publish, self._log,
                                   decode_ahead=decodes_ahead(settings.decode_ahead, self.loaded.device))
        if self._worker.decodes_ahead:
            self.get_logger().info("decode_ahead: each image is decoded in a second thread while the "
                                   "estimator runs the one before")
        self._worker.start()
        self._timer = self.create_timer(settings.diagnostics_period_s, self._publish_diagnostics)
        self.get_logger().info(READY_LINE)

    # ------------------------------------------------------------------ set-up

    def _read_settings(self) -> NodeSettings:
        """Declare every parameter and validate them all; one error lists every problem."""
        problems, values, refused = [], {}, set()
        for spec in PARAMETERS:
            try:
                values[spec.name] = self.declare_parameter(spec.name, spec.default, _descriptor(spec)).value
            except Exception as error:  # noqa: BLE001 - rclpy raises a different type per problem
                problems.append(f"{spec.name} ({spec.constraints or type(spec.default).__name__}): "
                                f"{type(error).__name__}: {error}")
                refused.add(spec.name)
        # Refused values are left out (their default stands in) so the other checks still run.
        return NodeSettings.from_values({k: v for k, v in values.items() if k not in refused},
                                        known_problems=problems, unchecked=refused)

    def _subscribe(self, settings: NodeSettings) -> None:
        if settings.image_transport == "compressed":
            # image_transport's convention: the compressed stream of '<image>' is '<image>/compressed',
            # so resolve (and remap) 'image' first.
            image_type, image_topic = CompressedImage, self.resolve_topic_name("image") + "/compressed"
        else:
            image_type, image_topic = Image, "image"
        self._image_sub = message_filters.Subscriber(
            self, image_type, image_topic, qos_profile=qos_profile_sensor_data)
        self._info_sub = message_filters.Subscriber(
            self, CameraInfo, "camera_info", qos_profile=qos_profile_sensor_data)
        # Registered before the synchronizer connects, so every image reaches the buffer before
        # its pair does (SimpleFilter calls callbacks in registration order).
        self._image_sub.registerCallback(self._buffer.on_image)
        self._info_sub.registerCallback(self._buffer.on_camera_info)
        self._sync = message_filters.ApproximateTimeSynchronizer(
            [self._image_sub, self._info_sub], settings.sync_queue_size, settings.sync_slop_s)
        self._sync.registerCallback(self._buffer.on_pair)
        self.get_logger().info(
            f"listening to {self.resolve_topic_name(image_topic)} ({image_type.__name__}) and "
            f"{self.resolve_topic_name('camera_info')}")

    # ------------------------------------------------------------------ callbacks

    def _log(self, level: str, message: str) -> None:
        # One call site per severity: rclpy's logger refuses a call site whose severity changes.
        logger = self.get_logger()
        if level == "error":
            logger.error(message)
        elif level == "warn":
            logger.warn(message)
        else:
            logger.info(message)

    def _lookup_transform(self, target_frame: str, source_frame: str, stamp_ns: int) -> RigidTransform:
        # Time.from_msg gives the ROS clock type, as tf2 expects for message stamps.
        transform = self._tf_buffer.lookup_transform(
            target_frame, source_frame, Time.from_msg(make_time(TimeMsg, stamp_ns)),
            timeout=Duration(seconds=self.settings.transform_timeout_s))
        return RigidTransform.from_msg(transform.transform)

    def _on_time_jump(self, message: str) -> None:
        self.get_logger().warn(message)
        # The synchronizer keeps at most queue_size stamps per topic and evicts the oldest, which
        # after a jump back are the new ones: forget the old stamps so the new ones can pair.
        with self._sync.lock:
            for queue in self._sync.queues:
                queue.clear()

    def _publish(self, result: FrameResult) -> None:
        # The worker may finish a frame while Ctrl-C shuts rclpy down; publishing then would raise.
        if not self.context.ok():
            return
        self._poses_pub.publish(result.poses)
        if result.markers is not None:
            self._markers_pub.publish(result.markers)
        header = result.poses.header
        if self._people_pub is not None:
            self._people_pub.publish(people_to_people_msg(result.people, header, self._people_classes))
        if self._tf_broadcaster is not None:
            frames = track_frames(result.people)
            if frames:
                self._tf_broadcaster.sendTransform([TransformStamped(
                    header=header, child_frame_id=child,
                    transform=Transform(translation=Vector3(x=x, y=y, z=z),
                                        rotation=Quaternion(x=0.0, y=0.0, z=0.0, w=1.0)))
                    for child, (x, y, z) in frames])

    def _publish_diagnostics(self) -> None:
        if not self.context.ok():
            return
        report = self._diagnostics.report()
        header = make_header(self._classes, self.get_clock().now().nanoseconds, "")
        self._diagnostics_pub.publish(make_diagnostic_array(
            self._classes, header, _DIAGNOSTIC_NAME, report.level, report.message,
            self.get_namespace().rstrip("/") + "/" + self.get_name(), report.values))

    def shutdown(self) -> None:
        self._worker.stop()


def main(args: list[str] | None = None) -> int:
    # No rclpy signal handler: Ctrl-C raises KeyboardInterrupt with the context still valid, so the
    # worker is stopped and joined before rclpy shuts down (not after, mid-publish).
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = None
    try:
        node = PoseNode()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (SettingsError, RuntimeError) as error:
        # Invalid parameters or no usable device: a clear message and a non-zero exit, no retry loop.
        get_logger("pose_node").fatal(str(error))
        return 1
    finally:
        if node is not None:
            node.shutdown()
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
