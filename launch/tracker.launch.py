"""Launch the CoTracker3 tracker node on a camera topic.

    ros2 launch cotracker3_ros tracker.launch.py camera_topic:=/camera/color/image_raw
    ros2 launch cotracker3_ros tracker.launch.py camera_topic:=/camera/image_raw checkpoint:=/models/mine.pth \
        device:=cuda config:=/path/to/tracker.yaml

Arguments: camera_topic (remaps the node's ``image``, and ``image/compressed`` to ``<camera_topic>/compressed``),
config (parameters file, default: the package's config/tracker.yaml), checkpoint and device (override the
file's values when not empty), namespace.

The node description comes from `make_tracker_node_description`, a plain function (no launch import) that
tests call directly; launch and launch_ros are imported only inside `generate_launch_description`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PACKAGE = "cotracker3_ros"
EXECUTABLE = "tracker_node"
NODE_NAME = "tracker_node"
DEFAULT_CAMERA_TOPIC = "/camera/image_raw"


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


def make_tracker_node_description(
    camera_topic: str = DEFAULT_CAMERA_TOPIC,
    config_file: str | None = None,
    checkpoint: str = "",
    device: str = "",
    namespace: str = "",
) -> dict[str, Any]:
    """Keyword arguments of ``launch_ros.actions.Node`` for the tracker node.

    Args:
        camera_topic: the camera's image topic; the node's ``image`` is remapped to it and ``image/compressed``
            to ``<camera_topic>/compressed`` (image_transport's naming).
        config_file: parameters file; None: `default_config_file()`. A missing file is an error.
        checkpoint, device: override the file's values when not empty.
        namespace: node namespace ("" for the root).
    Returns:
        dict with package, executable, name, namespace, parameters, remappings, output.
    """
    camera_topic = camera_topic.strip().rstrip("/")
    if not camera_topic:
        raise ValueError(f"camera_topic must name a topic, got {camera_topic!r}")
    overrides = {name: value for name, value in (("checkpoint", checkpoint), ("device", device)) if value}
    params_file = config_file or default_config_file()
    if not Path(params_file).is_file():  # the node would start on built-in defaults: refuse instead
        raise FileNotFoundError(f"parameters file {params_file} does not exist (launch argument config)")
    parameters: list[Any] = [params_file]
    if overrides:
        parameters.append(overrides)
    return {
        "package": PACKAGE,
        "executable": EXECUTABLE,
        "name": NODE_NAME,
        "namespace": namespace,
        "parameters": parameters,
        "remappings": [("image", camera_topic), ("image/compressed", f"{camera_topic}/compressed")],
        "output": "screen",
    }


def generate_launch_description() -> Any:  # a launch.LaunchDescription (launch is imported lazily)
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    from launch import LaunchDescription

    def _node(context: Any) -> list[Any]:
        def arg(name: str) -> str:
            return LaunchConfiguration(name).perform(context)

        description = make_tracker_node_description(
            camera_topic=arg("camera_topic"),
            config_file=arg("config") or None,
            checkpoint=arg("checkpoint"),
            device=arg("device"),
            namespace=arg("namespace"),
        )
        return [Node(**description)]

    return LaunchDescription(
        [
            DeclareLaunchArgument("camera_topic", default_value=DEFAULT_CAMERA_TOPIC, description="camera image topic"),
            DeclareLaunchArgument(
                "config", default_value="", description="parameters file (default: the package's config/tracker.yaml)"
            ),
            DeclareLaunchArgument(
                "checkpoint", default_value="", description="checkpoint override (name, path or URL); empty: the file's"
            ),
            DeclareLaunchArgument(
                "device", default_value="", description="device override (auto, cpu, cuda); empty: the file's"
            ),
            DeclareLaunchArgument("namespace", default_value="", description="node namespace"),
            OpaqueFunction(function=_node),
        ]
    )
