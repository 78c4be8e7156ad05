"""Train CoTracker3: stage 1 on Kubric-layout ground truth, stage 2 on teacher pseudo-labels.

Single process (CPU or one GPU)::

    python -m training.train --config training/configs/stage1_online.yaml --set data.root=/data/kubric

One machine, 8 GPUs (the global batch is split over the processes; one code path for 1 to N processes)::

    torchrun --standalone --nproc_per_node=8 -m training.train --config training/configs/stage1_online.yaml \\
        --set data.root=/data/kubric --set train.batch_size=8

Several machines (run on each node, NODE_RANK = 0..3, MASTER = the address of node 0)::

    torchrun --nnodes=4 --nproc_per_node=8 --node_rank=$NODE_RANK --rdzv_backend=c10d \\
        --rdzv_endpoint=$MASTER:29500 --rdzv_id=cotracker3 -m training.train \\
        --config training/configs/stage1_online.yaml --set train.batch_size=32

Stage 2 (pseudo-labels; the student starts from a stage-1 checkpoint, teachers are checkpoint files)::

    python -m training.train --config training/configs/stage2_pseudo.yaml \\
        --set model.init_checkpoint=runs/stage1_online/checkpoints/last.pt \\
        --set pseudo.video_dirs=[/data/videos] --set pseudo.rosbags=[/data/bags/run1]

Resume an interrupted run exactly (model, optimiser, scheduler, step, RNG states; the data order is a
function of the step): add ``--resume auto`` (``<out_dir>/checkpoints/last.pt`` when it exists, else a fresh
start, so one command serves the first launch and every restart) or ``--resume PATH``.

What a step does: load this rank's share of the global batch (``training.batching``); in stage 2 label it
with one teacher drawn at random for the step (``training.teachers``) from SIFT queries
(``training.pseudo_labels``); run the model (bf16 autocast on CUDA only); sum the losses of every sliding
window (``training.objectives``), divided by the number of supervised elements of the GLOBAL batch
(all-reduced), so loss and gradients do not depend on how the batch is split over processes; clip the
gradient norm; AdamW step; learning-rate schedule step. Rank 0 logs (tqdm, ``metrics.jsonl``, TensorBoard
under ``<out_dir>/tensorboard``), writes checkpoints atomically and runs the held-out TAP-Vid evaluation
(AJ, delta_avg, OA, "first" query mode). In stage 2 the visibility/confidence head is frozen (no gradient,
not in the optimiser) and only the track loss trains.

Checkpoints load for inference with ``cotracker3_core.build_model(mode, checkpoint=path)``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import random
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from cotracker3_core import build_model
from cotracker3_core.model import CoTracker3
from training.batching import StepBatchSampler
from training.checkpointing import (
    config_differences,
    load_training_checkpoint,
    remove_stale_temporaries,
    resolve_resume_path,
    restore_training_state,
    save_training_checkpoint,
)
from training.config import ConfigError, TrainingConfig, describe_options, load_config
from training.data.kubric import KubricReader
from training.data.sampling import ClipSamplingConfig, TrainingBatch, collate_clips
from training.distributed import DistContext, all_reduce_sum, barrier, init_distributed, shutdown_distributed
from training.evaluation import EvalClip, evaluate_model, load_eval_clips, zero_motion_baseline
from training.objectives import count_supervised, windowed_losses
from training.optim import build_optimizer, build_scheduler, trainable_parameters
from training.pseudo_labels import (
    SKIP_FEW_POINTS,
    SKIP_SHORT,
    PseudoClipDataset,
    UnlabelledBatch,
    collate_unlabelled,
    make_pseudo_batch,
)
from training.supervised_data import KeyedKubricClips
from training.teachers import Teacher, load_teachers
from training.video_sources import ConcatVideoSource, RosbagImageSource, VideoFolderSource, VideoSource

logger = logging.getLogger("training")

_TEACHER_STREAM = 2  # generator stream of the per-step teacher choice
# Options that may change between a run and its resumption without a warning.
_FREE_TO_CHANGE = ("train.stop_after", "train.log_every", "train.checkpoint_every", "train.progress",
                   "train.tensorboard", "train.keep_checkpoints", "train.num_threads", "train.device", "eval.",
                   "data.num_workers", "pseudo.num_workers", "out_dir")


@dataclass
class RunResult:
    """What a run did (filled on rank 0; other ranks get the losses only).

    Attributes:
        start_step / end_step: the run covered steps start_step + 1 .. end_step.
        losses: global total loss of each step of this run.
        checkpoint: path of the last checkpoint written (rank 0).
        eval: last evaluation summary (AJ, delta_avg, OA, ...), if evaluation is on.
        baseline: zero-motion baseline on the same clips.
        counters: running totals (skipped videos in stage 2).
    """

    start_step: int
    end_step: int
    losses: list[float] = field(default_factory=list)
    checkpoint: Path | None = None
    eval: dict[str, float] | None = None
    baseline: dict[str, float] | None = None
    counters: dict[str, int] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------
# Building blocks


def build_student(cfg: TrainingConfig) -> CoTracker3:
    """The model to train, freshly initialised (seeded) or from ``model.init_checkpoint``."""
    torch.manual_seed(cfg.seed)
    m = cfg.model
    model = build_model(
        m.mode, checkpoint=m.init_checkpoint, window_len=m.window_len, model_resolution=m.resolution, **m.arch
    )
    if tuple(model.config.model_resolution) != tuple(m.resolution):
        raise ConfigError(
            f"model.init_checkpoint was trained at resolution {list(model.config.model_resolution)} but "
            f"model.resolution is {list(m.resolution)}; set model.resolution to match"
        )
    return model


def freeze_visibility_head(model: CoTracker3) -> None:
    """Stage 2: the visibility/confidence head keeps its stage-1 weights (no gradient, no optimiser)."""
    for param in model.transformer.vis_conf_head.parameters():
        param.requires_grad_(False)


def sampling_config(cfg: TrainingConfig) -> ClipSamplingConfig:
    """Stage 1 clip sampling from the config (the crop is the model resolution)."""
    d = cfg.data
    return ClipSamplingConfig(
        crop_size=tuple(cfg.model.resolution),
        num_frames=d.num_frames,
        num_frames_range=d.num_frames_range,
        num_points=d.num_points,
        query_mode=d.query_mode,
        supervise_before_query=d.supervise_before_query,
        zoom_range=d.zoom_range,
        hflip_prob=d.hflip_prob,
        vflip_prob=d.vflip_prob,
    )


def build_video_source(cfg: TrainingConfig) -> VideoSource:
    p = cfg.pseudo
    sources: list[VideoSource] = []
    if p.video_dirs:
        sources.append(VideoFolderSource(p.video_dirs, skip_unreadable=p.skip_unreadable))
    if p.rosbags:
        sources.append(RosbagImageSource(p.rosbags, p.topics))
    return ConcatVideoSource(sources)


def build_loader(cfg: TrainingConfig, ctx: DistContext, start_step: int, end_step: int
                 ) -> torch.utils.data.DataLoader:
    """This rank's batches for steps start_step .. end_step - 1."""
    if cfg.stage == "supervised":
        dataset: Any = KeyedKubricClips(KubricReader(cfg.data.root), sampling_config(cfg), seed=cfg.seed)
        collate, workers = collate_clips, cfg.data.num_workers
    else:
        dataset = PseudoClipDataset(build_video_source(cfg), cfg.pseudo, cfg.model.resolution, seed=cfg.seed)
        collate, workers = collate_unlabelled, cfg.pseudo.num_workers
    sampler = StepBatchSampler(
        len(dataset), cfg.train.batch_size, ctx.rank, ctx.world_size, cfg.seed, start_step, end_step,
        cfg.frames_range,
    )
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=workers)


