"""Readers and a writer for the TAP-Vid / RoboTAP evaluation pickles, and TAP-Vid query sampling.

Layouts, as documented in google-deepmind/tapnet ``tapnet/tapvid/README.md`` and read by
``tapnet/tapvid/evaluation_datasets.py``:

- **DAVIS** (``tapvid_davis.pkl``) and **RoboTAP** (``robotap_split*.pkl``): a dict, clip name → record.
- **RGB-Stacking** (``tapvid_rgb_stacking.pkl``): a list of records, no names.
- **Kinetics** (shards ``NNNN_of_0010.pkl`` made by ``tapnet/tapvid/generate_tapvid.py``): a list of
  records whose ``video`` is a sequence of JPEG-encoded frames (bytes); tapnet decodes them with PIL,
  i.e. to RGB.

A record is ``{"video": (T, H, W, 3) uint8 RGB, "points": (N, T, 2) x/y normalised to [0, 1],
"occluded": (N, T) bool}``; a normalised point ``p`` lies at pixel ``p * (W, H)`` of a W×H frame.

Pickles execute code when loaded: only open files from a source you trust.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from .queries import DEFAULT_QUERY_STRIDE, sample_query_tracks

RECORD_KEYS = ("video", "points", "occluded")
"""Keys of one clip record in every TAP-Vid pickle."""

EVAL_SIZE_HW = (256, 256)
"""(height, width) of the raster TAP-Vid evaluates in."""

Layout = Literal["dict", "list"]
"""Top level of a pickle: ``dict`` (clip name → record) or ``list`` of records."""


@dataclass(eq=False)
class TapVidQueries:
    """Queries sampled from one clip, with the ground truth of their tracks.

    Attributes:
        mode: "first" or "strided".
        query_points: (Q, 3) float64 (t, y, x): frame index and pixel position in the chosen raster.
        target_points: (Q, T, 2) float64 x/y pixel positions of each query's track on every frame.
        occluded: (Q, T) bool, True where the track is occluded.
        track_index: (Q,) int64 index of the clip track each query comes from (a track can give several
            queries in "strided" mode).
    """

    mode: str
    query_points: np.ndarray
    target_points: np.ndarray
    occluded: np.ndarray
    track_index: np.ndarray

    @property
    def num_queries(self) -> int:
        return int(self.query_points.shape[0])


@dataclass(eq=False)
class TapVidClip:
    """One annotated clip, validated on construction.

    Attributes:
        name: clip name (the dict key, or ``<file stem>_<index>`` for list layouts).
        video: (T, H, W, 3) uint8 RGB frames.
        points: (N, T, 2) float64 x/y *normalised to [0, 1]* of the frame size, as stored in the pickles;
            use :meth:`points_px` for pixels.
        occluded: (N, T) bool, True where the point is occluded.
    """

    name: str
    video: np.ndarray
    points: np.ndarray
    occluded: np.ndarray

    def __post_init__(self) -> None:
        self.name = str(self.name)
        self.video = np.asarray(self.video)
        self.points = np.asarray(self.points)
        self.occluded = np.asarray(self.occluded)
        where = f"clip {self.name!r}"
        if self.video.ndim != 4 or self.video.shape[-1] != 3:
            raise ValueError(f"{where}: video must have shape (T, H, W, 3), got {self.video.shape}")
        if self.video.dtype != np.uint8:
            raise ValueError(f"{where}: video must be uint8 RGB, got dtype {self.video.dtype}")
        if self.points.ndim != 3 or self.points.shape[-1] != 2:
            raise ValueError(f"{where}: points must have shape (N, T, 2), got {self.points.shape}")
        if not np.issubdtype(self.points.dtype, np.number):
            raise ValueError(f"{where}: points must be numeric, got dtype {self.points.dtype}")
        self.points = self.points.astype(np.float64, copy=False)
        if self.occluded.shape != self.points.shape[:2]:
            raise ValueError(
                f"{where}: occluded has shape {self.occluded.shape} but points {self.points.shape} "
                f"need (N, T) = {self.points.shape[:2]}"
            )
        self.occluded = _as_bool(self.occluded, f"{where}: occluded")
        if self.points.shape[1] != self.video.shape[0]:
            raise ValueError(
                f"{where}: points/occluded cover {self.points.shape[1]} frames but video has "
                f"{self.video.shape[0]} (points {self.points.shape}, video {self.video.shape})"
            )

    @classmethod
    def from_pixels(
        cls, name: str, video: np.ndarray, points_px: np.ndarray, occluded: np.ndarray
    ) -> TapVidClip:
        """Build a clip from (N, T, 2) x/y pixel positions in ``video`` (T, H, W, 3)."""
        video = np.asarray(video)
        if video.ndim != 4:
            raise ValueError(f"clip {name!r}: video must have shape (T, H, W, 3), got {video.shape}")
        height, width = video.shape[1:3]
        return cls(name, video, np.asarray(points_px, dtype=np.float64) / (width, height), occluded)

    @property
    def num_frames(self) -> int:
        return int(self.video.shape[0])

    @property
    def num_tracks(self) -> int:
        return int(self.points.shape[0])

    @property
    def size_hw(self) -> tuple[int, int]:
        """(height, width) of the frames."""
        return int(self.video.shape[1]), int(self.video.shape[2])

    def points_px(self, size_hw: tuple[int, int] | None = None) -> np.ndarray:
        """(N, T, 2) x/y in pixels of a ``size_hw`` = (H, W) raster; None: the clip's own frame size."""
        height, width = self._raster(size_hw)
        return self.points * np.array([width, height], dtype=np.float64)

    def make_queries(
        self,
        mode: str,
        size_hw: tuple[int, int] | None = EVAL_SIZE_HW,
        stride: int = DEFAULT_QUERY_STRIDE,
    ) -> TapVidQueries:
        """Sample queries as the TAP-Vid evaluation does.

        "first": one query per track at its first visible frame; tracks never visible are dropped.
        "strided": on frames 0, ``stride``, 2·``stride``, …, one query for every track visible there,
        ordered by frame, then by track.

        Args:
            mode: "first" or "strided".
            size_hw: (H, W) of the raster the positions are expressed in; the default is the 256×256
                raster of the metrics; None gives pixels of the clip's own frames.
            stride: frame stride of "strided" mode.

        Returns:
            The queries; empty (Q = 0) when no track is visible on a sampled frame.
        """
        track_index, query_frame = sample_query_tracks(self.occluded, mode, stride)
        target_points = self.points_px(size_hw)[track_index]
        query_xy = target_points[np.arange(track_index.size), query_frame]
        query_points = np.stack(
            [query_frame.astype(np.float64), query_xy[:, 1], query_xy[:, 0]], axis=-1
        ).reshape(-1, 3)
        return TapVidQueries(
            mode=mode,
            query_points=query_points,
            target_points=target_points,
            occluded=self.occluded[track_index],
            track_index=track_index,
        )

    def _raster(self, size_hw: tuple[int, int] | None) -> tuple[int, int]:
        if size_hw is None:
            return self.size_hw
        height, width = size_hw
        if height <= 0 or width <= 0:
            raise ValueError(f"size_hw must be positive (height, width), got {size_hw}")
        return int(height), int(width)


