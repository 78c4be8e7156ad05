"""Admission of new queries: the point limits and the ids new points get, decided before any state changes.

A request to add points is either admitted whole (every point gets an id, the totals stay within the limits)
or refused with a `QueryLimitError` / `ValueError` that says why; the engine changes nothing until this module
has said yes. Ids are uint32 end to end (they travel in ``uint32[]`` message fields).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Sequence

#: Largest query id: ids are published as uint32.
MAX_ID = 2**32 - 1
#: Defaults of `StreamConfig.max_points` / `max_points_per_request` (the benchmarks track 1,024 and 4,096).
DEFAULT_MAX_POINTS = 4096
DEFAULT_MAX_POINTS_PER_REQUEST = 4096


class QueryLimitError(ValueError):
    """A request would exceed a point limit or the id space; nothing was added."""


def check_request_size(count: int, max_points_per_request: int) -> None:
    """Refuse a request of more than ``max_points_per_request`` points (before anything is converted)."""
    if count > max_points_per_request:
        raise QueryLimitError(
            f"{count} points in one request; at most {max_points_per_request} (max_points_per_request)"
        )


def check_limits(count: int, active: int, max_points: int, max_points_per_request: int) -> None:
    """Refuse a request of ``count`` new points when ``active`` points are tracked already."""
    check_request_size(count, max_points_per_request)
    if active + count > max_points:
        raise QueryLimitError(
            f"{count} more points would make {active + count} tracked; at most {max_points} (max_points), "
            f"remove some first"
        )


def max_grid_size(max_points_per_request: int) -> int:
    """Largest g whose g x g grid fits one request (a mask grid is built whole before the mask filters it)."""
    return math.isqrt(max_points_per_request)


def check_grid_size(grid_size: int, max_points_per_request: int) -> None:
    if grid_size < 1:
        raise ValueError(f"grid_size must be >= 1, got {grid_size}")
    limit = max_grid_size(max_points_per_request)
    if grid_size > limit:
        raise QueryLimitError(
            f"grid_size {grid_size} makes {grid_size * grid_size} grid points; at most {limit} "
            f"({limit}x{limit} <= max_points_per_request {max_points_per_request})"
        )


def assign_ids(count: int, requested: Sequence[int] | None, in_use: Collection[int], next_id: int) -> list[int]:
    """The ids of ``count`` new points: the caller's (unique, unused, uint32) or ``next_id``, ``next_id`` + 1 ...

    Raises:
        QueryLimitError: automatic ids would pass `MAX_ID` (reset the tracker to start over from 0).
        ValueError: the caller's ids are malformed or taken.
    """
    if requested is None or len(requested) == 0:
        if next_id + count - 1 > MAX_ID:
            raise QueryLimitError(
                f"automatic ids exhausted: {count} new ids from {next_id} would pass {MAX_ID} (uint32); give ids "
                f"explicitly or reset"
            )
        return list(range(next_id, next_id + count))
    out = [int(i) for i in requested]
    if len(out) != count:
        raise ValueError(f"{len(out)} ids given for {count} points")
    if min(out) < 0 or max(out) > MAX_ID:
        raise ValueError(f"ids must be in [0, {MAX_ID}] (uint32)")
    if len(set(out)) != len(out):
        raise ValueError(f"duplicate ids in request: {sorted(i for i, n in Counter(out).items() if n > 1)}")
    taken = sorted(set(out) & set(in_use))
    if taken:
        raise ValueError(f"ids already in use: {taken}")
    return out


def next_free_id(next_id: int, assigned: Sequence[int]) -> int:
    """The next automatic id after ``assigned`` were given out (always past the largest id seen)."""
    return max([next_id - 1, *assigned]) + 1
