"""Start-up and shutdown of the tracker node process: the console entry point ``tracker_node``.

Start-up: a bad parameter, parameters file or checkpoint, or a model that fails its self-check
(`cotracker3_core.self_check`), ends the process with one ``[FATAL]`` log line saying what is wrong and exit
code `EXIT_BAD_CONFIG`; the traceback goes to the DEBUG level (``--ros-args --log-level debug``). Any other
exception is a bug: one ``[FATAL]`` line, its traceback at ERROR level, exit code 1.

Shutdown: SIGINT and SIGTERM are handled here, not by rclpy (``SignalHandlerOptions.NO``), and installed
before the heavy imports (this module imports neither torch nor rclpy at module level; ``python -m
cotracker3_ros.node`` calls `main` before importing anything else). While the process starts (imports,
``rclpy.init``, model build, self-check) the first signal raises `ShutdownRequested`, which abandons the start;
once the node spins, a signal ends the spin loop. Either way the worker is stopped (it finishes its current
step), the executor and the node are shut down, the context last, and the exit code is 0. Later signals (a
second Ctrl-C during the cleanup) are only counted, then ignored while the interpreter exits.
"""

from __future__ import annotations

import gc
import os
import re
import signal
import sys
import traceback
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the real imports happen in main(), after the signal handlers
    from rclpy.executors import Executor

    from .node import TrackerNode

__all__ = ["EXIT_BAD_CONFIG", "LOGGER_NAME", "ShutdownRequested", "describe_startup_error", "main"]

#: Exit code of a start-up refused for a bad parameter, parameters file, checkpoint or model.
EXIT_BAD_CONFIG = 2
#: Exit code of an unexpected exception at start-up (a bug).
EXIT_BUG = 1
#: Logger of the start-up messages: `cotracker3_ros.params.NODE_NAME` (not imported: params imports torch).
LOGGER_NAME = "tracker_node"
#: Seconds between two checks for a signal while spinning (a Python signal handler runs only between bytecodes,
#: not while rcl waits in C).
SPIN_POLL_S = 0.1
#: Longest wait (seconds) for the worker to finish its current step at shutdown.
WORKER_JOIN_S = 10.0


class ShutdownRequested(BaseException):
    """SIGINT or SIGTERM while the process is starting: abandons the start (a BaseException, like
    KeyboardInterrupt, so that no ``except Exception`` on the way swallows it)."""


class _Signals:
    """SIGINT/SIGTERM handler: counts the signals; raises `ShutdownRequested` for the first one while
    ``interruptible`` (start-up), otherwise leaves it to the spin loop to notice."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self.interruptible = True

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
        if self.interruptible and len(self.received) == 1:
            raise ShutdownRequested(signal.Signals(signum).name)


def main(args: Sequence[str] | None = None) -> int:
    """Run a TrackerNode until SIGINT/SIGTERM or ROS shutdown; returns the exit code (see the module docstring).

    Args:
        args: command line (program name first, then ``--ros-args ...``); default ``sys.argv``.
    """
    signals = _Signals()
    signals.install()
    process = _Process(signals)
    try:
        try:
            code = process.run(None if args is None else list(args))
        finally:  # nested: a signal landing just before this line is still caught below
            signals.interruptible = False
    except ShutdownRequested as exc:  # a signal during start-up, wherever it landed (raised once at most)
        code = 0
        _log_info(f"{exc} received while starting ({process.stage}): start abandoned")
    stopped = process.close()
    # Python restores the default handlers while it finalizes: a late signal (the second of a double Ctrl-C)
    # would then kill the process. Ignored handlers are left alone, and there is nothing left to interrupt.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    if not stopped:  # the worker is still inside a model step: do not let the interpreter tear it down under it
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _log_info(text: str) -> None:
    """An INFO line through rclpy's logging when rclpy is loaded (a signal may have interrupted its import)."""
    logging = getattr(sys.modules.get("rclpy"), "logging", None)
    if logging is not None:
        logging.get_logger(LOGGER_NAME).info(text)
    else:
        print(f"[INFO] [{LOGGER_NAME}]: {text}", file=sys.stderr, flush=True)


