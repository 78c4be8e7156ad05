"""The node's /diagnostics: the counters it keeps and the keys it publishes them under.

The keys are constants here so that the node, the replay tool and the tests read the same names; the values
are strings, as ``diagnostic_msgs/KeyValue`` carries them (``n/a`` where a period had no sample).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

INPUT_RATE = "input rate (Hz)"
OUTPUT_RATE = "output rate (Hz)"
STEP_LATENCY_MEAN = "step latency mean (ms)"
STEP_LATENCY_P50 = "step latency p50 (ms)"
STEP_LATENCY_MAX = "step latency max (ms)"
LAG_MEAN = "end-to-end lag mean (ms)"
LAG_MAX = "end-to-end lag max (ms)"
QUEUE_WAIT_MEAN = "queue wait mean (ms)"
DROPPED_PERIOD = "frames dropped or lost (period)"
DROPPED_TOTAL = "dropped frames (total)"
REJECTED_TOTAL = "rejected frames (total)"
RECEIVED_TOTAL = "frames received (total)"
PUBLISHED_TOTAL = "frames published (total)"
RESETS_TOTAL = "resets (total)"
LOST_TOTAL = "frames lost before the tracker (total)"
LAST_RESET = "last reset"
LAST_IMAGE_AGE = "seconds since the last image"
ACTIVE_QUERIES = "active queries"
DEVICE = "device"
CHECKPOINT = "checkpoint"
UNTRAINED = "untrained weights"
LAST_ERROR = "last error"
NONFINITE_TOTAL = "non-finite frames (total)"
BATCHED_TOTAL = "windows batched with other cameras (total)"
#: Value of a statistic over a period without samples.
NO_SAMPLE = "n/a"
#: Suffix of the name of the node's status: ``<node name>: tracking`` (the bare name, e.g. ``tracker_node: tracking``,
#: as diagnostic aggregators expect; the namespace is in the status's ``hardware_id``).
STATUS_SUFFIX = ": tracking"


@dataclass
class Stats:
    """Counters since start (totals) and since the last diagnostics message (period lists)."""

    received: int = 0
    published: int = 0
    rejected: int = 0
    resets: int = 0
    lost: int = 0
    last_reset: str = ""
    period_received: int = 0
    period_published: int = 0
    period_dropped_base: int = 0
    step_latency_s: list[float] = field(default_factory=list)
    lag_s: list[float] = field(default_factory=list)
    queue_wait_s: list[float] = field(default_factory=list)
    last_error: str = ""
    period_start: float = field(default_factory=time.monotonic)

    def start_period(self, dropped_total: int) -> None:
        self.period_start = time.monotonic()
        self.period_received = self.period_published = 0
        self.period_dropped_base = dropped_total + self.lost
        self.step_latency_s, self.lag_s, self.queue_wait_s = [], [], []

    def period_values(self, dropped_total: int) -> tuple[dict[str, str], int]:
        """The period's rates, latencies and the totals as diagnostic values, and the frames dropped or lost in
        the period (a camera faster than the tracker shows as lost: replaced in the queue); then starts a new
        period."""
        elapsed = max(time.monotonic() - self.period_start, 1e-3)
        period_dropped = dropped_total + self.lost - self.period_dropped_base
        values = {
            INPUT_RATE: f"{self.period_received / elapsed:.2f}",
            OUTPUT_RATE: f"{self.period_published / elapsed:.2f}",
            STEP_LATENCY_MEAN: _ms(self.step_latency_s, np.mean),
            STEP_LATENCY_P50: _ms(self.step_latency_s, np.median),
            STEP_LATENCY_MAX: _ms(self.step_latency_s, np.max),
            LAG_MEAN: _ms(self.lag_s, np.mean),
            LAG_MAX: _ms(self.lag_s, np.max),
            QUEUE_WAIT_MEAN: _ms(self.queue_wait_s, np.mean),
            DROPPED_PERIOD: str(period_dropped),
            DROPPED_TOTAL: str(dropped_total),
            REJECTED_TOTAL: str(self.rejected),
            RECEIVED_TOTAL: str(self.received),
            PUBLISHED_TOTAL: str(self.published),
            RESETS_TOTAL: str(self.resets),
            LOST_TOTAL: str(self.lost),
            LAST_RESET: self.last_reset,
        }
        self.start_period(dropped_total)
        return values, period_dropped


def _ms(values: Sequence[float], fn: Any) -> str:
    return f"{fn(values) * 1e3:.1f}" if values else NO_SAMPLE


def counter(values: Mapping[str, str], key: str) -> int:
    """An integer diagnostic value read back (0 when absent or not a number)."""
    try:
        return int(values.get(key, "0"))
    except ValueError:
        return 0


def is_number(text: str | None) -> bool:
    """Whether a diagnostic value read back is a number (not `NO_SAMPLE`)."""
    try:
        float(text or "")
    except ValueError:
        return False
    return True


def id_ranges(ids: Sequence[int], limit: int = 20) -> str:
    """Ids as compact ranges, e.g. ``0-63, 100, 200-201`` (at most ``limit`` ranges, then ``...``)."""
    ordered = sorted(set(int(i) for i in ids))
    ranges: list[str] = []
    start = prev = None
    for i in ordered + [None]:
        if start is not None and (i is None or i != prev + 1):
            ranges.append(str(start) if start == prev else f"{start}-{prev}")
            start = None
        if i is not None and start is None:
            start = i
        prev = i
    return ", ".join(ranges[:limit]) + (", ..." if len(ranges) > limit else "") if ranges else "none"
