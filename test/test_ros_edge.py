"""The ROS edge without ROS: imports and package.xml, the parameter file, launch decisions, RViz config."""

from __future__ import annotations

import ast
import importlib.util
import os
import sys
import types
from datetime import datetime
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest
import yaml
from scipy.spatial.transform import Rotation

from mp3d_ros.ros.launch_support import (
    CAMERA_ARGUMENTS,
    READY_LINE,
    SAMPLE_GROUND_FRAME,
    VIEW_FRAME,
    VIEW_TO_OPTICAL_XYZW,
    bag_topics,
    camera_info_topic_for,
    ReadyGate,
    decide_rviz,
    plan_camera,
    plan_replay,
    render_rviz_config,
    replay_output_dir,
)
from mp3d_ros.ros.settings import PARAMETERS

ROOT = Path(__file__).resolve().parents[1]
CAMERA_ARG_DEFAULTS = [(name, default) for name, default, _ in CAMERA_ARGUMENTS]
# ROS packages node.py imports; package.xml must declare each (exec_depend or depend).
NODE_ROS_PACKAGES = {
    "rclpy", "message_filters", "tf2_ros", "rcl_interfaces", "builtin_interfaces", "diagnostic_msgs",
    "geometry_msgs", "sensor_msgs", "std_msgs", "visualization_msgs",
}
# ROS packages the launch files import or start.
LAUNCH_ROS_PACKAGES = {"launch", "launch_ros", "ament_index_python", "ros2bag", "tf2_ros"}
# Used where installed, never required: a headless robot has no rviz2 (docs/ros.md).
OPTIONAL_ROS_PACKAGES = {"rviz2", "people_msgs"}
_ROS_MODULE_HINTS = ("rclpy", "rcl_interfaces", "message_filters", "tf2_ros", "tf2_py", "cv_bridge",
                     "builtin_interfaces", "launch", "launch_ros", "ament_index_python")


def imported_top_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def third_party(names: set[str]) -> set[str]:
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("mp3d_ros", "__future__")}


def is_ros_module(name: str) -> bool:
    return name in _ROS_MODULE_HINTS or name.endswith("_msgs")


def declared_dependencies() -> set[str]:
    root = ElementTree.parse(ROOT / "package.xml").getroot()
    return {e.text.strip() for e in root if e.tag in ("depend", "exec_depend") and e.text}


def test_node_imports_exactly_the_expected_ros_packages() -> None:
    assert third_party(imported_top_modules(ROOT / "mp3d_ros" / "ros" / "node.py")) == NODE_ROS_PACKAGES


def test_only_node_py_imports_ros() -> None:
    offenders = {}
    for path in (ROOT / "mp3d_ros").rglob("*.py"):
        if path == ROOT / "mp3d_ros" / "ros" / "node.py":
            continue
        ros = {n for n in imported_top_modules(path) if is_ros_module(n)}
        if ros:
            offenders[str(path.relative_to(ROOT))] = ros
    assert offenders == {}


def test_launch_files_import_only_launch_packages() -> None:
    for path in (ROOT / "launch").glob("*.launch.py"):
        assert third_party(imported_top_modules(path)) <= LAUNCH_ROS_PACKAGES, path.name


def test_package_xml_declares_every_ros_package_used() -> None:
    missing = (NODE_ROS_PACKAGES | LAUNCH_ROS_PACKAGES) - declared_dependencies()
    assert not missing, f"package.xml lacks <exec_depend> for {sorted(missing)}"


def test_pose_node_script_is_executable_and_runs_main() -> None:
    script = ROOT / "scripts" / "pose_node"
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env python3") and "from mp3d_ros.ros.node import main" in text


# ----------------------------------------------------------------------------- parameter file


def flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_config_yaml_mirrors_the_parameter_table() -> None:
    text = (ROOT / "config" / "mp3d.yaml").read_text()
    values = flatten(yaml.safe_load(text)["/**"]["ros__parameters"])
    table = {spec.name: spec.default for spec in PARAMETERS}
    assert values == table
    assert {k: type(v) for k, v in values.items()} == {k: type(v) for k, v in table.items()}
    lines = text.splitlines()
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and ":" in stripped and not stripped.endswith(":"):
            assert lines[index - 1].strip().startswith("#"), f"no comment above {stripped!r}"


