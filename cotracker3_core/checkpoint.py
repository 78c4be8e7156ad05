"""Building models and moving weights in and out of them.

Official CoTracker3 files use the reference implementation's module names (including its misspelt
`updateformer.virual_tracks`); compatibility with them is a key mapping here (our key -> official key,
inverted to read official files), never a copied layout in our modules. The project's own checkpoints
store our keys plus the architecture (`"arch"`), so they load without repeating it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from . import hub
from .config import DEFAULT_WINDOW_LEN, MODES, ModelConfig
from .model import CoTracker3

logger = logging.getLogger(__name__)

#: Format tag of the project's own checkpoint files.
CHECKPOINT_FORMAT = "cotracker3_ros/1"
#: Key of the SHA-256 of the weights (``weights_digest``) in the project's own checkpoint files.
DIGEST_KEY = "weights_sha256"


class CheckpointIntegrityError(ValueError):
    """A checkpoint's weights do not match the checksum stored with them (a damaged or altered file)."""


def weights_digest(state_dict: Mapping[str, Tensor]) -> str:
    """SHA-256 over every entry (key, dtype, shape and raw bytes, in key order) of a state dict."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        value = state_dict[key].detach().to("cpu").contiguous()
        digest.update(f"{key}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def verify_digest(content: Mapping[str, Any], source: str) -> None:
    """Check the weights of a loaded checkpoint against its stored digest (files without one pass)."""
    expected = content.get(DIGEST_KEY)
    if expected is None:
        return
    state_dict = content.get("model")
    if not isinstance(state_dict, Mapping):
        raise CheckpointIntegrityError(f"{source}: has a {DIGEST_KEY} but no 'model' state dict")
    actual = weights_digest(state_dict)
    if actual != expected:
        raise CheckpointIntegrityError(
            f"{source}: the weights do not match the checksum stored in the file (sha256 {actual[:12]}... "
            f"vs {str(expected)[:12]}...): the file is damaged or was altered; restore or re-download it"
        )


def inference_settings(checkpoint: str | os.PathLike[str] | None) -> dict[str, Any]:
    """The inference settings a checkpoint recommends (``{}`` when none: official files, no checkpoint).

    Our checkpoints may store ``"inference"``: ``model_resolution``, ``window_len``, ``step``, ``iters``,
    ``visibility_threshold``, ``update``, ``motion_init`` (see ``training.export_lite``).
    """
    if checkpoint is None or hub.official_name_for(checkpoint) is not None:
        return {}
    content = hub.load_checkpoint_file(hub.resolve_checkpoint(checkpoint))
    settings = content.get("inference")
    return dict(settings) if isinstance(settings, Mapping) else {}

_Rule = tuple[re.Pattern[str], Callable[[re.Match[str]], str]]


def _rules(pairs: list[tuple[str, str | Callable[[re.Match[str]], str]]]) -> list[_Rule]:
    out = []
    for pattern, repl in pairs:
        fn = repl if callable(repl) else (lambda m, r=repl: m.expand(r))
        out.append((re.compile(pattern), fn))
    return out


# our key -> official key
_TO_OFFICIAL = _rules(
    [
        (r"^time_embedding$", "time_emb"),
        (r"^encoder\.stem\.(.+)$", r"fnet.conv1.\1"),
        (
            r"^encoder\.stages\.(\d)\.(\d)\.shortcut\.0\.(.+)$",
            lambda m: f"fnet.layer{int(m[1]) + 1}.{m[2]}.downsample.0.{m[3]}",
        ),
        (
            r"^encoder\.stages\.(\d)\.(\d)\.(conv[12])\.(.+)$",
            lambda m: f"fnet.layer{int(m[1]) + 1}.{m[2]}.{m[3]}.{m[4]}",
        ),
        (r"^encoder\.fuse\.(.+)$", r"fnet.conv2.\1"),
        (r"^encoder\.project\.(.+)$", r"fnet.conv3.\1"),
        (r"^transformer\.virtual_tracks$", "updateformer.virual_tracks"),
        (r"^transformer\.input_proj\.(.+)$", r"updateformer.input_transform.\1"),
        (r"^transformer\.(flow_head|vis_conf_head)\.(.+)$", r"updateformer.\1.\2"),
        (r"^transformer\.time_blocks\.(.+)$", r"updateformer.time_blocks.\1"),
        (r"^transformer\.virtual_self\.(.+)$", r"updateformer.space_virtual_blocks.\1"),
        (
            r"^transformer\.virtual_gather\.(\d+)\.attn\.(.+)$",
            r"updateformer.space_virtual2point_blocks.\1.cross_attn.\2",
        ),
        (r"^transformer\.virtual_gather\.(.+)$", r"updateformer.space_virtual2point_blocks.\1"),
        (
            r"^transformer\.track_scatter\.(\d+)\.attn\.(.+)$",
            r"updateformer.space_point2virtual_blocks.\1.cross_attn.\2",
        ),
        (r"^transformer\.track_scatter\.(.+)$", r"updateformer.space_point2virtual_blocks.\1"),
        (r"^correlation\.mlp\.(.+)$", r"corr_mlp.\1"),
    ]
)


def _map_key(key: str, rules: list[_Rule]) -> str | None:
    for pattern, fn in rules:
        m = pattern.match(key)
        if m:
            return fn(m)
    return None


def official_key(key: str) -> str:
    """Our state-dict key -> the official checkpoints' key."""
    mapped = _map_key(key, _TO_OFFICIAL)
    if mapped is None:
        raise KeyError(f"no official name for parameter {key!r}")
    return mapped