def _as_bool(array: np.ndarray, what: str) -> np.ndarray:
    if array.dtype == np.bool_:
        return array
    if np.issubdtype(array.dtype, np.integer) and np.isin(array, (0, 1)).all():
        return array.astype(bool)
    raise ValueError(f"{what} must be bool (or 0/1 integers), got dtype {array.dtype}")


def _is_encoded_frames(video: Any) -> bool:
    if isinstance(video, np.ndarray):
        return video.dtype.kind == "S" or (
            video.dtype == object and video.size > 0 and isinstance(video.flat[0], bytes)
        )
    return isinstance(video, (list, tuple)) and len(video) > 0 and isinstance(video[0], bytes)


def _decode_jpeg_frames(frames: Sequence[bytes], where: str) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB from JPEG bytes; OpenCV decodes to BGR, tapnet's PIL path gives RGB."""
    decoded = []
    for index, frame in enumerate(frames):
        if not isinstance(frame, bytes):
            raise ValueError(f"{where}: video frame {index} is {type(frame).__name__}, expected JPEG bytes")
        image = cv2.imdecode(np.frombuffer(frame, dtype=np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"{where}: video frame {index} ({len(frame)} bytes) is not a decodable image")
        if decoded and image.shape != decoded[0].shape:
            raise ValueError(
                f"{where}: video frame {index} has shape {image.shape}, frame 0 has {decoded[0].shape}"
            )
        decoded.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    return np.stack(decoded)


def _video_length(video: Any) -> int | None:
    if isinstance(video, np.ndarray):
        return int(video.shape[0]) if video.ndim >= 1 else None
    if isinstance(video, (list, tuple)):
        return len(video)
    return None


def _check_record(name: str, record: Any, source: Path) -> None:
    """Structure and shapes of a raw record, without decoding its frames."""
    where = f"{source}: clip {name!r}"
    if not isinstance(record, Mapping):
        raise ValueError(
            f"{where} is a {type(record).__name__}, expected a dict with keys {list(RECORD_KEYS)}"
        )
    missing = [key for key in RECORD_KEYS if key not in record]
    if missing:
        raise ValueError(f"{where} lacks {missing}; it has keys {sorted(map(str, record))}")
    points_shape = np.shape(record["points"])
    occluded_shape = np.shape(record["occluded"])
    if len(points_shape) != 3 or points_shape[-1] != 2:
        raise ValueError(f"{where}: points must have shape (N, T, 2), got {points_shape}")
    if occluded_shape != points_shape[:2]:
        raise ValueError(
            f"{where}: occluded has shape {occluded_shape} but points {points_shape} need (N, T) = "
            f"{points_shape[:2]}"
        )
    num_frames = _video_length(record["video"])
    if num_frames is None:
        raise ValueError(f"{where}: video is a {type(record['video']).__name__}, expected frames")
    if num_frames != points_shape[1]:
        raise ValueError(
            f"{where}: points/occluded cover {points_shape[1]} frames but video has {num_frames} "
            f"(points {points_shape}, occluded {occluded_shape})"
        )


def clip_from_record(name: str, record: Mapping[str, Any]) -> TapVidClip:
    """A validated :class:`TapVidClip` from one pickle record, decoding JPEG frames if needed."""
    video = record["video"]
    if _is_encoded_frames(video):
        video = _decode_jpeg_frames(list(video), f"clip {name!r}")
    elif isinstance(video, (list, tuple)):
        try:
            video = np.stack([np.asarray(frame) for frame in video])
        except ValueError as error:
            raise ValueError(f"clip {name!r}: video frames do not stack: {error}") from None
    return TapVidClip(name, video, record["points"], record["occluded"])


class TapVidDataset(Sequence[TapVidClip]):
    """The clips of one or more TAP-Vid pickles, checked on load and decoded when accessed.

    Shapes and keys of every record are checked when the dataset is opened; frames (JPEG bytes for
    Kinetics) are decoded only when a clip is indexed, so a Kinetics shard never sits decoded in memory.
    """

    def __init__(self, entries: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
        self._entries = list(entries)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self._entries]

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, index: int) -> TapVidClip:  # type: ignore[override]
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"TapVidDataset index must be an int, got {type(index).__name__}")
        name, record = self._entries[index]
        return clip_from_record(name, record)

    def __iter__(self) -> Iterator[TapVidClip]:
        for name, record in self._entries:
            yield clip_from_record(name, record)


