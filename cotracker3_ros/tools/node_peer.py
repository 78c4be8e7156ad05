"""The DDS side of driving a tracker node process: starting it with the evaluation's parameters, and the peer
node that publishes images, calls its services and records what it publishes. Used by the replay evaluation and
by the node's tests."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rclpy
from cotracker3_msgs.msg import Tracks
from cotracker3_msgs.srv import AddPoints
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.srv import GetParameters
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import parameter_value_to_python
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from rosgraph_msgs.msg import Clock
from std_srvs.srv import Trigger

from cotracker3_core.evaluation.scoring import FrameOutput

from .. import diagnostics as diag
from ..conversions import time_to_ns, tracks_msg_arrays
from ..params import NODE_NAME
from .settings import MODEL_PARAMS

__all__ = [
    "LOCKSTEP_QUEUE_SIZE",
    "DdsPeer",
    "NodeProcess",
    "Received",
    "ReplayPeer",
    "default_node_command",
    "node_ros_args",
    "node_service",
]

#: Node queue size in lockstep mode: the most the node accepts (params.py), so nothing in flight is dropped.
LOCKSTEP_QUEUE_SIZE = 100


def node_service(namespace: str, service: str, node_name: str = NODE_NAME) -> str:
    """Full name of one of the node's services: they are private (``~/reset``), so under the node's name,
    e.g. ``/ct3/tracker_node/reset`` for namespace ``/ct3`` ("" or "/" for the root: ``/tracker_node/reset``)."""
    prefix = namespace.strip("/")
    return f"/{prefix}/{node_name}/{service}" if prefix else f"/{node_name}/{service}"


def wait_until(predicate: Callable[[], bool], timeout_s: float, period_s: float = 0.01) -> bool:
    """Poll ``predicate`` every ``period_s`` until it is true or ``timeout_s`` has passed; its last value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(period_s)
    return predicate()


# --- the node process --------------------------------------------------------------------------------------


def default_node_command() -> list[str]:
    """``python -m cotracker3_ros.node`` with this interpreter: the node runs the code this tool imports."""
    return [sys.executable, "-m", "cotracker3_ros.node"]


@dataclass
class NodeProcess:
    """A tracker node process started by this tool, its output going to ``log_path``."""

    process: subprocess.Popen
    log_path: Path

    @classmethod
    def start(
        cls, command: Sequence[str], ros_args: Sequence[str], env: Mapping[str, str], log_path: Path
    ) -> NodeProcess:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [*command, "--ros-args", *ros_args], env=dict(env), stdout=log, stderr=subprocess.STDOUT
            )
        return cls(process, log_path)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout_s: float = 15.0) -> int:
        """SIGINT (the node shuts down cleanly), then SIGKILL after ``timeout_s``; returns the exit code."""
        if self.alive:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)


def node_ros_args(
    values: Mapping[str, Any],
    *,
    params_file: Path | None,
    namespace: str,
    image_topic: str,
    compressed: bool,
    queue_size: int,
    use_sim_time: bool,
    extra: Sequence[str] = (),
) -> list[str]:
    """The node's ``--ros-args``: the parameters file, then every model parameter explicitly, no automatic grid,
    a reliable deep input (QoS override on the remapped image topic) and a deep tracks publisher."""
    args: list[str] = []
    if params_file is not None:
        args += ["--params-file", str(params_file)]
    node_topic = "image/compressed" if compressed else "image"
    args += ["-r", f"__ns:={namespace}", "-r", f"{node_topic}:={image_topic}"]

    def param(name: str, value: Any) -> None:
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str):
            text = "'" + value.replace("'", "''") + "'"  # a YAML single-quoted string
        elif isinstance(value, (list, tuple)):
            text = "[" + ",".join(str(v) for v in value) + "]"
        else:
            text = repr(value)
        args.extend(["-p", f"{name}:={text}"])

    for name in MODEL_PARAMS:
        param(name, values[name])
    param("grid_size", 0)
    param("compressed", compressed)
    param("publish_refined", False)
    param("queue_size", int(queue_size))
    param("diagnostics_period", 0.2)
    if use_sim_time:
        param("use_sim_time", True)
    tracks_topic = f"{namespace.rstrip('/')}/tracks"
    args += [
        "-p", f"qos_overrides.{image_topic}.subscription.reliability:=reliable",
        "-p", f"qos_overrides.{image_topic}.subscription.depth:={LOCKSTEP_QUEUE_SIZE}",
        "-p", f"qos_overrides.{tracks_topic}.publisher.depth:=1000",
        "-p", f"qos_overrides.{tracks_topic}.publisher.reliability:=reliable",
    ]  # fmt: skip
    return [*args, *extra]


# --- this tool's side of DDS -----------------------------------------------------------------------------------


@dataclass
class Received:
    """One ``tracks`` message: the image stamp, the estimate and its arrival time (monotonic)."""

    stamp: int
    output: FrameOutput
    arrival: float


