"""Model settings of the evaluation tools: the tracker node's parameters, from its defaults, a parameters file
and command-line flags, and seeded weights written to a checkpoint so that every side loads the same ones."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from cotracker3_core.checkpoint import build_model, save_checkpoint

from ..params import NODE_NAME, PARAMS, PARAMS_BY_NAME, parse_arch, stream_config_from_params

__all__ = [
    "DELIVERY_PARAMS",
    "MODEL_PARAMS",
    "add_model_arguments",
    "materialize_weights",
    "model_values",
    "read_params_file",
    "resolved_values",
]

#: Node parameters the evaluations set themselves (what is tracked, how it is delivered); every other node
#: parameter shapes the tracker and is passed on unchanged, so a parameter added to the node later reaches both
#: evaluations the same way.
DELIVERY_PARAMS = frozenset(
    {"grid_size", "grid_query_frame", "mask_grid_size", "queue_size", "publish_refined", "compressed",
     "debug_image", "diagnostics_period"}
)  # fmt: skip
#: Node parameters that shape the tracks (the model and the engine), in the node's order.
MODEL_PARAMS = tuple(p.name for p in PARAMS if p.name not in DELIVERY_PARAMS)


# --- model settings (shared with replay_eval) -----------------------------------------------------------------


def read_params_file(path: str | Path) -> dict[str, Any]:
    """The tracker node's parameters from a ROS parameters YAML (sections ``/**/tracker_node``, ``tracker_node``,
    ``/**`` ... with ``ros__parameters``); keys that are not node parameters (``qos_overrides``) are ignored.

    Raises:
        ValueError: unreadable file, no section for the node, or a value of the wrong type.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read parameters file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a ROS parameters file (top level must be a mapping of node names)")
    values: dict[str, Any] = {}
    matched = False
    for key, section in data.items():
        last = str(key).rstrip("/").split("/")[-1]
        if last not in (NODE_NAME, "**") or not isinstance(section, dict):
            continue
        params = section.get("ros__parameters")
        if isinstance(params, dict):
            matched = True
            values.update({k: v for k, v in params.items() if k in PARAMS_BY_NAME})
    if not matched:
        raise ValueError(f"{path}: no 'ros__parameters' for {NODE_NAME} (sections: {', '.join(map(str, data))})")
    for name, value in values.items():
        default = PARAMS_BY_NAME[name].default
        ok = isinstance(value, type(default)) or (isinstance(default, float) and isinstance(value, int))
        if isinstance(default, bool) != isinstance(value, bool):
            ok = False
        if not ok:
            raise ValueError(f"{path}: parameter {name} must be {type(default).__name__}, got {value!r}")
    return values


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model (the tracker node's parameters; flags override --params-file)")
    group.add_argument("--params-file", type=Path, help="the node's parameters YAML, e.g. config/tracker.yaml")
    group.add_argument(
        "--checkpoint", help="weights: .pth file, official name or URL; '' = seeded untrained weights (--seed)"
    )
    group.add_argument("--arch", help="architecture overrides, YAML/JSON mapping, e.g. '{latent_dim: 32}'")
    group.add_argument("--seed", type=int, default=0, help="seed of untrained weights (no checkpoint); default 0")
    group.add_argument("--model-resolution", type=int, nargs=2, metavar=("H", "W"))
    group.add_argument("--window-len", type=int)
    group.add_argument("--step", type=int, help="frames between two windows: 1, 2, 4 or 8 (node default 8)")
    group.add_argument("--iters", type=int)
    group.add_argument("--visibility-threshold", type=float)
    group.add_argument("--device", help="auto, cpu, cuda, cuda:<i>")
    group.add_argument("--precision", choices=("fp32", "bf16", "fp16"))


def model_values(args: argparse.Namespace) -> dict[str, Any]:
    """Node parameter values: defaults <- ``--params-file`` <- flags. Raises ValueError on bad values."""
    values = {p.name: p.default for p in PARAMS}
    if args.params_file is not None:
        values.update(read_params_file(args.params_file))
    flags = {
        "checkpoint": args.checkpoint,
        "arch": args.arch,
        "model_resolution": list(args.model_resolution) if args.model_resolution else None,
        "window_len": args.window_len,
        "step": args.step,
        "iters": args.iters,
        "visibility_threshold": args.visibility_threshold,
        "device": args.device,
        "precision": args.precision,
    }
    values.update({k: v for k, v in flags.items() if v is not None})
    return resolved_values(values)


def resolved_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """Node parameter values with the settings left to the checkpoint (0 / [0, 0]) filled in as the node
    fills them, so that every side of an evaluation (this process, the node process, the offline predictor)
    runs the same numbers. Raises ValueError on bad values."""
    config = stream_config_from_params(dict(values)).resolved()
    return {
        **values,
        "model_resolution": list(config.model_resolution),
        "window_len": config.window_len,
        "step": config.step,
        "iters": config.iters,
        "visibility_threshold": config.visibility_threshold,
    }


def materialize_weights(values: Mapping[str, Any], seed: int, folder: Path) -> tuple[dict[str, Any], str]:
    """With no checkpoint, build seeded untrained weights of the configured architecture and save them, so that
    every side (this process, the node process, the offline predictor) loads identical weights.

    Returns the values with ``checkpoint`` set (and ``arch`` emptied: the checkpoint carries it) and a
    description of the weights for reports.
    """
    values = dict(values)
    if values["checkpoint"]:
        return values, str(values["checkpoint"])
    torch.manual_seed(seed)
    model = build_model(
        "online",
        window_len=int(values["window_len"]),
        model_resolution=tuple(int(v) for v in values["model_resolution"]),
        **parse_arch(values["arch"]),
    )
    path = save_checkpoint(folder / f"untrained_seed{seed}.pth", model, untrained_seed=seed)
    values["checkpoint"], values["arch"] = str(path), ""
    return values, f"UNTRAINED (seed {seed}): scores are meaningless, for plumbing checks only"