# ----------------------------------------------------------------------------- launch decisions


def write_bag(folder: Path, compressed: bool = False) -> Path:
    from rosbags.rosbag2 import Writer

    from mp3d_ros.messages.typestore import typestore

    store = typestore()
    bag = folder / "bag"
    image_type = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
    with Writer(bag, version=8) as writer:
        writer.add_connection("/ground_truth", "mp3d_ros/msg/PoseArray3D", typestore=store)
        writer.add_connection("/cam/image_raw" + ("/compressed" if compressed else ""), image_type,
                              typestore=store)
        writer.add_connection("/cam/camera_info", "sensor_msgs/msg/CameraInfo", typestore=store)
    return bag


@pytest.fixture
def share_dir(tmp_path: Path) -> Path:
    (tmp_path / "share" / "config").mkdir(parents=True)
    write_bag(tmp_path / "share" / "models").rename(tmp_path / "share" / "models" / "sample_bag")
    return tmp_path / "share"


def test_bag_topics_are_found_by_type(tmp_path: Path) -> None:
    assert bag_topics(write_bag(tmp_path / "raw")) == ("/cam/image_raw", "sensor_msgs/msg/Image",
                                                       "/cam/camera_info")
    assert bag_topics(write_bag(tmp_path / "c", True))[:2] == ("/cam/image_raw/compressed",
                                                              "sensor_msgs/msg/CompressedImage")
    assert bag_topics(tmp_path) == (None, None, None)


def test_default_launch_plays_the_sample_bag(share_dir: Path) -> None:
    plan = plan_camera({}, share_dir, package_exists=lambda package: package == "rviz2")
    assert plan.source == "sample"
    assert plan.bag_play == ["ros2", "bag", "play", str(share_dir / "models" / "sample_bag"), "--clock",
                             "--loop"]
    assert plan.node.overrides["use_sim_time"] is True  # the node runs on the bag's clock
    assert "ground_frame" not in plan.node.overrides  # this bag has no /tf_static
    assert ("image", "/cam/image_raw") in plan.node.remappings
    assert ("camera_info", "/cam/camera_info") in plan.node.remappings
    assert plan.node.parameter_files == [str(share_dir / "config" / "mp3d.yaml")]
    assert plan.rviz and plan.fixed_frame == VIEW_FRAME and plan.view_transform is not None
    assert plan.driver is None


def test_named_camera_driver_or_topic_replaces_the_sample(share_dir: Path) -> None:
    plan = plan_camera({"camera_driver": "usb_cam", "video_device": "/dev/video2", "namespace": "robot",
                        "device": "cpu", "rviz": "false"}, share_dir)
    assert plan.source == "camera" and plan.bag_play is None and not plan.rviz
    assert plan.driver == ("usb_cam", "usb_cam_node_exe",
                           {"video_device": "/dev/video2", "frame_id": "camera_optical_frame"})
    assert plan.node.overrides["device"] == "cpu" and plan.rviz_image_topic == "/robot/image_raw"
    assert plan.node_prefix == "/robot/pose_node"
    plan = plan_camera({"image_topic": "/cam/color/image_raw", "image_transport": "compressed",
                        "model": "/m.onnx"}, share_dir)
    assert plan.source == "topics" and plan.view_transform is None
    assert plan.node.remappings == [("image", "/cam/color/image_raw"),
                                    ("camera_info", "/cam/color/camera_info")]
    assert plan.node.overrides == {"image_transport": "compressed", "model_path": "/m.onnx"}
    assert not plan.rviz  # rviz:=auto and no rviz2 installed
    assert plan.fixed_frame == "camera_optical_frame"


