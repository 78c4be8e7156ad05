"""``cotracker3-replay-eval``: play bags to the real tracker node over DDS and score what it publishes.

The node runs as its own process (``python -m cotracker3_ros.node --ros-args --params-file ... -p ...``, the
same code as the ``tracker_node`` executable), started here with the model settings of ``cotracker3-bag-eval``
(same flags, same seeded weights) and ``grid_size 0``, or an already running node is used (``--connect``).
For each bag:

1. the node is reset (its private ``~/reset`` service) and the images are published with their recorded bytes
   (so with their recorded header stamps) on the bag's image topic, reliably;
2. right after the image of a frame holding ground-truth queries ("first" mode: each track's first visible
   frame), they are added through the ``~/add_points`` service with that image's stamp and the track ids as ids;
   a call made before the node has taken the image is answered "not a frame in the window" and is repeated;
3. at the end of the bag the node is reset again, which flushes its window, as ``cotracker3-bag-eval`` does;
4. every ``tracks`` message is recorded with its arrival time and scored like the bag evaluation.

Pacing: ``lockstep`` (default) publishes a frame only while fewer than ``--max-in-flight`` published frames
await their tracks and waits for each frame's queries to be accepted before the next frame, with a node queue
deep enough that nothing is dropped: the node sees exactly what ``cotracker3-bag-eval`` feeds the engine, so
the scores agree. ``realtime`` publishes at the recorded rate (times ``--rate``), optionally with ``/clock``,
with the node's own queue size: a node slower than the camera drops frames, which are reported and scored as
missing.

Reported per clip, besides the scores: frames dropped / rejected by the node (its /diagnostics), frames without
tracks, queries it refused, lag (publication of an image to arrival of its tracks, wall clock) and the node's
step latency. ``--compare-offline`` also runs the bag evaluation's streaming engine in this process and reports
the largest difference of the tracks and of the scores.
"""

from __future__ import annotations

import argparse
import os
import queue
import shlex
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from cotracker3_msgs.srv import AddPoints
from rosgraph_msgs.msg import Clock
from std_srvs.srv import Trigger
from tqdm import tqdm

from cotracker3_core.evaluation.scoring import FrameOutput, Queries, first_queries, predictions_from_outputs, score_clip
from cotracker3_core.streaming import NO_FRAME_YET, NOT_IN_WINDOW, StreamingTracker
from cotracker3_core.windows import frames_emitted

from .. import diagnostics as diag
from ..conversions import ns_to_time
from ..params import stream_config_from_params
from .bag_eval import (
    add_input_arguments,
    add_output_arguments,
    clip_result,
    read_bag,
    run_stream,
    write_clip_outputs,
)
from .bag_tools import BagClip, CliHelpFormatter, find_bags
from .eval_report import run_report_command, summarize_latency, write_reports
from .node_peer import LOCKSTEP_QUEUE_SIZE, NodeProcess, ReplayPeer, default_node_command, node_ros_args
from .settings import MODEL_PARAMS, add_model_arguments, materialize_weights, model_values, resolved_values

__all__ = ["NodeProcess", "ReplayPeer", "build_parser", "evaluate", "main", "replay_clip"]

PROG = "cotracker3-replay-eval"
PACES = ("lockstep", "realtime")
DEFAULT_NAMESPACE = "/cotracker3_eval"
RETRY_PERIOD_S = 0.005
#: The node's diagnostic totals a replay reports, by the name the report gives them.
_COUNTERS = {
    "frames received": diag.RECEIVED_TOTAL,
    "dropped frames": diag.DROPPED_TOTAL,
    "rejected frames": diag.REJECTED_TOTAL,
    "frames published": diag.PUBLISHED_TOTAL,
}
#: Answers of add_points that mean "the image is not in the engine yet": repeat the call.
_NOT_YET = (NOT_IN_WINDOW, NO_FRAME_YET)


# --- one clip ----------------------------------------------------------------------------------------------


@dataclass
class ReplayRun:
    """What one clip's replay produced."""

    outputs: dict[int, FrameOutput] = field(default_factory=dict)
    lag_s: list[float] = field(default_factory=list)
    published: int = 0
    duplicates: int = 0
    refused_queries: list[str] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    node_step_latency_ms: dict[str, float | None] = field(default_factory=dict)


