"""A bounded, thread-safe, drop-oldest queue between the ROS callbacks and the tracking worker."""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

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