def is_official_layout(state_dict: Mapping[str, Any]) -> bool:
    return any(k.startswith(("fnet.", "updateformer.", "corr_mlp.")) for k in state_dict)


def to_official_state_dict(model: CoTracker3) -> dict[str, Tensor]:
    """The model's weights under the official key names (e.g. to hand to the reference code)."""
    return {official_key(k): v for k, v in model.state_dict().items()}


def official_layout(model: CoTracker3) -> list[dict[str, Any]]:
    """[{key, shape, kind}] of the official state dict this model's weights map to."""
    buffers = {official_key(k) for k, _ in model.named_buffers() if k in model.state_dict()}
    return [
        {"key": k, "shape": list(v.shape), "kind": "buffer" if k in buffers else "parameter"}
        for k, v in to_official_state_dict(model).items()
    ]


def load_weights(model: CoTracker3, state_dict: Mapping[str, Tensor], source: str = "checkpoint") -> None:
    """Load a state dict (ours or the official layout) strictly.

    Raises:
        ValueError: listing every missing, unexpected and mis-shaped key (in the file's own naming).
    """
    official = is_official_layout(state_dict)
    expected = model.state_dict()
    name_in_file = official_key if official else (lambda k: k)
    # The mapping is one-to-one, so the official names of our keys, inverted, read an official file.
    from_official = {official_key(k): k for k in expected}
    mapped: dict[str, Tensor] = {}
    unexpected = []
    for key, value in state_dict.items():
        ours = from_official.get(key) if official else key
        if ours is None or ours not in expected:
            unexpected.append(key)
        else:
            mapped[ours] = value
    missing = [name_in_file(k) for k in expected if k not in mapped]
    misshaped = [
        f"{name_in_file(k)}: file {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in mapped.items()
        if tuple(v.shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append("missing keys: " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected keys: " + ", ".join(unexpected))
    if misshaped:
        problems.append("mis-shaped keys: " + "; ".join(misshaped))
    if problems:
        raise ValueError(
            f"{source} does not match the model ({'official' if official else 'cotracker3_ros'} layout, "
            f"{model.config.mode}, window_len {model.config.window_len}): " + " | ".join(problems)
        )
    model.load_state_dict(mapped, strict=True)


def _window_len_from(state_dict: Mapping[str, Tensor]) -> int | None:
    emb = state_dict.get("time_emb", state_dict.get("time_embedding"))
    return int(emb.shape[1]) if isinstance(emb, Tensor) and emb.ndim == 3 else None


def build_model(
    mode: str,
    checkpoint: str | os.PathLike[str] | None = None,
    window_len: int | None = None,
    model_resolution: tuple[int, int] = (384, 512),
    **arch: Any,
) -> CoTracker3:
    """Build a CoTracker3 model, optionally with weights.

    Args:
        mode: "online" (sliding 16-frame windows) or "offline" (whole clip).
        checkpoint: a local file, an official name ("scaled_online", ...) or a URL; official files and
            the project's own checkpoints (which carry their architecture) are both accepted.
        window_len: frames per window; defaults to the checkpoint's, else 16 online / 60 offline.
        model_resolution: (H, W) that sets the displacement normalisation (the model never resizes).
        **arch: architecture overrides (see `ModelConfig`), for small test and training models.
    Returns:
        the model in eval mode, on the CPU.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    state_dict = None
    source = "no checkpoint"
    if checkpoint is not None:
        path = hub.resolve_checkpoint(checkpoint)
        source = str(path)
        content = hub.load_checkpoint_file(path)
        verify_digest(content, source)
        state_dict = content["model"] if isinstance(content.get("model"), Mapping) else content
        saved_arch = content.get("arch") if isinstance(content.get("arch"), Mapping) else None
        if saved_arch is not None:
            saved = dict(saved_arch)
            saved.pop("mode", None)
            conflicts = {k: (saved[k], v) for k, v in arch.items() if k in saved and saved[k] != v}
            if conflicts:
                raise ValueError(f"{path}: architecture overrides conflict with the checkpoint's: {conflicts}")
            arch = {**saved, **arch}
            arch.pop("window_len", None)
            arch.pop("model_resolution", None)
            if window_len is None:
                window_len = saved.get("window_len")
            if "model_resolution" in saved and model_resolution == (384, 512):
                model_resolution = tuple(saved["model_resolution"])
        if window_len is None:
            window_len = _window_len_from(state_dict)
        if hub.official_name_for(checkpoint) is not None:
            logger.warning(
                "Using the official CoTracker3 weights %s: licensed CC BY-NC 4.0 (non-commercial use only).",
                path.name,
            )
    config = ModelConfig(
        mode=mode,
        window_len=window_len or DEFAULT_WINDOW_LEN[mode],
        model_resolution=tuple(model_resolution),
        **arch,
    )
    model = CoTracker3(config)
    if state_dict is not None:
        load_weights(model, state_dict, source)
    return model.eval()


def save_checkpoint(path: str | os.PathLike[str], model: CoTracker3, **extra: Any) -> Path:
    """Write {"model", "arch", "format", "weights_sha256", **extra} atomically (temp file in the same
    folder, then rename); ``build_model`` verifies the checksum when it loads the file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state_dict = model.state_dict()
    payload = {"format": CHECKPOINT_FORMAT, "arch": model.config.to_dict(), "model": state_dict,
               DIGEST_KEY: weights_digest(state_dict), **extra}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
