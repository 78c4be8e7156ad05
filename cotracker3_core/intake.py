"""Frame intake of a live consumer (the ROS node): the count of frames lost before the worker took them (from the
middleware's sequence numbers, else from gaps in the stamps), and the stamp a frame is tracked with."""

from __future__ import annotations

from collections import deque
from typing import Any

#: A middleware's "sequence number unsupported" value (RMW_MESSAGE_INFO_SEQUENCE_NUMBER_UNSUPPORTED).
_SEQUENCE_UNSUPPORTED = 2**64 - 1


class LossCounter:
    """Frames that never reached the tracker: replaced by newer ones in the node's bounded queue while it was busy,
    or lost in the middleware, the network or the camera driver.

    Counted from each publisher's publication sequence numbers where the middleware reports them (Fast DDS
    does): the numbers a publisher has used since its first frame seen here, less the frames received from it.
    That stays right when the executor hands frames over out of order (a frame counts as lost only until it
    arrives). Without sequence numbers, from gaps in the image stamps against the camera's measured period (a
    gap of more than 1.5 periods counts the missing frames). Call `observe` once per received image.
    """

    #: A sequence number this far below a publisher's highest means the publisher restarted (new stream).
    RESTART_GAP = 1000

    def __init__(self, history: int = 16) -> None:
        self._streams: dict[bytes | None, list[int]] = {}  # publisher -> [first, highest, received]
        self._closed_lost = 0  # lost in streams of restarted publishers
        self._stamp_lost = 0
        self._last_stamp: int | None = None
        self._periods: deque[int] = deque(maxlen=history)

    @property
    def lost(self) -> int:
        """Frames lost so far."""
        open_lost = sum(highest - first + 1 - received for first, highest, received in self._streams.values())
        return self._closed_lost + max(open_lost, 0) + self._stamp_lost

    def observe(self, info: dict[str, Any] | None, stamp_ns: int) -> None:
        """Account one received image: rclpy's MessageInfo dict (or None) and its header stamp in ns."""
        seq = (info or {}).get("publication_sequence_number")
        if not seq or seq == _SEQUENCE_UNSUPPORTED:
            self._observe_stamp(stamp_ns)
            return
        gid = (info.get("publisher_gid") or {}).get("data")  # missing on older rclpy: one stream then
        key = bytes(gid) if gid is not None else None
        stream = self._streams.get(key)
        if stream is not None and seq < stream[1] - self.RESTART_GAP:
            self._closed_lost += max(stream[1] - stream[0] + 1 - stream[2], 0)
            stream = None
        if stream is None:
            self._streams[key] = [seq, seq, 1]
            return
        stream[0], stream[1], stream[2] = min(stream[0], seq), max(stream[1], seq), stream[2] + 1

    def _observe_stamp(self, stamp_ns: int) -> None:
        last = self._last_stamp
        if stamp_ns <= 0 or (last is not None and stamp_ns <= last):
            return  # unstamped or out of order: no information on gaps
        self._last_stamp = stamp_ns
        if last is None:
            return
        delta = stamp_ns - last
        if len(self._periods) >= 4:
            period = sorted(self._periods)[len(self._periods) // 2]
            if delta > 1.5 * period:
                self._stamp_lost += round(delta / period) - 1
                return  # a gap is not a new period
        self._periods.append(delta)


def frame_stamp(source: str, header_ns: int, arrival_ns: int) -> int:
    """The stamp (ns) a frame is tracked and published with: ``source`` "header", "receive" (the arrival time),
    or "auto" (the header stamp unless the camera left it zero)."""
    if source == "receive" or (source == "auto" and header_ns == 0):
        return arrival_ns
    return header_ns
