"""node.py executed against stand-ins of rclpy, message_filters and tf2_ros (no ROS needed).

The stand-ins follow the Humble/Jazzy signatures node.py relies on (checked against ros2/rclpy
``node.py`` / ``impl/rcutils_logger.py``, ros2/message_filters ``__init__.py`` and ros2/geometry2
``tf2_ros/buffer.py``), including two behaviours that break nodes at run time: rclpy's logger refuses
a call site whose severity changes, and rclpy's generated messages reject numpy values in scalar and
sequence fields (the message classes here are :mod:`rclpy_like`'s strict ones). The real node runs
under ``colcon test`` in ``test/ros``; this test runs its code paths everywhere.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import threading
import time
import types

import numpy as np
import pytest
from rclpy_like import RclpyLikeTypes
from test_frames import FakeEstimator

from mp3d_ros.messages.conversions import MessageClasses, make_camera_info, make_header, stamp_to_ns
from mp3d_ros.messages.images import rgb_to_image
from mp3d_ros.messages.typestore import typestore


def _store_with_people_msgs():
    """A fresh Jazzy typestore with ours and wg-perception/people's people_msgs registered."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    store.register({name: typestore().fielddefs[name] for name in typestore().fielddefs
                    if name.startswith("mp3d_ros/")})
    store.register(get_types_from_msg(
        "string name\ngeometry_msgs/Point position\ngeometry_msgs/Point velocity\nfloat64 reliability\n"
        "string[] tagnames\nstring[] tags\n", "people_msgs/msg/Person"))
    store.register(get_types_from_msg("std_msgs/Header header\npeople_msgs/Person[] people\n",
                                      "people_msgs/msg/People"))
    return store


TYPES = RclpyLikeTypes(_store_with_people_msgs())
WIDTH, HEIGHT = 64, 48
CONTEXT = {"ok": True}  # rclpy's context of the fake nodes
K = np.array([[60.0, 0.0, 31.5], [0.0, 60.0, 23.5], [0.0, 0.0, 1.0]])


class StrictLogger:
    """rclpy's RcutilsLogger rule: one severity per call site."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []
        self._sites: dict[tuple[str, int], str] = {}

    def _log(self, severity: str, message: str) -> None:
        caller = inspect.stack()[2]
        site = (caller.filename, caller.lineno)
        if self._sites.setdefault(site, severity) != severity:
            raise ValueError("Logger severity cannot be changed between calls.")
        self.lines.append((severity, message))

    def info(self, message, **kwargs):
        self._log("info", message)

    def warn(self, message, **kwargs):
        self._log("warn", message)

    def error(self, message, **kwargs):
        self._log("error", message)

    def fatal(self, message, **kwargs):
        self._log("fatal", message)


class FakeParameter:
    def __init__(self, value) -> None:
        self.value = value


class FakeNode:
    """The subset of rclpy.node.Node that node.py uses, with rclpy's signatures."""

    def __init__(self, node_name, *, namespace=None, parameter_overrides=None, **kwargs) -> None:
        self._name, self._namespace = node_name, namespace or "/"
        self._overrides = {p.name: p.value for p in (parameter_overrides or [])}
        self.declared, self.publishers, self.subscriptions, self.timers = {}, {}, {}, []
        self._logger = StrictLogger()
        self.context = types.SimpleNamespace(ok=lambda: CONTEXT["ok"])

    def get_name(self):
        return self._name

    def get_namespace(self):
        return self._namespace

    def get_logger(self):
        return self._logger

    def get_clock(self):
        return types.SimpleNamespace(now=lambda: types.SimpleNamespace(nanoseconds=time.time_ns()))

    def declare_parameter(self, name, value=None, descriptor=None, ignore_override=False):
        assert isinstance(descriptor, TYPES["rcl_interfaces/msg/ParameterDescriptor"])
        chosen = self._overrides.get(name, value)
        if type(chosen) is not type(value):
            raise TypeError(f"InvalidParameterTypeException: {name}")
        self.declared[name] = descriptor
        return FakeParameter(chosen)

    def resolve_topic_name(self, topic, *, only_expand=False):
        return topic if topic.startswith("/") else f"{self._namespace.rstrip('/')}/{topic}"

    def create_publisher(self, msg_type, topic, qos_profile, **kwargs):
        publisher = types.SimpleNamespace(msg_type=msg_type, qos=qos_profile, sent=[])

        def publish(msg):
            assert isinstance(msg, msg_type), f"{topic}: {type(msg)} is not {msg_type}"
            publisher.sent.append(msg)

        publisher.publish = publish
        self.publishers[topic] = publisher
        return publisher

    def create_subscription(self, msg_type, topic, callback, qos_profile, **kwargs):
        self.subscriptions[topic] = (msg_type, callback, qos_profile)
        return object()

    def create_timer(self, timer_period_sec, callback, callback_group=None, clock=None):
        self.timers.append((timer_period_sec, callback))
        return object()

    def destroy_node(self):
        return True


