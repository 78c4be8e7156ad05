"""Typed training configuration: one dataclass per component, loaded from YAML, overridable from the CLI.

A config file has one mapping per section (every key optional; defaults below)::

    stage: supervised            # "supervised" (stage 1, Kubric layout) or "pseudo" (stage 2, teachers)
    out_dir: runs/stage1_online
    seed: 0
    model:  {...}   ModelSettings
    data:   {...}   KubricDataSettings   (stage 1)
    pseudo: {...}   PseudoLabelSettings  (stage 2)
    loss:   {...}   training.losses.LossConfig
    optim:  {...}   OptimSettings
    train:  {...}   TrainSettings
    eval:   {...}   EvalSettings

``apply_overrides`` takes ``section.key=value`` strings (values parsed as YAML, so ``[1, 2]``, ``null``,
``true`` work). Every field documents itself through ``field(metadata={"help": ...})``; ``describe_options``
renders them for ``--help``. Checks live in ``__post_init__`` so a bad value fails when the config is built,
naming the key, before any data is read.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

from training.losses import LossConfig

STAGES = ("supervised", "pseudo")
SCHEDULES = ("warmup_cosine", "cosine", "constant")
MODEL_MODES = ("online", "offline")


class ConfigError(ValueError):
    """A configuration file or override is invalid (the message names the key)."""


def _opt(default: Any, help: str, **kwargs: Any) -> Any:  # noqa: A002 - mirrors argparse's name
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help}, **kwargs)
    return field(default=default, metadata={"help": help}, **kwargs)


def _pair(value: Any, name: str, kind: type = int) -> tuple:
    try:
        pair = tuple(kind(v) for v in value)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{name} must be a pair of {kind.__name__}s, got {value!r}") from err
    if len(pair) != 2:
        raise ConfigError(f"{name} must be a pair of {kind.__name__}s, got {value!r}")
    return pair


@dataclass
class ModelSettings:
    """The network being trained (the student in stage 2)."""

    mode: str = _opt("online", "online (sliding windows) or offline (whole clip is one window)")
    window_len: int | None = _opt(None, "frames per window; null: 16 online, 60 offline (or the init checkpoint's)")
    resolution: tuple[int, int] = _opt(
        (384, 512), "(H, W) training crop = model input resolution; divisible by 4 (the encoder stride)"
    )
    arch: dict[str, Any] = _opt(
        {}, "architecture overrides for cotracker3_core.ModelConfig (latent_dim, hidden_size, time_depth, ...)"
    )
    init_checkpoint: str | None = _opt(
        None, "start from these weights (our checkpoint, an official file or name); stage 2 needs one"
    )
    iters: int = _opt(4, "refinement iterations per window during training")

    def __post_init__(self) -> None:
        if self.mode not in MODEL_MODES:
            raise ConfigError(f"model.mode must be one of {MODEL_MODES}, got {self.mode!r}")
        self.resolution = _pair(self.resolution, "model.resolution")
        if min(self.resolution) < 16 or any(v % 4 for v in self.resolution):
            raise ConfigError(f"model.resolution must be >= 16 and divisible by 4, got {self.resolution}")
        if self.window_len is not None and self.window_len < 2:
            raise ConfigError(f"model.window_len must be >= 2 or null, got {self.window_len}")
        if not isinstance(self.arch, dict):
            raise ConfigError(f"model.arch must be a mapping, got {type(self.arch).__name__}")
        forbidden = sorted({"mode", "window_len", "model_resolution"} & set(self.arch))
        if forbidden:
            raise ConfigError(f"model.arch must not set {forbidden}: use model.mode/window_len/resolution")
        if self.iters < 1:
            raise ConfigError(f"model.iters must be >= 1, got {self.iters}")


@dataclass
class KubricDataSettings:
    """Stage 1 data: sequences in the CoTracker3 Kubric layout (real Kubric or generated)."""

    root: str | None = _opt(None, "folder with <name>/<name>.npy and <name>/frames/*.png per sequence")
    num_frames: int = _opt(64, "clip length T (online: 64 in the paper)")
    num_frames_range: tuple[int, int] | None = _opt(
        None, "inclusive (min, max) to draw T from, one T per global batch (offline: [30, 60]); null: fixed"
    )
    num_points: int = _opt(384, "query points per clip (paper: 384 online, 512 offline)")
    query_mode: str = _opt("early", "early (queries in the clip's first half, online) or uniform (offline)")
    supervise_before_query: bool = _opt(False, "supervise frames before the query frame (offline tracks backwards)")
    zoom_range: tuple[float, float] = _opt((1.0, 1.0), "(min, max) extra zoom of the random crop, min >= 1")
    hflip_prob: float = _opt(0.0, "probability of a horizontal flip")
    vflip_prob: float = _opt(0.0, "probability of a vertical flip")
    num_workers: int = _opt(0, "DataLoader worker processes per rank (0: load in the training process)")

    def __post_init__(self) -> None:
        if self.num_frames_range is not None:
            self.num_frames_range = _pair(self.num_frames_range, "data.num_frames_range")
        self.zoom_range = _pair(self.zoom_range, "data.zoom_range", float)
        if self.num_workers < 0:
            raise ConfigError(f"data.num_workers must be >= 0, got {self.num_workers}")


@dataclass
class TeacherSpec:
    """One teacher of stage 2: a CoTracker3 checkpoint (ours or official) and its mode."""

    checkpoint: str = _opt("", "checkpoint file, official name (scaled_online, ...) or URL")
    mode: str = _opt("online", "online or offline")
    kind: str = _opt("cotracker3", "tracker family (training.teachers.TEACHER_KINDS)")
    iters: int = _opt(6, "refinement iterations when labelling")

    def __post_init__(self) -> None:
        if not self.checkpoint:
            raise ConfigError("pseudo.teachers[].checkpoint is required")
        if self.mode not in MODEL_MODES:
            raise ConfigError(f"pseudo.teachers[].mode must be one of {MODEL_MODES}, got {self.mode!r}")
        if self.iters < 1:
            raise ConfigError(f"pseudo.teachers[].iters must be >= 1, got {self.iters}")


@dataclass
class PseudoLabelSettings:
    """Stage 2 data: unlabelled videos labelled on the fly by teachers."""

    video_dirs: list[str] = _opt([], "folders of video files (.mp4 .avi .mov .mkv .webm), searched recursively")
    rosbags: list[str] = _opt([], "rosbag2 folders; each image topic is one video")
    topics: list[str] = _opt([], "rosbag image topics to use (sensor_msgs/Image or CompressedImage); []: all")
    teachers: list[TeacherSpec] = _opt([], "teachers, one drawn at random per batch: [{checkpoint, mode, kind, iters}]")
    num_frames: int = _opt(64, "clip length T")
    num_frames_range: tuple[int, int] | None = _opt(None, "(min, max) to draw T from per global batch (offline)")
    num_points: int = _opt(384, "SIFT query points per clip")
    sift_frames: int = _opt(8, "frames the SIFT queries are taken from, spread over the query span")
    query_span: float = _opt(
        0.5, "share of the clip (from its start) holding the SIFT frames: 0.5 online (early queries), 1.0 offline"
    )
    supervise_before_query: bool = _opt(False, "supervise frames before the query frame (offline student)")
    visibility_threshold: float = _opt(0.6, "teacher visibility x confidence above this counts as visible")
    max_skips: int = _opt(16, "videos tried per item before giving up (a video with too few SIFT points is skipped)")
    skip_unreadable: bool = _opt(
        False, "skip video files that cannot be decoded (logged by name) instead of failing at start-up"
    )
    num_workers: int = _opt(0, "DataLoader worker processes per rank")

    def __post_init__(self) -> None:
        self.video_dirs = [str(p) for p in self.video_dirs]
        self.rosbags = [str(p) for p in self.rosbags]
        self.topics = [str(t) for t in self.topics]
        self.teachers = [t if isinstance(t, TeacherSpec) else _build(TeacherSpec, t, "pseudo.teachers[]")
                         for t in self.teachers]
        if self.num_frames_range is not None:
            self.num_frames_range = _pair(self.num_frames_range, "pseudo.num_frames_range")
        if self.num_frames < 2:
            raise ConfigError(f"pseudo.num_frames must be >= 2, got {self.num_frames}")
        if self.num_points < 1:
            raise ConfigError(f"pseudo.num_points must be >= 1, got {self.num_points}")
        if self.sift_frames < 1:
            raise ConfigError(f"pseudo.sift_frames must be >= 1, got {self.sift_frames}")
        if not 0.0 < self.query_span <= 1.0:
            raise ConfigError(f"pseudo.query_span must be in (0, 1], got {self.query_span}")
        if not 0.0 <= self.visibility_threshold <= 1.0:
            raise ConfigError(f"pseudo.visibility_threshold must be in [0, 1], got {self.visibility_threshold}")
        if self.max_skips < 1:
            raise ConfigError(f"pseudo.max_skips must be >= 1, got {self.max_skips}")
        if self.num_workers < 0:
            raise ConfigError(f"pseudo.num_workers must be >= 0, got {self.num_workers}")


@dataclass
class OptimSettings:
    """AdamW and the learning-rate schedule."""

    lr: float = _opt(5e-4, "peak learning rate (paper: 5e-4 stage 1, 5e-5 stage 2)")
    betas: tuple[float, float] = _opt((0.9, 0.999), "AdamW betas")
    weight_decay: float = _opt(1e-5, "AdamW weight decay")
    eps: float = _opt(1e-8, "AdamW epsilon")
    grad_clip: float = _opt(1.0, "clip the global gradient norm to this (0: no clipping)")
    schedule: str = _opt("warmup_cosine", "warmup_cosine (stage 1), cosine (stage 2) or constant")
    warmup_steps: int = _opt(1000, "linear warm-up steps of warmup_cosine")
    min_lr_ratio: float = _opt(0.0, "final learning rate as a fraction of lr")

    def __post_init__(self) -> None:
        self.betas = _pair(self.betas, "optim.betas", float)
        if self.lr <= 0:
            raise ConfigError(f"optim.lr must be > 0, got {self.lr}")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"optim.betas must be in [0, 1), got {self.betas}")
        if self.weight_decay < 0 or self.eps <= 0 or self.grad_clip < 0:
            raise ConfigError("optim.weight_decay and optim.grad_clip must be >= 0, optim.eps > 0")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"optim.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.warmup_steps < 0:
            raise ConfigError(f"optim.warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"optim.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")


@dataclass
class TrainSettings:
    """The loop: length, batch, precision, logging and checkpoints."""

    steps: int = _opt(50000, "optimiser steps in total (the schedule spans them)")
    batch_size: int = _opt(32, "GLOBAL batch size (clips per step over all processes); divisible by world size")
    amp: bool = _opt(True, "bf16 autocast on CUDA (ignored on CPU, which always trains in float32)")
    device: str = _opt("auto", "auto (cuda:LOCAL_RANK if available, else cpu), cpu or cuda")
    num_threads: int = _opt(0, "torch CPU threads per process (0: torch's default)")
    log_every: int = _opt(10, "steps between log lines / TensorBoard scalars")
    checkpoint_every: int = _opt(1000, "steps between checkpoints (one is always written at the end)")
    keep_checkpoints: bool = _opt(False, "also keep step_XXXXXXX.pt copies besides last.pt")
    stop_after: int | None = _opt(
        None, "stop (with a checkpoint) after this step although train.steps is larger; resume later"
    )
    tensorboard: bool = _opt(True, "write TensorBoard scalars to <out_dir>/tensorboard")
    progress: bool = _opt(True, "tqdm progress bar on rank 0")

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.num_threads < 0:
            raise ConfigError(f"train.num_threads must be >= 0, got {self.num_threads}")
        if self.stop_after is not None and self.stop_after < 1:
            raise ConfigError(f"train.stop_after must be >= 1 or null, got {self.stop_after}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"train.device must be auto, cpu or cuda, got {self.device!r}")


@dataclass
class EvalSettings:
    """Periodic TAP-Vid evaluation ("first" query mode) on a held-out set."""

    root: str | None = _opt(None, "held-out sequences in the Kubric layout (null: no evaluation)")
    tapvid_pickle: str | None = _opt(None, "or a TAP-Vid/RoboTAP pickle (e.g. tapvid_davis.pkl)")
    every: int = _opt(1000, "steps between evaluations (also run after the last step)")
    num_clips: int = _opt(20, "clips evaluated (the first ones, in name order)")
    max_points: int = _opt(256, "at most this many tracks per clip (a fixed random subset)")
    max_frames: int | None = _opt(None, "evaluate only the first max_frames frames of each clip")
    iters: int = _opt(4, "refinement iterations at evaluation")
    visibility_threshold: float = _opt(0.6, "predicted visible where visibility x confidence > this")
    seed: int = _opt(0, "seed of the track subset")

    def __post_init__(self) -> None:
        if self.root is not None and self.tapvid_pickle is not None:
            raise ConfigError("set eval.root or eval.tapvid_pickle, not both")
        if self.every < 1 or self.num_clips < 1 or self.max_points < 1 or self.iters < 1:
            raise ConfigError("eval.every, eval.num_clips, eval.max_points and eval.iters must be >= 1")
        if self.max_frames is not None and self.max_frames < 2:
            raise ConfigError(f"eval.max_frames must be >= 2 or null, got {self.max_frames}")

    @property
    def enabled(self) -> bool:
        return self.root is not None or self.tapvid_pickle is not None


@dataclass
class TrainingConfig:
    """A whole training run."""

    stage: str = _opt("supervised", "supervised (stage 1: Kubric-layout ground truth) or pseudo (stage 2)")
    out_dir: str = _opt("runs/train", "checkpoints (checkpoints/last.pt), metrics.jsonl, tensorboard/")
    seed: int = _opt(0, "seed of model init, data order, clip sampling and teacher choice")
    model: ModelSettings = field(default_factory=ModelSettings)
    data: KubricDataSettings = field(default_factory=KubricDataSettings)
    pseudo: PseudoLabelSettings = field(default_factory=PseudoLabelSettings)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimSettings = field(default_factory=OptimSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    eval: EvalSettings = field(default_factory=EvalSettings)

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ConfigError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if self.stage == "supervised":
            if not self.data.root:
                raise ConfigError("stage 'supervised' needs data.root (a Kubric-layout folder)")
            if self.data.num_points < 1:
                raise ConfigError(f"data.num_points must be >= 1, got {self.data.num_points}")
        else:
            if not self.pseudo.teachers:
                raise ConfigError("stage 'pseudo' needs at least one teacher in pseudo.teachers")
            if not self.pseudo.video_dirs and not self.pseudo.rosbags:
                raise ConfigError("stage 'pseudo' needs pseudo.video_dirs or pseudo.rosbags")
            if not self.model.init_checkpoint:
                raise ConfigError("stage 'pseudo' needs model.init_checkpoint (the stage-1 student)")

    @property
    def frames_range(self) -> tuple[int, int] | None:
        return self.data.num_frames_range if self.stage == "supervised" else self.pseudo.num_frames_range

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-safe dict (tuples as lists), as stored in checkpoints."""
        return _plain(dataclasses.asdict(self))


