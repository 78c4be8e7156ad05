"""Checkpoints: the official layout, the project's own files, bad files, and download from a URL.

The download path is exercised against a file served on 127.0.0.1 through COTRACKER3_BASE_URL; no test
touches the internet.
"""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest
import torch

from cotracker3_core import build_model, save_checkpoint, to_official_state_dict
from cotracker3_core.predictor import CoTrackerOnlinePredictor, CoTrackerPredictor
from cotracker3_core.reference_weights import apply_reference_weights

SMALL = dict(latent_dim=32, hidden_size=64, num_heads=4, num_virtual_tracks=8, corr_hidden=64, corr_embed_dim=32)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def official_file(tmp_path_factory) -> Path:
    """A full-size online state dict written in the official layout (rule weights)."""
    path = tmp_path_factory.mktemp("ckpt") / "official_online.pth"
    torch.save(to_official_state_dict(apply_reference_weights(build_model("online"))), path)
    return path


def test_official_layout_loads_through_build_model_and_predictors(official_file, tmp_path):
    reference = apply_reference_weights(build_model("online"))
    loaded = build_model("online", checkpoint=official_file)
    assert same_weights(loaded, reference)
    sd = torch.load(official_file, weights_only=True)
    assert "updateformer.virual_tracks" in sd  # the official misspelling, kept in the file layout only
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"model": sd}, wrapped)
    assert same_weights(build_model("online", checkpoint=wrapped), reference)
    online = CoTrackerOnlinePredictor(checkpoint=official_file, model_resolution=(64, 64))
    assert same_weights(online.model, reference)
    # An offline predictor takes the same weights; the online file's 16-frame time embedding comes along.
    offline = CoTrackerPredictor(checkpoint=official_file, model_resolution=(64, 64))
    assert offline.model.config.window_len == 16 and offline.model.config.mode == "offline"


def test_small_architecture_round_trip(tmp_path):
    model = build_model("offline", model_resolution=(64, 64), **SMALL)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    path = save_checkpoint(tmp_path / "small.pth", model, step=7)
    loaded = build_model("offline", checkpoint=path)
    assert loaded.config == model.config
    assert same_weights(loaded, model)
    video = torch.rand(1, 6, 3, 64, 64) * 255
    queries = torch.tensor([[[0.0, 10.0, 20.0], [2.0, 40.0, 30.0]]])
    with torch.no_grad():
        assert torch.equal(loaded(video, queries).coords, model(video, queries).coords)
    assert not list(tmp_path.glob("*.tmp"))


def test_corrupted_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ValueError, match="not a PyTorch checkpoint"):
        build_model("online", checkpoint=bad)


def test_wrong_shape_and_missing_keys_are_named(official_file, tmp_path):
    sd = torch.load(official_file, weights_only=True)
    wrong = dict(sd)
    wrong["corr_mlp.fc1.weight"] = torch.zeros(384, 100)
    torch.save(wrong, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match=r"mis-shaped keys: corr_mlp\.fc1\.weight: file \(384, 100\)"):
        build_model("online", checkpoint=tmp_path / "wrong.pth")
    missing = {k: v for k, v in sd.items() if k != "updateformer.flow_head.bias"}
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"missing keys: updateformer\.flow_head\.bias"):
        build_model("online", checkpoint=tmp_path / "missing.pth")
    extra = dict(sd, **{"updateformer.extra.weight": torch.zeros(1)})
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match=r"unexpected keys: updateformer\.extra\.weight"):
        build_model("online", checkpoint=tmp_path / "extra.pth")


def test_architecture_mismatch_is_named(tmp_path):
    path = save_checkpoint(tmp_path / "small.pth", build_model("online", **SMALL))
    with pytest.raises(ValueError, match="conflict"):
        build_model("online", checkpoint=path, hidden_size=128)


def test_v2_is_not_implemented():
    with pytest.raises(NotImplementedError, match="CoTracker2"):
        CoTrackerPredictor(v2=True)


def test_official_name_downloads_from_base_url(tmp_path, monkeypatch):
    """build_model("online", "scaled_online") fetches <base>/scaled_online.pth once into the cache."""
    served = tmp_path / "served"
    served.mkdir()
    model = build_model("online", **SMALL)
    torch.save(to_official_state_dict(model), served / "scaled_online.pth")
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(served), **kwargs)

        def log_message(self, *args):
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("COTRACKER3_BASE_URL", f"http://127.0.0.1:{server.server_address[1]}/")
        monkeypatch.setenv("COTRACKER3_CACHE_DIR", str(tmp_path / "cache"))
        first = build_model("online", checkpoint="scaled_online", **SMALL)
        second = build_model("online", checkpoint="scaled_online", **SMALL)
    finally:
        server.shutdown()
        server.server_close()
    assert same_weights(first, model) and same_weights(second, model)
    assert len(requests) == 1
    assert (tmp_path / "cache" / "scaled_online.pth").is_file()