class SimpleFilter:
    def __init__(self) -> None:
        self.callbacks = {}

    def registerCallback(self, cb, *args):  # noqa: N802 - message_filters' name
        self.callbacks[len(self.callbacks)] = (cb, args)

    def signalMessage(self, *msg):  # noqa: N802
        for cb, args in self.callbacks.values():
            cb(*(msg + args))


class Subscriber(SimpleFilter):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__()
        kwargs.setdefault("qos_profile", 10)
        args[0].create_subscription(*args[1:], self.signalMessage, **kwargs)


class ApproximateTimeSynchronizer(SimpleFilter):
    """Pairs as message_filters does: at once when stamps differ by strictly less than the slop."""

    def __init__(self, fs, queue_size, slop, allow_headerless=False) -> None:
        super().__init__()
        self.queues = [{} for _ in fs]
        self.lock = threading.Lock()
        self.queue_size = queue_size
        self.slop_ns = int(slop * 1e9)
        for index, f in enumerate(fs):
            f.registerCallback(self.add, index)

    def add(self, msg, index):
        stamp = stamp_to_ns(msg.header.stamp)
        self.queues[index][stamp] = msg
        while len(self.queues[index]) > self.queue_size:  # message_filters evicts the oldest stamp
            del self.queues[index][min(self.queues[index])]
        if stamp not in self.queues[index]:
            return
        other = self.queues[1 - index]
        for s in sorted(other, key=lambda s: abs(s - stamp)):
            if abs(s - stamp) < self.slop_ns:
                own, matched = self.queues[index].pop(stamp), other.pop(s)
                self.signalMessage(*((own, matched) if index == 0 else (matched, own)))
                return


class FakeTime:
    def __init__(self, *, seconds=0, nanoseconds=0) -> None:
        self.nanoseconds = int(seconds * 1e9) + int(nanoseconds)

    @classmethod
    def from_msg(cls, msg):
        assert isinstance(msg, TYPES["builtin_interfaces/msg/Time"])
        return cls(nanoseconds=stamp_to_ns(msg))


class FakeDuration:
    def __init__(self, *, seconds=0, nanoseconds=0) -> None:
        self.nanoseconds = int(seconds * 1e9) + int(nanoseconds)


class FakeBuffer:
    def __init__(self, cache_time=None, node=None) -> None:
        self.lookups = []

    def lookup_transform(self, target_frame, source_frame, time, timeout=None):
        assert isinstance(time, FakeTime) and isinstance(timeout, FakeDuration)
        self.lookups.append((target_frame, source_frame, time.nanoseconds, timeout.nanoseconds))
        Vector3, Quaternion = TYPES["geometry_msgs/msg/Vector3"], TYPES["geometry_msgs/msg/Quaternion"]
        transform = TYPES["geometry_msgs/msg/Transform"](translation=Vector3(x=1.0, y=0.0, z=0.0),
                                                         rotation=Quaternion(x=0.0, y=0.0, z=0.0, w=1.0))
        return types.SimpleNamespace(transform=transform)


class FakeBroadcaster:
    def __init__(self, node) -> None:
        self.sent: list = []

    def sendTransform(self, transform):  # noqa: N802 - tf2_ros' name
        self.sent.extend(transform if isinstance(transform, list) else [transform])


def _module(name: str, **attributes) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    return module