SECTIONS: dict[str, type] = {
    "model": ModelSettings,
    "data": KubricDataSettings,
    "pseudo": PseudoLabelSettings,
    "loss": LossConfig,
    "optim": OptimSettings,
    "train": TrainSettings,
    "eval": EvalSettings,
}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _build(cls: type, values: Any, where: str) -> Any:
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(values).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown key(s) in {where}: {unknown}; known: {sorted(names)}")
    hints = get_type_hints(cls)
    converted = {}
    for key, value in values.items():
        converted[key] = _coerce(value, hints[key], f"{where}.{key}")
    try:
        return cls(**converted)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {err}") from err


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Light type checking of YAML values (ints for floats are fine; strings for numbers are not)."""
    if value is None:
        return None
    origin, args = get_origin(hint), get_args(hint)
    if hint is float and isinstance(value, str):
        try:  # YAML 1.1 reads "1e-3" (no dot) as a string
            return float(value)
        except ValueError:
            raise ConfigError(f"{where} must be float, got {value!r}") from None
    if origin is None and hint in (int, float, bool, str):
        kinds = {int: (int,), float: (int, float), bool: (bool,), str: (str, int, float)}[hint]
        if isinstance(value, bool) and hint is not bool or not isinstance(value, kinds):
            raise ConfigError(f"{where} must be {hint.__name__}, got {value!r}")
        return hint(value)
    if args and type(None) in args:  # X | None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where) if len(inner) == 1 else value
    return value


def config_from_dict(raw: dict[str, Any]) -> TrainingConfig:
    """Build and check a TrainingConfig from nested plain values."""
    if not isinstance(raw, dict):
        raise ConfigError(f"the config must be a mapping of sections, got {type(raw).__name__}")
    top = {f.name for f in dataclasses.fields(TrainingConfig)}
    unknown = sorted(set(raw) - top)
    if unknown:
        raise ConfigError(f"unknown top-level key(s): {unknown}; known: {sorted(top)}")
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key in SECTIONS:
            kwargs[key] = _build(SECTIONS[key], value, key)
        else:
            kwargs[key] = _coerce(value, get_type_hints(TrainingConfig)[key], key)
    try:
        return TrainingConfig(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(str(err)) from err


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of sections")
    return raw


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``["optim.lr=1e-4", "model.arch={latent_dim: 32}"]`` applied to a nested dict (values are YAML)."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: value is not valid YAML: {err}") from err
        parts = key.strip().split(".")
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part} is not a section")
            else:
                child = dict(child)
            node[part] = child
            node = child
        node[parts[-1]] = value
    return out


def load_config(path: str | os.PathLike[str] | None, overrides: list[str] | None = None) -> TrainingConfig:
    """YAML file (or defaults when None) + ``section.key=value`` overrides -> checked TrainingConfig."""
    raw = load_yaml(path) if path is not None else {}
    return config_from_dict(apply_overrides(raw, list(overrides or [])))


def _type_name(hint: Any) -> str:
    text = getattr(hint, "__name__", None) if get_origin(hint) is None else None
    return text or str(hint).replace("typing.", "")


def describe_options() -> str:
    """Every option as ``section.key (type, default): help`` lines, for ``--help``."""
    lines = []
    hints = get_type_hints(TrainingConfig)
    for f in dataclasses.fields(TrainingConfig):
        if f.name in SECTIONS:
            continue
        lines.append(f"  {f.name} ({_type_name(hints[f.name])}, default {f.default!r}): {f.metadata['help']}")
    loss_help = {
        "gamma": "iteration weight base: iteration m of M weighs gamma^(M-m)",
        "huber_delta": "Huber loss transition, pixels",
        "occluded_weight": "weight of occluded points in the track loss",
        "confidence_threshold_px": "confidence target: prediction within this many pixels",
        "confidence_visible_only": "confidence loss on visible points only",
        "track_weight": "weight of the track loss in the total",
        "visibility_weight": "weight of the visibility loss (0 in stage 2: head frozen)",
        "confidence_weight": "weight of the confidence loss (0 in stage 2: head frozen)",
    }
    for section, cls in SECTIONS.items():
        lines.append(f"{section}: {(cls.__doc__ or '').strip().splitlines()[0]}")
        section_hints = get_type_hints(cls)
        default = cls() if section != "pseudo" else PseudoLabelSettings()
        for f in dataclasses.fields(cls):
            help_text = f.metadata.get("help") or loss_help.get(f.name, "")
            value = getattr(default, f.name)
            lines.append(f"  {section}.{f.name} ({_type_name(section_hints[f.name])}, default {value!r}): {help_text}")
    return "\n".join(lines)
