"""Self-contained demo of the tracker node: no camera, no network, no ``ros2`` CLI.

One process runs three rclpy nodes over real DDS: a synthetic camera moving over a photograph (a CC0
sample of scikit-image, or a generated texture without it) publishing on ``/demo/image``; the
`TrackerNode` with its default weights (the shipped ``lite`` model) and a grid of queries on the first
frame; and a checker that knows the camera's motion, so it prints, every second, the median error of the
points published as visible (and truly in view) against their true positions and the share within 4 px.
At the end it writes a contact sheet (tracks drawn over frames, points coloured by id, invisible ones
hollow) and prints its path.

    python -m cotracker3_ros.tools.demo                      # lite, 200 frames of 320x240 at 15 Hz
    python -m cotracker3_ros.tools.demo --frames 60 --check  # exit 1 when the median error is too large
    python -m cotracker3_ros.tools.demo --checkpoint ''      # untrained tiny model: tracks are noise
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
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

from cotracker3_core.evaluation.warp_clips import CameraPath, WarpClipConfig, camera_path
from cotracker3_core.queries import grid_points

from ..conversions import ns_to_time, rgb_to_image, time_to_ns
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
#: --check fails when the median error of the points in view exceeds this (px of the 320x240 camera).
DEFAULT_MAX_MEDIAN_PX = 4.0
WITHIN_PX = 4.0
SHEET_FRAMES = 8


def demo_photo(seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8 RGB: scikit-image's CC0 "coffee" photograph, or a generated texture without it."""
    try:
        import skimage

        path = Path(skimage.__file__).resolve().parent / "data" / "coffee.png"
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is not None:
            return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    except ImportError:
        pass
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    texture = cv2.resize(noise, (640, 640), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:640, 0:640]
    return np.ascontiguousarray(texture // 2 + (((yy // 24) + (xx // 24)) % 2 * 60).astype(np.uint8)[..., None])


def demo_camera(frames: int, height: int, width: int, seed: int = 0) -> CameraPath:
    """A smooth camera path over the demo photograph (rotation, zoom, shifts, perspective)."""
    config = WarpClipConfig(num_frames=frames, height=height, width=width, num_keyframes=max(2, frames // 50),
                            num_occluders=(0, 0), lighting=0.0)
    return camera_path(demo_photo(seed), config, np.random.default_rng(seed))


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


def camera_frame(path: CameraPath, index: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB frame ``index`` of a camera path."""
    return np.clip(path.render(index), 0, 255).round().astype(np.uint8)


class SyntheticCamera(Node):
    """Publishes the camera path's frames on ``image`` at ``rate`` Hz, stamped with the node clock."""

    def __init__(self, path: CameraPath, rate: float, **kwargs: Any) -> None:
        super().__init__("synthetic_camera", **kwargs)
        self.path = path
        self._pub = self.create_publisher(Image, "image", QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
        self.frame_of_stamp: dict[int, int] = {}
        self.sent = 0
        self.done = threading.Event()
        self._timer = self.create_timer(1.0 / rate, self._tick)

    def frame(self, index: int) -> np.ndarray:
        return camera_frame(self.path, index)

    def _tick(self) -> None:
        if self.sent >= self.path.to_source.shape[0]:
            self._timer.cancel()
            self.done.set()
            return
        stamp = self.get_clock().now().nanoseconds
        self.frame_of_stamp[stamp] = self.sent
        self._pub.publish(rgb_to_image(self.frame(self.sent), Header(stamp=ns_to_time(stamp), frame_id=FRAME_ID)))
        self.sent += 1


class TrackChecker(Node):
    """Scores every Tracks message against the true positions of the grid the node placed on its first frame.

    Args:
        camera: the synthetic camera (its path and the stamp of each frame).
        grid_size: the node's grid_size parameter.
        rate: camera rate, to print one summary line per second of stream.
    """

    def __init__(self, camera: SyntheticCamera, grid_size: int, rate: float, quiet: bool, **kwargs: Any) -> None:
        super().__init__("track_checker", **kwargs)
        self.camera = camera
        self.grid_size = grid_size
        self.rate = rate
        self.quiet = quiet
        self.received = 0
        self.errors: list[np.ndarray] = []
        self.frames: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # frame -> ids, xy, visible
        self._truth: np.ndarray | None = None  # (T, N, 2) true px of the grid points
        self._first_id = 0
        self._window: list[np.ndarray] = []
        self.create_subscription(Tracks, "tracks", self._on_tracks, 100)

    def _on_tracks(self, msg: Tracks) -> None:
        frame = self.camera.frame_of_stamp.get(time_to_ns(msg.header.stamp))
        if frame is None or not len(msg.ids):
            return
        ids = np.asarray(msg.ids, np.int64)
        xy = np.stack([np.asarray(msg.x), np.asarray(msg.y)], axis=-1)
        visible = np.frombuffer(bytes(msg.visible), np.uint8).astype(bool)
        if self._truth is None:  # the grid is placed on the first frame the node tracks, ids in grid order
            h, w = self.camera.path.frame_hw
            grid = grid_points(self.grid_size, (h, w))[0].numpy()
            self._truth = self.camera.path.move(grid, frame)
            self._first_id = int(ids.min())
        self.received += 1
        self.frames[frame] = (ids, xy, visible)
        truth = self._truth[frame, np.clip(ids - self._first_id, 0, self._truth.shape[1] - 1)]
        h, w = self.camera.path.frame_hw
        in_view = (truth[:, 0] >= 0) & (truth[:, 0] <= w - 1) & (truth[:, 1] >= 0) & (truth[:, 1] <= h - 1)
        # Scored: the points a user would act on (published visible) whose true position is in view.
        error = np.linalg.norm(xy - truth, axis=-1)[in_view & visible]
        self.errors.append(error)
        self._window.append(error)
        if frame % max(1, round(self.rate)) == 0 and not self.quiet:
            recent = np.concatenate(self._window) if self._window else np.zeros(0)
            self._window = []
            if recent.size:
                print(f"t={frame / self.rate:5.1f}s frame {frame:4d}: {len(ids)} points, "
                      f"visible {visible.mean():.2f}, median error {np.median(recent):.2f} px, "
                      f"within {WITHIN_PX:.0f} px {np.mean(recent <= WITHIN_PX):.2f}", flush=True)

    def summary(self) -> tuple[float, float]:
        """(median error px, share within WITHIN_PX) over every scored point, NaN when none."""
        errors = np.concatenate(self.errors) if self.errors else np.zeros(0)
        if not errors.size:
            return float("nan"), float("nan")
        return float(np.median(errors)), float(np.mean(errors <= WITHIN_PX))

    def contact_sheet(self, path: Path) -> Path:
        """Write SHEET_FRAMES tracked frames with their tracks (last 10 frames) as one PNG."""
        tracked = sorted(self.frames)
        picks = [tracked[i] for i in np.linspace(0, len(tracked) - 1, min(SHEET_FRAMES, len(tracked))).astype(int)]
        tiles = []
        for f in picks:
            tile = cv2.cvtColor(self.camera.frame(f), cv2.COLOR_RGB2BGR)
            ids, xy, visible = self.frames[f]
            for i, track_id in enumerate(ids.tolist()):
                hue = (track_id * 47) % 180
                colour = cv2.cvtColor(np.uint8([[[hue, 230, 255]]]), cv2.COLOR_HSV2BGR)[0, 0].tolist()
                past = [self.frames[g] for g in range(f - 10, f + 1) if g in self.frames]
                trail = [p[1][p[0] == track_id][0] for p in past if (p[0] == track_id).any()]
                for a, b in zip(trail, trail[1:], strict=False):
                    cv2.line(tile, tuple(np.round(a).astype(int)), tuple(np.round(b).astype(int)), colour, 1)
                centre = tuple(np.round(xy[i]).astype(int))
                cv2.circle(tile, centre, 3, colour, -1 if visible[i] else 1, cv2.LINE_AA)
            cv2.putText(tile, f"frame {f}", (5, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
            tiles.append(tile)
        while len(tiles) % 4:
            tiles.append(np.zeros_like(tiles[0]))
        rows = [np.concatenate(tiles[i : i + 4], axis=1) for i in range(0, len(tiles), 4)]
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), np.concatenate(rows, axis=0))
        return path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m cotracker3_ros.tools.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=200, help="frames the synthetic camera publishes (default 200)")
    p.add_argument("--rate", type=float, default=15.0, help="camera rate in Hz (default 15)")
    p.add_argument("--size", type=int, nargs=2, default=(240, 320), metavar=("H", "W"), help="camera image size")
    p.add_argument("--checkpoint", default="lite",
                   help="checkpoint path/name/URL (default: the shipped lite model; '' = untrained tiny model)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--grid-size", type=int, default=8, help="grid of queries on the first frame (default 8)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--sheet", type=Path, default=Path("runs/demo/contact_sheet.png"), help="contact sheet PNG")
    p.add_argument("--max-median-px", type=float, default=DEFAULT_MAX_MEDIAN_PX,
                   help=f"--check fails above this median error (default {DEFAULT_MAX_MEDIAN_PX})")
    p.add_argument("--quiet", action="store_true", help="no per-second lines, only the summary")
    p.add_argument("--check", action="store_true", help="exit 1 unless tracks arrived within --max-median-px")
    args, ros_args = p.parse_known_args(argv)
    args.ros_args = ros_args
    return args


def _tracker_parameters(args: argparse.Namespace) -> list[Parameter]:
    params = [Parameter("checkpoint", value=args.checkpoint), Parameter("device", value=args.device),
              Parameter("grid_size", value=args.grid_size), Parameter("queue_size", value=16)]
    if not args.checkpoint:  # untrained: a tiny model at a small resolution runs in real time anywhere
        params += [Parameter("arch", value=json.dumps(DEMO_ARCH)), Parameter("model_resolution", value=[96, 128])]
    return params


def run(args: argparse.Namespace) -> int:
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    context = Context()
    rclpy.init(args=["demo", *args.ros_args], context=context)
    nodes: list[Node] = []
    executor = None
    spin = None
    try:
        tracker = TrackerNode(namespace=NAMESPACE, context=context, parameter_overrides=_tracker_parameters(args))
        camera = SyntheticCamera(demo_camera(args.frames, *args.size), args.rate, namespace=NAMESPACE,
                                 context=context)
        checker = TrackChecker(camera, args.grid_size, args.rate, args.quiet, namespace=NAMESPACE, context=context)
        nodes = [tracker, camera, checker]
        executor = MultiThreadedExecutor(num_threads=3, context=context)
        for node in nodes:
            executor.add_node(node)
        spin = threading.Thread(target=executor.spin, daemon=True)
        spin.start()
        camera.done.wait()
        tracker.flush_and_reset("end of the demo stream", wait_s=30.0)  # after the frames still waiting
        time.sleep(0.5)  # let the last messages arrive
        median, within = checker.summary()
        print(
            f"demo: camera sent {camera.sent} frames, {checker.received} tracked, tracker dropped "
            f"{tracker.dropped_frames}; median error {median:.2f} px, within {WITHIN_PX:.0f} px {within:.2f}"
            + ("; weights are UNTRAINED (tracks are noise)" if tracker.tracker.untrained else ""),
            flush=True,
        )
        if checker.frames:
            print(f"demo: contact sheet {checker.contact_sheet(args.sheet).resolve()}", flush=True)
        if args.check and not (checker.received and (tracker.tracker.untrained or median <= args.max_median_px)):
            print(f"demo: --check failed: {checker.received} tracked frames, median error {median:.2f} px "
                  f"(limit {args.max_median_px})", file=sys.stderr)
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
