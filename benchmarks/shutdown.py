"""Does the node process stop cleanly whenever it is signalled? Signal sequences x moments, against the real
node process over real DDS.

    python -m benchmarks.shutdown --repeat 10 --check        # 3 sequences x 4 moments x 10 runs
    python -m benchmarks.shutdown --repeat 2 --jobs 3 --check

Each run starts ``python -m cotracker3_ros.node`` (the small untrained configuration `SMALL_CONFIG`, so the
model builds in a fraction of a second) in its own session, waits for a moment of its life, then sends a signal
sequence to its whole process group (``os.killpg``, as a terminal does under ``ros2 launch``):

- sequences: ``SIGINT``; ``SIGINT x2`` (a second SIGINT 50 ms after the first); ``SIGTERM``;
- moments: ``importing`` (`IMPORTING_DELAY_S` after the start: Python is importing torch/rclpy),
  ``building`` (as soon as the node logs that it loads the model), ``idle`` (spinning, no input), ``tracking``
  (a peer publishes frames as fast as it can and the node has published tracks: the worker is mid-stream).

A run passes when the process exits with code 0 within `EXIT_TIMEOUT_S` of the first signal, and its output
holds neither ``Traceback`` nor ``terminate called``. ``--check`` exits 1 unless every run passes. The ``phase``
column says where the signals landed, from the node's own log line (``start abandoned`` or ``shutting down``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from cotracker3_ros.tools.demo import DEMO_ARCH

REPO_ROOT = Path(__file__).resolve().parents[1]  # the checkout: benchmarks/ is not installed
#: The small untrained configuration (the demo's architecture): builds and self-checks in a fraction of a second.
SMALL_CONFIG = ["-p", "checkpoint:=''", "-p", f"arch:='{json.dumps(DEMO_ARCH)}'", "-p", "model_resolution:=[64,96]",
                "-p", "window_len:=8", "-p", "step:=4", "-p", "iters:=1", "-p", "grid_size:=4"]
SEQUENCES: dict[str, list[tuple[signal.Signals, float]]] = {
    "SIGINT": [(signal.SIGINT, 0.0)],
    "SIGINT x2": [(signal.SIGINT, 0.0), (signal.SIGINT, 0.05)],
    "SIGTERM": [(signal.SIGTERM, 0.0)],
}
MOMENTS = ("importing", "building", "idle", "tracking")
#: Seconds after the start at which "importing" signals: past the interpreter's start (and the ROS wheels'
#: re-exec), well before torch and rclpy are loaded (seconds on a CPU).
IMPORTING_DELAY_S = 2.0
#: Longest time (s) a run may take to exit after its first signal.
EXIT_TIMEOUT_S = 30.0
#: Longest time (s) to reach a moment (a loaded 2-core machine imports torch in ~15 s).
START_TIMEOUT_S = 90.0
LOADING_LINE = "loading CoTracker3"
READY_LINE = "subscribed to"
BAD_OUTPUT = ("Traceback", "terminate called")


def node_env(domain_id: int) -> dict[str, str]:
    """The node's environment: a private DDS domain on this host, one OpenMP thread, this checkout's code."""
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain_id), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def domain_id() -> int:
    """A ROS domain for this process (test_ros_node uses 200..231, test_msgs_dds 100..199)."""
    return 60 + os.getpid() % 40


class NodeRun:
    """One node process in its own session (process group), its output in a file."""

    def __init__(self, ros_args: Sequence[str], log_path: Path, domain: int) -> None:
        self.log_path = log_path
        self.started = time.monotonic()
        with log_path.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cotracker3_ros.node", "--ros-args", *ros_args],
                cwd=REPO_ROOT, env=node_env(domain), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_output(self, text: str, timeout_s: float) -> bool:
        """Wait until the output holds ``text``; False at the timeout or when the process has exited."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.process.poll() is None:
            if text in self.output():
                return True
            time.sleep(0.01)
        return text in self.output()

    def wait_exit(self, timeout_s: float) -> int | None:
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """SIGKILL the process group (a run that did not exit in time)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def run_startup(ros_args: Sequence[str], log_path: Path, domain: int, timeout_s: float = 60.0) -> tuple[int, str]:
    """Start a node that must refuse to start; returns (exit code, output). -9 when it was still running at
    ``timeout_s`` (then killed)."""
    run = NodeRun(ros_args, log_path, domain)
    code = run.wait_exit(timeout_s)
    if code is None:
        run.kill()
        code = -9
    return code, run.output()


@dataclass
class Outcome:
    """One signalled run: exit code (None: killed after EXIT_TIMEOUT_S), seconds from the first signal to the
    exit, where the signal landed, and whether the output held a traceback or a C++ abort."""

    sequence: str
    moment: str
    code: int | None
    exit_s: float
    phase: str
    bad_output: bool
    log: str = ""

    @property
    def passed(self) -> bool:
        return self.code == 0 and not self.bad_output and self.exit_s <= EXIT_TIMEOUT_S


def _phase(output: str) -> str:
    """Where the first signal landed, from the node's log: the start-up stage it abandoned, or spinning."""
    match = re.search(r"received while starting \((.+?)\): start abandoned", output)
    if match:
        return match.group(1)
    return "spinning" if "received: shutting down" in output else "unknown"


