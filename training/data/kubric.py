"""Reader and writer for the CoTracker3 Kubric training set layout.

The released data set (https://huggingface.co/datasets/facebook/CoTracker3_Kubric, ~6,000 sequences,
512x512 px, 120 frames each) is distributed as one ``NNNN.tar.gz`` archive per sequence; once extracted,
every sequence is a folder::

    <root>/<name>/
        <name>.npy          pickled dict (np.save of a dict, load with allow_pickle=True):
                              "coords":     (N, T, 2) float, pixel x, y (x to the right, y down)
                              "visibility": (N, T) bool, True where the point is OCCLUDED
                                            (the key name is misleading: the official loader
                                            inverts it before use)
        frames/000.png ...  T RGB frames, zero-padded frame index
        (the release also ships <name>_trajs_2d.npy, <name>_visibility.npy, <name>_with_rank.npz and
         depths/NNN.npy; this reader does not need them)

Sources: the dataset card above and the official loader ``cotracker/datasets/kubric_movif_dataset.py``
in facebookresearch/co-tracker (reads ``<name>/<name>.npy`` and the sorted ``frames/`` folder, transposes
coords to (T, N, 2) and takes ``logical_not`` of "visibility").

We follow CoTracker's pixel convention: coordinate (x, y) is the centre of pixel column x, row y, so a
point is inside a W x H frame iff 0 <= x <= W - 1 and 0 <= y <= H - 1.

Security note: the annotation file is a pickle; only read data sets from sources you trust.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

FRAMES_DIRNAME = "frames"
COORDS_KEY = "coords"
OCCLUDED_KEY = "visibility"  # stores the occlusion flag, see module docstring
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")


class KubricLayoutError(ValueError):
    """The data on disk does not follow the Kubric layout described in this module."""


@dataclass(frozen=True)
class TrackSequence:
    """A video with ground-truth point tracks.

    Attributes:
        name: sequence name (its folder name on disk).
        video: (T, 3, H, W) uint8 RGB frames.
        tracks: (T, N, 2) float32 pixel x, y (may hold NaN where an annotation is missing).
        visibility: (T, N) bool, True where the point is visible.
    """

    name: str
    video: torch.Tensor
    tracks: torch.Tensor
    visibility: torch.Tensor

    def __post_init__(self) -> None:
        if self.video.ndim != 4 or self.video.shape[1] != 3:
            raise ValueError(f"{self.name}: video must be (T, 3, H, W), got {tuple(self.video.shape)}")
        if self.tracks.ndim != 3 or self.tracks.shape[-1] != 2:
            raise ValueError(f"{self.name}: tracks must be (T, N, 2), got {tuple(self.tracks.shape)}")
        if tuple(self.visibility.shape) != tuple(self.tracks.shape[:2]):
            raise ValueError(
                f"{self.name}: visibility {tuple(self.visibility.shape)} does not match tracks "
                f"{tuple(self.tracks.shape[:2])}"
            )
        if self.video.shape[0] != self.tracks.shape[0]:
            raise ValueError(
                f"{self.name}: video has {self.video.shape[0]} frames but tracks have {self.tracks.shape[0]}"
            )
        if self.visibility.dtype != torch.bool:
            raise ValueError(f"{self.name}: visibility must be bool, got {self.visibility.dtype}")

    @property
    def num_frames(self) -> int:
        return int(self.video.shape[0])

    @property
    def num_points(self) -> int:
        return int(self.tracks.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the frames."""
        return int(self.video.shape[2]), int(self.video.shape[3])


def _frame_sort_key(path: Path) -> tuple[int, int | str]:
    # Numeric stems sort by value (robust to unpadded names); others fall back to lexical order.
    stem = path.stem
    return (0, int(stem)) if stem.isdigit() else (1, stem)


def list_frame_files(frames_dir: Path) -> list[Path]:
    """Frame image files of one sequence, in temporal order."""
    files = [p for p in frames_dir.iterdir() if p.suffix.lower() in FRAME_SUFFIXES and p.is_file()]
    return sorted(files, key=_frame_sort_key)