def _batch_to(batch: TrainingBatch, device: torch.device) -> TrainingBatch:
    return TrainingBatch(
        names=batch.names,
        start_frames=batch.start_frames,
        video=batch.video.to(device, non_blocking=True),
        queries=batch.queries.to(device, non_blocking=True),
        tracks=batch.tracks.to(device, non_blocking=True),
        visibility=batch.visibility.to(device, non_blocking=True),
        valid=batch.valid.to(device, non_blocking=True),
        point_index=batch.point_index,
    )


def choose_teacher(teachers: Sequence[Teacher], seed: int, step: int) -> Teacher:
    """One teacher per global step, the same on every rank."""
    return teachers[int(np.random.default_rng([seed, _TEACHER_STREAM, step]).integers(len(teachers)))]


def trim_metrics(path: Path, start_step: int) -> int:
    """Drop the lines of ``metrics.jsonl`` that the run starting at ``start_step`` will write again: those a
    killed run logged after its last checkpoint (step > start_step), or every line for a fresh start.
    Returns how many lines were dropped."""
    if not path.is_file():
        return 0
    lines = path.read_text().splitlines()
    kept = [line for line in lines if start_step > 0 and _logged_step(line) <= start_step]
    if len(kept) != len(lines):
        path.write_text("".join(line + "\n" for line in kept))
    return len(lines) - len(kept)


