"""Training checkpoints: the model (loadable by ``build_model``) plus everything needed to resume exactly.

A checkpoint is written by ``cotracker3_core.checkpoint.save_checkpoint`` (atomic: temporary file, fsync,
rename) and holds::

    format, arch, model          read by build_model(mode, checkpoint=path)
    training_format              TRAINING_FORMAT
    config                       the TrainingConfig as plain values
    step                         optimiser steps done
    optimizer, scheduler         their state dicts
    rng                          torch CPU / CUDA, numpy and python ``random`` states
    counters                     running totals (e.g. videos skipped for too few SIFT points)

Everything is a tensor or a plain container so that ``hub.load_checkpoint_file`` can read it with
``weights_only=True``: numpy's state is stored as lists, python's as a tuple of ints.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cotracker3_core import hub
from cotracker3_core.checkpoint import load_weights, save_checkpoint
from cotracker3_core.model import CoTracker3

TRAINING_FORMAT = "cotracker3_ros-train/1"
LAST_NAME = "last.pt"


class ResumeError(ValueError):
    """The checkpoint cannot resume this run (not a training checkpoint, or another architecture)."""


def capture_rng_state() -> dict[str, Any]:
    """All global random states, as tensors and plain values."""
    # The legacy global generator is what third-party code may draw from, so it is what must be restored.
    np_state = np.random.get_state()  # noqa: NPY002
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [str(np_state[0]), [int(v) for v in np_state[1]], int(np_state[2]), int(np_state[3]),
                  float(np_state[4])],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    legacy_state = (name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached)
    np.random.set_state(legacy_state)  # noqa: NPY002
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_dir(out_dir: str | os.PathLike[str]) -> Path:
    return Path(out_dir) / "checkpoints"


def remove_stale_temporaries(out_dir: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files a killed run left behind in ``<out_dir>/checkpoints`` (``save_checkpoint``
    writes ``.<name>.<random>.tmp`` and renames it; a kill in between leaves the temporary). Returns them."""
    folder = checkpoint_dir(out_dir)
    stale = sorted(folder.glob(".*.tmp")) if folder.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def save_training_checkpoint(
    out_dir: str | os.PathLike[str],
    model: CoTracker3,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    step: int,
    config: dict[str, Any],
    counters: dict[str, int],
    keep_copy: bool = False,
) -> Path:
    """Write ``<out_dir>/checkpoints/last.pt`` (and ``step_XXXXXXX.pt`` when ``keep_copy``)."""
    folder = checkpoint_dir(out_dir)
    extra = {
        "training_format": TRAINING_FORMAT,
        "config": config,
        "step": int(step),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": capture_rng_state(),
        "counters": {k: int(v) for k, v in counters.items()},
    }
    path = save_checkpoint(folder / LAST_NAME, model, **extra)
    if keep_copy:
        save_checkpoint(folder / f"step_{step:07d}.pt", model, **extra)
    return path


def resolve_resume_path(resume: str, out_dir: str | os.PathLike[str]) -> Path | None:
    """``"auto"`` -> ``<out_dir>/checkpoints/last.pt`` if it exists, else None (start afresh: the same
    command works for the first launch and every restart); anything else is a file path that must exist."""
    if resume == "auto":
        path = checkpoint_dir(out_dir) / LAST_NAME
        return path if path.is_file() else None
    path = Path(resume)
    if not path.is_file():
        raise ResumeError(f"cannot resume: checkpoint {path} does not exist")
    return path


def config_differences(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """Keys whose values differ between two nested config dicts, as ``section.key``."""
    keys = sorted(set(saved) | set(current))
    out = []
    for key in keys:
        a, b = saved.get(key), current.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(config_differences(a, b, f"{name}."))
        elif a != b:
            out.append(f"{name}: {a!r} -> {b!r}")
    return out


def load_training_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a training checkpoint (weights_only) and check it has what resuming needs."""
    content = hub.load_checkpoint_file(path)
    if content.get("training_format") != TRAINING_FORMAT:
        raise ResumeError(
            f"{path} is not a training checkpoint of this project (no optimiser/scheduler state); to start "
            "from its weights use model.init_checkpoint instead of --resume"
        )
    missing = [k for k in ("arch", "model", "optimizer", "scheduler", "step", "rng") if k not in content]
    if missing:
        raise ResumeError(f"{path} lacks {missing}")
    return content


def restore_training_state(
    content: dict[str, Any],
    model: CoTracker3,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    source: str,
) -> int:
    """Load model, optimiser, scheduler and RNG states strictly; returns the step to continue from."""
    saved_arch = dict(content["arch"])
    current = model.config.to_dict()
    differing = {k: (saved_arch.get(k), v) for k, v in current.items() if saved_arch.get(k) != v}
    if differing:
        shown = ", ".join(f"{k}: checkpoint {a!r} vs config {b!r}" for k, (a, b) in sorted(differing.items()))
        raise ResumeError(f"{source} was trained with another architecture ({shown})")
    load_weights(model, content["model"], source)
    try:
        optimizer.load_state_dict(content["optimizer"])
    except (ValueError, KeyError) as err:
        raise ResumeError(f"{source}: optimiser state does not match this run's parameters: {err}") from err
    scheduler.load_state_dict(content["scheduler"])
    restore_rng_state(content["rng"])
    return int(content["step"])