class _Feeder:
    """Publishes synthetic frames to a node as fast as it can, and counts its tracks (the ``tracking``
    moment): the node's worker is busy, its queue full."""

    def __init__(self, namespace: str, domain: int) -> None:
        from cotracker3_msgs.msg import Tracks
        from sensor_msgs.msg import Image
        from std_msgs.msg import Header

        from cotracker3_ros.conversions import ns_to_time, rgb_to_image
        from cotracker3_ros.tools.demo import SyntheticScene
        from cotracker3_ros.tools.node_peer import DdsPeer

        self.peer = DdsPeer(f"shutdown_feeder_{os.getpid()}_{threading.get_ident() % 100000}", domain)
        self.tracks = 0
        self.peer.node.create_subscription(Tracks, f"{namespace}/tracks", self._on_tracks, 100)
        self.pub = self.peer.node.create_publisher(Image, f"{namespace}/image", 10)
        self.peer.start()
        scene = SyntheticScene(96, 128)
        self._frames = [scene.frame(i) for i in range(16)]
        self._message = lambda i: rgb_to_image(
            self._frames[i % 16], Header(stamp=ns_to_time(time.time_ns()), frame_id="camera")
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._publish, daemon=True)
        self._thread.start()

    def _on_tracks(self, msg: object) -> None:
        self.tracks += 1

    def _publish(self) -> None:
        i = 0
        while not self._stop.is_set():
            self.pub.publish(self._message(i))
            i += 1
            time.sleep(0.01)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.peer.close()


def signal_run(sequence: str, moment: str, log_dir: Path, domain: int, index: int = 0) -> Outcome:
    """Start a node, reach ``moment``, send ``sequence`` to its process group; the outcome."""
    namespace = f"/shutdown_{os.getpid()}_{index}"
    run = NodeRun(["-r", f"__ns:={namespace}", *SMALL_CONFIG], log_dir / f"{index:03d}.log", domain)
    feeder = None
    try:
        if moment == "importing":
            time.sleep(max(0.0, IMPORTING_DELAY_S - (time.monotonic() - run.started)))
        elif moment == "building":
            run.wait_output(LOADING_LINE, START_TIMEOUT_S)
        else:
            run.wait_output(READY_LINE, START_TIMEOUT_S)
            if moment == "idle":
                time.sleep(0.3)
            else:
                from cotracker3_ros.tools.node_peer import wait_until

                feeder = _Feeder(namespace, domain)
                wait_until(lambda: feeder.tracks >= 2 or run.process.poll() is not None, START_TIMEOUT_S)
        first = time.monotonic()
        for sig, delay in SEQUENCES[sequence]:
            time.sleep(max(0.0, first + delay - time.monotonic()))
            if run.process.poll() is None:
                os.killpg(run.process.pid, sig)
        code = run.wait_exit(EXIT_TIMEOUT_S)
        exit_s = time.monotonic() - first
    finally:
        if feeder is not None:
            feeder.close()
        run.kill()
    output = run.output()
    return Outcome(sequence, moment, code, exit_s, _phase(output), any(b in output for b in BAD_OUTPUT), output)