def _logged_step(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return 1 << 62  # an unreadable (torn) line is dropped


class RunLogger:
    """Rank 0's outputs: metrics.jsonl, TensorBoard scalars, tqdm bar. Other ranks get a silent one."""

    def __init__(self, cfg: TrainingConfig, active: bool, start_step: int) -> None:
        self.active = active
        self.writer = None
        self.bar = None
        if not active:
            return
        out = Path(cfg.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.metrics_path = out / "metrics.jsonl"
        trim_metrics(self.metrics_path, start_step)
        if cfg.train.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(out / "tensorboard"), purge_step=start_step or None)
        if cfg.train.progress:
            from tqdm import tqdm

            self.bar = tqdm(total=cfg.train.steps, initial=start_step, desc=f"{cfg.stage}", dynamic_ncols=True)

    def scalars(self, step: int, values: dict[str, float], prefix: str) -> None:
        if not self.active:
            return
        with self.metrics_path.open("a") as f:
            f.write(json.dumps({"step": step, **{f"{prefix}/{k}": v for k, v in values.items()}}) + "\n")
        if self.writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(f"{prefix}/{key}", value, step)

    def progress(self, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}")

    def message(self, text: str) -> None:
        if not self.active:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            logger.info(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()


def _autocast(ctx: DistContext, cfg: TrainingConfig) -> contextlib.AbstractContextManager:
    if cfg.train.amp and ctx.device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _evaluate(model: CoTracker3, clips: list[EvalClip], cfg: TrainingConfig, ctx: DistContext) -> dict[str, float]:
    e = cfg.eval
    return evaluate_model(model, clips, e.iters, e.visibility_threshold, ctx.device, amp=cfg.train.amp)


def _summary_line(name: str, summary: dict[str, float]) -> str:
    s = {k: 100 * summary[k] for k in ("AJ", "delta_avg", "OA")}
    return f"{name}: AJ {s['AJ']:.1f}  delta_avg {s['delta_avg']:.1f}  OA {s['OA']:.1f}"


# ----------------------------------------------------------------------------------------------------
# The run


def _batches(loader: torch.utils.data.DataLoader) -> Iterator[Any]:
    yield from loader


def run(cfg: TrainingConfig, resume: str | None = None) -> RunResult:
    """Train according to ``cfg`` (from scratch, or continuing ``resume``: a path or "auto")."""
    ctx = init_distributed(cfg.train.device)
    owns_group = ctx.distributed
    try:
        return _run(cfg, ctx, resume)
    finally:
        if owns_group:
            shutdown_distributed()


def _run(cfg: TrainingConfig, ctx: DistContext, resume: str | None) -> RunResult:
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    if cfg.train.batch_size % ctx.world_size:
        raise ConfigError(
            f"train.batch_size {cfg.train.batch_size} (global) is not divisible by the {ctx.world_size} processes"
        )
    # Seed the global generators too (nothing here draws from them, but third-party code might).
    np.random.seed(cfg.seed)  # noqa: NPY002
    random.seed(cfg.seed)

    model = build_student(cfg).to(ctx.device).train()
    pseudo = cfg.stage == "pseudo"
    if pseudo:
        freeze_visibility_head(model)
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim, cfg.train.steps)
    start_step = 0
    counters = {SKIP_FEW_POINTS: 0, SKIP_SHORT: 0} if pseudo else {}
    if ctx.is_main:
        for stale in remove_stale_temporaries(cfg.out_dir):
            logger.info("removed %s, left by an interrupted checkpoint write", stale)
    path = resolve_resume_path(resume, cfg.out_dir) if resume else None
    if path is not None:
        content = load_training_checkpoint(path)
        start_step = restore_training_state(content, model, optimizer, scheduler, str(path))
        counters.update({k: int(v) for k, v in content.get("counters", {}).items()})
        changed = [d for d in config_differences(content.get("config", {}), cfg.to_dict())
                   if not d.startswith(_FREE_TO_CHANGE)]
        if ctx.is_main:
            logger.info("resuming %s at step %d", path, start_step)
            if changed:
                logger.warning("config differs from the checkpoint's: %s", "; ".join(changed))
    elif resume and ctx.is_main:
        logger.info("--resume auto: no checkpoint in %s yet, starting from step 0", cfg.out_dir)
    end_step = min(cfg.train.steps, cfg.train.stop_after or cfg.train.steps)
    result = RunResult(start_step=start_step, end_step=max(start_step, end_step), counters=counters)
    if start_step >= end_step:
        if ctx.is_main:
            logger.info("nothing to do: the checkpoint is at step %d, the run ends at %d", start_step, end_step)
        return result

    teachers = load_teachers(cfg.pseudo.teachers, ctx.device, cfg.pseudo.visibility_threshold, cfg.train.amp) \
        if pseudo else []
    loader = build_loader(cfg, ctx, start_step, end_step)
    eval_clips = load_eval_clips(cfg.eval, cfg.model.resolution) if ctx.is_main and cfg.eval.enabled else []
    train_model: torch.nn.Module = model
    if ctx.distributed:
        train_model = DistributedDataParallel(model, device_ids=[ctx.device] if ctx.device.type == "cuda" else None)

    log = RunLogger(cfg, ctx.is_main, start_step)
    if eval_clips:
        result.baseline = zero_motion_baseline(eval_clips)
        log.message(_summary_line(f"zero-motion baseline on {len(eval_clips)} held-out clips", result.baseline))
        log.scalars(start_step, {k: result.baseline[k] for k in ("AJ", "delta_avg", "OA")}, "baseline")
    params = trainable_parameters(model)
    config_dict = cfg.to_dict()
    step = start_step
    try:
        for step, batch in zip(range(start_step + 1, end_step + 1), _batches(loader), strict=True):
            started = time.perf_counter()
            if pseudo:
                assert isinstance(batch, UnlabelledBatch)
                teacher = choose_teacher(teachers, cfg.seed, step - 1)
                labels = teacher.label(batch.video, batch.queries)
                for reason, count in batch.skips.items():
                    counters[reason] = counters.get(reason, 0) + int(
                        all_reduce_sum(torch.tensor(count, device=ctx.device)).item()
                    )
                batch = make_pseudo_batch(batch, labels, cfg.pseudo.supervise_before_query)
            batch = _batch_to(batch, ctx.device)
            with _autocast(ctx, cfg):
                output = train_model(batch.video, batch.queries, iters=cfg.model.iters)
            local_count = count_supervised(output, batch.valid)
            global_count = all_reduce_sum(local_count)
            terms = windowed_losses(output, batch.tracks, batch.visibility, batch.valid, cfg.loss, global_count,
                                    train_visibility=not pseudo)
            # DDP averages gradients over processes: scale so they add up to the global-batch gradient.
            (terms.total * ctx.world_size).backward()
            if cfg.optim.grad_clip > 0:
                grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
            else:
                grad_norm = torch.linalg.vector_norm(
                    torch.stack([p.grad.detach().norm() for p in params if p.grad is not None])
                )
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)

            local = torch.stack([terms.total, terms.track, terms.visibility, terms.confidence]).detach().float()
            total, track, vis, conf = all_reduce_sum(local).tolist()
            if not math.isfinite(total):
                raise FloatingPointError(f"loss is {total} at step {step}; stopping (lower optim.lr?)")
            result.losses.append(total)
            log.progress(total)
            if step % cfg.train.log_every == 0 or step == start_step + 1 or step == end_step:
                values = {"loss": total, "track": track, "visibility": vis, "confidence": conf, "lr": lr,
                          "grad_norm": float(grad_norm), "supervised": float(global_count),
                          "step_time_s": time.perf_counter() - started, **{k: float(v) for k, v in counters.items()}}
                if pseudo:
                    values["teacher"] = teacher.name  # type: ignore[assignment]
                log.scalars(step, values, "train")
            if step % cfg.train.checkpoint_every == 0 or step == end_step:
                if ctx.is_main:
                    result.checkpoint = save_training_checkpoint(
                        cfg.out_dir, model, optimizer, scheduler, step, config_dict, counters,
                        keep_copy=cfg.train.keep_checkpoints,
                    )
                barrier()
            if eval_clips and (step % cfg.eval.every == 0 or step == end_step):
                result.eval = _evaluate(model, eval_clips, cfg, ctx)
                log.message(_summary_line(f"step {step} held-out", result.eval))
                log.scalars(step, {k: result.eval[k] for k in ("AJ", "delta_avg", "OA")}, "eval")
            if cfg.eval.enabled:
                barrier()
    finally:
        log.close()
    result.end_step = step
    result.counters = dict(counters)
    if ctx.is_main and result.checkpoint is not None:
        logger.info("checkpoint: %s (step %d)", result.checkpoint, step)
    return result


