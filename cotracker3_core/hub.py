"""Resolve a user's ``checkpoint`` argument to a local file, and read checkpoint files.

A checkpoint spec is one of:

- a local file path (``str`` or ``os.PathLike``), used as is;
- a name of weights shipped inside this package (``"lite"``: ``SHIPPED_CHECKPOINTS``), resolved offline;
- an official CoTracker3 name (``"scaled_online"``, optionally with ``.pth``), downloaded once from
  ``COTRACKER3_BASE_URL`` (default: the facebook/cotracker3 Hugging Face repository) into the cache;
- an ``http(s)://`` URL, downloaded once into the cache under the URL's last path component.

The cache directory is ``$COTRACKER3_CACHE_DIR``, else ``$XDG_CACHE_HOME/cotracker3``, else
``~/.cache/cotracker3``. Environment variables are read on every call, not at import time.

Downloads are atomic: bytes go to a temporary file in the cache directory, which is fsynced and then
renamed over the final name, so an interrupted download never leaves a file that looks complete.
A file already in the cache is used without touching the network, which is how to work offline.

The official weights are licensed CC BY-NC 4.0 (non-commercial use only); see ``OFFICIAL_CHECKPOINTS``.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from tqdm import tqdm

__all__ = [
    "BASE_URL_ENV",
    "CACHE_DIR_ENV",
    "DEFAULT_BASE_URL",
    "OFFICIAL_CHECKPOINTS",
    "SHIPPED_CHECKPOINTS",
    "CheckpointDownloadError",
    "OfficialCheckpoint",
    "checkpoint_base_url",
    "checkpoint_cache_dir",
    "download_file",
    "load_checkpoint_file",
    "load_state_dict_file",
    "official_checkpoint_url",
    "official_name_for",
    "resolve_checkpoint",
    "shipped_checkpoint_path",
]

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://huggingface.co/facebook/cotracker3/resolve/main/"
BASE_URL_ENV = "COTRACKER3_BASE_URL"
CACHE_DIR_ENV = "COTRACKER3_CACHE_DIR"

#: Seconds a single socket operation (connect, one read) may block before the download fails.
DOWNLOAD_TIMEOUT_S = 60.0
_CHUNK_BYTES = 1 << 20
_USER_AGENT = "cotracker3_ros-hub/1 (Python urllib)"

_OFFICIAL_LICENCE = (
    "Official CoTracker3 weights by Meta AI are licensed CC BY-NC 4.0: non-commercial use only "
    "(https://creativecommons.org/licenses/by-nc/4.0/)."
)


@dataclass(frozen=True)
class OfficialCheckpoint:
    """One of the checkpoints published with CoTracker3.

    Attributes:
        name: the short name users pass, e.g. ``"scaled_online"``.
        filename: file name under the base URL and in the cache.
        mode: ``"online"`` (sliding windows, streaming) or ``"offline"`` (one window over the video).
        window_len: number of frames per window the weights were trained with.
        licence: licence of the weights.
    """

    name: str
    filename: str
    mode: Literal["online", "offline"]
    window_len: int
    licence: str = _OFFICIAL_LICENCE


def _official(name: str, mode: Literal["online", "offline"]) -> OfficialCheckpoint:
    window_len = 16 if mode == "online" else 60
    return OfficialCheckpoint(name=name, filename=f"{name}.pth", mode=mode, window_len=window_len)


OFFICIAL_CHECKPOINTS: dict[str, OfficialCheckpoint] = {
    ckpt.name: ckpt
    for ckpt in (
        _official("scaled_online", "online"),
        _official("scaled_offline", "offline"),
        _official("baseline_online", "online"),
        _official("baseline_offline", "offline"),
    )
}


#: Weights of the project's own, shipped inside the package (``cotracker3_core/weights``), Apache-2.0 like the
#: code: name -> file name. Each file carries its preset, training config, recommended inference settings
#: and a checksum of its weights (see ``cotracker3_core.checkpoint``).
SHIPPED_CHECKPOINTS: dict[str, str] = {"lite": "lite.pt"}
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def shipped_checkpoint_path(name: str) -> Path:
    """Path of a shipped checkpoint (from a source checkout or an installed package alike)."""
    if name not in SHIPPED_CHECKPOINTS:
        raise ValueError(f"no shipped checkpoint {name!r}; shipped: {sorted(SHIPPED_CHECKPOINTS)}")
    path = WEIGHTS_DIR / SHIPPED_CHECKPOINTS[name]
    if not path.is_file():
        raise FileNotFoundError(
            f"shipped checkpoint {name!r} is missing from this installation: no file at {path} "
            "(a package built without its package data?)"
        )
    return path


class CheckpointDownloadError(RuntimeError):
    """A checkpoint could not be downloaded; the message says how to place the file by hand.

    Attributes:
        url: the URL that failed.
        destination: where the file is expected in the cache.
        reason: short description of the failure.
    """

    def __init__(self, url: str, destination: Path, reason: str) -> None:
        self.url = url
        self.destination = destination
        self.reason = reason
        super().__init__(
            f"Could not download checkpoint {url}: {reason}. "
            f"To work offline, fetch that URL on a machine with network access and save it as "
            f"{destination} (or pass the path of a local checkpoint file instead)."
        )


class _TransferError(Exception):
    """The server answered, but not with the complete file."""


# ---------------------------------------------------------------------------------------------------------
# Locations


def checkpoint_base_url() -> str:
    """Base URL the official checkpoints are fetched from (``$COTRACKER3_BASE_URL`` or the default)."""
    url = os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    # Without the trailing slash, joining would replace the last path component instead of appending.
    return url if url.endswith("/") else url + "/"


def checkpoint_cache_dir() -> Path:
    """Directory downloaded checkpoints are kept in (not created here)."""
    override = os.environ.get(CACHE_DIR_ENV)
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "cotracker3"


def official_checkpoint_url(name: str) -> str:
    """Download URL of an official checkpoint name (``"scaled_online"``, with or without ``.pth``)."""
    official = _lookup_official(name)
    if official is None:
        raise ValueError(f"{name!r} is not an official checkpoint name; expected one of {_official_names()}")
    return urllib.parse.urljoin(checkpoint_base_url(), official.filename)


def _official_names() -> str:
    return ", ".join(OFFICIAL_CHECKPOINTS)


def _lookup_official(name: str) -> OfficialCheckpoint | None:
    stem = name[: -len(".pth")] if name.endswith(".pth") else name
    return OFFICIAL_CHECKPOINTS.get(stem)


def _is_url(spec: str) -> bool:
    return "://" in spec


def _url_filename(url: str) -> str:
    """Last path component of ``url`` (query and fragment ignored), checked to be a plain file name."""
    name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
    if name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ValueError(f"cannot take a file name from URL {url!r}: its path must end in a file name")
    return name


# ---------------------------------------------------------------------------------------------------------
# Resolution


def official_name_for(spec: str | os.PathLike[str]) -> str | None:
    """Official checkpoint name a spec refers to, or None.

    Matches the last path component of a name, local path or URL: ``"scaled_online"``,
    ``"/data/scaled_online.pth"`` and ``"https://host/x/scaled_online.pth?download=true"`` all give
    ``"scaled_online"``, so callers can infer ``mode`` and ``window_len`` from ``OFFICIAL_CHECKPOINTS``.
    """
    text = os.fspath(spec)
    if isinstance(spec, str) and _is_url(text):
        try:
            last = _url_filename(text)
        except ValueError:
            return None
    else:
        last = Path(text).name
    official = _lookup_official(last)
    return official.name if official is not None else None


def resolve_checkpoint(spec: str | os.PathLike[str]) -> Path:
    """Turn a checkpoint spec into the path of a local file, downloading it into the cache if needed.

    Order: an ``http(s)://`` URL is downloaded; an existing file is used as is (a ``PathLike`` is always
    a path); a shipped name is the package's own file; an official name is downloaded from
    ``checkpoint_base_url()``. A file already in the cache
    is reused without any network access. The cache is keyed by file name only, so a URL ending in
    ``scaled_online.pth`` and the name ``"scaled_online"`` share one cached file.

    Raises:
        FileNotFoundError: ``spec`` is neither an existing file, an official name nor a URL.
        ValueError: unsupported URL scheme, or a URL without a file name.
        CheckpointDownloadError: the download failed (no network, HTTP error, truncated transfer).
    """
    if isinstance(spec, str):
        if _is_url(spec):
            scheme = urllib.parse.urlsplit(spec).scheme.lower()
            if scheme not in ("http", "https"):
                raise ValueError(f"unsupported checkpoint URL scheme {scheme!r} in {spec!r}; use http(s)")
            return _cached_download(spec, _url_filename(spec))
        if not spec:
            raise ValueError("checkpoint spec is empty; give a file path, an official name or a URL")

    path = Path(os.fspath(spec)).expanduser()
    if path.is_file():
        return path.resolve()

    if isinstance(spec, str) and spec in SHIPPED_CHECKPOINTS:
        return shipped_checkpoint_path(spec)

    if isinstance(spec, str):
        official = _lookup_official(spec)
        if official is not None:
            return _cached_download(official_checkpoint_url(official.name), official.filename, official)

    if path.exists():
        raise FileNotFoundError(f"checkpoint path {path.resolve()} exists but is not a regular file")
    raise FileNotFoundError(
        f"checkpoint {os.fspath(spec)!r} not found: no file at {path.resolve()}, and it is neither a "
        f"shipped name ({', '.join(SHIPPED_CHECKPOINTS)}), an official checkpoint name ({_official_names()}) "
        "nor an http(s) URL"
    )


def _cached_download(url: str, filename: str, official: OfficialCheckpoint | None = None) -> Path:
    destination = checkpoint_cache_dir() / filename
    if destination.is_file():
        return destination
    if official is not None:
        logger.info("Downloading %s. %s", official.name, official.licence)
    download_file(url, destination)
    return destination


# ---------------------------------------------------------------------------------------------------------
# Download


def download_file(url: str, destination: Path, *, timeout: float = DOWNLOAD_TIMEOUT_S) -> None:
    """Download ``url`` to ``destination`` atomically, with a progress bar on stderr.

    The parent directory is created. On any failure (including KeyboardInterrupt) the temporary file is
    removed and ``destination`` is left as it was.

    Raises:
        CheckpointDownloadError: network failure, HTTP error status or a truncated transfer.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    fd, tmp_name = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".part")
    tmp_path = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                _stream_to(request, out, destination.name, timeout)
            except urllib.error.HTTPError as exc:
                raise CheckpointDownloadError(url, destination, f"HTTP {exc.code} {exc.reason}") from exc
            except urllib.error.URLError as exc:
                reason = f"cannot reach server ({exc.reason})"
                raise CheckpointDownloadError(url, destination, reason) from exc
            except _TransferError as exc:
                raise CheckpointDownloadError(url, destination, str(exc)) from exc
            except (http.client.HTTPException, OSError) as exc:
                reason = f"transfer failed ({type(exc).__name__}: {exc})"
                raise CheckpointDownloadError(url, destination, reason) from exc
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp_path, destination)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise
    _fsync_directory(destination.parent)


