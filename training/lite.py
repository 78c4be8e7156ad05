"""Reproduce the shipped ``lite`` weights: generate the training scenes, then train in resumable chunks.

    python -m training.lite                       # data (once), then both stages to the end of their schedules
    python -m training.lite --stop-after 1200     # one chunk: stop the running stage after step 1200 (run again)
    python -m training.lite --quick               # CI variant: a few scenes, a few steps, a separate out dir

Two stages on the same scenes, each ``python -m training.train --resume auto`` (a restart continues the stage
it stopped in): ``base`` (``training/configs/lite.yaml``: 1,600 steps from scratch, lr 1e-3, into
``<out>/train``), then ``refine`` (`REFINE`: 1,000 more steps from base's final weights with a fresh,
lower warm-up/cosine schedule, into ``<out>/refine``).

Scenes come from the CC0 / public-domain photographs of ``training.data.photos`` only (never from the
held-out videos): layered scenes (``training.data.synthetic``, photographs as some of the textures) and a
moving camera over a photographed plane with crossing occluders (``training.data.warp_scenes``). The
training itself is ``python -m training.train --config training/configs/lite.yaml --resume auto``.
``python -m training.export_lite`` turns the resulting checkpoint into the shipped file.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cotracker3_core.config import ModelConfig, preset
from training.config import load_config
from training.data.photos import load_photos, photo_paths
from training.data.synthetic import FrameTextureSource, SceneConfig, write_synthetic_dataset
from training.data.warp_scenes import TRAINING_WARP, write_warp_dataset
from training.train import RunResult
from training.train import main as train_main

CONFIG = Path(__file__).resolve().parent / "configs" / "lite.yaml"

LAYERED = SceneConfig(num_frames=24, height=240, width=320, num_points=256, num_layers=(2, 4),
                      layer_rotation_deg=20.0, layer_scale_change=0.2, background_rotation_deg=5.0,
                      background_scale_change=0.1, real_texture_prob=0.6)


@dataclass(frozen=True)
class DataPlan:
    """How many scenes of each kind, and their seeds (the data is a pure function of this plan)."""

    num_layered: int = 336
    num_warp: int = 500
    num_monitor: int = 12
    seed: int = 1
    monitor_seed: int = 2


#: The second stage: overrides of lite.yaml (a warm restart from the base stage's final weights).
REFINE = {"optim.lr": "5.0e-4", "optim.warmup_steps": "50", "train.steps": "1000", "eval.every": "250"}

FULL = DataPlan()
QUICK = DataPlan(num_layered=2, num_warp=2, num_monitor=2)


def ensure_data(root: Path, plan: DataPlan) -> None:
    """Write ``root/train`` and ``root/monitor`` unless ``root`` already holds exactly this plan."""
    marker = root / "plan.json"
    described = {**plan.__dict__, "photos": [p.name for p in photo_paths()]}
    if marker.is_file() and json.loads(marker.read_text()) == described:
        return
    shutil.rmtree(root, ignore_errors=True)
    photos = load_photos()
    started = time.perf_counter()
    write_synthetic_dataset(root / "train", plan.num_layered, LAYERED, seed=plan.seed,
                            texture_source=FrameTextureSource(photo_paths()))
    write_warp_dataset(root / "train", plan.num_warp, photos, TRAINING_WARP, seed=plan.seed)
    # The monitor set (evaluated while training) uses the training photographs with other seeds: it
    # follows learning, it is not the held-out evaluation (python -m benchmarks.accuracy is).
    write_warp_dataset(root / "monitor", plan.num_monitor, photos, TRAINING_WARP, seed=plan.monitor_seed)
    marker.write_text(json.dumps(described, indent=1))
    print(f"training.lite: wrote {plan.num_layered + plan.num_warp} training and {plan.num_monitor} monitor "
          f"scenes to {root} in {time.perf_counter() - started:.0f} s", flush=True)


def check_preset(config_path: Path) -> None:
    """The training config must build exactly the ``lite`` preset (the shipped file records the preset)."""
    cfg = load_config(config_path)
    trained = ModelConfig(mode=cfg.model.mode, window_len=cfg.model.window_len,
                          model_resolution=cfg.model.resolution, **cfg.model.arch)
    if trained != ModelConfig(**preset("lite")):
        raise SystemExit(f"{config_path}: model differs from PRESETS['lite']: {trained} vs {preset('lite')}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.lite", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/lite"), help="data, checkpoints and logs")
    parser.add_argument("--stop-after", type=int, default=None, help="end this chunk after this step")
    parser.add_argument("--quick", action="store_true", help="CI variant: 4 scenes, 4 steps")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="extra training config override (repeatable)")
    args = parser.parse_args(argv)
    check_preset(CONFIG)
    out = args.out / "quick" if args.quick else args.out
    ensure_data(out / "data", QUICK if args.quick else FULL)
    common = [f"data.root={out / 'data' / 'train'}", f"eval.root={out / 'data' / 'monitor'}"]
    refine = {**REFINE, "model.init_checkpoint": str(out / "train" / "checkpoints" / "last.pt")}
    stages = [("base", {"out_dir": str(out / "train")}), ("refine", {"out_dir": str(out / "refine"), **refine})]
    if args.quick:
        common += ["train.log_every=1", "eval.num_clips=2", "optim.warmup_steps=1", "train.tensorboard=false"]
        for _, values in stages:
            values.update({"train.steps": "4", "train.checkpoint_every": "4", "eval.every": "4",
                           "optim.warmup_steps": "1"})
    for stage, values in stages:
        overrides = [*common, *(f"{k}={v}" for k, v in values.items()), *args.overrides]
        if args.stop_after is not None:
            overrides.append(f"train.stop_after={args.stop_after}")
        steps = load_config(CONFIG, overrides).train.steps
        result = _train(overrides)
        if result is None or result.end_step < steps:
            print(f"training.lite: stage {stage} stopped before step {steps}; run the same command to continue",
                  flush=True)
            return 0
    return 0


def _train(overrides: Sequence[str]) -> RunResult | None:
    argv_train = ["--config", str(CONFIG), "--resume", "auto"]
    for item in overrides:
        argv_train += ["--set", item]
    return train_main(argv_train)

if __name__ == "__main__":
    raise SystemExit(main())