# ----------------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.train",
        description=__doc__,
        epilog="Options (YAML sections; override any with --set section.key=value):\n" + describe_options(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, help="YAML config (training/configs/*.yaml); defaults if omitted")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one option, e.g. --set optim.lr=1e-4 (value parsed as YAML; repeatable)")
    parser.add_argument("--resume", metavar="auto|PATH",
                        help="continue from a training checkpoint; auto = <out_dir>/checkpoints/last.pt if present "
                        "(else start afresh)")
    parser.add_argument("--out-dir", help="shortcut for --set out_dir=...")
    parser.add_argument("--steps", type=int, help="shortcut for --set train.steps=...")
    parser.add_argument("--batch-size", type=int, help="shortcut for --set train.batch_size=... (global)")
    parser.add_argument("--data-root", help="shortcut for --set data.root=...")
    parser.add_argument("--init-checkpoint", help="shortcut for --set model.init_checkpoint=...")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks of setup errors")
    return parser


def _shortcut_overrides(args: argparse.Namespace) -> list[str]:
    pairs = [("out_dir", args.out_dir), ("train.steps", args.steps), ("train.batch_size", args.batch_size),
             ("data.root", args.data_root), ("model.init_checkpoint", args.init_checkpoint)]
    return [f"{key}={json.dumps(value) if isinstance(value, str) else value}" for key, value in pairs
            if value is not None]


def main(argv: Sequence[str] | None = None) -> RunResult | None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.config, [*args.overrides, *_shortcut_overrides(args)])
        if args.print_config:
            import yaml

            print(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
            return None
        return run(cfg, resume=args.resume)
    except (ValueError, FileNotFoundError, OSError) as err:
        if args.debug:
            raise
        raise SystemExit(f"training.train: error: {err}") from None
    except KeyboardInterrupt:
        raise SystemExit("training.train: interrupted (resume with --resume auto)") from None


if __name__ == "__main__":
    main(sys.argv[1:])