def _add_queries(
    peer: ReplayPeer, stamp: int, xy: np.ndarray, ids: Sequence[int], timeout_s: float, stop: threading.Event | None
) -> str | None:
    """add_points until accepted; returns None, or the node's reason for refusing them."""
    request = AddPoints.Request(stamp=ns_to_time(stamp))
    request.x = xy[:, 0].astype(np.float32).tolist()
    request.y = xy[:, 1].astype(np.float32).tolist()
    request.ids = [int(i) for i in ids]
    deadline = time.monotonic() + timeout_s
    while True:
        response = peer.call(peer.add_points, request, timeout_s)
        if response.success:
            return None
        retriable = any(text in response.message for text in _NOT_YET)
        if not retriable or time.monotonic() > deadline or (stop is not None and stop.is_set()):
            return response.message
        time.sleep(RETRY_PERIOD_S)


def replay_clip(
    peer: ReplayPeer,
    clip: BagClip,
    queries: Queries,
    *,
    pace: str,
    rate: float,
    max_in_flight: int,
    window_len: int,
    step: int,
    timeout_s: float,
    query_retry_s: float = 2.0,
    progress: bool = True,
) -> ReplayRun:
    """Replay one clip to the node and collect its tracks (see the module docstring).

    ``query_retry_s``: realtime pace, how long refused add_points calls are repeated (the image may still be
    queued in the node) before the queries count as refused; lockstep repeats them up to ``timeout_s``.
    """
    run = ReplayRun()
    response = peer.call(peer.reset, Trigger.Request(), timeout_s)
    if not response.success:
        raise RuntimeError(f"the node refused to reset: {response.message}")
    reset_at = time.monotonic()
    start_values = peer.wait_diagnostics(reset_at, timeout_s)
    first_message = peer.received_count()
    stamps = [int(s) for s in clip.stamps]
    own = set(stamps)
    published_at: dict[int, float] = {}

    def tracked() -> int:
        return len({r.stamp for r in peer.received_since(first_message) if r.stamp in own})

    # Realtime: queries are added by a helper thread so that publishing keeps the camera's pace.
    pending: queue.Queue[tuple[int, np.ndarray] | None] = queue.Queue()
    stop = threading.Event()

    def add_worker() -> None:
        while (item := pending.get()) is not None:
            stamp, chosen = item
            refused = _add_queries(peer, stamp, queries.xy[chosen], queries.ids[chosen], query_retry_s, stop)
            if refused:
                run.refused_queries.append(f"frame stamped {stamp}: {refused}")

    worker = threading.Thread(target=add_worker, name="replay_eval_queries", daemon=True)
    if pace == "realtime":
        worker.start()
    t0 = time.monotonic()
    for index in tqdm(range(clip.num_frames), desc=f"{clip.name} (replay)", unit="frame", disable=not progress):
        stamp = stamps[index]
        if pace == "lockstep":
            if not peer.wait_for(lambda i=index: i - tracked() <= max_in_flight, timeout_s):
                raise RuntimeError(
                    f"{clip.name}: the node published no tracks for {timeout_s:.0f} s ({tracked()} of {index} "
                    "frames tracked); is it running and subscribed to the image topic?"
                )
        else:
            due = t0 + (stamp - stamps[0]) * 1e-9 / rate
            time.sleep(max(0.0, due - time.monotonic()))
        if peer.clock_pub is not None:
            peer.clock_pub.publish(Clock(clock=ns_to_time(stamp)))
        peer.image_pub.publish(clip.raw_images[index])
        published_at[stamp] = time.monotonic()
        run.published += 1
        chosen = queries.on_frame(index)
        if chosen.size:
            if pace == "lockstep":
                refused = _add_queries(peer, stamp, queries.xy[chosen], queries.ids[chosen], timeout_s, None)
                if refused:
                    run.refused_queries.append(f"frame {index}: {refused}")
            else:
                pending.put((stamp, chosen))
    if pace == "realtime":
        pending.put(None)
        worker.join(timeout=timeout_s + 5)
        stop.set()

    # The final reset flushes the window, but waits only a bounded time (the node's RESET_WAIT_S) for the images
    # still queued: call it once every image has been received and taken from the queue and, in lockstep (nothing
    # dropped), once the tracks of every window-completing image are out, so that at most step - 1 encodings
    # remain when the reset comes.
    base_received = diag.counter(start_values, diag.RECEIVED_TOTAL)
    expected = frames_emitted(run.published, window_len, step) if pace == "lockstep" else 0

    def settled() -> bool:
        values = peer.diagnostics_after(reset_at)
        if values is None or tracked() < expected:
            return False
        received = diag.counter(values, diag.RECEIVED_TOTAL) - base_received
        return received >= run.published  # the worker takes an image only to track it at once

    if not peer.wait_for(settled, timeout_s, 0.01):
        raise RuntimeError(
            f"{clip.name}: the node did not take all {run.published} images within {timeout_s:.0f} s "
            f"({tracked()} tracked)"
        )
    flush_at = time.monotonic()
    response = peer.call(peer.reset, Trigger.Request(), timeout_s)
    if not response.success:
        raise RuntimeError(f"the node refused the final reset (flush): {response.message}")
    done_at = time.monotonic()
    peer.wait_for(lambda: tracked() >= run.published, 2.0, 0.01)
    end_values = peer.wait_diagnostics(done_at, timeout_s)

    for item in peer.received_since(first_message):
        if item.stamp not in own:
            continue
        if item.stamp in run.outputs:
            run.duplicates += 1
            continue
        run.outputs[item.stamp] = item.output
        # The frames the final reset flushes wait for the end of the bag, not for the tracker: no lag for them.
        if item.arrival < flush_at:
            run.lag_s.append(item.arrival - published_at[item.stamp])
    run.counters = {
        name: diag.counter(end_values, key) - diag.counter(start_values, key)
        for name, key in _COUNTERS.items()
    }
    periods = peer.diagnostics_between(reset_at, time.monotonic())
    means = [float(v[diag.STEP_LATENCY_MEAN]) for v in periods if diag.is_number(v.get(diag.STEP_LATENCY_MEAN))]
    maxes = [float(v[diag.STEP_LATENCY_MAX]) for v in periods if diag.is_number(v.get(diag.STEP_LATENCY_MAX))]
    run.node_step_latency_ms = {
        "mean_ms": float(np.mean(means)) if means else None,
        "max_ms": float(np.max(maxes)) if maxes else None,
    }
    return run


