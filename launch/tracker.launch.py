"""Launch the CoTracker3 tracker node on a camera topic.

    ros2 launch cotracker3_ros tracker.launch.py camera_topic:=/camera/color/image_raw
    ros2 launch cotracker3_ros tracker.launch.py camera_topic:=/camera/image_raw checkpoint:=scaled_online \
        device:=cuda params_file:=/path/to/tracker.yaml
    ros2 launch cotracker3_ros tracker.launch.py untrained:=true arch:='{latent_dim: 32, hidden_size: 64}'
    ros2 launch cotracker3_ros tracker.launch.py camera_topic:=/camera/color/image_raw \
        depth_topic:=/camera/aligned_depth_to_color/image_raw
    ros2 launch cotracker3_ros tracker.launch.py params_file:=config/two_cameras.yaml
    ros2 launch cotracker3_ros tracker.launch.py --show-args

Several cameras in one node are set in the parameters file (lists ``camera_names``, ``camera_topics``...:
config/two_cameras.yaml, docs/ros.md, Several cameras); ``camera_topic`` then does not apply.

The arguments, their defaults and meanings are the table `LAUNCH_ARGUMENTS` (docs/ros.md, section Launch).

The node description comes from `make_tracker_node_description`, a plain function (no launch import) that
tests call directly, after `node_arguments` has checked and converted the launch arguments' strings; launch
and launch_ros are imported only inside `generate_launch_description`, so tests (and tools without ROS's
launch installed) can import this file as a plain module and read `LAUNCH_ARGUMENTS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

PACKAGE = "cotracker3_ros"
EXECUTABLE = "tracker_node"
NODE_NAME = "tracker_node"
DEFAULT_CAMERA_TOPIC = "/camera/image_raw"
#: rcutils' severities, what ``--ros-args --log-level`` accepts (case-insensitive).
LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")


class LaunchArgument(NamedTuple):
    """One declared launch argument: ``name:=value`` on the ``ros2 launch`` line."""

    name: str
    default: str
    description: str


#: Every launch argument, in the order ``--show-args`` lists them. Values are strings, as launch passes them;
#: "" means "not given" (the parameters file's value stays), which is why the untrained model has its own
#: boolean argument: a launch substitution cannot tell an explicit empty checkpoint from an absent one.
LAUNCH_ARGUMENTS: tuple[LaunchArgument, ...] = (
    LaunchArgument(
        "camera_topic",
        DEFAULT_CAMERA_TOPIC,
        "camera image topic; the node's image is remapped to it, image/compressed to <camera_topic>/compressed",
    ),
    LaunchArgument("params_file", "", "parameters file; empty: the package's config/tracker.yaml"),
    LaunchArgument("config", "", "old name of params_file (giving both is an error)"),
    LaunchArgument(
        "checkpoint", "", "weights: lite, scaled_online, baseline_online, a .pth path or a URL; empty: the file's"
    ),
    LaunchArgument(
        "untrained", "false", "true: untrained random weights of arch (checkpoint ''), plumbing tests only"
    ),
    LaunchArgument(
        "arch", "", "architecture overrides, a YAML mapping like '{latent_dim: 32, hidden_size: 64}'; empty: the file's"
    ),
    LaunchArgument("device", "", "auto, cpu, cuda or cuda:<index>; empty: the file's"),
    LaunchArgument(
        "depth_topic", "", "aligned depth image (16UC1 mm or 32FC1 m) for 3D tracks; empty: the file's (off)"
    ),
    LaunchArgument(
        "camera_info_topic", "", "the colour camera's CameraInfo, for 3D; empty: the file's (beside the image)"
    ),
    LaunchArgument("namespace", "", "node namespace; empty: the root"),
    LaunchArgument("use_sim_time", "false", "true: follow /clock (node parameter use_sim_time)"),
    LaunchArgument("log_level", "info", "node log level: " + ", ".join(LOG_LEVELS)),
)
ARGUMENT_NAMES = frozenset(a.name for a in LAUNCH_ARGUMENTS)


def default_config_file() -> str:
    """The installed ``share/cotracker3_ros/config/tracker.yaml``, else the one next to this file's folder."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            installed = Path(get_package_share_directory(PACKAGE)) / "config" / "tracker.yaml"
            if installed.is_file():
                return str(installed)
        except PackageNotFoundError:
            pass
    except ImportError:
        pass
    return str(Path(__file__).resolve().parents[1] / "config" / "tracker.yaml")


def parse_bool(name: str, text: str) -> bool:
    """A boolean launch argument: true/false (any case) or 1/0, as launch's own conditions accept."""
    value = text.strip().lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise ValueError(f"launch argument {name} must be true or false, got {text!r}")


