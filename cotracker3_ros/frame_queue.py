"""Frame intake: a bounded, thread-safe, drop-oldest queue between the ROS callbacks and the tracking worker,
and the count of frames lost before it."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class DropOldestQueue(Generic[T]):
    """FIFO of at most ``maxsize`` items; `put` on a full queue discards the oldest item and counts it.

    A camera that outpaces the tracker should lose its stale frames, not build up lag: the newest frame
    is always kept, and `dropped` tells diagnostics how many were lost.
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"queue size must be >= 1, got {maxsize}")
        self._items: deque[T] = deque()
        self._maxsize = maxsize
        self._cond = threading.Condition()
        self._dropped = 0
        self._closed = False

    @property
    def maxsize(self) -> int:
        return self._maxsize

    @property
    def dropped(self) -> int:
        """Items discarded so far because the queue was full."""
        with self._cond:
            return self._dropped

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def put(self, item: T) -> bool:
        """Append ``item``; returns True when an old item had to be dropped to make room."""
        with self._cond:
            if self._closed:
                return False
            dropped = len(self._items) >= self._maxsize
            if dropped:
                self._items.popleft()
                self._dropped += 1
            self._items.append(item)
            self._cond.notify()
            return dropped

    def get(self, timeout: float | None = None) -> T | None:
        """The oldest item, waiting up to ``timeout`` seconds; None on timeout or once closed."""
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout)
            if self._closed or not self._items:
                return None
            return self._items.popleft()

    def drop_where(self, condition: Callable[[T], bool]) -> int:
        """Discard the queued items for which ``condition`` holds, counted as dropped; returns how many."""
        with self._cond:
            kept = deque(item for item in self._items if not condition(item))
            n = len(self._items) - len(kept)
            self._items = kept
            self._dropped += n
            return n

    def clear(self) -> int:
        """Discard every queued item (not counted as dropped); returns how many there were."""
        with self._cond:
            n = len(self._items)
            self._items.clear()
            return n

    def close(self) -> None:
        """Wake every waiting `get` (they return None) and refuse further items."""
        with self._cond:
            self._closed = True
            self._items.clear()
            self._cond.notify_all()


#: A middleware's "sequence number unsupported" value (RMW_MESSAGE_INFO_SEQUENCE_NUMBER_UNSUPPORTED).
_SEQUENCE_UNSUPPORTED = 2**64 - 1


class LossCounter:
    """Frames lost before the node's queue (in the middleware, the network or the camera driver).

    Counted from gaps in each publisher's publication sequence numbers where the middleware reports them
    (Fast DDS does), else from gaps in the image stamps against the camera's measured period (a gap of more
    than 1.5 periods counts the missing frames). Call `observe` once per received image, in arrival order.
    """

    def __init__(self, history: int = 16) -> None:
        self.lost = 0
        self._last_seq: dict[bytes | None, int] = {}
        self._last_stamp: int | None = None
        self._periods: deque[int] = deque(maxlen=history)

    def observe(self, info: dict[str, Any] | None, stamp_ns: int) -> int:
        """Account one received image (rclpy's MessageInfo dict, its header stamp); returns the frames found
        missing just before it."""
        seq = (info or {}).get("publication_sequence_number")
        if seq and seq != _SEQUENCE_UNSUPPORTED:
            gid = (info.get("publisher_gid") or {}).get("data")  # missing on older rclpy: one stream then
            key = bytes(gid) if gid is not None else None
            last = self._last_seq.get(key)
            self._last_seq[key] = seq
            missing = seq - last - 1 if last is not None and seq > last else 0  # lower: a restarted publisher
        else:
            missing = self._stamp_gap(stamp_ns)
        self.lost += missing
        return missing

    def _stamp_gap(self, stamp_ns: int) -> int:
        last, self._last_stamp = self._last_stamp, stamp_ns if stamp_ns > 0 else self._last_stamp
        if stamp_ns <= 0 or last is None or stamp_ns <= last:
            return 0
        delta = stamp_ns - last
        missing = 0
        if len(self._periods) >= 4:
            period = sorted(self._periods)[len(self._periods) // 2]
            if delta > 1.5 * period:
                missing = round(delta / period) - 1
                delta = period  # a gap is not a new period
        self._periods.append(delta)
        return missing
