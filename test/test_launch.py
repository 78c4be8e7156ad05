"""launch/tracker.launch.py and config/tracker.yaml.

`make_tracker_node_description` is a plain function and is tested directly; the node it describes is started
the way ``ros2 launch`` would (parameters file, overrides, remappings turned into ``--ros-args``) and must
subscribe to the remapped camera topic. Building the LaunchDescription itself needs ``launch`` and
``launch_ros``, which are not installable from PyPI here: that test skips unless a system ROS provides them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
import rclpy
import yaml
from rclpy.context import Context
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CompressedImage, Image

from cotracker3_ros.params import PARAMS, PARAMS_BY_NAME
from cotracker3_ros.tools.demo import DEMO_ARCH

REPO_ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILE = REPO_ROOT / "launch" / "tracker.launch.py"
CONFIG = REPO_ROOT / "config" / "tracker.yaml"
# Domain ids: test_msgs_dds 100..199, test_ros_node 200..231, this module 10..99.
DOMAIN_ID = 10 + os.getpid() % 90


@pytest.fixture(scope="module")
def launch_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tracker_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # must not need launch / launch_ros
    return module


def test_node_description_defaults(launch_module: ModuleType) -> None:
    d = launch_module.make_tracker_node_description()
    assert (d["package"], d["executable"], d["name"], d["namespace"]) == (
        "cotracker3_ros",
        "tracker_node",
        "tracker_node",
        "",
    )
    assert d["remappings"] == [("image", "/camera/image_raw"), ("image/compressed", "/camera/image_raw/compressed")]
    assert len(d["parameters"]) == 1 and Path(d["parameters"][0]).name == "tracker.yaml"
    assert Path(d["parameters"][0]).is_file()


def test_node_description_arguments(launch_module: ModuleType, tmp_path: Path) -> None:
    config = tmp_path / "mine.yaml"
    config.write_text("/**/tracker_node:\n  ros__parameters: {}\n")
    d = launch_module.make_tracker_node_description(
        camera_topic="/rs/color/image_raw/",
        config_file=str(config),
        checkpoint="/models/x.pth",
        device="cuda",
        namespace="arm",
    )
    assert d["parameters"] == [str(config), {"checkpoint": "/models/x.pth", "device": "cuda"}]
    assert d["remappings"][0] == ("image", "/rs/color/image_raw")
    assert d["remappings"][1] == ("image/compressed", "/rs/color/image_raw/compressed")
    assert d["namespace"] == "arm"
    only_device = launch_module.make_tracker_node_description(device="cpu")
    assert only_device["parameters"][1] == {"device": "cpu"}  # empty checkpoint: the file's value stays
    with pytest.raises(ValueError, match="camera_topic"):
        launch_module.make_tracker_node_description(camera_topic=" / ")


def test_missing_parameters_file_is_an_error(launch_module: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        launch_module.make_tracker_node_description(config_file=str(tmp_path / "missing.yaml"))


def test_launch_description_builds(launch_module: ModuleType) -> None:
    try:
        import launch_ros  # noqa: F401

        import launch  # noqa: F401
    except ImportError:
        pytest.skip(
            "launch / launch_ros are not installable from PyPI here (only with a system ROS 2); "
            "make_tracker_node_description is tested instead"
        )
    description = launch_module.generate_launch_description()
    names = {getattr(e, "name", None) for e in description.entities}
    assert {"camera_topic", "config", "checkpoint", "device", "namespace"} <= names


def test_config_file_lists_every_parameter_with_a_comment() -> None:
    text = CONFIG.read_text()
    data = yaml.safe_load(text)
    assert list(data) == ["/**/tracker_node"]
    params = data["/**/tracker_node"]["ros__parameters"]
    assert set(params) == set(PARAMS_BY_NAME)
    lines = text.splitlines()
    for spec in PARAMS:
        value = params[spec.name]
        assert type(value) is type(spec.default), (spec.name, value)
        if spec.range is not None:
            assert spec.range[0] <= value <= spec.range[1], spec.name
        index = next(i for i, line in enumerate(lines) if re.match(rf"\s+{spec.name}:", line))
        assert lines[index - 1].strip().startswith("#"), f"{spec.name} has no comment above it"
    assert "CC BY-NC 4.0" in text


def ros_args_for(description: dict) -> list[str]:
    """What ``launch_ros`` passes to the executable for this description."""
    args = ["--ros-args", "-r", f"__node:={description['name']}"]
    if description["namespace"]:
        args += ["-r", f"__ns:=/{description['namespace'].strip('/')}"]
    for item in description["parameters"]:
        if isinstance(item, dict):
            for name, value in item.items():
                args += ["-p", f"{name}:={value}"]
        else:
            args += ["--params-file", item]
    for source, target in description["remappings"]:
        args += ["-r", f"{source}:={target}"]
    return args


@pytest.mark.timeout(90)
def test_described_node_subscribes_to_the_remapped_camera_topic(launch_module: ModuleType, tmp_path: Path) -> None:
    description = launch_module.make_tracker_node_description(
        camera_topic="/launch_test/camera/image_raw", config_file=str(CONFIG), device="cpu"
    )
    try:
        from ament_index_python.packages import get_package_prefix

        exe = [str(Path(get_package_prefix("cotracker3_ros")) / "lib" / "cotracker3_ros" / "tracker_node")]
    except Exception:
        exe = [sys.executable, "-m", "cotracker3_ros.node"]
    small = ["-p", "checkpoint:=''", "-p", "model_resolution:=[64,96]", "-p", f"arch:='{json.dumps(DEMO_ARCH)}'"]
    env = {**os.environ, "ROS_DOMAIN_ID": str(DOMAIN_ID), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    env["OMP_NUM_THREADS"] = "1"
    log = (tmp_path / "node.log").open("w")
    process = subprocess.Popen(
        [*exe, *ros_args_for(description), *small], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    context = Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID, signal_handler_options=SignalHandlerOptions.NO)
    node = Node("launch_test_peer", context=context)
    try:
        raw = node.create_publisher(Image, "/launch_test/camera/image_raw", qos_profile_sensor_data)
        compressed = node.create_publisher(
            CompressedImage, "/launch_test/camera/image_raw/compressed", qos_profile_sensor_data
        )
        deadline = time.monotonic() + 60
        while raw.get_subscription_count() < 1 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.1)
        assert raw.get_subscription_count() == 1, (tmp_path / "node.log").read_text()[-3000:]
        assert compressed.get_subscription_count() == 0  # compressed: false in the shipped config
        deadline = time.monotonic() + 20  # node names travel separately from the endpoints
        while ("tracker_node", "/") not in node.get_node_names_and_namespaces() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ("tracker_node", "/") in node.get_node_names_and_namespaces()
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
    assert code == 0, (tmp_path / "node.log").read_text()[-3000:]