@pytest.fixture
def node_module(monkeypatch):
    """``mp3d_ros.ros.node`` imported against the stand-ins (and forgotten afterwards)."""
    state = {"ok": True, "spin": None}

    def msgs(package: str, *names: str) -> types.ModuleType:
        return _module(f"{package}.msg", **{n: TYPES[f"{package}/msg/{n}"] for n in names})

    class ExternalShutdownException(Exception):
        pass

    def init(*, args=None, context=None, domain_id=None, signal_handler_options=None):
        state.update(ok=True, signal_handler_options=signal_handler_options)

    rclpy = _module("rclpy", init=init,
                    ok=lambda: state["ok"], shutdown=lambda: state.update(ok=False),
                    spin=lambda node: state["spin"](node))
    modules = {
        "rclpy": rclpy,
        "rclpy.node": _module("rclpy.node", Node=FakeNode),
        "rclpy.qos": _module("rclpy.qos", QoSProfile=lambda **kw: kw, qos_profile_sensor_data="sensor",
                             ReliabilityPolicy=types.SimpleNamespace(RELIABLE="reliable"),
                             HistoryPolicy=types.SimpleNamespace(KEEP_LAST="keep_last")),
        "rclpy.time": _module("rclpy.time", Time=FakeTime),
        "rclpy.duration": _module("rclpy.duration", Duration=FakeDuration),
        "rclpy.executors": _module("rclpy.executors", ExternalShutdownException=ExternalShutdownException),
        "rclpy.logging": _module("rclpy.logging", get_logger=lambda name: state.setdefault(
            "logger", StrictLogger())),
        "message_filters": _module("message_filters", Subscriber=Subscriber,
                                   ApproximateTimeSynchronizer=ApproximateTimeSynchronizer),
        "tf2_ros": _module("tf2_ros", Buffer=FakeBuffer, TransformListener=lambda buffer, node: None,
                           TransformBroadcaster=FakeBroadcaster),
        "rclpy.signals": _module("rclpy.signals", SignalHandlerOptions=types.SimpleNamespace(NO="no")),
        "rcl_interfaces": _module("rcl_interfaces"),
        "rcl_interfaces.msg": msgs("rcl_interfaces", "ParameterDescriptor", "FloatingPointRange",
                                   "IntegerRange"),
        "builtin_interfaces.msg": msgs("builtin_interfaces", "Time", "Duration"),
        "std_msgs.msg": msgs("std_msgs", "Header", "ColorRGBA"),
        "geometry_msgs.msg": msgs("geometry_msgs", "Point", "Pose", "Quaternion", "Vector3", "Transform",
                                  "TransformStamped"),
        "sensor_msgs.msg": msgs("sensor_msgs", "CameraInfo", "CompressedImage", "Image", "RegionOfInterest"),
        "visualization_msgs.msg": msgs("visualization_msgs", "Marker", "MarkerArray", "MeshFile"),
        "diagnostic_msgs.msg": msgs("diagnostic_msgs", "DiagnosticArray", "DiagnosticStatus", "KeyValue"),
        "mp3d_ros.msg": msgs("mp3d_ros", "Keypoint3D", "Person3D", "PoseArray3D"),
        "people_msgs": _module("people_msgs"),
        "people_msgs.msg": msgs("people_msgs", "People", "Person"),
    }
    for package in ("builtin_interfaces", "std_msgs", "geometry_msgs", "sensor_msgs",
                    "visualization_msgs", "diagnostic_msgs"):
        modules.setdefault(package, _module(package))
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.delitem(sys.modules, "mp3d_ros.ros.node", raising=False)
    module = importlib.import_module("mp3d_ros.ros.node")
    CONTEXT["ok"] = True
    yield module, state
    sys.modules.pop("mp3d_ros.ros.node", None)


def estimator_factory(**kwargs):
    return FakeEstimator()


def make_node(module, **parameters):
    overrides = [types.SimpleNamespace(name=k, value=v) for k, v in
                 {"device": "cpu", "tracking.birth_hits": 1, **parameters}.items()]
    return module.PoseNode(estimator_factory, parameter_overrides=overrides)


def send(node, classes: MessageClasses, stamp_ns: int, topic="image", encoding="rgb8"):
    header = make_header(classes, stamp_ns, "cam")
    image = rgb_to_image(np.full((HEIGHT, WIDTH, 3), 99, np.uint8), "rgb8", header, classes.Image)
    image.encoding = encoding
    node.subscriptions[topic][1](image)
    node.subscriptions["camera_info"][1](make_camera_info(classes, header, K, WIDTH, HEIGHT))