def _load_pickle(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"TAP-Vid pickle not found: {path}")
    try:
        with path.open("rb") as stream:
            return pickle.load(stream)
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError) as error:
        raise ValueError(f"{path}: not a readable pickle ({type(error).__name__}: {error})") from None


def _entries_of(data: Any, path: Path, expected: Layout | None) -> list[tuple[str, Mapping[str, Any]]]:
    """(name, record) pairs of one loaded pickle, after checking its layout and shapes."""
    if isinstance(data, Mapping) and set(RECORD_KEYS) <= set(data):
        raise ValueError(
            f"{path}: unknown layout: top level is a single clip record; expected a dict of clip name → "
            "record (DAVIS, RoboTAP) or a list of records (RGB-Stacking, Kinetics)"
        )
    if isinstance(data, Mapping):
        layout: Layout = "dict"
        entries = [(str(name), record) for name, record in data.items()]
    elif isinstance(data, (list, tuple)):
        layout = "list"
        entries = [(f"{path.stem}_{index:04d}", record) for index, record in enumerate(data)]
    else:
        raise ValueError(
            f"{path}: unknown layout: top level is a {type(data).__name__}; expected a dict of clip name → "
            "record (DAVIS, RoboTAP) or a list of records (RGB-Stacking, Kinetics)"
        )
    if expected is not None and layout != expected:
        raise ValueError(f"{path}: unknown layout for this dataset: expected a {expected}, found a {layout}")
    for name, record in entries:
        _check_record(name, record, path)
    return entries