@pytest.mark.parametrize("args, match", [
    ({"source": "webcam"}, "source"), ({"camera_driver": "gstreamer"}, "camera_driver"),
    ({"source": "topics"}, "image_topic"), ({"rviz": "maybe"}, "rviz"),
    ({"image_topic": "/x", "image_transport": "theora"}, "image_transport"),
    ({"sample_bag": "/does/not/exist"}, "does not exist"),
])
def test_bad_launch_arguments_are_refused(share_dir: Path, args: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        plan_camera(args, share_dir)


def test_replay_plays_on_the_bag_clock_and_records_the_outputs(tmp_path: Path, share_dir: Path) -> None:
    bag = write_bag(tmp_path / "in", compressed=True)
    now = datetime(2026, 12, 1, 21, 30, 5)
    plan = plan_replay({"bag": str(bag), "namespace": "r", "rate": "0.5", "record_inputs": "true"},
                       share_dir, cwd=tmp_path, now=now)
    assert plan.bag_play == ["ros2", "bag", "play", str(bag), "--clock", "--rate", "0.5"]
    assert plan.node.overrides["use_sim_time"] is True
    assert plan.node.overrides["image_transport"] == "compressed"
    assert ("image", "/cam/image_raw") in plan.node.remappings
    assert plan.bag_record[:4] == ["ros2", "bag", "record", "-o"]
    assert plan.bag_record[4] == str(tmp_path / "mp3d_replay_20261201_213005") == str(plan.out)
    assert plan.bag_record[5:] == ["/r/pose_node/poses", "/r/pose_node/markers", "/diagnostics",
                                   "/cam/image_raw/compressed", "/cam/camera_info"]
    with pytest.raises(ValueError, match="required"):
        plan_replay({}, share_dir)
    (tmp_path / "taken").mkdir()
    with pytest.raises(ValueError, match="already exists"):
        plan_replay({"bag": str(bag), "out": str(tmp_path / "taken")}, share_dir)
    plan.out.mkdir()  # a second run in the same second gets its own folder
    assert plan_replay({"bag": str(bag)}, share_dir, cwd=tmp_path, now=now).out.name == \
        "mp3d_replay_20261201_213005_2"


def test_camera_info_topic_convention() -> None:
    assert camera_info_topic_for("/cam/image_raw") == "/cam/camera_info"
    assert camera_info_topic_for("/image") == "/camera_info"
    assert camera_info_topic_for("image") == "camera_info"


def test_view_frame_puts_the_optical_axis_forward_and_image_down_downwards() -> None:
    rotation = Rotation.from_quat([float(v) for v in VIEW_TO_OPTICAL_XYZW])
    np.testing.assert_allclose(rotation.apply([0, 0, 1]), [1, 0, 0], atol=1e-12)  # forward
    np.testing.assert_allclose(rotation.apply([0, 1, 0]), [0, 0, -1], atol=1e-12)  # image down
    np.testing.assert_allclose(rotation.apply([1, 0, 0]), [0, -1, 0], atol=1e-12)  # image right


def test_rviz_config_is_valid_and_rendered_for_the_launch() -> None:
    template = (ROOT / "config" / "mp3d.rviz").read_text()
    rendered = render_rviz_config(template, "camera_optical_frame", "/robot/pose_node", "/robot/image_raw")
    config = yaml.safe_load(rendered)
    manager = config["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == "camera_optical_frame"
    topics = {d["Class"]: d.get("Topic", {}).get("Value") for d in manager["Displays"]}
    assert topics["rviz_default_plugins/MarkerArray"] == "/robot/pose_node/markers"
    assert topics["rviz_default_plugins/Image"] == "/robot/image_raw"
    assert "rviz_default_plugins/TF" in topics
    assert yaml.safe_load(template)["Visualization Manager"]["Global Options"]["Fixed Frame"] == VIEW_FRAME


# ----------------------------------------------------------------------------- launch files


class Recorded:
    """A stand-in launch action: keeps its arguments (keyword-only, as in launch / launch_ros)."""

    def __init__(self, *args, **kwargs) -> None:
        self.args, self.kwargs = args, kwargs


def _stub(name: str, **classes) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(classes)
    return module


def _keyword_only(name: str, positional: int = 0):
    """A Recorded subclass that accepts at most ``positional`` positional arguments."""

    def __init__(self, *args, **kwargs):
        assert len(args) <= positional, f"{name} takes keyword arguments only"
        Recorded.__init__(self, *args, **kwargs)

    return type(name, (Recorded,), {"__init__": __init__})


@pytest.fixture
def launch_stubs(monkeypatch, share_dir: Path):
    values: dict[str, str] = {}
    installed = {"mp3d_ros"}

    class PackageNotFoundError(KeyError):
        pass

    def share_directory(package: str) -> str:
        if package not in installed:
            raise PackageNotFoundError(package)
        return str(share_dir / ".." / package) if package != "mp3d_ros" else str(share_dir)

    class LaunchConfiguration:
        def __init__(self, variable_name, *, default=None) -> None:
            self.name = variable_name

        def perform(self, context):
            return context[self.name]

    modules = {
        "launch": _stub("launch", LaunchDescription=lambda entities: list(entities)),
        "launch.actions": _stub("launch.actions", **{n: _keyword_only(n, p) for n, p in [
            ("DeclareLaunchArgument", 1), ("ExecuteProcess", 0), ("LogInfo", 0), ("OpaqueFunction", 0),
            ("EmitEvent", 0), ("RegisterEventHandler", 1), ("TimerAction", 0)]}),
        "launch.substitutions": _stub("launch.substitutions", LaunchConfiguration=LaunchConfiguration),
        "launch.event_handlers": _stub("launch.event_handlers", OnProcessExit=_keyword_only("OnProcessExit"),
                                       OnProcessIO=_keyword_only("OnProcessIO")),
        "launch.events": _stub("launch.events", Shutdown=_keyword_only("Shutdown")),
        "launch_ros": _stub("launch_ros"),
        "launch_ros.actions": _stub("launch_ros.actions", Node=_keyword_only("Node")),
        "ament_index_python": _stub("ament_index_python"),
        "ament_index_python.packages": _stub("ament_index_python.packages",
                                             get_package_share_directory=share_directory,
                                             PackageNotFoundError=PackageNotFoundError),
    }
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    (share_dir / "config" / "mp3d.rviz").write_text((ROOT / "config" / "mp3d.rviz").read_text())

    def run(launch_file: str, arguments: dict[str, str]) -> list:
        spec = importlib.util.spec_from_file_location("launch_under_test", ROOT / "launch" / launch_file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        entities = module.generate_launch_description()
        declared = {e.args[0]: e.kwargs["default_value"] for e in entities
                    if type(e).__name__ == "DeclareLaunchArgument"}
        (opaque,) = [e for e in entities if type(e).__name__ == "OpaqueFunction"]
        values.clear()
        values.update({**declared, **arguments})
        return opaque.kwargs["function"](values)

    run.installed = installed
    return run


def by_kind(actions: list, kind: str) -> list:
    return [a for a in actions if type(a).__name__ == kind]


def test_camera_launch_starts_bag_node_static_tf_and_rviz(launch_stubs, tmp_path: Path) -> None:
    launch_stubs.installed.add("rviz2")
    actions = launch_stubs("camera.launch.py", {})
    nodes = {a.kwargs["executable"]: a.kwargs for a in by_kind(actions, "Node")}
    assert set(nodes) == {"pose_node", "static_transform_publisher", "rviz2"}
    assert nodes["pose_node"]["remappings"] == [("image", "/cam/image_raw"),
                                                ("camera_info", "/cam/camera_info")]
    assert nodes["pose_node"]["parameters"][1] == {"image_transport": "raw", "use_sim_time": True}
    assert nodes["rviz2"]["parameters"] == [{"use_sim_time": True}]
    rviz_file = Path(nodes["rviz2"]["arguments"][1])
    assert "Value: /pose_node/markers" in rviz_file.read_text()
    rviz_file.unlink()
    (play,) = by_kind(actions, "ExecuteProcess")
    assert play.kwargs["cmd"][:3] == ["ros2", "bag", "play"] and play.kwargs["cmd"][-2:] == ["--clock", "--loop"]


def test_camera_launch_with_a_driver_and_no_rviz(launch_stubs) -> None:
    actions = launch_stubs("camera.launch.py", {"camera_driver": "v4l2_camera", "rviz": "false",
                                                "namespace": "front"})
    nodes = {a.kwargs["executable"]: a.kwargs for a in by_kind(actions, "Node")}
    assert set(nodes) == {"pose_node", "v4l2_camera_node", "static_transform_publisher"}
    assert nodes["v4l2_camera_node"]["namespace"] == nodes["pose_node"]["namespace"] == "front"
    assert nodes["v4l2_camera_node"]["parameters"] == [
        {"video_device": "/dev/video0", "camera_frame_id": "camera_optical_frame"}]
    assert not by_kind(actions, "ExecuteProcess")


def test_replay_launch_stops_after_the_bag(launch_stubs, tmp_path: Path) -> None:
    bag = write_bag(tmp_path / "in")
    actions = launch_stubs("replay.launch.py", {"bag": str(bag)})
    (record,) = by_kind(actions, "ExecuteProcess")
    assert record.kwargs["cmd"][:3] == ["ros2", "bag", "record"]
    (node,) = by_kind(actions, "Node")
    assert node.kwargs["parameters"][1]["use_sim_time"] is True
    handlers = [h.args[0] for h in by_kind(actions, "RegisterEventHandler")]
    (on_io,) = [h for h in handlers if type(h).__name__ == "OnProcessIO"]
    assert on_io.kwargs["target_action"] is node
    assert on_io.kwargs["on_stderr"](types.SimpleNamespace(text=b"[INFO] loading model")) is None
    started = on_io.kwargs["on_stdout"](types.SimpleNamespace(
        text=b"[INFO] [pose_node]: pose_node ready: listening for images\n"))
    (play,) = by_kind(started, "ExecuteProcess")  # playback starts when the node is ready, once
    assert play.kwargs["cmd"][:3] == ["ros2", "bag", "play"]
    assert on_io.kwargs["on_stderr"](types.SimpleNamespace(text=b"pose_node ready: listening for images")) is None
    exits = {h.kwargs["target_action"]: h for h in handlers if type(h).__name__ == "OnProcessExit"}
    assert set(exits) == {play, node, record}  # the bag's end, or a crash, stops everything


def shutdown_targets(actions: list) -> set[str]:
    """Names of the processes whose exit shuts the launch down."""
    handlers = [h.args[0] for h in by_kind(actions, "RegisterEventHandler")]
    names = set()
    for handler in handlers:
        assert type(handler).__name__ == "OnProcessExit"
        (emit,) = handler.kwargs["on_exit"]
        assert type(emit.kwargs["event"]).__name__ == "Shutdown"
        target = handler.kwargs["target_action"]
        names.add(target.kwargs.get("executable") or target.kwargs["name"])
    return names


def test_camera_launch_without_rviz2_runs_headless_and_leaves_no_orphans(launch_stubs) -> None:
    actions = launch_stubs("camera.launch.py", {})  # rviz2 is not installed here
    nodes = {a.kwargs["executable"] for a in by_kind(actions, "Node")}
    assert nodes == {"pose_node", "static_transform_publisher"}
    assert any("rviz2 is not installed" in a.kwargs["msg"] for a in by_kind(actions, "LogInfo"))
    # Any essential process that exits stops the others (rviz closing does not).
    assert shutdown_targets(actions) == {"sample_bag_play", "static_transform_publisher", "pose_node"}
    with pytest.raises(ValueError, match="rviz2.*not installed"):
        launch_stubs("camera.launch.py", {"rviz": "true"})
    actions = launch_stubs("camera.launch.py", {"camera_driver": "usb_cam", "rviz": "false"})
    assert shutdown_targets(actions) == {"usb_cam_node_exe", "static_transform_publisher", "pose_node"}


def test_rviz_argument_decisions() -> None:
    assert decide_rviz("auto", lambda p: True)[0] and not decide_rviz("auto", lambda p: False)[0]
    assert decide_rviz("true", lambda p: True)[0] and not decide_rviz("false", lambda p: False)[0]
    with pytest.raises(ValueError, match="not installed"):
        decide_rviz("true", lambda p: False)
    assert dict(CAMERA_ARG_DEFAULTS)["rviz"] == "auto"
    root = ElementTree.parse(ROOT / "package.xml").getroot()
    assert not OPTIONAL_ROS_PACKAGES & {e.text for e in root if e.tag.endswith("depend")}


def write_bag_with_tf_static(folder: Path) -> Path:
    bag = write_bag(folder)
    metadata = bag / "metadata.yaml"
    info = yaml.safe_load(metadata.read_text())
    info["rosbag2_bagfile_information"]["topics_with_message_count"].append(
        {"message_count": 1, "topic_metadata": {"name": "/tf_static", "type": "tf2_msgs/msg/TFMessage",
                                                "serialization_format": "cdr", "offered_qos_profiles": ""}})
    metadata.write_text(yaml.safe_dump(info))
    return bag


def test_bags_with_tf_static_give_the_floor_and_play_it_transient_local(tmp_path: Path, share_dir: Path) -> None:
    bag = write_bag_with_tf_static(tmp_path / "tf")
    plan = plan_camera({"sample_bag": str(bag)}, share_dir)
    assert plan.node.overrides["ground_frame"] == SAMPLE_GROUND_FRAME
    # the bag parents the optical frame under the ground: no second parent from a view transform
    assert plan.view_transform is None and plan.fixed_frame == SAMPLE_GROUND_FRAME
    overrides = plan.bag_play[plan.bag_play.index("--qos-profile-overrides-path") + 1]
    assert overrides == str(share_dir / "config" / "bag_play_qos.yaml")
    qos = yaml.safe_load((ROOT / "config" / "bag_play_qos.yaml").read_text())
    assert qos["/tf_static"]["durability"] == "transient_local"
    assert qos["/tf_static"]["reliability"] == "reliable"
    assert "--qos-profile-overrides-path" in plan_replay({"bag": str(bag)}, share_dir, cwd=tmp_path).bag_play


def test_replay_output_goes_to_a_writable_folder(tmp_path: Path) -> None:
    now = datetime(2026, 1, 2, 3, 4, 5)
    install = tmp_path / "install"
    install.mkdir()
    out = replay_output_dir("", install, tmp_path / "home", now, writable=lambda path: path != install)
    assert out == tmp_path / "home" / ".ros" / "mp3d_replay_20260102_030405"
    assert replay_output_dir(str(tmp_path / "mine"), install, tmp_path, now) == tmp_path / "mine"


def test_ready_gate_opens_once() -> None:
    gate = ReadyGate()
    assert not gate(b"[INFO] estimator ready") and gate(f"x {READY_LINE}\n".encode())
    assert not gate(READY_LINE)


# ----------------------------------------------------------------------------- colcon build and test


def cmake_commands(name: str) -> list[list[str]]:
    """The argument lists of every ``name(...)`` call in CMakeLists.txt (quotes dropped)."""
    import re
    import shlex

    text = re.sub(r"#[^\n]*", "", (ROOT / "CMakeLists.txt").read_text())
    return [shlex.split(m.group(1)) for m in re.finditer(rf"\b{name}\(([^)]*)\)", text)]


def test_python_sources_install_in_a_way_symlink_install_can_link() -> None:
    # ament_cmake_symlink_install_directory falls back to copying for these keywords.
    unsupported = {"REGEX", "FILES_MATCHING", "PERMISSIONS", "FILE_PERMISSIONS", "DIRECTORY_PERMISSIONS",
                   "USE_SOURCE_PERMISSIONS", "CONFIGURATIONS", "COMPONENT"}
    installs = cmake_commands("install")
    assert installs and not [args for args in installs if args[0] == "DIRECTORY" and unsupported & set(args)]
    assert any(args[:2] == ["DIRECTORY", "mp3d_ros/${_entry}"] for args in installs)
    assert any(args[:2] == ["FILES", "mp3d_ros/${_entry}"] for args in installs)


def test_core_tests_do_not_run_from_the_source_tree() -> None:
    (args,) = cmake_commands("ament_add_pytest_test")
    directory = args[args.index("WORKING_DIRECTORY") + 1]
    assert directory == "${CMAKE_CURRENT_BINARY_DIR}"


def load_ros_conftest():
    spec = importlib.util.spec_from_file_location("ros_conftest_under_test", ROOT / "test" / "ros" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ros_tests_put_the_installed_package_ahead_of_the_checkout(tmp_path: Path) -> None:
    conftest = load_ros_conftest()
    installed = tmp_path / "install" / "lib" / "site-packages"
    (installed / "mp3d_ros" / "msg").mkdir(parents=True)
    (installed / "mp3d_ros" / "msg" / "__init__.py").write_text("")
    path = [str(ROOT), "/usr/lib/python3", str(installed), "/other"]
    assert conftest.installed_first(path, ROOT) == ["/usr/lib/python3", str(installed), str(ROOT), "/other"]
    assert conftest.installed_first(["/usr/lib/python3", str(ROOT)], ROOT) == ["/usr/lib/python3", str(ROOT)]


def test_the_test_extra_keeps_pytest_below_9() -> None:
    text = (ROOT / "setup.cfg").read_text()
    assert "pytest>=7,<9" in text  # pytest 9 breaks launch_testing's plugin in a sourced Jazzy shell
