"""Learning demonstration: stage 1 on generated scenes must beat the zero-motion baseline clearly.

Generates layered synthetic scenes (``training.data.synthetic``: a textured background and 2-4 textured
foreground layers moving independently and occluding each other) in the Kubric layout, trains the online
model with a reduced architecture (the same model code) at 128x128 with ``training/configs/learn_check.yaml``
through the regular training entry point, then evaluates on held-out generated clips (fixed seed):

    full check (about 15 minutes on 2 CPU cores):   python -m training.learn_check --check
    quick CI variant (under a minute):              python -m training.learn_check --quick --check

The full check passes when delta_avg on the held-out clips is at least ``--min-gain`` (10 points) above
the zero-motion baseline (every frame predicted at the query position). The quick variant trains 20 steps
(the same config, its schedule compressed) and passes when the loss on a fixed batch of held-out clips is
lower after training than at initialisation (single training batches are too noisy to compare).
``--check`` makes the exit status non-zero on failure; the numbers are printed and written to
``<out>/learn_check.json`` either way.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from cotracker3_core import build_model
from cotracker3_core.model import CoTracker3
from training.config import ConfigError, TrainingConfig, load_config
from training.data.kubric import KubricReader
from training.data.sampling import collate_clips
from training.data.synthetic import SceneConfig, write_synthetic_dataset
from training.objectives import count_supervised, windowed_losses
from training.supervised_data import KeyedKubricClips
from training.train import RunResult, build_student, run, sampling_config

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "learn_check.yaml"


@dataclass(frozen=True)
class GeneratedData:
    """The generated train / held-out sets (written once, reused while these settings do not change)."""

    scene: SceneConfig
    num_train: int
    num_heldout: int
    train_seed: int = 1
    heldout_seed: int = 2


FULL_DATA = GeneratedData(
    scene=SceneConfig(num_frames=24, height=128, width=128, num_points=256, num_layers=(2, 4),
                      layer_rotation_deg=10.0, layer_scale_change=0.1, background_rotation_deg=2.0,
                      background_scale_change=0.05, real_texture_prob=0.0),
    num_train=300,
    num_heldout=20,
)
QUICK_STEPS = 20
QUICK_OVERRIDES = [f"train.steps={QUICK_STEPS}", "train.log_every=1", f"train.checkpoint_every={QUICK_STEPS}",
                   "eval.root=null", "optim.warmup_steps=5"]
QUICK_BATCH = 4  # held-out clips in the fixed batch the quick check compares losses on
QUICK_DATA = dataclasses.replace(FULL_DATA, num_train=8, num_heldout=QUICK_BATCH)


def _describe(data: GeneratedData) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(data)))


def ensure_data(root: Path, data: GeneratedData) -> tuple[Path, Path]:
    """Write ``root/train`` and ``root/heldout`` unless they already hold exactly this data."""
    marker = root / "generated.json"
    train, heldout = root / "train", root / "heldout"
    if marker.is_file() and json.loads(marker.read_text()) == _describe(data):
        return train, heldout
    shutil.rmtree(root, ignore_errors=True)
    write_synthetic_dataset(train, data.num_train, data.scene, seed=data.train_seed)
    write_synthetic_dataset(heldout, data.num_heldout, data.scene, seed=data.heldout_seed)
    marker.write_text(json.dumps(_describe(data), indent=1))
    return train, heldout


@torch.no_grad()
def fixed_batch_loss(model: CoTracker3, cfg: TrainingConfig, root: Path, num_clips: int) -> float:
    """Total training loss of ``model`` on the first ``num_clips`` clips of ``root`` (fixed keys and seed)."""
    clips = KeyedKubricClips(KubricReader(root), sampling_config(cfg), seed=cfg.seed)
    batch = collate_clips([clips[(0, i % len(clips), None)] for i in range(num_clips)])
    was_training = model.training
    model.eval()
    try:
        out = model(batch.video, batch.queries, iters=cfg.model.iters)
    finally:
        model.train(was_training)
    terms = windowed_losses(out, batch.tracks, batch.visibility, batch.valid, cfg.loss,
                            count_supervised(out, batch.valid))
    return float(terms.total)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.learn_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit with status 1 when the check fails")
    parser.add_argument("--quick", action="store_true", help="CI variant: a few steps, check the loss goes down")
    parser.add_argument("--out", type=Path, default=Path("runs/learn_check"), help="data, checkpoints and logs")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="training config")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="extra training config override (repeatable)")
    parser.add_argument("--min-gain", type=float, default=0.10,
                        help="required delta_avg gain over the zero-motion baseline (fraction; 0.10 = 10 points)")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    data = QUICK_DATA if args.quick else FULL_DATA
    out = args.out / ("quick" if args.quick else "full")
    train_root, heldout_root = ensure_data(out / "data", data)
    run_dir = out / "train"
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run every time: nothing resumed by accident
    overrides = [f"data.root={train_root}", f"eval.root={heldout_root}", f"out_dir={run_dir}"]
    if args.quick:
        overrides += QUICK_OVERRIDES
    try:
        cfg = load_config(args.config, overrides + args.overrides)
    except ConfigError as err:
        parser.error(str(err))
    data_s = time.perf_counter() - started
    initial_loss = fixed_batch_loss(build_student(cfg), cfg, heldout_root, QUICK_BATCH) if args.quick else None
    result: RunResult = run(cfg)
    elapsed = time.perf_counter() - started

    report = {
        "mode": "quick" if args.quick else "full",
        "steps": result.end_step,
        "wall_time_s": round(elapsed, 1),
        "data_generation_s": round(data_s, 1),
        "first_train_losses": result.losses[:3],
        "last_train_losses": result.losses[-3:],
        "checkpoint": str(result.checkpoint) if result.checkpoint else None,
    }
    if args.quick:
        trained = build_model(cfg.model.mode, checkpoint=result.checkpoint)
        final_loss = fixed_batch_loss(trained, cfg, heldout_root, QUICK_BATCH)
        passed = final_loss < initial_loss
        report.update(fixed_batch_loss_initial=initial_loss, fixed_batch_loss_trained=final_loss)
        verdict = (f"loss on {QUICK_BATCH} fixed held-out clips {initial_loss:.3f} -> {final_loss:.3f}: "
                   f"{'down' if passed else 'NOT down'}")
    else:
        assert result.eval is not None and result.baseline is not None
        gain = result.eval["delta_avg"] - result.baseline["delta_avg"]
        passed = gain >= args.min_gain
        report.update(
            heldout_clips=data.num_heldout,
            model={k: round(100 * result.eval[k], 2) for k in ("AJ", "delta_avg", "OA")},
            zero_motion={k: round(100 * result.baseline[k], 2) for k in ("AJ", "delta_avg", "OA")},
            gain_points=round(100 * gain, 2),
            required_gain_points=round(100 * args.min_gain, 2),
        )
        verdict = (
            f"delta_avg {100 * result.eval['delta_avg']:.1f} vs zero-motion {100 * result.baseline['delta_avg']:.1f}: "
            f"gain {100 * gain:+.1f} points (need >= {100 * args.min_gain:.0f})"
        )
    report["passed"] = passed
    (out / "learn_check.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    print(f"learn_check ({report['mode']}, {elapsed / 60:.1f} min): {verdict} -> {'PASS' if passed else 'FAIL'}")
    return 1 if args.check and not passed else 0


if __name__ == "__main__":
    sys.exit(main())
