"""Self-contained demo of the tracker node: no camera, no network, no ``ros2`` CLI.

One process runs three rclpy nodes over real DDS: a synthetic camera publishing a moving textured
pattern on ``/demo/image``, the `TrackerNode` (a grid of queries on the first frame), and a
subscriber that prints one line per tracked frame (stamp, number of points, share visible).

    python -m cotracker3_ros.tools.demo                        # untrained tiny model, 200 frames at 15 Hz
    python -m cotracker3_ros.tools.demo --frames 60 --check    # exit 1 unless tracks arrived
    python -m cotracker3_ros.tools.demo --checkpoint scaled_online --resolution 384 512   # real weights

Without ``--checkpoint`` the weights are untrained: the tracks are noise and the node says so. The
untrained default also uses a tiny architecture (`DEMO_ARCH`) so that the demo runs in real time on a
CPU; a checkpoint brings its own (official) architecture.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any

import cv2
import numpy as np
import rclpy
import torch
from cotracker3_msgs.msg import Tracks
from rclpy.context import Context
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from ..conversions import ns_to_time, rgb_to_image
from ..node import TrackerNode

#: A tiny architecture for untrained CPU demos and tests (about 0.2 M parameters, ~100 frames/s at 64x96).
DEMO_ARCH: dict[str, Any] = {
    "latent_dim": 32,
    "hidden_size": 64,
    "time_depth": 1,
    "space_depth": 1,
    "num_heads": 2,
    "num_virtual_tracks": 8,
    "corr_levels": 2,
    "corr_radius": 1,
    "corr_hidden": 64,
    "corr_embed_dim": 32,
}
NAMESPACE = "/demo"
FRAME_ID = "demo_camera_optical_frame"


class SyntheticScene:
    """A textured pattern drifting and rotating slowly, rendered at any frame index (deterministic).

    Args:
        height, width: image size.
        seed: texture seed.
    """

    def __init__(self, height: int = 240, width: int = 320, seed: int = 0) -> None:
        self.height, self.width = height, width
        rng = np.random.default_rng(seed)
        size = 2 * max(height, width)
        noise = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
        texture = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
        yy, xx = np.mgrid[0:size, 0:size]
        checker = (((yy // 24) + (xx // 24)) % 2 * 60).astype(np.uint8)
        self.texture = np.ascontiguousarray(texture // 2 + checker[..., None])
        for _ in range(12):  # a few solid discs give strong corners
            centre = tuple(int(v) for v in rng.integers(0, size, 2))
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            cv2.circle(self.texture, centre, int(rng.integers(8, 30)), colour, -1, cv2.LINE_AA)

    def frame(self, index: int) -> np.ndarray:
        """RGB ``(H, W, 3)`` uint8 of frame ``index``: translation of ~1.5 px/frame plus a slow rotation."""
        size = self.texture.shape[0]
        angle = 3.0 * np.sin(index / 40.0)
        centre = (size / 2 + 1.5 * index % (size / 4), size / 2 + 0.8 * index % (size / 4))
        m = cv2.getRotationMatrix2D(centre, angle, 1.0)
        m[:, 2] += (self.width / 2 - centre[0], self.height / 2 - centre[1])
        return cv2.warpAffine(self.texture, m, (self.width, self.height), borderMode=cv2.BORDER_REFLECT)


class SyntheticCamera(Node):
    """Publishes ``frames`` `SyntheticScene` frames on ``image`` at ``rate`` Hz, stamped with the node clock."""

    def __init__(self, scene: SyntheticScene, frames: int, rate: float, **kwargs: Any) -> None:
        super().__init__("synthetic_camera", **kwargs)
        self._scene, self._frames = scene, frames
        self._pub = self.create_publisher(Image, "image", QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
        self.sent = 0
        self.done = threading.Event()
        self._timer = self.create_timer(1.0 / rate, self._tick)

    def _tick(self) -> None:
        if self.sent >= self._frames:
            self._timer.cancel()
            self.done.set()
            return
        header = Header(stamp=ns_to_time(self.get_clock().now().nanoseconds), frame_id=FRAME_ID)
        self._pub.publish(rgb_to_image(self._scene.frame(self.sent), header))
        self.sent += 1


class TracksPrinter(Node):
    """Prints one short line per received Tracks message."""

    def __init__(self, quiet: bool = False, **kwargs: Any) -> None:
        super().__init__("tracks_printer", **kwargs)
        self.received = 0
        self.points = 0
        self._quiet = quiet
        self.create_subscription(Tracks, "tracks", self._on_tracks, 50)

    def _on_tracks(self, msg: Tracks) -> None:
        self.received += 1
        n = len(msg.ids)
        self.points += n
        visible = float(np.frombuffer(msg.visible, np.uint8).mean()) if n else 0.0
        if not self._quiet:
            stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
            print(f"tracks stamp={stamp:.3f} points={n} visible={visible:.2f}", flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m cotracker3_ros.tools.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=200, help="frames the synthetic camera publishes (default 200)")
    p.add_argument("--rate", type=float, default=15.0, help="camera rate in Hz (default 15)")
    p.add_argument("--size", type=int, nargs=2, default=(240, 320), metavar=("H", "W"), help="camera image size")
    p.add_argument(
        "--resolution", type=int, nargs=2, default=(96, 128), metavar=("H", "W"), help="model_resolution (96 128)"
    )
    p.add_argument("--checkpoint", default="", help="checkpoint path/name/URL (default: untrained weights)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--grid-size", type=int, default=8, help="grid of queries on the first frame (default 8)")
    p.add_argument(
        "--arch", default=None, help="architecture overrides (JSON); default: tiny without a checkpoint, else none"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads; default: 1 for the tiny untrained model (more only adds thread contention), "
        "else torch's choice",
    )
    p.add_argument("--quiet", action="store_true", help="no per-frame lines, only the summary")
    p.add_argument("--check", action="store_true", help="exit 1 unless tracks arrived")
    args, ros_args = p.parse_known_args(argv)
    args.ros_args = ros_args
    return args


def run(args: argparse.Namespace) -> int:
    arch = args.arch if args.arch is not None else ("" if args.checkpoint else json.dumps(DEMO_ARCH))
    threads = args.threads if args.threads is not None else (0 if args.checkpoint else 1)
    if threads > 0:
        torch.set_num_threads(threads)
    context = Context()
    rclpy.init(args=["demo", *args.ros_args], context=context)
    nodes: list[Node] = []
    executor = None
    spin = None
    try:
        tracker = TrackerNode(
            namespace=NAMESPACE,
            context=context,
            parameter_overrides=[
                Parameter("checkpoint", value=args.checkpoint),
                Parameter("device", value=args.device),
                Parameter("model_resolution", value=list(args.resolution)),
                Parameter("arch", value=arch),
                Parameter("grid_size", value=args.grid_size),
                Parameter("queue_size", value=16),
            ],
        )
        camera = SyntheticCamera(
            SyntheticScene(*args.size), args.frames, args.rate, namespace=NAMESPACE, context=context
        )
        printer = TracksPrinter(args.quiet, namespace=NAMESPACE, context=context)
        nodes = [tracker, camera, printer]
        executor = MultiThreadedExecutor(num_threads=3, context=context)
        for node in nodes:
            executor.add_node(node)
        spin = threading.Thread(target=executor.spin, daemon=True)
        spin.start()
        camera.done.wait()
        deadline = time.monotonic() + 30.0
        while tracker.pending_frames and time.monotonic() < deadline:
            time.sleep(0.05)
        tracker.flush_and_reset("end of the demo stream")
        time.sleep(0.5)  # let the last messages arrive
        print(
            f"demo: camera sent {camera.sent} frames, received {printer.received} tracks messages "
            f"({printer.points} points in all), tracker dropped {tracker.dropped_frames} frame(s)"
            + ("; weights are UNTRAINED (tracks are noise)" if tracker.tracker.untrained else ""),
            flush=True,
        )
        if args.check and printer.received == 0:
            print("demo: --check failed: no tracks arrived", file=sys.stderr)
            return 1
        return 0
    except (KeyboardInterrupt, ExternalShutdownException):
        return 130
    finally:
        if executor is not None:
            executor.shutdown(timeout_sec=2.0)
        if spin is not None:
            # Join before destroying the nodes: a spin thread still inside rcl at interpreter exit
            # aborts the process ("terminate called without an active exception").
            spin.join(timeout=5.0)
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown(context=context)


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