# --- command line -------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Replay rosbag2 clips with ground truth to the CoTracker3 tracker node over DDS, add the "
        "ground-truth queries through its ~/add_points service, record its tracks and score them ('first' mode).",
        formatter_class=CliHelpFormatter,
    )
    add_input_arguments(parser)
    add_model_arguments(parser)
    node = parser.add_argument_group("node and DDS")
    node.add_argument("--connect", action="store_true", help="use a running node named tracker_node in "
                      "--namespace instead of starting one (it should run with grid_size 0 and a reliable image "
                      "subscription)")
    node.add_argument("--namespace", default=DEFAULT_NAMESPACE, help="the node's namespace")
    node.add_argument("--node-command", help="command that starts the node (default: this python -m "
                      "cotracker3_ros.node); --ros-args and the parameters are appended")
    node.add_argument("--node-arg", action="append", default=[], help="extra argument after --ros-args (repeat)")
    node.add_argument("--node-threads", type=int, default=0, help="OMP_NUM_THREADS of the node process (0: unset)")
    node.add_argument("--domain-id", type=int, help="ROS_DOMAIN_ID (default: the environment's, else 0)")
    node.add_argument("--localhost", action="store_true", help="keep DDS discovery on this host")
    node.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the node at any point")
    pace = parser.add_argument_group("pacing")
    pace.add_argument("--pace", choices=PACES, default="lockstep", help="lockstep: as fast as the node keeps up, "
                      "nothing dropped; realtime: at the recorded rate, the node's queue drops what it cannot take")
    pace.add_argument("--rate", type=float, default=1.0, help="realtime: playback speed factor")
    pace.add_argument("--clock", action="store_true", help="publish /clock with the image stamps (node on sim time)")
    pace.add_argument("--query-retry", type=float, default=2.0, help="realtime: seconds a refused add_points call "
                      "is repeated (the image may still wait in the node's queue)")
    pace.add_argument("--max-in-flight", type=int, help="lockstep: images published but not yet tracked, at most "
                      "(default window_len + step)")
    pace.add_argument("--queue-size", type=int, help="node queue size (default: 100 in lockstep, the node's in "
                      "realtime)")
    parser.add_argument("--compare-offline", action="store_true", help="also run the bag evaluation's streaming "
                        "engine here and report the largest track and score differences")
    add_output_arguments(parser, "replay_eval_results")
    return parser


