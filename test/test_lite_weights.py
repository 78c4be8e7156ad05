"""The shipped ``lite`` weights: resolved offline by name from the checkout and from the installed package,
verified by their checksum, carrying their preset and recommended settings; damaged copies refused."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cotracker3_core import build_model
from cotracker3_core.checkpoint import CheckpointIntegrityError, inference_settings, weights_digest
from cotracker3_core.config import ModelConfig, preset
from cotracker3_core.hub import load_checkpoint_file, resolve_checkpoint, shipped_checkpoint_path
from cotracker3_core.streaming import StreamConfig, StreamingTracker

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "cotracker3_core" / "weights" / "lite.pt"


def test_lite_resolves_offline_from_the_checkout() -> None:
    assert resolve_checkpoint("lite") == SHIPPED.resolve() == shipped_checkpoint_path("lite")
    assert SHIPPED.stat().st_size <= 10 * 1024 * 1024
    model = build_model("online", checkpoint="lite")
    assert model.config == ModelConfig(**preset("lite"))


def test_lite_file_content_and_checksum() -> None:
    content = torch.load(SHIPPED, map_location="cpu", weights_only=True)
    assert content["preset"] == "lite"
    assert content["weights_sha256"] == weights_digest(content["model"])
    assert content["training_config"]["model"]["arch"]["latent_dim"] == preset("lite")["latent_dim"]
    assert content["training_step"] > 0
    assert "Apache-2.0" in content["licence"]
    assert set(content["inference"]) >= {"model_resolution", "window_len", "step", "iters",
                                         "visibility_threshold", "update"}
    assert inference_settings("lite") == content["inference"]
    assert all(torch.isfinite(v).all() for v in content["model"].values() if v.is_floating_point())


def test_lite_resolves_from_the_installed_package(tmp_path: Path) -> None:
    # A real (non-editable, non-symlinked) install of the package, built by pip from a copy of the sources,
    # then used from another folder with nothing but that install on the path: the weights travel as
    # package data and resolve there by name.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("setup.py", "setup.cfg", "package.xml", "resource", "launch", "config", "cotracker3_core",
                 "cotracker3_ros"):
        origin = REPO / name
        if origin.is_dir():
            shutil.copytree(origin, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif origin.exists():
            shutil.copy2(origin, src / name)
    site = tmp_path / "site"
    build = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                            "--no-compile", "--target", str(site), str(src)], capture_output=True, text=True,
                           timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": str(site)}
    code = ("import cotracker3_core, cotracker3_core.hub as h; from cotracker3_core import build_model; "
            "m = build_model('online', checkpoint='lite'); print(cotracker3_core.__file__); "
            "print(h.resolve_checkpoint('lite'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    module_file, weights = out.stdout.split()
    assert Path(module_file).resolve().is_relative_to(site.resolve())
    assert Path(weights).resolve().is_relative_to(site.resolve())
    assert Path(weights).read_bytes() == SHIPPED.read_bytes()


def test_altered_weights_are_refused(tmp_path: Path) -> None:
    content = torch.load(SHIPPED, map_location="cpu", weights_only=True)
    key = sorted(content["model"])[0]
    content["model"][key] = content["model"][key].clone()
    content["model"][key].view(-1)[0] += 1.0
    altered = tmp_path / "altered.pt"
    torch.save(content, altered)
    with pytest.raises(CheckpointIntegrityError, match="damaged or was altered"):
        build_model("online", checkpoint=altered)


def test_damaged_file_gives_a_clear_error(tmp_path: Path) -> None:
    data = bytearray(SHIPPED.read_bytes())
    rng = np.random.default_rng(0)
    for pos in rng.integers(len(data) // 4, len(data) - 64, size=32):
        data[pos] ^= 0xFF
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(bytes(data))
    with pytest.raises(ValueError) as info:  # unreadable archive, or weights failing their checksum
        build_model("online", checkpoint=damaged)
    assert str(damaged) in str(info.value)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(SHIPPED.read_bytes()[: 1000])
    with pytest.raises(ValueError, match="not a PyTorch checkpoint"):
        load_checkpoint_file(truncated)


def test_stream_config_with_lite_alone_runs_as_recommended() -> None:
    rec = inference_settings("lite")
    tracker = StreamingTracker.from_config(StreamConfig(checkpoint="lite", device="cpu"))
    assert tuple(tracker.config.model_resolution) == tuple(rec["model_resolution"])
    assert (tracker.config.window_len, tracker.config.step, tracker.config.iters) == (
        rec["window_len"], rec["step"], rec["iters"])
    assert tracker.config.visibility_threshold == rec["visibility_threshold"]
    assert not tracker.untrained
    # An explicit field wins over the recommendation; the library default stays untrained.
    explicit = StreamingTracker.from_config(StreamConfig(checkpoint="lite", device="cpu", iters=1, step=2))
    assert (explicit.config.iters, explicit.config.step) == (1, 2)
    assert StreamingTracker.from_config(StreamConfig(device="cpu", arch=preset("tiny"))).untrained
