"""Start-up and shutdown of the tracker node process (issue #12): the real process (``python -m
cotracker3_ros.node``), real rclpy, real Fast DDS, no mocks.

- every bad parameter, parameters file or checkpoint ends in exactly one ``[FATAL]`` line naming the problem and
  exit code 2, without a traceback;
- the small untrained configuration starts, publishes /diagnostics and idles until SIGINT (exit 0);
- SIGINT, SIGINT twice 50 ms apart and SIGTERM, sent to the process group, stop it with exit code 0 whatever it is
  doing (2 runs per sequence spread over the four moments of `benchmarks.shutdown`, which runs the full matrix);
- at run time, NaN tracks are sent as not visible and raise the diagnostics to ERROR (a node in this process).

Every process of the module is started by one fixture, a few at a time, so that their start-ups (torch imports)
overlap; the tests then read the outcomes.
"""

from __future__ import annotations

import json
import signal
import struct
import threading
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
import rclpy
import torch
from cotracker3_msgs.msg import Tracks
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from benchmarks.shutdown import SMALL_CONFIG, NodeRun, Outcome, domain_id, run_startup, signal_run
from cotracker3_core.checkpoint import build_model, save_checkpoint
from cotracker3_core.streaming import StreamConfig, StreamingTracker
from cotracker3_ros import diagnostics as diag
from cotracker3_ros.conversions import ns_to_time, rgb_to_image
from cotracker3_ros.lifecycle import EXIT_BAD_CONFIG, LOGGER_NAME, describe_startup_error
from cotracker3_ros.node import TrackerNode
from cotracker3_ros.params import NODE_NAME, PARAMS, stream_config_from_params
from cotracker3_ros.tools.demo import DEMO_ARCH, SyntheticScene
from cotracker3_ros.tools.node_peer import DdsPeer

#: Node processes at a time (2 CPU cores: start-ups are mostly torch imports).
JOBS = 4
SMALL_INFERENCE = {"model_resolution": [64, 96], "window_len": 8, "step": 4, "iters": 1}
#: Start-up cases: name -> (ros args, or a function of the data folder giving them; text the FATAL line holds).
BAD_STARTS: dict[str, tuple[list[str] | Callable[[Path], list[str]], str]] = {
    "window_len not an integer": (["-p", "window_len:=abc"], "bad parameter: Trying to set parameter 'window_len'"),
    # iters 0 is valid (the checkpoint's recommendation): -1 is the out-of-range value.
    "iters out of range": (["-p", "iters:=-1"], "Parameter iters out of range"),
    "visibility_threshold out of range": (["-p", "visibility_threshold:=2.0"], "visibility_threshold out of range"),
    "queue_size out of range": (["-p", "queue_size:=0"], "Parameter queue_size out of range"),
    "model_resolution too small": (["-p", "model_resolution:=[4,4]"], "model_resolution [4, 4] is too small"),
    "arch field of the wrong type": (["-p", "arch:='{latent_dim: abc}'"], "parameter arch: latent_dim must be int"),
    "unknown device": (["-p", "device:=tpu"], "device must be auto, cuda or cpu, got 'tpu'"),
    "missing checkpoint": (["-p", "checkpoint:=/nonexistent/x.pth"], "checkpoint '/nonexistent/x.pth' not found"),
    "missing parameters file": (["--params-file", "/missing.yaml"], "parameters file /missing.yaml: no such file"),
    "parameters file not YAML": (
        lambda d: ["--params-file", str(d / "broken.yaml")], "broken.yaml: Error parsing a event near line 3"
    ),
    "parameters file without ros__parameters": (
        lambda d: ["--params-file", str(d / "flat.yaml")], "flat.yaml: Cannot have a value before ros__parameters"
    ),
    "parameters file with a wrong type": (
        lambda d: ["--params-file", str(d / "typed.yaml")], "bad parameter: Trying to set parameter 'step' to 'four'"
    ),
    "checkpoint with NaN weights": (
        lambda d: ["-p", f"checkpoint:={d / 'nan.pth'}"], "weights hold NaN or infinite values"
    ),
    "checkpoint with flipped bytes": (
        lambda d: ["-p", f"checkpoint:={d / 'flipped.pth'}"], "the weights do not match the checksum"
    ),
}
#: Signal runs: 2 per sequence, the four moments covered.
SIGNAL_RUNS = [
    ("SIGINT", "importing"), ("SIGINT", "idle"),
    ("SIGINT x2", "building"), ("SIGINT x2", "tracking"),
    ("SIGTERM", "idle"), ("SIGTERM", "tracking"),
]  # fmt: skip


