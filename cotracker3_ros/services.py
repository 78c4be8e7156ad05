"""The tracker node's query services: add points, add the grid points inside a mask, remove points, reset.

A request is validated whole before the engine changes (the engine refuses it whole: limits, ids, stamps), and
a handler always answers (``success`` false and why). The services have their own callback group and a deep
request queue (`SERVICE_QUEUE_DEPTH`): a burst of callers is answered, each within about one tracking step.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np
from cotracker3_msgs.srv import AddMaskPoints, AddPoints, RemovePoints
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_srvs.srv import Trigger

from cotracker3_core.query_admission import check_request_size
from cotracker3_core.streaming import StreamingTracker

from .conversions import mask_to_bool, time_to_ns

#: Requests each service keeps waiting (rclpy's default of 10 loses calls in a burst).
SERVICE_QUEUE_DEPTH = 1000
#: Service names, private to the node (``/<namespace>/tracker_node/add_points`` ...), as ROS conventions want.
ADD_POINTS, ADD_MASK_POINTS, REMOVE_POINTS, RESET = "add_points", "add_mask_points", "remove_points", "reset"


class QueryServices:
    """Registers the four services on ``node`` and answers them.

    Args:
        node: the tracker node (services, logger).
        tracker: the engine; touched only under ``engine_lock``.
        engine_lock: the lock the tracking worker holds while it runs the engine.
        reset: flushes and resets the stream; returns the number of frames the flush emitted.
        mask_grid_size: grid size of add_mask_points when a request says 0; read at each call.
        prefix: before the service names: ``"<camera>/"`` for one of several cameras (``~/<camera>/reset``).
    """

    def __init__(
        self,
        node: Node,
        tracker: StreamingTracker,
        engine_lock: threading.Lock,
        reset: Callable[[], int],
        mask_grid_size: Callable[[], int],
        prefix: str = "",
    ) -> None:
        self._node, self._tracker, self._lock = node, tracker, engine_lock
        self._reset, self._mask_grid_size = reset, mask_grid_size
        group = MutuallyExclusiveCallbackGroup()
        qos = QoSProfile(depth=SERVICE_QUEUE_DEPTH, reliability=ReliabilityPolicy.RELIABLE)
        for srv_type, name, handler in (
            (AddPoints, ADD_POINTS, self._on_add_points),
            (AddMaskPoints, ADD_MASK_POINTS, self._on_add_mask_points),
            (RemovePoints, REMOVE_POINTS, self._on_remove_points),
            (Trigger, RESET, self._on_reset),
        ):
            node.create_service(srv_type, f"~/{prefix}{name}", handler, qos_profile=qos, callback_group=group)

    def _on_add_points(self, request: AddPoints.Request, response: AddPoints.Response) -> AddPoints.Response:
        try:
            # Before converting anything: a huge request is refused cheaply.
            check_request_size(len(request.x), self._tracker.config.max_points_per_request)
            x = np.asarray(request.x, dtype=np.float32)
            y = np.asarray(request.y, dtype=np.float32)
            if len(x) != len(y):
                raise ValueError(f"x and y differ in length ({len(x)} vs {len(y)})")
            if len(x) == 0:
                raise ValueError("no points given")
            ids = [int(i) for i in request.ids]
            if ids and len(ids) != len(x):
                raise ValueError(f"{len(ids)} ids given for {len(x)} points (give none or one per point)")
            stamp = time_to_ns(request.stamp) or None
            with self._lock:
                new_ids = self._tracker.add_queries(np.stack([x, y], axis=1), stamp=stamp, ids=ids or None)
            response.success, response.ids = True, new_ids
            response.message = f"added {len(new_ids)} point(s)"
        except Exception as exc:
            self._fail(response, ADD_POINTS, exc)
        return response

    def _on_add_mask_points(
        self, request: AddMaskPoints.Request, response: AddMaskPoints.Response
    ) -> AddMaskPoints.Response:
        try:
            mask = mask_to_bool(request.mask)
            grid_size = int(request.grid_size) or self._mask_grid_size()
            stamp = time_to_ns(request.stamp) or None
            with self._lock:
                new_ids = self._tracker.add_mask_queries(mask, grid_size, stamp=stamp)
            response.success, response.ids = True, new_ids
            response.message = f"added {len(new_ids)} point(s) on a {grid_size}x{grid_size} grid inside the mask"
        except Exception as exc:
            self._fail(response, ADD_MASK_POINTS, exc)
        return response

    def _on_remove_points(
        self, request: RemovePoints.Request, response: RemovePoints.Response
    ) -> RemovePoints.Response:
        try:
            ids = [int(i) for i in request.ids]
            if not ids:
                raise ValueError("no ids given")
            with self._lock:
                self._tracker.remove_queries(ids)
            response.success, response.message = True, f"removed {len(ids)} point(s)"
        except Exception as exc:
            self._fail(response, REMOVE_POINTS, exc)
        return response

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        try:
            flushed = self._reset()
            response.success = True
            response.message = f"flushed {flushed} frame(s) and reset; automatic grid (if any) is re-applied"
        except Exception as exc:
            self._fail(response, RESET, exc)
        return response

    def _fail(self, response: Any, service: str, exc: Exception) -> None:
        """Answer a refusal (ValueError: the request was wrong) or an internal error (logged with its traceback)."""
        response.success = False
        if isinstance(exc, ValueError):
            response.message = str(exc)
            self._node.get_logger().warning(f"{service} refused: {exc}")
        else:
            response.message = f"internal error: {exc!r}"
            self._node.get_logger().error(f"{service} failed: {traceback.format_exc()}")
