"""launch/tracker.launch.py and config/tracker.yaml.

`make_tracker_node_description` and `node_arguments` are plain functions and are tested directly; the node
they describe is started with the command launch_ros builds from that description (log level, name, namespace,
parameters file plus a generated one, remappings) and is inspected from another DDS participant: remapped
camera topic, namespace, private services, parameters, log level. Building the LaunchDescription itself needs
``launch`` and ``launch_ros``, which are not installable from PyPI here: that test skips unless a system ROS
provides them. Every ``ros2 launch`` line of the README, docs/, the config and the launch file itself must use
declared arguments only (read from the launch file's `LAUNCH_ARGUMENTS`, without importing launch).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from rcl_interfaces.srv import GetParameters
from rclpy.parameter import parameter_value_to_python
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image

from cotracker3_ros.params import PARAMS, PARAMS_BY_NAME
from cotracker3_ros.tools.demo import DEMO_ARCH
from cotracker3_ros.tools.node_peer import DdsPeer, node_service

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
    assert len(d["parameters"]) == 2 and Path(d["parameters"][0]).name == "tracker.yaml"
    assert Path(d["parameters"][0]).is_file()
    assert d["parameters"][1] == {"use_sim_time": False}  # nothing else overrides the file
    assert d["ros_arguments"] == ["--log-level", "info"]


def test_node_description_arguments(launch_module: ModuleType, tmp_path: Path) -> None:
    params = tmp_path / "mine.yaml"
    params.write_text("/**/tracker_node:\n  ros__parameters: {}\n")
    d = launch_module.make_tracker_node_description(
        camera_topic="/rs/color/image_raw/",
        params_file=str(params),
        checkpoint="/models/x.pth",
        device="cuda",
        namespace="arm",
        use_sim_time=True,
        log_level="DEBUG",
        arch="{latent_dim: 32}",
    )
    assert d["parameters"] == [
        str(params),
        {"checkpoint": "/models/x.pth", "device": "cuda", "arch": "{latent_dim: 32}", "use_sim_time": True},
    ]
    assert d["remappings"][0] == ("image", "/rs/color/image_raw")
    assert d["remappings"][1] == ("image/compressed", "/rs/color/image_raw/compressed")
    assert d["namespace"] == "arm"
    assert d["ros_arguments"] == ["--log-level", "debug"]
    depth = launch_module.make_tracker_node_description(
        **launch_module.node_arguments({"depth_topic": "/rs/depth ", "camera_info_topic": "/rs/color/camera_info"})
    )
    assert depth["parameters"][1] == {
        "depth_topic": "/rs/depth", "camera_info_topic": "/rs/color/camera_info", "use_sim_time": False
    }  # fmt: skip
    only_device = launch_module.make_tracker_node_description(device="cpu")
    assert only_device["parameters"][1] == {"device": "cpu", "use_sim_time": False}  # the file's checkpoint stays
    untrained = launch_module.make_tracker_node_description(untrained=True)
    assert untrained["parameters"][1]["checkpoint"] == ""  # the node's "untrained weights of arch"
    with pytest.raises(ValueError, match="camera_topic"):
        launch_module.make_tracker_node_description(camera_topic=" / ")
    with pytest.raises(ValueError, match="log_level"):
        launch_module.make_tracker_node_description(log_level="verbose")
    with pytest.raises(ValueError, match="untrained"):
        launch_module.make_tracker_node_description(untrained=True, checkpoint="lite")


def test_launch_argument_strings_become_description_arguments(launch_module: ModuleType, tmp_path: Path) -> None:
    """`node_arguments` is what ``generate_launch_description`` applies to the ``name:=value`` strings."""
    convert = launch_module.node_arguments
    defaults = convert({})
    assert defaults["params_file"] is None and defaults["use_sim_time"] is False and defaults["untrained"] is False
    assert launch_module.make_tracker_node_description(**defaults) == launch_module.make_tracker_node_description()
    params = tmp_path / "p.yaml"
    params.write_text("/**/tracker_node:\n  ros__parameters: {}\n")
    assert convert({"params_file": str(params)})["params_file"] == str(params)
    assert convert({"config": str(params)})["params_file"] == str(params)  # the old name still works
    with pytest.raises(ValueError, match="not both"):
        convert({"params_file": str(params), "config": str(params)})
    assert convert({"use_sim_time": "True", "untrained": "1"}) == {
        **defaults,
        "use_sim_time": True,
        "untrained": True,
    }
    with pytest.raises(ValueError, match="use_sim_time"):
        convert({"use_sim_time": "yes please"})
    with pytest.raises(ValueError, match="unknown launch arguments"):
        convert({"camera": "/x"})


def test_missing_parameters_file_is_an_error(launch_module: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        launch_module.make_tracker_node_description(params_file=str(tmp_path / "missing.yaml"))
    with pytest.raises(FileNotFoundError, match="missing.yaml"):  # through the old argument name too
        launch_module.make_tracker_node_description(
            **launch_module.node_arguments({"config": str(tmp_path / "missing.yaml")})
        )


def test_launch_arguments_table(launch_module: ModuleType) -> None:
    names = [a.name for a in launch_module.LAUNCH_ARGUMENTS]
    assert len(names) == len(set(names))
    assert set(names) == {
        "camera_topic", "params_file", "config", "checkpoint", "untrained", "arch", "device", "depth_topic",
        "camera_info_topic", "namespace", "use_sim_time", "log_level",
    }  # fmt: skip
    assert all(a.description for a in launch_module.LAUNCH_ARGUMENTS)


def test_launch_description_builds(launch_module: ModuleType) -> None:
    try:
        import launch_ros  # noqa: F401

        import launch  # noqa: F401
    except ImportError:
        pytest.skip(
            "launch / launch_ros are not installable from PyPI here (only with a system ROS 2); "
            "make_tracker_node_description and node_arguments are tested instead"
        )
    description = launch_module.generate_launch_description()
    declared = {e.name: e.default_value for e in description.entities if hasattr(e, "default_value")}
    assert set(declared) == {a.name for a in launch_module.LAUNCH_ARGUMENTS}


# --- every `ros2 launch` line of the docs uses declared arguments -------------------------------------------

#: Where ``ros2 launch`` lines are written for users.
DOC_FILES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md")), CONFIG, LAUNCH_FILE]


def ros2_launch_lines(text: str) -> list[str]:
    """Every ``ros2 launch ...`` command in ``text``: continuation lines (ending in a backslash) joined; a
    command that starts inside inline code (a backtick) ends at the closing backtick."""
    lines = text.splitlines()
    commands: list[str] = []
    for i, line in enumerate(lines):
        at = line.find("ros2 launch")
        if at < 0:
            continue
        command = line[at:]
        if at > 0 and line[at - 1] == "`":
            commands.append(command.split("`", 1)[0])
            continue
        j = i
        while command.rstrip().endswith("\\") and j + 1 < len(lines):
            j += 1
            command = command.rstrip()[:-1] + " " + lines[j].strip()
        commands.append(command)
    return commands


def test_ros2_launch_lines_are_found_with_their_continuations() -> None:
    text = (
        "x\n    ros2 launch p f.launch.py a:=1 \\\n        b:=2   # comment\n"
        "See `ros2 launch p f.launch.py c:=3` and more.\n"
    )
    assert ros2_launch_lines(text) == [
        "ros2 launch p f.launch.py a:=1  b:=2   # comment",
        "ros2 launch p f.launch.py c:=3",
    ]


def test_every_documented_ros2_launch_line_uses_declared_arguments(launch_module: ModuleType) -> None:
    """Names (and values, through `node_arguments`) of every documented ``ros2 launch`` line; the params files a
    line names need not exist here."""
    checked: dict[str, int] = {}
    for path in DOC_FILES:
        for command in ros2_launch_lines(path.read_text()):
            where = f"{path.relative_to(REPO_ROOT)}: {command}"
            words = shlex.split(command, comments=True)
            if words == ["ros2", "launch"]:  # the tool named in prose
                continue
            assert words[:4] == ["ros2", "launch", "cotracker3_ros", "tracker.launch.py"], where
            options = [w for w in words[4:] if w.startswith("-")]
            assert set(options) <= {"--show-args", "-s", "--debug", "-d"}, where
            pairs = [w for w in words[4:] if not w.startswith("-")]
            assert all(":=" in w for w in pairs), where
            values = dict(w.split(":=", 1) for w in pairs)
            assert set(values) <= {a.name for a in launch_module.LAUNCH_ARGUMENTS}, where
            launch_module.node_arguments(values)  # true/false values, not both params_file and config
            checked[path.name] = checked.get(path.name, 0) + 1
    assert checked.get("README.md", 0) >= 2 and checked.get("ros.md", 0) >= 4, checked


def doc_table_names(section: str) -> list[str]:
    """The first column (a backticked name) of the tables in docs/ros.md's ``## <section>``."""
    text = (REPO_ROOT / "docs" / "ros.md").read_text().split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([^`]+)` \|", text, flags=re.M)


def test_docs_tables_list_every_parameter_and_launch_argument(launch_module: ModuleType) -> None:
    params = doc_table_names("Parameters")
    assert len(params) == len(set(params)) and set(params) == {*PARAMS_BY_NAME, "use_sim_time"}
    arguments = doc_table_names("Launch")
    assert arguments == [a.name for a in launch_module.LAUNCH_ARGUMENTS]  # the --show-args order


def test_rviz_config_shows_the_cloud_and_the_debug_image() -> None:
    """config/tracker.rviz (docs/ros.md, RViz): the node's tracks/points and debug_image in the root namespace."""
    from cotracker3_ros.depth_input import POINTS_TOPIC

    rviz = yaml.safe_load((REPO_ROOT / "config" / "tracker.rviz").read_text())
    manager = rviz["Visualization Manager"]
    shown = {d["Class"]: d for d in manager["Displays"]}
    assert shown["rviz_default_plugins/PointCloud2"]["Topic"]["Value"] == f"/{POINTS_TOPIC}"
    assert shown["rviz_default_plugins/PointCloud2"]["Channel Name"] == "id"  # a field of the cloud
    assert shown["rviz_default_plugins/Image"]["Topic"]["Value"] == "/debug_image"
    assert manager["Global Options"]["Fixed Frame"] == "camera_color_optical_frame"
    assert "config/tracker.rviz" in (REPO_ROOT / "docs" / "ros.md").read_text()
    assert 'glob("config/*.rviz")' in (REPO_ROOT / "setup.py").read_text()  # installed beside tracker.yaml


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


def launch_command(description: dict, executable: list[str], tmp_path: Path) -> list[str]:
    """The command ``launch_ros.actions.Node`` runs for this description (read from launch_ros 0.28's
    ``Node._perform_substitutions`` and seen in a real ``ros2 launch``): ``--ros-args`` with the ros_arguments,
    then a second ``--ros-args`` with name, namespace, parameters (a dict becomes a temporary YAML file keyed by
    the node's full name) and remappings."""
    namespace = "/" + description["namespace"].strip("/") if description["namespace"].strip("/") else ""
    full_name = f"{namespace}/{description['name']}"
    args = [*executable, "--ros-args", *description["ros_arguments"], "--ros-args"]
    args += ["-r", f"__node:={description['name']}", "-r", f"__ns:={namespace or '/'}"]
    for i, item in enumerate(description["parameters"]):
        if isinstance(item, dict):
            path = tmp_path / f"launch_params_{i}.yaml"
            path.write_text(yaml.dump({full_name: {"ros__parameters": item}}, default_flow_style=False))
            item = str(path)
        args += ["--params-file", item]
    for source, target in description["remappings"]:
        args += ["-r", f"{source}:={target}"]
    return args


def node_executable() -> list[str]:
    """The installed ``tracker_node`` (what ``ros2 launch`` runs), else ``python -m cotracker3_ros.node``."""
    try:
        from ament_index_python.packages import get_package_prefix

        exe = Path(get_package_prefix("cotracker3_ros")) / "lib" / "cotracker3_ros" / "tracker_node"
        if exe.is_file() and os.access(exe, os.X_OK):
            return [str(exe)]
    except Exception:
        pass
    return [sys.executable, "-m", "cotracker3_ros.node"]


@pytest.mark.timeout(120)
def test_described_node_runs_with_every_launch_argument_applied(launch_module: ModuleType, tmp_path: Path) -> None:
    """The node started as launch_ros would start it from ``namespace:=launch_test camera_topic:=... use_sim_time:=
    true log_level:=debug device:=cpu untrained:=true arch:=<tiny>``: seen from another DDS participant."""
    arguments = launch_module.node_arguments(
        {
            "namespace": "launch_test",
            "camera_topic": "/launch_test_cam/image_raw",
            "params_file": str(CONFIG),
            "use_sim_time": "true",
            "log_level": "debug",
            "device": "cpu",
            "untrained": "true",
            "arch": json.dumps(DEMO_ARCH),
        }
    )
    description = launch_module.make_tracker_node_description(**arguments)
    env = {**os.environ, "ROS_DOMAIN_ID": str(DOMAIN_ID), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    env["OMP_NUM_THREADS"] = "1"
    # This checkout's code first, whichever checkout the installed executable came from (as test_ros_node does).
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    log_path = tmp_path / "node.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            launch_command(description, node_executable(), tmp_path),
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    peer = DdsPeer("launch_test_peer", DOMAIN_ID)  # spun in the background: the parameter call gets its answer
    node = peer.node

    def wait(predicate: Callable[[], bool], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not predicate() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.1)
        return predicate()

    def services() -> set[str]:
        return {name for name, _ in node.get_service_names_and_types_by_node("tracker_node", "/launch_test")}

    private = {node_service("/launch_test", s) for s in ("add_points", "add_mask_points", "remove_points", "reset")}
    try:
        raw = node.create_publisher(Image, "/launch_test_cam/image_raw", qos_profile_sensor_data)
        compressed = node.create_publisher(
            CompressedImage, "/launch_test_cam/image_raw/compressed", qos_profile_sensor_data
        )
        assert wait(lambda: raw.get_subscription_count() == 1, 60), log_path.read_text()[-3000:]
        assert compressed.get_subscription_count() == 0  # compressed: false in the shipped config
        # Node names and services travel separately from the endpoints.
        assert wait(lambda: ("tracker_node", "/launch_test") in node.get_node_names_and_namespaces(), 20)
        assert wait(lambda: private <= services(), 20), services()
        everywhere = {name for name, _ in node.get_service_names_and_types()}
        assert not {"/launch_test/add_points", "/launch_test/reset", "/add_points", "/reset"} & everywhere
        subscribed = {n for n, _ in node.get_subscriber_names_and_types_by_node("tracker_node", "/launch_test")}
        assert "/clock" in subscribed  # use_sim_time: true
        published = {n for n, _ in node.get_publisher_names_and_types_by_node("tracker_node", "/launch_test")}
        assert {"/launch_test/tracks", "/diagnostics"} <= published  # topics stay in the namespace, not private
        client = node.create_client(GetParameters, node_service("/launch_test", "get_parameters"))
        peer.start()
        assert wait(client.service_is_ready, 20)
        names = ["use_sim_time", "checkpoint", "device", "arch"]
        future = client.call_async(GetParameters.Request(names=names))
        assert wait(future.done, 20)
        values = dict(zip(names, (parameter_value_to_python(v) for v in future.result().values), strict=True))
        assert values == {"use_sim_time": True, "checkpoint": "", "device": "cpu", "arch": json.dumps(DEMO_ARCH)}
    finally:
        peer.close()
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
    output = log_path.read_text()
    # Log level debug; the node's own lines under its namespaced logger (the process's start-up and shutdown lines
    # use the plain `tracker_node` logger of cotracker3_ros.lifecycle, which exists before the node does).
    assert "[DEBUG]" in output and "[launch_test.tracker_node]: loading CoTracker3" in output, output[-3000:]
    assert "[launch_test.tracker_node]" in output and "untrained" in output.lower(), output[-3000:]
    assert code == 0, output[-3000:]
