"""Tests for cotracker3_core.hub against a real HTTP server on 127.0.0.1 (no internet needed)."""

from __future__ import annotations

import collections
import http.server
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from cotracker3_core import hub


def _checkpoint_bytes(tmp_path: Path) -> bytes:
    """Bytes of a small real torch checkpoint, so downloaded files can also be loaded."""
    path = tmp_path / "source.pth"
    torch.save({"weight": torch.arange(6, dtype=torch.float32).reshape(2, 3), "bias": torch.ones(2)}, path)
    return path.read_bytes()


@dataclass
class FakeHub:
    """A local server with routes:

    - ``/ok/<name>``: the payload with a correct Content-Length;
    - ``/nolength/<name>``: the payload with no Content-Length (ends when the connection closes);
    - ``/truncated/<name>``: announces twice the payload's length, sends half of it, then closes;
    - ``/html/<name>``: a 200 HTML page (like a captive portal);
    - anything else: 404.
    """

    url: str
    payload: bytes
    requests: collections.Counter[str] = field(default_factory=collections.Counter)


def _make_handler(server_state: FakeHub) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        # HTTP/1.0: the server closes the connection after each response, so a short body ends the transfer.
        protocol_version = "HTTP/1.0"

        def do_GET(self) -> None:
            server_state.requests[self.path] += 1
            route = self.path.split("/")[1] if self.path.count("/") >= 2 else ""
            payload = server_state.payload
            if route == "ok":
                self._send(200, "application/octet-stream", payload, len(payload))
            elif route == "nolength":
                self._send(200, "application/octet-stream", payload, None)
            elif route == "truncated":
                self._send(200, "application/octet-stream", payload[: len(payload) // 2], 2 * len(payload))
            elif route == "html":
                body = b"<html><body>Please log in</body></html>"
                self._send(200, "text/html; charset=utf-8", body, len(body))
            else:
                self._send(404, "text/plain", b"not found", 9)

        def _send(self, status: int, content_type: str, body: bytes, length: int | None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            if length is not None:
                self.send_header("Content-Length", str(length))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep pytest output clean

    return Handler


@pytest.fixture
def fake_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    state = FakeHub(url="", payload=_checkpoint_bytes(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)  # talk to 127.0.0.1 directly even behind a proxy
    monkeypatch.setenv(hub.CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(hub.BASE_URL_ENV, state.url + "/ok")  # no trailing slash on purpose
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def _cache_files(tmp_path: Path) -> list[str]:
    directory = _cache_dir(tmp_path)
    return sorted(os.listdir(directory)) if directory.exists() else []


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------------------------------------------
# Official checkpoints and names


def test_official_checkpoint_table() -> None:
    assert set(hub.OFFICIAL_CHECKPOINTS) == {
        "scaled_online",
        "scaled_offline",
        "baseline_online",
        "baseline_offline",
    }
    for name, ckpt in hub.OFFICIAL_CHECKPOINTS.items():
        assert ckpt.filename == f"{name}.pth"
        assert (ckpt.mode, ckpt.window_len) == (("online", 16) if "online" in name else ("offline", 60))
        assert "CC BY-NC 4.0" in ckpt.licence


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("scaled_online", "scaled_online"),
        ("baseline_offline.pth", "baseline_offline"),
        ("https://example.org/mirror/scaled_offline.pth", "scaled_offline"),
        ("https://example.org/x/baseline_online.pth?download=true#frag", "baseline_online"),
        (Path("/data/weights/scaled_online.pth"), "scaled_online"),
        ("/data/weights/my_finetune.pth", None),
        ("https://example.org/", None),
        ("scaled_online.pt", None),
    ],
)
def test_official_name_for(spec: str | Path, expected: str | None) -> None:
    assert hub.official_name_for(spec) == expected


def test_locations_follow_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(hub.BASE_URL_ENV, raising=False)
    monkeypatch.delenv(hub.CACHE_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub.checkpoint_cache_dir() == tmp_path / "xdg" / "cotracker3"
    assert hub.official_checkpoint_url("scaled_online.pth") == (
        "https://huggingface.co/facebook/cotracker3/resolve/main/scaled_online.pth"
    )
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert hub.checkpoint_cache_dir() == tmp_path / "home" / ".cache" / "cotracker3"
    monkeypatch.setenv(hub.CACHE_DIR_ENV, str(tmp_path / "mine"))
    assert hub.checkpoint_cache_dir() == tmp_path / "mine"
    monkeypatch.setenv(hub.BASE_URL_ENV, "http://mirror.local/weights")
    assert (
        hub.official_checkpoint_url("baseline_offline") == "http://mirror.local/weights/baseline_offline.pth"
    )


# ---------------------------------------------------------------------------------------------------------
# Resolution and download


def test_official_name_downloads_once(fake_hub: FakeHub, tmp_path: Path) -> None:
    path = hub.resolve_checkpoint("scaled_online")
    assert path == _cache_dir(tmp_path) / "scaled_online.pth"
    assert path.read_bytes() == fake_hub.payload
    assert fake_hub.requests["/ok/scaled_online.pth"] == 1

    assert hub.resolve_checkpoint("scaled_online.pth") == path  # the .pth form is the same checkpoint
    assert hub.resolve_checkpoint("scaled_online") == path
    assert sum(fake_hub.requests.values()) == 1, "a cached checkpoint must not be fetched again"
    assert _cache_files(tmp_path) == ["scaled_online.pth"], "no temporary files may be left behind"

    state_dict = hub.load_state_dict_file(path)
    torch.testing.assert_close(state_dict["bias"], torch.ones(2))


def test_full_url_downloads_under_its_file_name(fake_hub: FakeHub, tmp_path: Path) -> None:
    url = f"{fake_hub.url}/ok/my_finetune.pth?revision=3"
    path = hub.resolve_checkpoint(url)
    assert path == _cache_dir(tmp_path) / "my_finetune.pth"
    assert path.read_bytes() == fake_hub.payload
    assert hub.resolve_checkpoint(url) == path
    assert fake_hub.requests["/ok/my_finetune.pth?revision=3"] == 1


def test_download_without_content_length(fake_hub: FakeHub, tmp_path: Path) -> None:
    path = hub.resolve_checkpoint(f"{fake_hub.url}/nolength/scaled_offline.pth")
    assert path.read_bytes() == fake_hub.payload


def test_http_404_names_url_and_cache_path(fake_hub: FakeHub, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(hub.BASE_URL_ENV, fake_hub.url + "/missing/")
    with pytest.raises(hub.CheckpointDownloadError) as info:
        hub.resolve_checkpoint("baseline_offline")
    message = str(info.value)
    assert f"{fake_hub.url}/missing/baseline_offline.pth" in message
    assert "HTTP 404" in message
    assert str(_cache_dir(tmp_path) / "baseline_offline.pth") in message
    assert isinstance(info.value, RuntimeError)
    assert _cache_files(tmp_path) == []


def test_truncated_transfer_leaves_no_file(fake_hub: FakeHub, tmp_path: Path) -> None:
    url = f"{fake_hub.url}/truncated/scaled_online.pth"
    with pytest.raises(hub.CheckpointDownloadError, match="incomplete") as info:
        hub.resolve_checkpoint(url)
    assert url in str(info.value)
    assert _cache_files(tmp_path) == [], "a failed download must not leave a partial or temporary file"
    assert fake_hub.requests["/truncated/scaled_online.pth"] == 1


def test_html_page_is_not_cached(fake_hub: FakeHub, tmp_path: Path) -> None:
    with pytest.raises(hub.CheckpointDownloadError, match="HTML"):
        hub.resolve_checkpoint(f"{fake_hub.url}/html/scaled_online.pth")
    assert _cache_files(tmp_path) == []


def test_unreachable_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = f"http://127.0.0.1:{_free_port()}/"
    monkeypatch.setenv(hub.BASE_URL_ENV, base)
    monkeypatch.setenv(hub.CACHE_DIR_ENV, str(_cache_dir(tmp_path)))
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(hub.CheckpointDownloadError, match="cannot reach server") as info:
        hub.resolve_checkpoint("scaled_offline")
    assert base + "scaled_offline.pth" in str(info.value)
    assert str(_cache_dir(tmp_path) / "scaled_offline.pth") in str(info.value)
    assert _cache_files(tmp_path) == []


def test_cached_file_is_used_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The fix the error message suggests: place the file in the cache by hand, then no network is needed.
    monkeypatch.setenv(hub.BASE_URL_ENV, f"http://127.0.0.1:{_free_port()}/")
    monkeypatch.setenv(hub.CACHE_DIR_ENV, str(_cache_dir(tmp_path)))
    _cache_dir(tmp_path).mkdir()
    placed = _cache_dir(tmp_path) / "baseline_online.pth"
    placed.write_bytes(_checkpoint_bytes(tmp_path))
    assert hub.resolve_checkpoint("baseline_online") == placed


def test_local_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = tmp_path / "weights.pth"
    local.write_bytes(b"anything")
    assert hub.resolve_checkpoint(str(local)) == local.resolve()
    assert hub.resolve_checkpoint(local) == local.resolve()

    missing = tmp_path / "nope" / "weights.pth"
    with pytest.raises(FileNotFoundError, match="not found") as info:
        hub.resolve_checkpoint(str(missing))
    assert str(missing) in str(info.value)
    with pytest.raises(FileNotFoundError):
        hub.resolve_checkpoint(missing)
    with pytest.raises(FileNotFoundError, match="not a regular file"):
        hub.resolve_checkpoint(tmp_path)

    # A Path is always a local path, even when it looks like an official name: no download is attempted.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(hub.BASE_URL_ENV, f"http://127.0.0.1:{_free_port()}/")
    with pytest.raises(FileNotFoundError):
        hub.resolve_checkpoint(Path("scaled_online"))


def test_bad_urls() -> None:
    with pytest.raises(ValueError, match="scheme"):
        hub.resolve_checkpoint("ftp://example.org/scaled_online.pth")
    with pytest.raises(ValueError, match="file name"):
        hub.resolve_checkpoint("http://127.0.0.1:9/weights/")
    with pytest.raises(ValueError, match="empty"):
        hub.resolve_checkpoint("")


# ---------------------------------------------------------------------------------------------------------
# Reading checkpoint files


def test_load_plain_and_wrapped_state_dicts(tmp_path: Path) -> None:
    weights = {"layer.weight": torch.randn(3, 4), "layer.bias": torch.zeros(3)}
    plain = tmp_path / "plain.pth"
    torch.save(weights, plain)
    loaded = hub.load_state_dict_file(plain)
    assert loaded.keys() == weights.keys()
    torch.testing.assert_close(loaded["layer.weight"], weights["layer.weight"])

    wrapped = tmp_path / "train.pth"
    torch.save({"model": weights, "arch": {"stride": 4, "window_len": 16}, "step": 1200}, wrapped)
    loaded = hub.load_state_dict_file(wrapped)
    assert loaded.keys() == weights.keys()
    checkpoint = hub.load_checkpoint_file(wrapped)
    assert checkpoint["arch"] == {"stride": 4, "window_len": 16}
    assert checkpoint["step"] == 1200


def test_load_rejects_non_checkpoints(tmp_path: Path) -> None:
    good = tmp_path / "good.pth"
    torch.save({"w": torch.ones(100)}, good)
    cases = {
        "random.pth": os.urandom(4096),
        "notes.txt": b"these are not weights\n",
        "empty.pth": b"",
        "truncated.pth": good.read_bytes()[: good.stat().st_size // 2],
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    torch.save([torch.ones(2)], tmp_path / "list.pth")
    torch.save({"w": torch.ones(2), "lr": 0.1}, tmp_path / "mixed.pth")
    torch.save({}, tmp_path / "nothing.pth")

    for name in [*cases, "list.pth", "mixed.pth", "nothing.pth"]:
        path = tmp_path / name
        with pytest.raises(ValueError, match="not a PyTorch") as info:
            hub.load_state_dict_file(path)
        assert str(path) in str(info.value), name
        assert len(str(info.value)) < 500, f"{name}: error message should be short, got {info.value}"

    # A dict holding non-tensors is still a valid checkpoint as a whole.
    assert hub.load_checkpoint_file(tmp_path / "mixed.pth")["lr"] == 0.1
    with pytest.raises(FileNotFoundError):
        hub.load_checkpoint_file(tmp_path / "absent.pth")


def test_load_refuses_unsafe_pickles(tmp_path: Path) -> None:
    # weights_only=True must refuse arbitrary objects instead of executing their pickle code.
    path = tmp_path / "unsafe.pth"
    torch.save({"w": torch.ones(2), "obj": collections.OrderedDict(a=socket.AF_INET)}, path)
    with pytest.raises(ValueError, match="not a PyTorch checkpoint") as info:
        hub.load_state_dict_file(path)
    assert info.value.__cause__ is not None