class DdsPeer:
    """An rclpy node in its own context (so that it lives beside any other in the process), spun by a background
    thread once `start` is called, so that messages are taken as they come whatever the main thread does. The
    base of the replay tool's peer and of the node tests' peer.

    Args:
        name: the node's name.
        domain_id: ROS domain of the context.
    """

    def __init__(self, name: str, domain_id: int) -> None:
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id, signal_handler_options=SignalHandlerOptions.NO)
        self.node = Node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._spinner = threading.Thread(target=self._spin, name=f"{name}_spin", daemon=True)

    def start(self) -> None:
        """Start spinning (after the subscriptions the peer needs from the first message on are made)."""
        self._spinner.start()

    def _spin(self) -> None:
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # the context shutting down under us
                if self.context.ok():
                    raise

    def close(self) -> None:
        rclpy.try_shutdown(context=self.context)
        if self._spinner.is_alive():
            self._spinner.join(timeout=5)
        self.executor.shutdown()
        self.node.destroy_node()


class ReplayPeer(DdsPeer):
    """The replay tool's peer: publishes images (and /clock), calls the tracker's services, records its
    ``tracks`` and ``/diagnostics``."""

    def __init__(self, domain_id: int, namespace: str, image_topic: str, image_class: type, clock: bool) -> None:
        super().__init__("cotracker3_replay_eval", domain_id)
        self.namespace = namespace.rstrip("/") or ""
        self.process: NodeProcess | None = None  # set when this tool started the node: waits watch it
        reliable = QoSProfile(depth=LOCKSTEP_QUEUE_SIZE, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = self.node.create_publisher(image_class, image_topic, reliable)
        self.clock_pub = self.node.create_publisher(Clock, "/clock", 10) if clock else None
        deep = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
        self._lock = threading.Lock()
        self.received: list[Received] = []
        self.diagnostics: list[tuple[float, dict[str, str]]] = []
        self.tracks_sub = self.node.create_subscription(Tracks, f"{self.namespace}/tracks", self._on_tracks, deep)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        self.add_points = self.node.create_client(AddPoints, node_service(self.namespace, "add_points"))
        self.reset = self.node.create_client(Trigger, node_service(self.namespace, "reset"))
        self.get_parameters = self.node.create_client(GetParameters, node_service(self.namespace, "get_parameters"))
        self.start()

    # -- callbacks (spinner thread) --

    def _on_tracks(self, msg: Tracks) -> None:
        arrival = time.monotonic()
        item = Received(time_to_ns(msg.header.stamp), FrameOutput.from_arrays(tracks_msg_arrays(msg)), arrival)
        with self._lock:
            self.received.append(item)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        name, node = f"{NODE_NAME}{diag.STATUS_SUFFIX}", f"{self.namespace}/{NODE_NAME} "
        for status in msg.status:
            if status.name == name and status.hardware_id.startswith(node):
                with self._lock:
                    self.diagnostics.append((time.monotonic(), {kv.key: kv.value for kv in status.values}))

    # -- helpers for the main thread --

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float, period_s: float = 0.005) -> bool:
        """Poll ``predicate`` until true or ``timeout_s``; raises at once if the node process (when this tool
        started it) has exited."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return True
            if self.process is not None and not self.process.alive:
                raise RuntimeError(
                    f"the tracker node exited with {self.process.process.returncode}:\n{self.process.log_tail()}"
                )
            time.sleep(period_s)
        return predicate()

    def call(self, client: Any, request: Any, timeout_s: float) -> Any:
        if not self.wait_for(client.service_is_ready, timeout_s, 0.02):
            raise RuntimeError(f"service {client.srv_name} is not available")
        future = client.call_async(request)
        if not self.wait_for(future.done, timeout_s, 0.001):
            raise RuntimeError(f"no answer from {client.srv_name} within {timeout_s:.0f} s")
        return future.result()

    def received_since(self, start: int) -> list[Received]:
        with self._lock:
            return self.received[start:]

    def received_count(self) -> int:
        with self._lock:
            return len(self.received)

    def diagnostics_after(self, when: float) -> dict[str, str] | None:
        with self._lock:
            later = [values for at, values in self.diagnostics if at > when]
        return later[-1] if later else None

    def diagnostics_between(self, start: float, end: float) -> list[dict[str, str]]:
        with self._lock:
            return [values for at, values in self.diagnostics if start < at <= end]

    def wait_diagnostics(self, after: float, timeout_s: float) -> dict[str, str]:
        if not self.wait_for(lambda: self.diagnostics_after(after) is not None, timeout_s, 0.01):
            raise RuntimeError(f"no /diagnostics from {self.namespace}/{NODE_NAME} within {timeout_s:.0f} s")
        values = self.diagnostics_after(after)
        assert values is not None
        return values

    def node_parameters(self, names: Sequence[str], timeout_s: float) -> dict[str, Any]:
        response = self.call(self.get_parameters, GetParameters.Request(names=list(names)), timeout_s)
        return {n: parameter_value_to_python(v) for n, v in zip(names, response.values, strict=True)}