def _pickle_paths(path: str | os.PathLike[str], pattern: str) -> list[Path]:
    path = Path(path)
    if path.is_dir():
        paths = sorted(path.glob(pattern))
        if not paths:
            raise FileNotFoundError(f"no TAP-Vid pickle matching {pattern!r} in {path}")
        return paths
    if not path.exists():
        raise FileNotFoundError(f"TAP-Vid pickle not found: {path}")
    return [path]


def _open(paths: Iterable[Path], expected: Layout | None) -> TapVidDataset:
    entries: list[tuple[str, Mapping[str, Any]]] = []
    origin: dict[str, Path] = {}
    for path in paths:
        for name, record in _entries_of(_load_pickle(path), path, expected):
            if name in origin:
                raise ValueError(f"clip name {name!r} appears in both {origin[name]} and {path}")
            origin[name] = path
            entries.append((name, record))
    return TapVidDataset(entries)


def load_tapvid_pickle(path: str | os.PathLike[str], expected_layout: Layout | None = None) -> TapVidDataset:
    """Open any TAP-Vid / RoboTAP pickle, whatever its layout (or require ``expected_layout``)."""
    return _open([Path(path)], expected_layout)


def read_tapvid_davis(path: str | os.PathLike[str]) -> TapVidDataset:
    """TAP-Vid-DAVIS: ``tapvid_davis.pkl``, a dict clip name → record."""
    return _open([Path(path)], "dict")


def read_robotap(path: str | os.PathLike[str]) -> TapVidDataset:
    """RoboTAP: one ``robotap_split*.pkl`` or a folder of them, each a dict clip name → record.

    Splits of a folder are merged in file-name order; a clip name found twice is an error.
    """
    return _open(_pickle_paths(path, "robotap_split*.pkl"), "dict")


def read_tapvid_rgb_stacking(path: str | os.PathLike[str]) -> TapVidDataset:
    """TAP-Vid-RGB-Stacking: ``tapvid_rgb_stacking.pkl``, a list of records named ``<stem>_<index>``."""
    return _open([Path(path)], "list")


def read_tapvid_kinetics(path: str | os.PathLike[str]) -> TapVidDataset:
    """TAP-Vid-Kinetics: one shard or a folder of ``*_of_*.pkl`` shards, lists of records with JPEG frames.

    Clips are named ``<shard stem>_<index>``. Like tapnet, a shard holding a dict is accepted too (its
    keys then name the clips).
    """
    return _open(_pickle_paths(path, "*_of_*.pkl"), None)


def _record_of(clip: TapVidClip, jpeg_quality: int | None) -> dict[str, Any]:
    video: Any = clip.video
    if jpeg_quality is not None:
        video = []
        for index, frame in enumerate(clip.video):
            ok, encoded = cv2.imencode(
                ".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]
            )
            if not ok:
                raise ValueError(f"clip {clip.name!r}: frame {index} could not be JPEG-encoded")
            video.append(encoded.tobytes())
    return {
        "video": video,
        "points": clip.points.astype(np.float32),
        "occluded": clip.occluded.astype(bool),
    }


def write_tapvid_pickle(
    path: str | os.PathLike[str],
    clips: Iterable[TapVidClip],
    layout: Layout = "dict",
    jpeg_quality: int | None = None,
) -> Path:
    """Write clips as a TAP-Vid pickle that the readers (and tapnet's) load.

    Args:
        path: output file; its folder is created. The file is replaced atomically, so a failure leaves
            any previous file intact.
        clips: the clips; names must be unique for the ``dict`` layout.
        layout: "dict" (DAVIS / RoboTAP: clip name → record) or "list" (RGB-Stacking / Kinetics).
        jpeg_quality: if given (1–100), frames are stored as a list of JPEG bytes, as in Kinetics shards;
            otherwise as a (T, H, W, 3) uint8 array.

    Returns:
        The path written.
    """
    if layout not in ("dict", "list"):
        raise ValueError(f"layout must be 'dict' or 'list', got {layout!r}")
    if jpeg_quality is not None and not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be in [1, 100], got {jpeg_quality}")
    clips = list(clips)
    for clip in clips:
        if not isinstance(clip, TapVidClip):
            raise ValueError(f"clips must be TapVidClip, got {type(clip).__name__}")
    records = [_record_of(clip, jpeg_quality) for clip in clips]
    data: Any
    if layout == "dict":
        names = [clip.name for clip in clips]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"clip names must be unique in a dict layout, repeated: {duplicates}")
        data = dict(zip(names, records, strict=True))
    else:
        data = records

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            pickle.dump(data, stream, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