def write_inputs(folder: Path) -> None:
    """The broken parameters files and checkpoints of `BAD_STARTS`."""
    # "/**": every node, whatever its namespace (the runs use /lifecycle_bad).
    (folder / "broken.yaml").write_text("/**:\n  ros__parameters:\n    window_len: [8\n")
    (folder / "flat.yaml").write_text("/**:\n  window_len: 8\n")
    (folder / "typed.yaml").write_text("/**:\n  ros__parameters:\n    step: four\n")
    model = build_model("online", window_len=8, model_resolution=(64, 96), **DEMO_ARCH)
    flipped = save_checkpoint(folder / "flipped.pth", model, inference=SMALL_INFERENCE)
    with torch.no_grad():  # saved after the corruption: the checksum is valid, the self-check must refuse it
        for p in model.parameters():
            p.fill_(float("nan"))
    save_checkpoint(folder / "nan.pth", model, inference=SMALL_INFERENCE)
    # Invert 16 bytes in the middle of the largest tensor record (stored uncompressed in torch's zip).
    record = max(zipfile.ZipFile(flipped).infolist(), key=lambda i: i.file_size)
    data = bytearray(flipped.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[record.header_offset + 26 : record.header_offset + 30])
    middle = record.header_offset + 30 + name_len + extra_len + record.file_size // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    flipped.write_bytes(data)


