"""Camera images taken by the tracker's worker when it is ready for them, not by the executor.

rclpy's executors take every message a subscription receives and build its Python object: about 4 ms of
Python per 320x240 image with the MultiThreadedExecutor, holding the GIL. A camera faster than the tracker
then costs the tracker the CPU it needs, and the frames it could not use anyway cost the most. So the image
subscriptions belong to a callback group that no executor serves (`WorkerTakenGroup`); the worker waits on
them itself (`wait_for_images`) and takes one image per camera when it starts a step (`SubscriptionQueue`).
The subscription's keep-last history, ``queue_size`` deep, is the camera's queue: a frame the worker never
takes is replaced there by a newer one inside the middleware, at no Python cost, and is counted from the gap
it leaves in the publisher's sequence numbers (`cotracker3_core.intake.LossCounter`).

The wait uses rclpy's own wait set binding (``_rclpy.WaitSet``, as rclpy's executors do); rclpy has no public
call to wait on one subscription.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import Any

from rclpy.callback_groups import CallbackGroup
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.subscription import Subscription

#: A taken image: the message and rclpy's MessageInfo dict (stamps, publisher sequence number).
Taken = tuple[Any, dict[str, Any]]


class WorkerTakenGroup(CallbackGroup):
    """A callback group whose entities no executor waits on or takes from: their owner takes their messages."""

    def can_execute(self, entity: Any) -> bool:
        return False

    def beginning_execution(self, entity: Any) -> bool:
        return False

    def ending_execution(self, entity: Any) -> None:
        pass


def _never_called(*_: Any) -> None:
    raise AssertionError("an executor took a message from a WorkerTakenGroup subscription")


def subscribe_worker_taken(
    node: Any, msg_type: type, topic: str, qos: Any, group: WorkerTakenGroup, **kwargs: Any
) -> Subscription:
    """A subscription of ``node`` in ``group``: the executor leaves its messages to `SubscriptionQueue.get`."""
    return node.create_subscription(msg_type, topic, _never_called, qos, callback_group=group, **kwargs)


class SubscriptionQueue:
    """One camera's waiting frames, kept by the middleware: `get` takes the oldest from the subscription's
    keep-last history (its depth is the queue's size); frames replaced there are counted by the caller's
    `LossCounter`, not here. Items are `Taken`. `dropped` counts the frames discarded by `drop_where`."""

    def __init__(self, subscription: Subscription, maxsize: int) -> None:
        self._sub = subscription
        self._maxsize = maxsize
        self._held: deque[Taken] = deque()  # taken by drop_where, not discarded: given out first
        self._lock = threading.Lock()
        self._dropped = 0
        self._closed = False

    @property
    def subscription(self) -> Subscription:
        return self._sub

    @property
    def maxsize(self) -> int:
        return self._maxsize

    @property
    def dropped(self) -> int:
        return self._dropped

    def __len__(self) -> int:
        """Frames taken from the middleware and not yet given out (the ones still in its history are not
        known to rclpy)."""
        return len(self._held)

    def get(self, timeout: float = 0.0) -> Taken | None:
        """The oldest waiting frame, or None (``timeout`` is not waited: see `wait_for_images`)."""
        with self._lock:
            if self._closed:
                return None
            return self._held.popleft() if self._held else self._take()

    def drop_where(self, condition: Callable[[Taken], bool]) -> int:
        """Discard the waiting frames for which ``condition`` holds, counted as dropped; returns how many."""
        with self._lock:
            while (item := self._take()) is not None:
                self._held.append(item)
            kept = deque(item for item in self._held if not condition(item))
            n = len(self._held) - len(kept)
            self._held, self._dropped = kept, self._dropped + n
            return n

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._held.clear()

    def _take(self) -> Taken | None:
        with self._sub.handle:
            return self._sub.handle.take_message(self._sub.msg_type, self._sub.raw)


def wait_for_images(subscriptions: Sequence[Subscription], context: Any, timeout_s: float) -> None:
    """Block (the GIL released) until one of ``subscriptions`` has a message, or ``timeout_s`` passes."""
    with ExitStack() as handles:  # entered handles cannot be destroyed under the wait (as rclpy's executors)
        for sub in subscriptions:
            handles.enter_context(sub.handle)
        handles.enter_context(context.handle)
        wait_set = _rclpy.WaitSet(len(subscriptions), 0, 0, 0, 0, 0, context.handle)
        wait_set.clear_entities()
        for sub in subscriptions:
            wait_set.add_subscription(sub.handle)
        wait_set.wait(max(0, round(timeout_s * 1e9)))  # a negative timeout would block for ever