def node_arguments(values: Mapping[str, str]) -> dict[str, Any]:
    """Launch arguments as given (name -> string; absent names take their defaults) -> the keyword arguments of
    `make_tracker_node_description`. Raises ValueError on an unknown name, a bad value, or both ``params_file``
    and its old name ``config``."""
    unknown = sorted(set(values) - ARGUMENT_NAMES)
    if unknown:
        raise ValueError(f"unknown launch arguments {unknown}; declared: {sorted(ARGUMENT_NAMES)}")
    given = {a.name: values.get(a.name, a.default) for a in LAUNCH_ARGUMENTS}
    params_file, config = given["params_file"].strip(), given["config"].strip()
    if params_file and config:
        raise ValueError(f"give params_file or its old name config, not both (got {params_file!r} and {config!r})")
    return {
        "camera_topic": given["camera_topic"],
        "params_file": params_file or config or None,
        "checkpoint": given["checkpoint"].strip(),
        "untrained": parse_bool("untrained", given["untrained"]),
        "arch": given["arch"].strip(),
        "device": given["device"].strip(),
        "depth_topic": given["depth_topic"].strip(),
        "camera_info_topic": given["camera_info_topic"].strip(),
        "namespace": given["namespace"].strip(),
        "use_sim_time": parse_bool("use_sim_time", given["use_sim_time"]),
        "log_level": given["log_level"],
    }


def make_tracker_node_description(
    camera_topic: str = DEFAULT_CAMERA_TOPIC,
    params_file: str | None = None,
    checkpoint: str = "",
    device: str = "",
    namespace: str = "",
    use_sim_time: bool = False,
    log_level: str = "info",
    untrained: bool = False,
    arch: str = "",
    depth_topic: str = "",
    camera_info_topic: str = "",
) -> dict[str, Any]:
    """Keyword arguments of ``launch_ros.actions.Node`` for the tracker node.

    Args:
        camera_topic: the camera's image topic; the node's ``image`` is remapped to it and ``image/compressed``
            to ``<camera_topic>/compressed`` (image_transport's naming).
        params_file: parameters file; None: `default_config_file()`. A missing file is an error.
        checkpoint, device, arch: override the file's values when not empty.
        namespace: node namespace ("" for the root).
        use_sim_time: the node parameter ``use_sim_time`` (always set, so it overrides the file's).
        log_level: one of `LOG_LEVELS`, passed as ``--ros-args --log-level``.
        untrained: run untrained random weights (``checkpoint: ''``); excludes ``checkpoint``.
        depth_topic, camera_info_topic: the node parameters of the same names, when not empty (3D tracks).
    Returns:
        dict with package, executable, name, namespace, parameters, remappings, ros_arguments, output.
    """
    camera_topic = camera_topic.strip().rstrip("/")
    if not camera_topic:
        raise ValueError(f"camera_topic must name a topic, got {camera_topic!r}")
    level = log_level.strip().lower()
    if level not in LOG_LEVELS:
        raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")
    if untrained and checkpoint:
        raise ValueError(f"untrained:=true runs no checkpoint, but checkpoint {checkpoint!r} was given too")
    overrides: dict[str, Any] = {"checkpoint": ""} if untrained else {}
    # Plain str values stay strings in launch_ros (Humble..Rolling yaml.dump them first): arch's "{...}" too.
    given = (("checkpoint", checkpoint), ("device", device), ("depth_topic", depth_topic),
             ("camera_info_topic", camera_info_topic))  # fmt: skip
    overrides.update({name: value for name, value in given if value})
    if arch:
        overrides["arch"] = arch
    overrides["use_sim_time"] = bool(use_sim_time)
    params_file = params_file or default_config_file()
    if not Path(params_file).is_file():  # the node would start on built-in defaults: refuse instead
        raise FileNotFoundError(f"parameters file {params_file} does not exist (launch argument params_file)")
    return {
        "package": PACKAGE,
        "executable": EXECUTABLE,
        "name": NODE_NAME,
        "namespace": namespace,
        "parameters": [params_file, overrides],
        "remappings": [("image", camera_topic), ("image/compressed", f"{camera_topic}/compressed")],
        "ros_arguments": ["--log-level", level],
        "output": "screen",
    }


def generate_launch_description() -> Any:  # a launch.LaunchDescription (launch is imported lazily)
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    from launch import LaunchDescription

    def _node(context: Any) -> list[Any]:
        values = {a.name: LaunchConfiguration(a.name).perform(context) for a in LAUNCH_ARGUMENTS}
        return [Node(**make_tracker_node_description(**node_arguments(values)))]

    declared = [
        DeclareLaunchArgument(a.name, default_value=a.default, description=a.description) for a in LAUNCH_ARGUMENTS
    ]
    return LaunchDescription([*declared, OpaqueFunction(function=_node)])