def _child_env(domain_id: int, localhost: bool, threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(domain_id)
    if localhost:
        env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    if threads > 0:
        env["OMP_NUM_THREADS"] = str(threads)
    # `python -m cotracker3_ros.node` must import this very package (a working tree or an install).
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    return env


def _absolute(topic: str, namespace: str) -> str:
    return topic if topic.startswith("/") else f"{namespace.rstrip('/')}/{topic}"


def _offline_comparison(
    clip: BagClip, tracker: StreamingTracker, queries: Queries, run: ReplayRun, progress: bool
) -> dict[str, Any]:
    """The bag evaluation's engine run on the same clip, against what the node published."""
    stream = run_stream(clip, tracker, queries, progress)
    gt = clip.ground_truth
    offline = score_clip(gt, queries, predictions_from_outputs(stream.first, clip.stamps, queries), clip.size_hw)
    live = score_clip(gt, queries, predictions_from_outputs(run.outputs, clip.stamps, queries), clip.size_hw)
    keys = ("AJ", "delta_avg", "OA")
    return {
        **_compare(stream.first, run.outputs),
        "max_abs_score_diff": max(abs(offline[k] - live[k]) for k in keys),
        "offline": {k: offline[k] for k in keys},
    }


def _compare(offline: Mapping[int, FrameOutput], live: Mapping[int, FrameOutput]) -> dict[str, Any]:
    """Largest position difference (px) and visibility disagreements over the entries both have."""
    worst, flips, compared = 0.0, 0, 0
    for stamp, a in offline.items():
        b = live.get(stamp)
        if b is None:
            continue
        index = {int(i): k for k, i in enumerate(b.ids)}
        for k, track_id in enumerate(a.ids):
            j = index.get(int(track_id))
            if j is None:
                continue
            compared += 1
            worst = max(worst, float(np.abs(a.xy[k].astype(np.float64) - b.xy[j]).max()))
            flips += int(bool(a.visible[k]) != bool(b.visible[j]))
    return {"compared_points": compared, "max_abs_xy_diff_px": worst, "visible_disagreements": flips}


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Run the replay evaluation ``args`` describe; returns {"results", "settings", "files"}."""
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.rate <= 0:
        raise ValueError(f"--rate must be > 0, got {args.rate}")
    progress = not args.no_progress
    bags = find_bags(args.bags)
    clips = [read_bag(path, args) for path in bags]
    kinds = {(c.image_topic, c.image_type) for c in clips}
    if len(kinds) > 1:
        raise ValueError(f"the bags use different image topics or types {sorted(kinds)}; replay them separately")
    image_topic, image_type = kinds.pop()
    namespace = "/" + args.namespace.strip("/") if args.namespace.strip("/") else ""
    image_topic = _absolute(image_topic, namespace)
    domain_id = args.domain_id if args.domain_id is not None else int(os.environ.get("ROS_DOMAIN_ID", "0") or 0)
    if args.localhost:
        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    requested = model_values(args)
    results: list[dict[str, Any]] = []
    process: NodeProcess | None = None
    peer: ReplayPeer | None = None
    with tempfile.TemporaryDirectory(prefix="ct3_replay_eval_") as tmp:
        if args.connect:  # the node's own settings are read below
            values, weights = dict(requested), ""
        else:
            values, weights = materialize_weights(requested, args.seed, Path(tmp))
        window_len, step = int(values["window_len"]), int(values["step"])
        try:
            if not args.connect:
                _max_in_flight(args.max_in_flight, window_len, step)  # refuse bad pacing before starting anything
            peer = ReplayPeer(domain_id, namespace, image_topic, clips[0].message_class, args.clock)
            if not args.connect:
                default_queue = LOCKSTEP_QUEUE_SIZE if args.pace == "lockstep" else values["queue_size"]
                queue_size = args.queue_size or default_queue
                ros_args = node_ros_args(
                    values,
                    params_file=args.params_file,
                    namespace=namespace or "/",
                    image_topic=image_topic,
                    compressed=clips[0].compressed,
                    queue_size=queue_size,
                    use_sim_time=args.clock,
                    extra=args.node_arg,
                )
                command = shlex.split(args.node_command) if args.node_command else default_node_command()
                env = _child_env(domain_id, args.localhost, args.node_threads)
                process = peer.process = NodeProcess.start(command, ros_args, env, args.out / "node.log")
            else:
                node_values = peer.node_parameters([*MODEL_PARAMS, "grid_size", "queue_size"], args.timeout)
                if node_values.get("grid_size"):
                    print(f"{PROG}: warning: the node tracks an automatic {node_values['grid_size']}x grid too; its "
                          "points change the tracks of the queried ones", file=sys.stderr)
                node_values = resolved_values({**values, **{k: node_values[k] for k in MODEL_PARAMS}})
                window_len, step = int(node_values["window_len"]), int(node_values["step"])
                values = requested = {**values, **{k: node_values[k] for k in MODEL_PARAMS}}
                weights = str(node_values["checkpoint"]) or "UNTRAINED (node's own random weights)"
            _wait_ready(peer, process, args.timeout)
            max_in_flight = _max_in_flight(args.max_in_flight, window_len, step)
            offline_tracker = None
            if args.compare_offline and not values["checkpoint"]:
                print(f"{PROG}: warning: the node runs its own random weights (no checkpoint): nothing to compare "
                      "offline; --compare-offline ignored", file=sys.stderr)
            elif args.compare_offline:
                offline_tracker = StreamingTracker.from_config(stream_config_from_params(values))
            for clip in clips:
                queries = first_queries(clip.ground_truth)
                run = replay_clip(
                    peer, clip, queries, pace=args.pace, rate=args.rate, max_in_flight=max_in_flight,
                    window_len=window_len, step=step, timeout_s=args.timeout, query_retry_s=args.query_retry,
                    progress=progress,
                )  # fmt: skip
                pred = predictions_from_outputs(run.outputs, clip.stamps, queries)
                extra: dict[str, Any] = {
                    "pace": args.pace,
                    "published_frames": run.published,
                    "frames_without_tracks": len(pred.frames_without_output),
                    "dropped_frames": run.counters.get("dropped frames", 0),
                    "rejected_frames": run.counters.get("rejected frames", 0),
                    "duplicate_tracks": run.duplicates,
                    "refused_queries": run.refused_queries,
                    "lag": summarize_latency(run.lag_s),
                    "step_latency": run.node_step_latency_ms,
                }
                if offline_tracker is not None:
                    extra["offline_comparison"] = _offline_comparison(clip, offline_tracker, queries, run, progress)
                results.append(clip_result(clip, "first", queries, pred, extra))
                write_clip_outputs(args.out, clip, "first", queries, pred, args.png_frames, args.save_tracks)
        finally:
            exit_code = process.stop() if process is not None else None
            if peer is not None:
                peer.close()
        if exit_code not in (None, 0):
            print(f"{PROG}: warning: the node exited with {exit_code}; log: {process.log_path}", file=sys.stderr)
    settings = {
        "tool": PROG,
        "weights": weights,
        **{k: requested[k] for k in MODEL_PARAMS if k != "checkpoint"},
        "pace": args.pace if args.pace == "lockstep" else f"realtime x{args.rate:g}",
        "node": "connected" if args.connect else "started",
        "namespace": namespace or "/",
        "ros_domain_id": domain_id,
        "torch_threads (this process)": torch.get_num_threads(),
    }
    files = write_reports(args.out, "CoTracker3 live replay evaluation", results, settings)
    return {"results": results, "settings": settings, "files": files}


def _max_in_flight(requested: int | None, window_len: int, step: int) -> int:
    value = requested or (window_len + step)
    if value < window_len:
        raise ValueError(f"--max-in-flight must be >= window_len ({window_len}): the first tracks need as many")
    return value


def _wait_ready(peer: ReplayPeer, process: NodeProcess | None, timeout_s: float) -> None:
    """The node's services answer and it subscribes to our image topic (and we to its tracks)."""

    def ready() -> bool:
        return (
            peer.reset.service_is_ready()
            and peer.add_points.service_is_ready()
            and peer.image_pub.get_subscription_count() >= 1
            and peer.tracks_sub.get_publisher_count() >= 1
        )

    if not peer.wait_for(ready, timeout_s, 0.05):
        where = f"\n{process.log_tail()}" if process is not None else ""
        raise RuntimeError(f"the tracker node in {peer.namespace or '/'} was not ready within {timeout_s:.0f} s{where}")


def main(argv: Sequence[str] | None = None) -> int:
    errors = (ValueError, FileNotFoundError, RuntimeError)
    return run_report_command(PROG, evaluate, build_parser().parse_args(argv), errors)

if __name__ == "__main__":
    sys.exit(main())

