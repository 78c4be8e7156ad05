"""Does the node keep up with a live camera? A camera process publishes, the node tracks, nothing may drop.

    python -m benchmarks.realtime --markdown --check            # lite, 640x480 rgb8 at 15 Hz, 300 frames, 64 points

The node runs as its own process (``python -m cotracker3_ros.node``, its default weights ``lite`` and
settings, an automatic 8x8 grid = 64 points); this process publishes frames of a camera moving over a
photograph (``tools.demo.demo_camera``) at the given rate on a reliable topic, paced on the wall clock,
and records every ``tracks`` message and the node's ``/diagnostics``. After the last frame it calls the
node's reset, which flushes the frames still in the window. ``--check`` fails unless every published frame
came back as tracks and the node counted no frame dropped or lost. Beside it, the engine alone (``StreamingTracker``
pushed the same frames back to back, 2 threads) gives the engine's frames per second.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from std_srvs.srv import Trigger

from cotracker3_core.queries import grid_points
from cotracker3_core.streaming import StreamConfig, StreamingTracker
from cotracker3_ros import diagnostics as diag
from cotracker3_ros.conversions import ns_to_time, rgb_to_image
from cotracker3_ros.tools.demo import camera_frame, demo_camera
from cotracker3_ros.tools.node_peer import NodeProcess, ReplayPeer, default_node_command

NAMESPACE = "/realtime"
TOPIC = "/realtime/camera/image_raw"


def engine_fps(frames: Sequence[np.ndarray], checkpoint: str, grid_size: int, threads: int) -> float:
    """Frames per second of the engine alone, pushed back to back (the first window is not timed)."""
    torch.set_num_threads(threads)
    tracker = StreamingTracker.from_config(StreamConfig(checkpoint=checkpoint, device="cpu"))
    tracker.push(frames[0], 1)
    tracker.add_queries(grid_points(grid_size, frames[0].shape[:2])[0].numpy(), stamp=1)  # the node's grid
    warm = tracker.config.window_len
    for i in range(1, warm):
        tracker.push(frames[i], i + 1)
    started = time.perf_counter()
    for i in range(warm, len(frames)):
        tracker.push(frames[i], i + 1)
    return (len(frames) - warm) / (time.perf_counter() - started)


def run_node(frames: Sequence[np.ndarray], rate: float, node_params: Mapping[str, str], log: Path,
             camera_qos: QoSProfile | None = None, tail: int = 0) -> dict:
    """Publish ``frames`` at ``rate`` Hz to a node process started with ``node_params`` (name -> ROS value);
    return counts, lags and the node's diagnostics.

    camera_qos: the image publisher's QoS; None: reliable (nothing may be lost on the way).
    tail: frames published at 5 Hz after the others (counted in ``published``): their sequence numbers let the
        node count frames lost at the end of the fast part.
    """
    domain = 150 + os.getpid() % 50
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    ros_args = ["-r", f"__ns:={NAMESPACE}", "-r", f"image:={TOPIC}", "-p", "diagnostics_period:=0.5",
                "-p", f"qos_overrides.{NAMESPACE}/tracks.publisher.depth:=1000",
                "-p", f"qos_overrides.{NAMESPACE}/tracks.publisher.reliability:=reliable"]
    if camera_qos is None:
        ros_args += ["-p", f"qos_overrides.{TOPIC}.subscription.reliability:=reliable"]
    for name, value in node_params.items():
        ros_args += ["-p", f"{name}:={value}"]
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    node = NodeProcess.start(default_node_command(), ros_args, env, log)
    peer = ReplayPeer(domain, NAMESPACE, TOPIC, Image, clock=False)
    peer.process = node
    publisher = peer.image_pub if camera_qos is None else peer.node.create_publisher(Image, TOPIC, camera_qos)
    try:
        if not peer.wait_for(lambda: publisher.get_subscription_count() > 0
                             and peer.tracks_sub.get_publisher_count() > 0, 120.0, 0.05):
            raise RuntimeError(f"the node did not come up:\n{node.log_tail()}")
        time.sleep(1.0)
        sent: dict[int, float] = {}
        late = 0.0  # the camera's own worst delay against its schedule (seconds): a stall on this side
        start = time.monotonic() + 0.5
        times = [i / rate for i in range(len(frames))]
        times += [times[-1] + (k + 1) * 0.2 for k in range(tail)]
        for i, at in enumerate(times):
            delay = start + at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            late = max(late, -delay)
            stamp = time.time_ns()
            sent[stamp] = time.monotonic()
            if i == len(frames) - 1:
                fast_s = sent[stamp] - start
            frame = frames[min(i, len(frames) - 1)]
            publisher.publish(rgb_to_image(frame, Header(stamp=ns_to_time(stamp), frame_id="camera")))
        publish_s = time.monotonic() - start
        last = -1
        while peer.received_count() != last:  # until the node has caught up (nothing new for 2 s)
            last = peer.received_count()
            time.sleep(2.0)
        before_reset = time.monotonic()
        peer.call(peer.reset, Trigger.Request(), 30.0)
        values = peer.wait_diagnostics(time.monotonic() + 0.1, 10.0)
        received = {r.stamp: r.arrival for r in peer.received_since(0)}
        lags = [1000.0 * (received[s] - sent[s]) for s in sent if s in received and received[s] <= before_reset]
        periods = peer.diagnostics_between(start, before_reset)
        steps = [float(v[diag.STEP_LATENCY_P50]) for v in periods if diag.is_number(v.get(diag.STEP_LATENCY_P50))]
        return {
            "published": len(times),
            "publish_rate_hz": (len(frames) - 1) / max(fast_s, 1e-9),
            "publish_s": publish_s,
            "publish_late_ms_max": 1000.0 * late,
            "tracked": len(set(received) & set(sent)),
            # Indices of the published frames that never came back as tracks: where in the run the losses were.
            "missing": [i for i, s in enumerate(sent) if s not in received],
            "node_received": int(values[diag.RECEIVED_TOTAL]),
            "node_dropped": int(values[diag.DROPPED_TOTAL]),
            "node_lost": int(values[diag.LOST_TOTAL]),
            "node_rejected": int(values[diag.REJECTED_TOTAL]),
            "lag_ms_p50": float(np.percentile(lags, 50)) if lags else float("nan"),
            "lag_ms_p90": float(np.percentile(lags, 90)) if lags else float("nan"),
            "step_ms_p50": float(np.median(steps)) if steps else float("nan"),
        }
    finally:
        peer.close()
        node.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.realtime", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="lite")
    parser.add_argument("--rate", type=float, default=15.0, help="camera rate (Hz)")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--size", type=int, nargs=2, default=(480, 640), metavar=("H", "W"))
    parser.add_argument("--grid-size", type=int, default=8, help="grid of grid_size^2 points (8: 64)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the engine-only run")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a node parameter (ROS syntax), repeatable, e.g. --param num_threads:=2")
    parser.add_argument("--log", type=Path, default=Path("runs/realtime/node.log"), help="the node's output")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--check", action="store_true", help="exit 1 unless every frame was tracked, none dropped")
    args = parser.parse_args(argv)
    camera = demo_camera(args.frames, *args.size)
    frames = [camera_frame(camera, t) for t in range(args.frames)]
    params = {"checkpoint": f"'{args.checkpoint}'", "grid_size": str(args.grid_size)}
    params.update(item.split(":=", 1) for item in args.param)
    node = run_node(frames, args.rate, params, args.log)
    fps = engine_fps(frames, args.checkpoint, args.grid_size, args.threads)
    result = {"checkpoint": args.checkpoint, "size": list(args.size), "rate_hz": args.rate,
              "points": args.grid_size**2, **node, "engine_fps": fps}
    ok = node["tracked"] == node["published"] and node["node_dropped"] == node["node_lost"] == 0
    if args.markdown:
        print("| checkpoint | camera | points | published | tracked | dropped / lost (node) | lag p50 / p90 ms | "
              "engine fps |\n|---|---|---:|---:|---:|---:|---:|---:|")
        print(f"| {args.checkpoint} | {args.size[1]}x{args.size[0]} @ {node['publish_rate_hz']:.1f} Hz | "
              f"{args.grid_size**2} | {node['published']} | {node['tracked']} | "
              f"{node['node_dropped']} / {node['node_lost']} | "
              f"{node['lag_ms_p50']:.0f} / {node['lag_ms_p90']:.0f} | {fps:.1f} |")
    else:
        print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    print(f"realtime: {node['tracked']}/{node['published']} frames tracked, {node['node_dropped']} dropped, "
          f"{node['node_lost']} lost -> "
          f"{'PASS' if ok else 'FAIL'}")
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