def run_matrix(
    sequences: Sequence[str], moments: Sequence[str], repeat: int, jobs: int, log_dir: Path
) -> list[Outcome]:
    """Every sequence x moment, ``repeat`` times, ``jobs`` runs at a time."""
    cases = [(s, m) for _ in range(repeat) for s in sequences for m in moments]
    domain = domain_id()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(signal_run, s, m, log_dir, domain, i) for i, (s, m) in enumerate(cases)]
        return [f.result() for f in futures]


def table(outcomes: Sequence[Outcome]) -> tuple[str, bool]:
    """Markdown table (one row per sequence x moment) and whether every run passed."""
    rows = ["| sequence | moment | runs | exit codes | max s to exit | tracebacks | phases | result |",
            "|---|---|---:|---|---:|---:|---|---|"]
    ok = True
    keys = list(dict.fromkeys((o.sequence, o.moment) for o in outcomes))
    for sequence, moment in keys:
        group = [o for o in outcomes if (o.sequence, o.moment) == (sequence, moment)]
        codes = sorted({"killed" if o.code is None else str(o.code) for o in group})
        phases = sorted({o.phase for o in group})
        passed = all(o.passed for o in group)
        ok &= passed
        rows.append(f"| {sequence} | {moment} | {len(group)} | {', '.join(codes)} | "
                    f"{max(o.exit_s for o in group):.2f} | {sum(o.bad_output for o in group)} | "
                    f"{', '.join(phases)} | {'PASS' if passed else 'FAIL'} |")
    return "\n".join(rows), ok


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.shutdown", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=10, help="runs per sequence x moment")
    parser.add_argument("--jobs", type=int, default=2, help="node processes at a time")
    parser.add_argument("--sequences", default=",".join(SEQUENCES), help=f"among {', '.join(SEQUENCES)}")
    parser.add_argument("--moments", default=",".join(MOMENTS), help=f"among {', '.join(MOMENTS)}")
    parser.add_argument("--logs", type=Path, help="folder for the node logs (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="write every run's outcome here")
    parser.add_argument("--check", action="store_true", help="exit 1 unless every run passes")
    args = parser.parse_args(argv)
    sequences = [s.strip() for s in args.sequences.split(",")]
    moments = [m.strip() for m in args.moments.split(",")]
    unknown = sorted(set(sequences) - set(SEQUENCES)) + sorted(set(moments) - set(MOMENTS))
    if unknown or args.repeat < 1 or args.jobs < 1:
        parser.error(f"unknown sequences/moments {unknown}, or --repeat/--jobs below 1")
    with tempfile.TemporaryDirectory(prefix="ct3_shutdown_") as tmp:
        log_dir = args.logs or Path(tmp)
        log_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        outcomes = run_matrix(sequences, moments, args.repeat, args.jobs, log_dir)
    text, ok = table(outcomes)
    print(text)
    for o in outcomes:
        if not o.passed:
            print(f"\n--- FAILED: {o.sequence} at {o.moment}: exit {o.code} after {o.exit_s:.2f} s\n{o.log[-3000:]}")
    if args.json:
        args.json.write_text(json.dumps([{**asdict(o), "passed": o.passed} for o in outcomes], indent=1))
    print(f"shutdown: {sum(o.passed for o in outcomes)}/{len(outcomes)} runs passed in "
          f"{time.monotonic() - started:.0f} s -> {'PASS' if ok else 'FAIL'}")
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