class _Process:
    """The node process's state between start-up and shutdown: what `close` has to undo."""

    def __init__(self, signals: _Signals) -> None:
        self.signals = signals
        self.node: TrackerNode | None = None
        self.executor: Executor | None = None
        self.closed = False
        self.stage = "importing rclpy"  # what start-up is doing (logged when a signal abandons it)

    def run(self, args: list[str] | None) -> int:
        import rclpy
        from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
        from rclpy.signals import SignalHandlerOptions

        logger = rclpy.logging.get_logger(LOGGER_NAME)
        try:
            # rclpy parses --ros-args here: a missing or malformed --params-file fails now, before torch loads.
            self.stage = "rclpy.init"
            rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
            self.stage = "importing torch and the node"
            from .node import TrackerNode

            self.stage = "building the node and its model"
            self.node = TrackerNode()
        except _expected_errors() as exc:
            logger.fatal(f"cannot start: {describe_startup_error(exc)}")
            logger.debug(traceback.format_exc())
            return EXIT_BAD_CONFIG
        except Exception as exc:  # not a known kind of bad input: a bug, shown with its traceback
            logger.fatal(f"cannot start: unexpected {type(exc).__name__}: {exc} (a bug: traceback below)")
            logger.error(traceback.format_exc())
            return EXIT_BUG
        self.signals.interruptible = False  # from here on a signal ends the spin loop below
        self.stage = "spinning"
        # Spare every full collection the ~200,000 start-up objects (a ~60 ms pause holding the GIL).
        gc.freeze()
        # Two threads: images keep being enqueued while a service waits for the engine lock.
        self.executor = MultiThreadedExecutor(num_threads=2)
        self.executor.add_node(self.node)
        try:
            while not self.signals.received and rclpy.ok():
                self.executor.spin_once(timeout_sec=SPIN_POLL_S)
        except ExternalShutdownException:
            pass
        if self.signals.received:
            _log_info(f"{signal.Signals(self.signals.received[0]).name} received: shutting down")
        return 0

    def close(self) -> bool:
        """Stop the worker, the executor, the node and the context, in that order; idempotent. Returns False
        when the worker did not finish its step within WORKER_JOIN_S."""
        if self.closed:
            return True
        self.closed = True
        stopped = self.node.stop_worker(WORKER_JOIN_S) if self.node is not None else True
        if self.executor is not None:
            self.executor.shutdown()  # waits for the service callbacks running (they see the worker stopped)
        if self.node is not None:
            self.node.destroy_node()
        rclpy = sys.modules.get("rclpy")  # absent when a signal interrupted its import
        if rclpy is not None:
            try:
                rclpy.try_shutdown()  # also destroys a node whose construction failed half-way
            except Exception as exc:  # e.g. a signal interrupted rclpy's Node.__init__: nothing left to save
                rclpy.logging.get_logger(LOGGER_NAME).warning(f"incomplete ROS shutdown: {exc!r}")
                rclpy.logging.get_logger(LOGGER_NAME).debug(traceback.format_exc())
        return stopped


def _expected_errors() -> tuple[type[BaseException], ...]:
    """What bad input raises at start-up: rclpy's parameter exceptions (wrong type, out of range), RCLError
    (a RuntimeError: bad --ros-args or parameters file), ValueError (bad values, checkpoint integrity,
    self-check), OSError (missing files, downloads), RuntimeError (torch refusing a configuration)."""
    from rclpy.exceptions import ParameterException

    return (ParameterException, ValueError, OSError, RuntimeError)


#: rcl appends the C source location of each error (", at /project/src/parser.c:271"): noise to a user.
_RCL_LOCATION = re.compile(r",? at \S+\.c:\d+")
_PARAMS_FILE = re.compile(r"Couldn't parse params file: '--params-file (.+?)'\. Error: (.*)", re.DOTALL)


def describe_startup_error(exc: BaseException) -> str:
    """One line saying what is wrong, for the FATAL log line."""
    from rclpy.exceptions import ParameterException

    text = " ".join(str(exc).split())
    if isinstance(exc, ParameterException):
        return f"bad parameter: {text}"
    if type(exc).__name__ == "RCLError":  # rclpy.init refusing the command line (the class is not public)
        text = _RCL_LOCATION.sub("", text)
        match = _PARAMS_FILE.search(text)
        if match:
            path, reason = match.group(1), match.group(2).strip()
            if not os.path.exists(path):
                reason = "no such file"
            return f"cannot read the parameters file {path}: {reason}"
        return f"bad command line: {text}"
    return text