def idle_run(log_path: Path, domain: int) -> tuple[int | None, str, list[DiagnosticStatus]]:
    """The small untrained configuration: wait for two /diagnostics messages, check it still runs, SIGINT it."""
    namespace = "/lifecycle_idle"
    peer = DdsPeer("lifecycle_test_peer", domain)
    statuses: list[DiagnosticStatus] = []
    peer.node.create_subscription(
        DiagnosticArray,
        "/diagnostics",
        lambda m: statuses.extend(s for s in m.status if s.hardware_id.startswith(f"{namespace}/{NODE_NAME} ")),
        10,
    )
    peer.start()
    run = NodeRun(["-r", f"__ns:={namespace}", "-p", "diagnostics_period:=0.5", *SMALL_CONFIG], log_path, domain)
    try:
        deadline = time.monotonic() + 90.0
        while len(statuses) < 2 and run.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        alive = run.process.poll() is None
        if alive:
            run.process.send_signal(signal.SIGINT)
        code = run.wait_exit(30.0) if alive else -1
    finally:
        run.kill()
        peer.close()
    return code, run.output(), list(statuses)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Every process of the module, run JOBS at a time: name -> its outcome."""
    folder = tmp_path_factory.mktemp("lifecycle")
    write_inputs(folder)
    domain = domain_id()
    jobs: dict[str, Future] = {}
    with ThreadPoolExecutor(max_workers=JOBS) as pool:
        jobs["idle"] = pool.submit(idle_run, folder / "idle.log", domain)
        for i, (sequence, moment) in enumerate(SIGNAL_RUNS):
            jobs[f"{sequence} at {moment}"] = pool.submit(signal_run, sequence, moment, folder, domain, i)
        for name, (args, _) in BAD_STARTS.items():
            ros_args = args(folder) if callable(args) else args
            log = folder / f"{name.replace(' ', '_')}.log"
            jobs[name] = pool.submit(run_startup, ["-r", "__ns:=/lifecycle_bad", *ros_args], log, domain, 60.0)
        return {name: job.result() for name, job in jobs.items()}


@pytest.mark.timeout(400)
@pytest.mark.parametrize("name", list(BAD_STARTS))
def test_bad_start_is_one_fatal_line_and_exit_2(outcomes: dict[str, object], name: str) -> None:
    code, output = outcomes[name]
    fatal = [line for line in output.splitlines() if "[FATAL]" in line]
    assert code == EXIT_BAD_CONFIG, f"exit {code}:\n{output[-3000:]}"
    assert len(fatal) == 1 and BAD_STARTS[name][1] in fatal[0], output[-3000:]
    assert f"[{LOGGER_NAME}]: cannot start: " in fatal[0]
    assert "Traceback" not in output and "terminate called" not in output, output[-3000:]


@pytest.mark.timeout(400)
def test_small_untrained_configuration_starts_publishes_diagnostics_and_idles(outcomes: dict[str, object]) -> None:
    code, output, statuses = outcomes["idle"]
    assert len(statuses) >= 2, f"no /diagnostics from the node:\n{output[-3000:]}"
    values = {kv.key: kv.value for kv in statuses[-1].values}
    assert statuses[-1].level == DiagnosticStatus.WARN and "untrained" in statuses[-1].message  # not ERROR
    assert values[diag.NONFINITE_TOTAL] == "0" and values[diag.RECEIVED_TOTAL] == "0"
    assert code == 0, f"exit {code} after SIGINT:\n{output[-3000:]}"
    assert "[FATAL]" not in output and "[ERROR]" not in output and "Traceback" not in output, output[-3000:]


@pytest.mark.timeout(400)
@pytest.mark.parametrize(("sequence", "moment"), SIGNAL_RUNS)
def test_signals_stop_the_node_cleanly(outcomes: dict[str, object], sequence: str, moment: str) -> None:
    outcome = outcomes[f"{sequence} at {moment}"]
    assert isinstance(outcome, Outcome)
    assert outcome.passed, (
        f"{sequence} at {moment} ({outcome.phase}): exit {outcome.code} after {outcome.exit_s:.1f} s\n"
        f"{outcome.log[-3000:]}"
    )


def test_small_configuration_is_the_demo_architecture() -> None:
    """The runs above pass `arch` as JSON: it must parse back to the architecture the tests build."""
    arch = next(a for a in SMALL_CONFIG if a.startswith("arch:="))
    assert json.loads(arch[len("arch:='") : -1]) == DEMO_ARCH
    assert LOGGER_NAME == NODE_NAME  # lifecycle cannot import params (torch) for it


def test_arch_values_of_the_wrong_type_are_bad_parameters() -> None:
    values = {p.name: p.default for p in PARAMS}
    with pytest.raises(ValueError, match="latent_dim must be int, got 'abc'"):
        stream_config_from_params({**values, "arch": "{latent_dim: abc}"})
    assert stream_config_from_params({**values, "arch": "{mlp_ratio: 2}"}).arch == {"mlp_ratio": 2}


def test_rcl_errors_are_described_without_c_source_locations(tmp_path: Path) -> None:
    from rclpy.impl.implementation_singleton import rclpy_implementation

    text = (
        "failed to initialize rcl: Couldn't parse params file: '--params-file {}'. Error: Error opening YAML file, "
        "at /project/src/parser.c:271, at /project/src/rcl/arguments.c:415"
    )
    missing = describe_startup_error(rclpy_implementation.RCLError(text.format(tmp_path / "none.yaml")))
    assert missing == f"cannot read the parameters file {tmp_path / 'none.yaml'}: no such file"
    (tmp_path / "here.yaml").write_text("x")
    there = describe_startup_error(rclpy_implementation.RCLError(text.format(tmp_path / "here.yaml")))
    assert there.endswith("here.yaml: Error opening YAML file")


@pytest.mark.timeout(120)
def test_non_finite_tracks_raise_the_diagnostics_to_error() -> None:
    """A model that passes nothing through its transformer but NaN (built here, so no self-check), in a node in
    this process, fed over DDS by a peer: its tracks come out not visible, its diagnostics at ERROR."""
    tracker = StreamingTracker.from_config(
        StreamConfig(device="cpu", model_resolution=(64, 96), window_len=8, step=4, iters=1, arch=DEMO_ARCH)
    )
    with torch.no_grad():
        for p in tracker.model.transformer.parameters():
            p.fill_(float("nan"))
    domain = domain_id()
    context = Context()
    rclpy.init(context=context, domain_id=domain, signal_handler_options=SignalHandlerOptions.NO)
    overrides = [Parameter("grid_size", value=4), Parameter("diagnostics_period", value=0.2)]
    node = TrackerNode(tracker=tracker, context=context, namespace="/lifecycle_nan", parameter_overrides=overrides)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spinner = threading.Thread(target=lambda: executor.spin(), daemon=True)
    spinner.start()
    peer = DdsPeer("lifecycle_nan_peer", domain)
    levels: list[int] = []
    tracks: list[Tracks] = []
    peer.node.create_subscription(
        DiagnosticArray, "/diagnostics",
        lambda m: levels.extend(s.level for s in m.status if s.hardware_id.startswith("/lifecycle_nan/")), 10,
    )  # fmt: skip
    peer.node.create_subscription(Tracks, "/lifecycle_nan/tracks", tracks.append, 50)
    pub = peer.node.create_publisher(Image, "/lifecycle_nan/image", 10)
    peer.start()
    try:
        scene = SyntheticScene(96, 128)
        deadline = time.monotonic() + 60.0
        i = 0
        while DiagnosticStatus.ERROR not in levels and time.monotonic() < deadline:
            pub.publish(rgb_to_image(scene.frame(i % 16), Header(stamp=ns_to_time(time.time_ns()))))
            i += 1
            time.sleep(0.05)
        assert DiagnosticStatus.ERROR in levels, f"diagnostic levels seen: {levels}"
        assert tracker.nonfinite_frames > 0
        with_points = [m for m in tracks if len(m.ids)]
        assert with_points and not any(any(m.visible) for m in with_points)
    finally:
        peer.close()
        node.destroy_node()
        executor.shutdown()
        rclpy.try_shutdown(context=context)
        spinner.join(timeout=5)