def _stream_to(request: urllib.request.Request, out: Any, label: str, timeout: float) -> None:
    """Copy the response body of ``request`` into the binary file ``out``, checking its length."""
    with urllib.request.urlopen(request, timeout=timeout) as response:
        content_type = response.headers.get("Content-Type", "")
        if content_type.startswith("text/html"):
            # A captive portal or login page answers 200 with HTML; caching that would poison the cache.
            raise _TransferError(f"server returned an HTML page ({content_type}), not a checkpoint file")
        length_header = response.headers.get("Content-Length")
        expected = int(length_header) if length_header and length_header.isdigit() else None
        received = 0
        with tqdm(
            total=expected,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=label,
            file=sys.stderr,
            disable=None,  # on a TTY only
        ) as progress:
            while chunk := response.read(_CHUNK_BYTES):
                out.write(chunk)
                received += len(chunk)
                progress.update(len(chunk))
    # http.client returns b"" (no error) when the server closes early, so the length is checked here.
    if expected is not None and received != expected:
        raise _TransferError(
            f"transfer incomplete: connection closed after {received} of {expected} bytes"
            if received < expected
            else f"received {received} bytes, more than the {expected} announced"
        )


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable; not all platforms can open a directory, which is fine."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------------------
# Reading checkpoint files