def read_rgb_frame(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB image; raises KubricLayoutError if it cannot be decoded."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise KubricLayoutError(f"cannot decode frame image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def load_annotations(npy_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one annotation file.

    Returns:
        tracks: (T, N, 2) float32 pixel x, y.
        visibility: (T, N) bool, True where visible.
    """
    try:
        raw = np.load(npy_path, allow_pickle=True)
    except (OSError, ValueError) as err:
        raise KubricLayoutError(f"cannot read annotation file {npy_path}: {err}") from err
    content = raw.item() if isinstance(raw, np.ndarray) and raw.dtype == object and raw.ndim == 0 else raw
    if not isinstance(content, dict):
        raise KubricLayoutError(f"{npy_path}: expected a pickled dict, got {type(content).__name__}")
    missing = [k for k in (COORDS_KEY, OCCLUDED_KEY) if k not in content]
    if missing:
        raise KubricLayoutError(f"{npy_path}: missing keys {missing}; present: {sorted(content)}")
    coords = np.asarray(content[COORDS_KEY])
    occluded = np.asarray(content[OCCLUDED_KEY])
    if coords.ndim != 3 or coords.shape[-1] != 2:
        raise KubricLayoutError(f"{npy_path}: '{COORDS_KEY}' must be (N, T, 2), got {coords.shape}")
    if occluded.shape != coords.shape[:2]:
        raise KubricLayoutError(
            f"{npy_path}: '{OCCLUDED_KEY}' shape {occluded.shape} does not match "
            f"coords (N, T) {coords.shape[:2]}"
        )
    tracks = np.ascontiguousarray(coords.transpose(1, 0, 2), dtype=np.float32)
    visibility = np.ascontiguousarray(~occluded.astype(bool).T)
    return tracks, visibility


def write_kubric_sequence(
    sequence_dir: str | Path,
    video: torch.Tensor | np.ndarray,
    tracks: torch.Tensor | np.ndarray,
    visibility: torch.Tensor | np.ndarray,
) -> Path:
    """Write one sequence in the released layout (the folder name is the sequence name).

    Args:
        sequence_dir: folder to create, ``<root>/<name>``; must not already hold a sequence.
        video: (T, 3, H, W) uint8 RGB.
        tracks: (T, N, 2) pixel x, y.
        visibility: (T, N) bool, True where visible (stored inverted, as the release does).

    Returns:
        The sequence folder.
    """
    sequence_dir = Path(sequence_dir)
    video_np = video.numpy() if isinstance(video, torch.Tensor) else np.asarray(video)
    tracks_np = tracks.numpy() if isinstance(tracks, torch.Tensor) else np.asarray(tracks)
    vis_np = visibility.numpy() if isinstance(visibility, torch.Tensor) else np.asarray(visibility)
    if video_np.ndim != 4 or video_np.shape[1] != 3 or video_np.dtype != np.uint8:
        raise ValueError(f"video must be (T, 3, H, W) uint8, got {video_np.shape} {video_np.dtype}")
    if tracks_np.ndim != 3 or tracks_np.shape[-1] != 2 or tracks_np.shape[0] != video_np.shape[0]:
        raise ValueError(f"tracks must be (T, N, 2) with T={video_np.shape[0]}, got {tracks_np.shape}")
    if vis_np.shape != tracks_np.shape[:2] or vis_np.dtype != np.bool_:
        raise ValueError(f"visibility must be bool {tracks_np.shape[:2]}, got {vis_np.shape} {vis_np.dtype}")
    npy_path = sequence_dir / f"{sequence_dir.name}.npy"
    if npy_path.exists():
        raise ValueError(f"{sequence_dir} already holds a sequence; refusing to overwrite")

    frames_dir = sequence_dir / FRAMES_DIRNAME
    frames_dir.mkdir(parents=True, exist_ok=True)
    digits = max(3, len(str(video_np.shape[0] - 1)))
    for t, frame in enumerate(video_np):
        bgr = cv2.cvtColor(np.ascontiguousarray(frame.transpose(1, 2, 0)), cv2.COLOR_RGB2BGR)
        path = frames_dir / f"{t:0{digits}d}.png"
        if not cv2.imwrite(str(path), bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
            raise OSError(f"could not write {path}")
    annotations = {
        COORDS_KEY: np.ascontiguousarray(tracks_np.transpose(1, 0, 2), dtype=np.float32),
        OCCLUDED_KEY: np.ascontiguousarray(~vis_np.T),
    }
    np.save(npy_path, annotations, allow_pickle=True)
    return sequence_dir


class KubricReader:
    """Random access to the sequences under a Kubric-layout root folder.

    Construction checks the layout of every sequence folder (annotation file and frames folder present)
    so a broken download fails at start-up, naming the sequence, rather than hours into training.

    Args:
        root: folder holding one sub-folder per sequence.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.exists():
            raise KubricLayoutError(f"Kubric data set path does not exist: {self.root}")
        if not self.root.is_dir():
            raise KubricLayoutError(f"Kubric data set path is not a folder: {self.root}")
        names = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not names:
            archives = sorted(self.root.glob("*.tar.gz"))
            hint = (
                f" It holds {len(archives)} .tar.gz archives: extract them first "
                f"(each becomes <root>/<name>/)."
                if archives
                else ""
            )
            raise KubricLayoutError(
                f"no sequence folders in {self.root}; expected <root>/<name>/<name>.npy and "
                f"<root>/<name>/{FRAMES_DIRNAME}/*.png.{hint}"
            )
        problems = [msg for msg in (self._layout_problem(n) for n in names) if msg]
        if problems:
            shown = "; ".join(problems[:5])
            more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
            raise KubricLayoutError(f"incomplete sequences in {self.root}: {shown}{more}")
        self.names: tuple[str, ...] = tuple(names)

    def _layout_problem(self, name: str) -> str | None:
        folder = self.root / name
        missing = []
        if not (folder / f"{name}.npy").is_file():
            missing.append(f"{name}.npy")
        if not (folder / FRAMES_DIRNAME).is_dir():
            missing.append(f"{FRAMES_DIRNAME}/")
        return f"sequence '{name}' is missing {', '.join(missing)}" if missing else None

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[TrackSequence]:
        for index in range(len(self)):
            yield self.read(index)

    def _name(self, key: int | str) -> str:
        if isinstance(key, str):
            if key not in self.names:
                raise KeyError(f"no sequence named '{key}' in {self.root}")
            return key
        if not -len(self.names) <= key < len(self.names):
            raise IndexError(f"sequence index {key} out of range for {len(self.names)} sequences")
        return self.names[key]

    def frame_files(self, key: int | str) -> list[Path]:
        """Frame files of a sequence in temporal order (no decoding)."""
        name = self._name(key)
        frames_dir = self.root / name / FRAMES_DIRNAME
        files = list_frame_files(frames_dir)
        if not files:
            raise KubricLayoutError(f"sequence '{name}' has no frame images in {frames_dir}")
        return files

    def num_frames(self, key: int | str) -> int:
        """Number of frames, from the file listing only (cheap: used to choose clips before reading)."""
        return len(self.frame_files(key))

    def read(self, key: int | str, frames: Sequence[int] | slice | None = None) -> TrackSequence:
        """Load a sequence, or only some of its frames.

        Args:
            key: index into ``names`` or a sequence name.
            frames: frame indices or a slice to load (default: all). Only these PNGs are decoded.

        Returns:
            TrackSequence with the selected frames. Non-finite track coordinates (missing annotations)
            are kept as they are and marked invisible.
        """
        name = self._name(key)
        files = self.frame_files(name)
        tracks, visibility = load_annotations(self.root / name / f"{name}.npy")
        if tracks.shape[0] != len(files):
            raise KubricLayoutError(
                f"sequence '{name}' has {len(files)} frame images but annotations for "
                f"{tracks.shape[0]} frames"
            )
        if frames is None:
            indices = np.arange(len(files))
        elif isinstance(frames, slice):
            indices = np.arange(len(files))[frames]
        else:
            indices = np.asarray(frames, dtype=np.int64)
            if indices.size and (indices.min() < 0 or indices.max() >= len(files)):
                raise IndexError(f"sequence '{name}' has {len(files)} frames; requested {indices.tolist()}")
        if indices.size == 0:
            raise ValueError(f"sequence '{name}': no frames selected by {frames!r}")

        images = [read_rgb_frame(files[i]) for i in indices]
        sizes = {img.shape for img in images}
        if len(sizes) != 1:
            raise KubricLayoutError(f"sequence '{name}' has frames of different sizes: {sorted(sizes)}")
        video = np.stack(images).transpose(0, 3, 1, 2)
        tracks = tracks[indices]
        visibility = visibility[indices]
        # Missing annotations stay NaN/inf (the sampler marks them invalid) but are never "visible".
        visibility = visibility & np.isfinite(tracks).all(axis=-1)
        return TrackSequence(
            name=name,
            video=torch.from_numpy(np.ascontiguousarray(video)),
            tracks=torch.from_numpy(np.ascontiguousarray(tracks)),
            visibility=torch.from_numpy(np.ascontiguousarray(visibility)),
        )