def wait_until(condition, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def test_node_declares_described_parameters_and_wires_topics(node_module) -> None:
    module, _ = node_module
    node = make_node(module)
    try:
        descriptor = node.declared["sync_slop_s"]
        assert descriptor.read_only and "pairing an image" in descriptor.description
        assert descriptor.floating_point_range[0].from_value == 0.001
        assert node.declared["max_people"].integer_range[0].to_value == 200
        assert not node.declared["rectified"].floating_point_range
        assert set(node.subscriptions) == {"image", "camera_info"}
        assert node.subscriptions["image"][2] == "sensor" and node.subscriptions["camera_info"][2] == "sensor"
        assert set(node.publishers) == {"~/poses", "~/markers", "~/people", "/diagnostics"}
        assert node.publishers["~/poses"].qos["reliability"] == "reliable"
    finally:
        node.shutdown()


def test_frames_flow_through_the_worker_to_strictly_typed_messages(node_module) -> None:
    module, _ = node_module
    node = make_node(module, diagnostics_period_s=0.5)
    classes = module.message_classes()
    try:
        send(node, classes, 1_000_000_000)
        poses = node.publishers["~/poses"]
        assert wait_until(lambda: poses.sent)
        assert stamp_to_ns(poses.sent[0].header.stamp) == 1_000_000_000
        assert poses.sent[0].people[0].track_id == 1
        assert wait_until(lambda: node.publishers["~/markers"].sent)
        send(node, classes, 1_100_000_000, encoding="mono16")  # warned from one call site ...
        blank = np.zeros((HEIGHT, WIDTH, 3), np.uint8)  # an image whose CameraInfo never comes
        node.subscriptions["image"][1](rgb_to_image(blank, "rgb8", make_header(classes, 1_200_000_000, "cam"),
                                                    classes.Image))
        assert wait_until(lambda: any("mono16" in m for _, m in node.get_logger().lines))
        node.loaded.estimator.error = RuntimeError("CUDA error")  # ... and errors from another
        send(node, classes, 1_300_000_000)
        assert wait_until(lambda: ("error", "estimator failed: RuntimeError: CUDA error")
                          in node.get_logger().lines)
        node.loaded.estimator.error = None
        period, callback = node.timers[0]
        assert period == 0.5
        callback()
        status = node.publishers["/diagnostics"].sent[-1].status[0]
        assert status.level in (b"\x01", b"\x02")  # rclpy types the byte field as bytes
        assert {v.key: v.value for v in status.values}["errors.unsupported_encoding"] == "1"
    finally:
        node.shutdown()
    assert not node._worker.alive


def test_compressed_transport_subscribes_below_the_resolved_image_topic(node_module) -> None:
    module, _ = node_module
    node = make_node(module, image_transport="compressed")
    try:
        assert "/image/compressed" in node.subscriptions
        assert node.subscriptions["/image/compressed"][0] is TYPES["sensor_msgs/msg/CompressedImage"]
    finally:
        node.shutdown()


def test_target_frame_looks_up_tf_at_the_image_stamp(node_module) -> None:
    module, _ = node_module
    node = make_node(module, target_frame="odom", transform_timeout_s=0.1)
    try:
        send(node, module.message_classes(), 2_000_000_000)
        assert wait_until(lambda: node.publishers["~/poses"].sent)
        assert node._tf_buffer.lookups == [("odom", "cam", 2_000_000_000, 100_000_000)]
        poses = node.publishers["~/poses"].sent[0]
        assert poses.header.frame_id == "odom" and poses.people[0].root.x == pytest.approx(1.0)
    finally:
        node.shutdown()


def test_main_exits_cleanly_and_refuses_bad_parameters(node_module, monkeypatch) -> None:
    module, state = node_module

    def interrupted(node):
        raise KeyboardInterrupt

    state["spin"] = interrupted
    real = types.SimpleNamespace(PoseNode=module.PoseNode)
    monkeypatch.setattr(module, "PoseNode", lambda: make_node(real))
    assert module.main([]) == 0 and not state["ok"]
    monkeypatch.setattr(module, "PoseNode", lambda: make_node(real, precision="fp8"))
    assert module.main([]) == 1
    assert "precision" in state["logger"].lines[-1][1]


def test_a_looping_bag_keeps_giving_poses_with_fresh_tracks(node_module) -> None:
    module, _ = node_module
    node = make_node(module, sync_queue_size=2)
    classes = module.message_classes()
    poses = node.publishers["~/poses"]
    try:
        for loop in range(2):
            for index in range(4):
                stamp_ns = 1_000_000_000 + index * 66_000_000
                send(node, classes, stamp_ns)
                count = loop * 4 + index + 1
                assert wait_until(lambda count=count: len(poses.sent) == count), (loop, index)
                assert stamp_to_ns(poses.sent[-1].header.stamp) == stamp_ns
            # Unpaired CameraInfos fill the synchronizer's queue at the end of the bag; it evicts the
            # oldest stamp, which after the jump back would be each new one.
            for stale_ns in (1_500_000_000, 1_600_000_000):
                node.subscriptions["camera_info"][1](make_camera_info(
                    classes, make_header(classes, stale_ns, "cam"), K, WIDTH, HEIGHT))
        assert node._buffer.time_jumps == 1 and node._processor.stats.camera_info_fallbacks == 0
        assert [p.people[0].track_id for p in poses.sent] == [1, 1, 1, 1, 2, 2, 2, 2]  # tracker reset
        assert any("time jumped back by 0.198 s" in m for _, m in node.get_logger().lines)
    finally:
        node.shutdown()


def test_people_and_person_frames_for_navigation(node_module) -> None:
    module, _ = node_module
    node = make_node(module, publish_tf=True)
    try:
        send(node, module.message_classes(), 3_000_000_000)
        people = node.publishers["~/people"]
        assert wait_until(lambda: people.sent)
        (person,) = people.sent[0].people
        assert person.name == "person_1" and person.reliability == pytest.approx(0.9)
        assert people.sent[0].header.frame_id == "cam"
        (transform,) = node._tf_broadcaster.sent
        assert transform.child_frame_id == "person_1" and transform.header.frame_id == "cam"
        assert transform.transform.translation.z == pytest.approx(person.position.z)
    finally:
        node.shutdown()


def test_without_people_msgs_the_node_says_so_and_runs(node_module, monkeypatch) -> None:
    module, _ = node_module
    monkeypatch.setitem(sys.modules, "people_msgs.msg", None)  # import raises ImportError
    node = make_node(module)
    try:
        assert "~/people" not in node.publishers
        assert any(level == "info" and "people_msgs is not installed" in m
                   for level, m in node.get_logger().lines)
    finally:
        node.shutdown()


def test_nothing_is_published_once_rclpy_shut_down(node_module) -> None:
    module, _ = node_module
    node = make_node(module)
    try:
        CONTEXT["ok"] = False
        send(node, module.message_classes(), 4_000_000_000)
        assert wait_until(lambda: node._processor.stats.processed == 1)
        node.timers[0][1]()
        time.sleep(0.05)
        assert not node.publishers["~/poses"].sent and not node.publishers["/diagnostics"].sent
    finally:
        node.shutdown()


def test_every_parameter_problem_is_reported_at_once(node_module, monkeypatch) -> None:
    module, state = node_module
    with pytest.raises(module.SettingsError) as error:
        make_node(module, rectified="yes", precision="fp8", device="gpu")
    message = str(error.value)
    assert "rectified" in message and "precision" in message and "device" in message
    state["spin"] = lambda node: None
    real = types.SimpleNamespace(PoseNode=module.PoseNode)
    monkeypatch.setattr(module, "PoseNode", lambda: make_node(real))
    assert module.main([]) == 0
    assert state["signal_handler_options"] == "no"  # Ctrl-C reaches main, which stops the worker first


def test_start_up_line_and_stage_timings_in_the_diagnostics(node_module) -> None:
    module, _ = node_module
    node = make_node(module)
    node.loaded.estimator.last_timings_ms = {"preprocess": 1.0, "network": 2.0, "decode": 0.5}
    try:
        lines = [m for level, m in node.get_logger().lines if m.startswith("estimator ready:")]
        assert len(lines) == 1 and lines[0].startswith("estimator ready: model on cpu: fake, input unknown")
        assert "torch intra-op threads" in lines[0] and "OpenCV threads" in lines[0]
        send(node, module.message_classes(), 5_000_000_000)
        assert wait_until(lambda: node._processor.stats.processed == 1)
        assert wait_until(lambda: node._processor.stats.stages._samples.get("publish"))
        node.timers[0][1]()
        values = {v.key: v.value for v in node.publishers["/diagnostics"].sent[-1].status[0].values}
        assert values["stage_timing_frames"] == "1"
        assert values["stage_estimator_network_ms_median"] == "2.000"
        assert all(values[f"stage_{stage}_ms_p90"] != "n/a"
                   for stage in ("decode", "estimator", "select", "tracking", "pose_message", "markers",
                                 "publish"))
    finally:
        node.shutdown()