def load_checkpoint_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint file safely (``weights_only=True``, on CPU) and return its top-level dict.

    For our training checkpoints this is ``{"model": ..., "arch": ..., ...}``; for official ones, the
    state dict itself.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not a PyTorch checkpoint holding a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {path} does not exist or is not a regular file")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is not a PyTorch checkpoint: the file is empty")
    try:
        with warnings.catch_warnings():
            # Plain pickles of protocol > 2 load fine but make torch warn; the result is validated below.
            warnings.filterwarnings("ignore", message=".*pickle protocol.*", category=UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(
            f"{path} is not a PyTorch checkpoint that can be loaded safely (weights_only=True): "
            f"{_describe_load_error(exc)}"
        ) from exc
    if not isinstance(obj, dict):
        raise ValueError(f"{path} is not a PyTorch checkpoint: it holds a {type(obj).__name__}, not a dict")
    return obj


def _describe_load_error(exc: Exception) -> str:
    """One short line about why torch.load failed, without its advice to disable weights_only."""
    text = str(exc)
    marker = "WeightsUnpickler error:"
    if marker in text:
        detail = " ".join(text.split(marker, 1)[1].split())
        detail = detail.split(". Please use", 1)[0].split(" Check the documentation", 1)[0]
        return f"it holds data other than tensors and plain containers ({detail[:200]})"
    first_line = (text.strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first_line[:200]}" if first_line else type(exc).__name__


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read the model state dict from a checkpoint file.

    Accepts a plain state dict or a dict with the state dict under ``"model"`` (our training checkpoints).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not a PyTorch checkpoint, or does not hold a non-empty dict of tensors.
    """
    checkpoint = load_checkpoint_file(path)
    model = checkpoint.get("model")
    state_dict = model if isinstance(model, dict) else checkpoint
    if not state_dict:
        raise ValueError(f"{path} is not a PyTorch model checkpoint: its state dict is empty")
    for key, value in state_dict.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ValueError(
                f"{path} is not a PyTorch model checkpoint: entry {key!r} is a {type(value).__name__}, "
                f"expected a dict of str -> torch.Tensor"
            )
    return state_dict
