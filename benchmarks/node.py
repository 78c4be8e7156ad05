"""Benchmark of the node's per-frame work outside the engine, over real rclpy and DDS.

For every camera frame the node (``cotracker3_ros.node``) takes the image message from DDS, converts it to
RGB, hands it to the engine (which resizes it to the model resolution before encoding), then fills a
``cotracker3_msgs/Tracks`` message and publishes it. This command times each of those stages with the same
functions the node calls, on a real publisher with a matched subscriber in this process (so the publish
serialises and delivers), and checks the target of the performance issue: image conversion + message fill
+ publish at most 1 ms per frame for 1,024 points. Taking the image from DDS (deserialisation) and the
resize are reported beside it; the resize is part of the engine's step (``frame_to_tensor``).

    python -m benchmarks.node --markdown --check                  # 1,024 points, 480x640 rgb8, 500 frames
    python -m benchmarks.node --encoding bgr8 --camera 720x1280 --json node.json
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
import torch
from cotracker3_msgs.msg import Tracks
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from cotracker3_core.streaming import FrameTracks, frame_to_tensor
from cotracker3_ros.conversions import (
    SUPPORTED_ENCODINGS,
    frame_tracks_to_msg,
    message_to_rgb,
    ns_to_time,
    rgb_to_image,
)

from .common import emit_result, machine_info, parse_resolution, summary_ms

SCHEMA = "cotracker3-bench-node/1"
TARGET_MS = 1.0  # image conversion + message fill + publish, per frame (median)
STAGES = ("take", "convert", "resize", "fill", "publish")


def _camera_frame(camera: tuple[int, int], seed: int = 0) -> np.ndarray:
    h, w = camera
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _tracks(points: int, stamp: int, camera: tuple[int, int], rng: np.random.Generator) -> FrameTracks:
    h, w = camera
    vis = rng.uniform(0, 1, points).astype(np.float32)
    conf = rng.uniform(0, 1, points).astype(np.float32)
    xy = np.stack([rng.uniform(0, w - 1, points), rng.uniform(0, h - 1, points)], axis=1).astype(np.float32)
    return FrameTracks(
        stamp=stamp,
        frame_index=0,
        refined=False,
        ids=np.arange(points, dtype=np.int64),
        xy=xy,
        visibility=vis,
        confidence=conf,
        visible=vis * conf > 0.6,
    )


def _image_message(camera: tuple[int, int], encoding: str, compressed: bool) -> Image | CompressedImage:
    rgb = _camera_frame(camera)
    header = Header(stamp=ns_to_time(1_700_000_000_000_000_000), frame_id="camera")
    if not compressed:
        return rgb_to_image(rgb, header, encoding)
    import cv2

    ok, jpeg = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return CompressedImage(header=header, format="jpeg", data=jpeg.tobytes())


def run(
    points: int,
    camera: tuple[int, int],
    model_resolution: tuple[int, int],
    encoding: str,
    compressed: bool,
    frames: int,
    warmup: int = 20,
    domain_id: int | None = None,
) -> dict[str, Any]:
    """Time each per-frame stage `frames` times (after `warmup` untimed frames), in a private rclpy
    context (so that it can run beside other ROS code in the same process). Returns the report."""
    image = _image_message(camera, encoding, compressed)
    wire = serialize_message(image)  # what DDS hands rclpy for every incoming frame
    image_type = type(image)
    rng = np.random.default_rng(0)
    device = torch.device("cpu")

    context = Context()
    rclpy.init(args=[], context=context, domain_id=domain_id)
    try:
        publisher_node = rclpy.create_node("cotracker3_bench_node", context=context)
        listener_node = rclpy.create_node("cotracker3_bench_listener", context=context)
        received = [0]
        listener_node.create_subscription(Tracks, "tracks", lambda _msg: received.__setitem__(0, received[0] + 1), 10)
        pub = publisher_node.create_publisher(Tracks, "tracks", 10)  # the node's default QoS for `tracks`
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(listener_node)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        deadline = time.monotonic() + 10.0
        while pub.get_subscription_count() < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        if pub.get_subscription_count() < 1:
            raise RuntimeError("the benchmark's subscriber did not match the publisher within 10 s")

        times: dict[str, list[float]] = {name: [] for name in (*STAGES, "target_total", "total")}
        for i in range(warmup + frames):
            tracks = _tracks(points, 1_700_000_000_000_000_000 + i, camera, rng)
            t0 = time.perf_counter()
            msg = deserialize_message(wire, image_type)
            t1 = time.perf_counter()
            rgb = message_to_rgb(msg)
            t2 = time.perf_counter()
            frame_to_tensor(rgb, model_resolution, device)
            t3 = time.perf_counter()
            out = frame_tracks_to_msg(tracks, msg.header, rgb.shape[:2])
            t4 = time.perf_counter()
            pub.publish(out)
            t5 = time.perf_counter()
            if i >= warmup:
                for name, dt in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
                    times[name].append(dt)
                times["target_total"].append((t2 - t1) + (t5 - t3))
                times["total"].append(t5 - t0)
        deadline = time.monotonic() + 5.0
        while received[0] < warmup + frames and time.monotonic() < deadline:
            time.sleep(0.01)
        executor.shutdown()
        spinner.join(timeout=5)
        message_bytes = len(serialize_message(out))
    finally:
        rclpy.try_shutdown(context=context)
    return {
        "points": points,
        "camera": list(camera),
        "model_resolution": list(model_resolution),
        "encoding": "jpeg" if compressed else encoding,
        "frames": frames,
        "tracks_message_bytes": message_bytes,
        "image_message_bytes": len(wire),
        "delivered": received[0],
        "published": warmup + frames,
        "stages_ms": {name: summary_ms(values) for name, values in times.items()},
    }


def markdown(result: dict[str, Any]) -> str:
    m, r = result["machine"], result["result"]
    s = r["stages_ms"]
    rows = [
        ("take the image from DDS (deserialise)", "take", False),
        ("image message -> RGB", "convert", True),
        (f"resize to {r['model_resolution'][0]}x{r['model_resolution'][1]} (engine's first stage)", "resize", False),
        ("FrameTracks -> Tracks message", "fill", True),
        ("publish (serialise + deliver to 1 subscriber)", "publish", True),
        ("**conversion + fill + publish (target)**", "target_total", True),
        ("everything above", "total", False),
    ]
    lines = [
        f"Machine: {m['cpu']}, {m['cpu_count']} cores, torch {m['torch']}, Python {m['python']}. "
        f"{r['points']} points, camera {r['camera'][0]}x{r['camera'][1]} {r['encoding']} "
        f"({r['image_message_bytes']:,} B), Tracks message {r['tracks_message_bytes']:,} B, {r['frames']} frames, "
        f"{r['delivered']}/{r['published']} messages delivered.",
        "",
        "| stage | in target | median ms | p90 ms | p99 ms |",
        "|---|---|---:|---:|---:|",
    ]
    for label, key, counted in rows:
        t = s[key]
        lines.append(
            f"| {label} | {'yes' if counted else 'no'} | {t['median']:.3f} | {t['p90']:.3f} | {t['p99']:.3f} |"
        )
    lines += [
        "",
        f"Target: median conversion + fill + publish <= {TARGET_MS} ms: {'pass' if result['passed'] else 'FAIL'}.",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.node",
        description="Time the node's per-frame work outside the engine (image conversion, resize, Tracks fill, "
        "publish) over real rclpy and DDS.",
    )
    p.add_argument("--points", type=int, default=1024, help="tracked points (default 1024)")
    p.add_argument("--camera", type=parse_resolution, default=(480, 640), help="camera HxW (default 480x640)")
    p.add_argument(
        "--model-resolution", type=parse_resolution, default=(384, 512), help="engine input HxW (default 384x512)"
    )
    p.add_argument("--encoding", choices=tuple(SUPPORTED_ENCODINGS), default="rgb8", help="raw encoding (default rgb8)")
    p.add_argument("--compressed", action="store_true", help="JPEG sensor_msgs/CompressedImage instead of raw")
    p.add_argument("--frames", type=int, default=500, help="timed frames (default 500)")
    p.add_argument("--domain-id", type=int, default=None, help="ROS domain id (default: ROS_DOMAIN_ID or 0)")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the result as JSON")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.add_argument(
        "--target-ms",
        type=float,
        default=TARGET_MS,
        help=f"median conversion + fill + publish target (default {TARGET_MS})",
    )
    p.add_argument("--check", action="store_true", help="exit 1 when the median exceeds --target-ms")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.points < 1 or args.frames < 1:
        raise SystemExit("--points and --frames must be >= 1")
    r = run(
        args.points,
        args.camera,
        args.model_resolution,
        args.encoding,
        args.compressed,
        args.frames,
        domain_id=args.domain_id,
    )
    value = r["stages_ms"]["target_total"]["median"]
    result = {
        "schema": SCHEMA,
        "machine": machine_info(torch.device("cpu")),
        "result": r,
        "target": {"name": "conversion + fill + publish, median ms", "value": value, "threshold": args.target_ms},
        "passed": bool(value <= args.target_ms and r["delivered"] == r["published"]),
    }
    return emit_result(result, args, markdown, {"target": result["target"]}, "bench-node: target missed")


if __name__ == "__main__":
    sys.exit(main())
