"""Tests of the training entry point: stage 1 and 2 runs, DDP agreement, exact resume, bad input.

Small architectures and 32x32 / 64x64 clips keep every run to seconds on 2 CPU cores; one test trains
the full-size default architecture for two steps on 64x64 clips.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from cotracker3_core import build_model, save_checkpoint
from training.batching import StepBatchSampler
from training.checkpointing import LAST_NAME, ResumeError, load_training_checkpoint
from training.config import ConfigError, TrainingConfig, load_config
from training.data.kubric import KubricReader
from training.data.sampling import ClipSamplingConfig, collate_clips
from training.data.synthetic import SceneConfig, write_synthetic_dataset
from training.objectives import count_supervised, windowed_losses
from training.optim import build_optimizer
from training.pseudo_labels import SKIP_FEW_POINTS, sift_queries
from training.supervised_data import KeyedKubricClips
from training.teachers import CoTrackerTeacher, Teacher
from training.train import build_parser, build_student, main, run

REPO_ROOT = Path(__file__).resolve().parents[1]

TINY_ARCH = {"latent_dim": 16, "hidden_size": 32, "time_depth": 1, "space_depth": 1, "num_heads": 2,
             "num_virtual_tracks": 4, "corr_levels": 2, "corr_radius": 1, "corr_hidden": 32, "corr_embed_dim": 16}
TINY_ARCH_YAML = "{" + ", ".join(f"{k}: {v}" for k, v in TINY_ARCH.items()) + "}"


def _arch_override(arch: dict = TINY_ARCH) -> str:
    return "model.arch={" + ", ".join(f"{k}: {v}" for k, v in arch.items()) + "}"


@pytest.fixture(scope="module")
def kubric_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six generated 12-frame 32x32 sequences (>= 2 moving layers each) in the Kubric layout."""
    root = tmp_path_factory.mktemp("train_kubric")
    write_synthetic_dataset(root, 6, SceneConfig(num_frames=12, height=32, width=32, num_points=64), seed=0)
    return root


def tiny_overrides(root: Path, out_dir: Path, **extra: object) -> list[str]:
    """A tiny online stage-1 run: 32x32, T=8, N=12, window 4 (3 sliding windows), global batch 2."""
    values = {
        "data.root": str(root), "out_dir": str(out_dir), "model.mode": "online", "model.window_len": 4,
        "model.resolution": "[32, 32]", "model.iters": 2, "data.num_frames": 8, "data.num_points": 12,
        "train.steps": 4, "train.batch_size": 2, "train.num_threads": 1, "train.log_every": 1,
        "train.checkpoint_every": 100, "train.progress": "false", "optim.warmup_steps": 2, "optim.lr": 1.0e-3,
    }
    values.update({k.replace("__", "."): v for k, v in extra.items()})
    return [f"{k}={v}" for k, v in values.items()] + [_arch_override()]


def tiny_config(root: Path, out_dir: Path, **extra: object) -> TrainingConfig:
    return load_config(None, tiny_overrides(root, out_dir, **extra))


def logged_losses(out_dir: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return {row["step"]: row["train/loss"] for row in rows if "train/loss" in row}


@pytest.fixture(scope="module")
def reference_run(kubric_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[int, float]]:
    """The uninterrupted 4-step, 1-process run the DDP and resume tests compare against."""
    out = tmp_path_factory.mktemp("reference_run")
    result = run(tiny_config(kubric_root, out))
    assert result.end_step == 4
    return out, logged_losses(out)


def _relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


# ----------------------------------------------------------------------------------------------------
# Stage 1


def test_few_steps_write_logs_checkpoint_and_load_with_build_model(reference_run: tuple[Path, dict]) -> None:
    out, losses = reference_run
    assert sorted(losses) == [1, 2, 3, 4]
    assert all(np.isfinite(v) and v > 0 for v in losses.values())
    assert list((out / "tensorboard").glob("events.out.tfevents.*")), "TensorBoard scalars missing"
    path = out / "checkpoints" / LAST_NAME
    content = load_training_checkpoint(path)  # weights_only load, as build_model does
    assert content["step"] == 4 and content["config"]["model"]["arch"] == TINY_ARCH
    assert {"torch", "numpy", "python"} <= set(content["rng"])
    model = build_model("online", checkpoint=path)
    assert model.config.window_len == 4 and tuple(model.config.model_resolution) == (32, 32)
    for key, value in model.state_dict().items():
        assert torch.equal(value, content["model"][key]), key
    out_tracks = model(torch.rand(1, 8, 3, 32, 32) * 255, torch.tensor([[[0.0, 10.0, 12.0]]]), iters=2)
    assert out_tracks.coords.shape == (1, 8, 1, 2) and torch.isfinite(out_tracks.coords).all()


def test_every_parameter_receives_a_gradient(kubric_root: Path, tmp_path: Path) -> None:
    cfg = tiny_config(kubric_root, tmp_path)
    model = build_student(cfg).train()
    sampling = ClipSamplingConfig(crop_size=(32, 32), num_frames=8, num_points=12)
    clips = KeyedKubricClips(KubricReader(kubric_root), sampling, seed=0)
    batch = collate_clips([clips[(0, 0, None)], clips[(0, 1, None)]])
    out = model(batch.video, batch.queries, iters=2)
    assert len(out.windows) == 3  # 8 frames, windows of 4 sliding by 2
    count = count_supervised(out, batch.valid)
    terms = windowed_losses(out, batch.tracks, batch.visibility, batch.valid, cfg.loss, count)
    terms.total.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(param.grad).all(), name
    assert all(float(t.detach()) > 0 for t in (terms.track, terms.visibility, terms.confidence))


def test_offline_run_with_random_clip_length(kubric_root: Path, tmp_path: Path) -> None:
    result = run(tiny_config(kubric_root, tmp_path, model__mode="offline", model__window_len=12,
                             data__num_frames_range="[6, 12]", data__query_mode="uniform",
                             data__supervise_before_query="true", train__steps=2))
    assert len(result.losses) == 2 and all(np.isfinite(result.losses))


@pytest.mark.slow
def test_full_size_default_architecture_trains(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_synthetic_dataset(root, 2, SceneConfig(num_frames=16, height=64, width=64, num_points=96), seed=3)
    overrides = [f"data.root={root}", f"out_dir={tmp_path / 'run'}", "model.resolution=[64, 64]",
                 "data.num_frames=16", "data.num_points=32", "train.steps=2", "train.batch_size=1",
                 "train.num_threads=1", "train.progress=false", "train.tensorboard=false", "optim.warmup_steps=1"]
    cfg = load_config(None, overrides)
    assert cfg.model.arch == {}  # the default (official) architecture
    result = run(cfg)
    assert len(result.losses) == 2 and all(np.isfinite(result.losses))
    model = build_model("online", checkpoint=result.checkpoint)
    assert model.config.hidden_size == 384 and model.config.latent_dim == 128


def test_sampler_gives_the_same_global_batch_for_any_world_size() -> None:
    for frames_range in (None, (30, 60)):
        single = StepBatchSampler(7, 4, 0, 1, seed=5, start_step=0, end_step=6, frames_range=frames_range)
        halves = [StepBatchSampler(7, 4, r, 2, seed=5, start_step=0, end_step=6, frames_range=frames_range)
                  for r in range(2)]
        quarters = [StepBatchSampler(7, 4, r, 4, seed=5, start_step=3, end_step=6, frames_range=frames_range)
                    for r in range(4)]
        one = list(single)
        two = [a + b for a, b in zip(*halves, strict=True)]
        four = [sum(parts, []) for parts in zip(*quarters, strict=True)]
        assert one == two and one[3:] == four
        assert len({k[2] for k in one[0]}) == 1  # one clip length per global batch
    with pytest.raises(ValueError, match="multiple of the number of processes"):
        StepBatchSampler(7, 3, 0, 2, seed=0, start_step=0, end_step=1)


def test_two_process_gloo_matches_one_process(kubric_root: Path, reference_run: tuple[Path, dict],
                                              tmp_path: Path) -> None:
    _, reference = reference_run
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "training.train"]
    for item in tiny_overrides(kubric_root, out, train__stop_after=2):
        command += ["--set", item]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    losses = logged_losses(out)
    assert sorted(losses) == [1, 2]
    for step, loss in losses.items():
        assert _relative(loss, reference[step]) < 1e-4, (step, loss, reference[step])


def test_resume_after_kill_continues_exactly(kubric_root: Path, reference_run: tuple[Path, dict],
                                             tmp_path: Path) -> None:
    _, reference = reference_run
    first = run(tiny_config(kubric_root, tmp_path, train__stop_after=2))  # "killed" after step 2's checkpoint
    assert first.end_step == 2 and (tmp_path / "checkpoints" / LAST_NAME).is_file()
    # What a kill after step 3's log line and during its checkpoint write leaves behind:
    with (tmp_path / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"step": 3, "train/loss": 99.0}) + "\n" + '{"step": 3, "train/lo')  # a torn last line
    stale = tmp_path / "checkpoints" / f".{LAST_NAME}.abc123.tmp"
    stale.write_bytes(b"partial")
    torch.manual_seed(1234)  # scramble the global RNGs: resuming must restore them
    np.random.seed(1234)  # noqa: NPY002
    second = run(tiny_config(kubric_root, tmp_path), resume="auto")
    assert second.start_step == 2 and second.end_step == 4
    for step, loss in zip((3, 4), second.losses, strict=True):
        assert _relative(loss, reference[step]) < 1e-6, (step, loss, reference[step])
    assert not stale.exists()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    logged = [row["step"] for row in rows if "train/loss" in row]
    assert logged == sorted(set(logged)) and logged[-2:] == [3, 4]  # each step once, the new step 3 kept
    assert 99.0 not in [row["train/loss"] for row in rows if "train/loss" in row]


# ----------------------------------------------------------------------------------------------------
# Stage 2


def _moving_texture_frames(num_frames: int, seed: int, height: int = 80, width: int = 96) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    texture = cv2.resize(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8), (2 * width, 2 * height),
                         interpolation=cv2.INTER_CUBIC)
    return [np.ascontiguousarray(texture[2 * t : 2 * t + height, 3 * t : 3 * t + width]) for t in range(num_frames)]


def _write_video(path: Path, frames: list[np.ndarray], fourcc: str) -> None:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, (width, height))
    assert writer.isOpened()
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def _write_rosbag(path: Path, frames: list[np.ndarray]) -> None:
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_HUMBLE)
    image_t = store.types["sensor_msgs/msg/Image"]
    compressed_t = store.types["sensor_msgs/msg/CompressedImage"]
    header_t, time_t = store.types["std_msgs/msg/Header"], store.types["builtin_interfaces/msg/Time"]
    with Writer(path, version=9) as writer:
        raw = writer.add_connection("/camera/image_raw", image_t.__msgtype__, typestore=store)
        jpeg = writer.add_connection("/camera/image_raw/compressed", compressed_t.__msgtype__, typestore=store)
        writer.add_connection("/chatter", "std_msgs/msg/String", typestore=store)
        for t, frame in enumerate(frames):
            header = header_t(stamp=time_t(sec=t, nanosec=0), frame_id="camera")
            h, w = frame.shape[:2]
            msg = image_t(header=header, height=h, width=w, encoding="rgb8", is_bigendian=0, step=3 * w,
                          data=frame.reshape(-1))
            writer.write(raw, t * 100_000_000, store.serialize_cdr(msg, image_t.__msgtype__))
            ok, data = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            assert ok
            cmsg = compressed_t(header=header, format="jpeg", data=data.reshape(-1))
            writer.write(jpeg, t * 100_000_000, store.serialize_cdr(cmsg, compressed_t.__msgtype__))


@pytest.fixture(scope="module")
def stage2_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tiny teachers (online, offline), a student checkpoint, a video folder and a rosbag."""
    root = tmp_path_factory.mktemp("stage2")
    torch.manual_seed(1)
    save_checkpoint(root / "teacher_online.pt", build_model("online", window_len=4, model_resolution=(64, 64),
                                                            **TINY_ARCH))
    save_checkpoint(root / "teacher_offline.pt", build_model("offline", window_len=8, model_resolution=(64, 64),
                                                             **TINY_ARCH))
    torch.manual_seed(2)
    save_checkpoint(root / "student.pt", build_model("online", window_len=4, model_resolution=(64, 64), **TINY_ARCH))
    videos = root / "videos"
    (videos / "sub").mkdir(parents=True)
    _write_video(videos / "a.mp4", _moving_texture_frames(12, seed=0), "mp4v")
    _write_video(videos / "sub" / "b.avi", _moving_texture_frames(12, seed=1), "MJPG")
    _write_video(videos / "flat.mp4", [np.full((80, 96, 3), 90, np.uint8)] * 12, "mp4v")  # no SIFT points
    _write_rosbag(root / "bag", _moving_texture_frames(12, seed=2))
    return {"root": root, "videos": videos, "bag": root / "bag"}


def stage2_overrides(inputs: dict[str, Path], out_dir: Path, source: str) -> list[str]:
    teachers = (f"[{{checkpoint: {inputs['root'] / 'teacher_online.pt'}, mode: online, iters: 2}}, "
                f"{{checkpoint: {inputs['root'] / 'teacher_offline.pt'}, mode: offline, iters: 2}}]")
    return [
        "stage=pseudo", f"out_dir={out_dir}", f"model.init_checkpoint={inputs['root'] / 'student.pt'}",
        "model.mode=online", "model.resolution=[64, 64]", "model.iters=2", f"pseudo.teachers={teachers}",
        source, "pseudo.num_frames=8", "pseudo.num_points=24", "pseudo.sift_frames=4",
        "train.steps=2", "train.batch_size=2", "train.num_threads=1", "train.progress=false",
        "optim.schedule=cosine", "optim.lr=1.0e-3", "loss.visibility_weight=0", "loss.confidence_weight=0",
    ]


def _assert_head_frozen_rest_trained(student: Path, trained: Path) -> None:
    before = torch.load(student, weights_only=True)["model"]
    after = torch.load(trained, weights_only=True)["model"]
    head = [k for k in before if k.startswith("transformer.vis_conf_head.")]
    assert head
    for key in head:
        assert torch.equal(before[key], after[key]), f"{key} changed although frozen"
    assert any(not torch.equal(before[k], after[k]) for k in before if k not in head), "nothing was trained"


def test_stage2_on_video_folder(stage2_inputs: dict[str, Path], tmp_path: Path) -> None:
    cfg = load_config(None, stage2_overrides(stage2_inputs, tmp_path, f"pseudo.video_dirs=[{stage2_inputs['videos']}]"))
    result = run(cfg)
    assert len(result.losses) == 2 and all(np.isfinite(result.losses))
    assert result.counters[SKIP_FEW_POINTS] >= 1  # the flat video was skipped and counted
    _assert_head_frozen_rest_trained(stage2_inputs["root"] / "student.pt", result.checkpoint)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {row["train/teacher"].split(":")[0] for row in rows if "train/teacher" in row} <= {
        "cotracker3_online", "cotracker3_offline"}
    assert rows[-1]["train/visibility"] == 0.0 and rows[-1]["train/confidence"] == 0.0


def test_stage2_on_rosbag(stage2_inputs: dict[str, Path], tmp_path: Path) -> None:
    cfg = load_config(None, stage2_overrides(stage2_inputs, tmp_path, f"pseudo.rosbags=[{stage2_inputs['bag']}]"))
    result = run(cfg)
    assert len(result.losses) == 2 and all(np.isfinite(result.losses))
    _assert_head_frozen_rest_trained(stage2_inputs["root"] / "student.pt", result.checkpoint)


def test_stage2_frozen_head_is_not_in_the_optimizer(stage2_inputs: dict[str, Path], tmp_path: Path) -> None:
    from training.train import freeze_visibility_head

    cfg = load_config(None, stage2_overrides(stage2_inputs, tmp_path, f"pseudo.rosbags=[{stage2_inputs['bag']}]"))
    model = build_student(cfg)
    freeze_visibility_head(model)
    optimizer = build_optimizer(model, cfg.optim)
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    head = list(model.transformer.vis_conf_head.parameters())
    assert head and all(not p.requires_grad and id(p) not in in_optimizer for p in head)
    assert id(model.transformer.flow_head.weight) in in_optimizer


def test_teacher_protocol_and_sift_queries(stage2_inputs: dict[str, Path]) -> None:
    teacher = CoTrackerTeacher(str(stage2_inputs["root"] / "teacher_online.pt"), "online", 2, torch.device("cpu"))
    assert isinstance(teacher, Teacher)
    frames = np.stack(_moving_texture_frames(8, seed=4, height=48, width=48))  # teacher resizes 48 -> 64
    queries = sift_queries(frames, 20, 4, 0.5, np.random.default_rng(0))
    assert queries.shape == (20, 3) and set(np.unique(queries[:, 0])) <= {0.0, 1.0, 2.0, 3.0}
    assert (queries[:, 1:] >= 0).all() and (queries[:, 1:] <= 47).all()
    video = torch.from_numpy(frames.transpose(0, 3, 1, 2).copy()).float()[None]
    labels = teacher.label(video, torch.from_numpy(queries)[None])
    assert labels.tracks.shape == (1, 8, 20, 2) and labels.visibility.dtype == torch.bool
    frame = torch.from_numpy(queries[:, 0]).long()
    assert torch.allclose(labels.tracks[0, frame, torch.arange(20)], torch.from_numpy(queries[:, 1:]))


# ----------------------------------------------------------------------------------------------------
# Bad input: a clear message, no deep traceback


def _error_of(argv: list[str]) -> str:
    with pytest.raises(SystemExit) as excinfo:
        main(argv)
    assert isinstance(excinfo.value.code, str), "expected an error message, not a bare exit status"
    return excinfo.value.code


def _as_args(overrides: list[str]) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


def test_bad_inputs_give_clear_messages(kubric_root: Path, stage2_inputs: dict[str, Path], tmp_path: Path,
                                        reference_run: tuple[Path, dict]) -> None:
    missing = tmp_path / "no_such_dataset"
    assert "does not exist" in _error_of(_as_args(tiny_overrides(missing, tmp_path / "a")))

    empty = tmp_path / "empty_videos"
    empty.mkdir()
    message = _error_of(_as_args(stage2_overrides(stage2_inputs, tmp_path / "b", f"pseudo.video_dirs=[{empty}]")))
    assert "no video files" in message and str(empty) in message

    corrupt = tmp_path / "corrupt_videos"
    corrupt.mkdir()
    (corrupt / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    message = _error_of(_as_args(stage2_overrides(stage2_inputs, tmp_path / "c", f"pseudo.video_dirs=[{corrupt}]")))
    assert "broken.mp4" in message and "unreadable" in message

    # Resuming a checkpoint of another architecture.
    reference_out, _ = reference_run
    other = dict(TINY_ARCH, hidden_size=64)
    argv = _as_args(tiny_overrides(kubric_root, tmp_path / "d")[:-1] + [_arch_override(other)])
    message = _error_of([*argv, "--resume", str(reference_out / "checkpoints" / LAST_NAME)])
    assert "another architecture" in message and "hidden_size" in message

    # A teacher file that is not a checkpoint.
    bogus = tmp_path / "bogus.pt"
    bogus.write_text("not a checkpoint")
    overrides = stage2_overrides(stage2_inputs, tmp_path / "e", f"pseudo.rosbags=[{stage2_inputs['bag']}]")
    overrides = [o if not o.startswith("pseudo.teachers=") else f"pseudo.teachers=[{{checkpoint: {bogus}}}]"
                 for o in overrides]
    assert "bogus.pt" in _error_of(_as_args(overrides))

    assert "unknown key" in _error_of(["--set", "optim.learning_rate=1"])
    assert "needs data.root" in _error_of([])


def test_resume_rejects_a_weights_only_file(stage2_inputs: dict[str, Path], kubric_root: Path,
                                            tmp_path: Path) -> None:
    with pytest.raises(ResumeError, match="not a training checkpoint"):
        run(tiny_config(kubric_root, tmp_path), resume=str(stage2_inputs["root"] / "student.pt"))


def test_config_checks_and_help_lists_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match="model.mode"):
        load_config(None, ["data.root=x", "model.mode=sideways"])
    with pytest.raises(ConfigError, match="optim.lr must be float"):
        load_config(None, ["data.root=x", "optim.lr=fast"])
    cfg = load_config(REPO_ROOT / "training" / "configs" / "stage1_offline.yaml", ["data.root=x"])
    assert cfg.model.mode == "offline" and cfg.data.num_frames_range == (30, 60)
    for name in ("stage1_online", "stage2_pseudo", "learn_check"):
        assert (REPO_ROOT / "training" / "configs" / f"{name}.yaml").is_file()
    help_text = build_parser().format_help()
    for section in ("model", "data", "pseudo", "loss", "optim", "train", "eval"):
        fields = getattr(cfg, section).__dataclass_fields__
        for key in fields:
            assert f"{section}.{key} " in help_text, f"--help does not explain {section}.{key}"
    assert "torchrun --standalone --nproc_per_node=8" in help_text and "--nnodes" in help_text


def test_heldout_evaluation_from_a_tapvid_pickle(tmp_path: Path) -> None:
    from cotracker3_core.evaluation import TapVidClip, write_tapvid_pickle
    from training.config import EvalSettings
    from training.evaluation import evaluate_model, load_eval_clips, zero_motion_baseline

    rng = np.random.default_rng(0)
    video = rng.integers(0, 255, (6, 40, 48, 3), dtype=np.uint8)
    points = np.broadcast_to(rng.uniform(2, 30, (5, 1, 2)), (5, 6, 2)).copy()  # static tracks
    occluded = np.zeros((5, 6), bool)
    occluded[:, 4] = True  # after every query frame: the always-visible baseline gets it wrong
    write_tapvid_pickle(tmp_path / "clips.pkl", [TapVidClip.from_pixels("c0", video, points, occluded)])
    clips = load_eval_clips(EvalSettings(tapvid_pickle=str(tmp_path / "clips.pkl"), max_points=4), (32, 32))
    assert len(clips) == 1 and clips[0].queries.shape == (4, 3) and clips[0].video.shape == (6, 3, 32, 32)
    baseline = zero_motion_baseline(clips)
    assert baseline["delta_avg"] == 1.0 and baseline["OA"] < 1.0  # static points: perfect positions
    model = build_model("online", window_len=4, model_resolution=(32, 32), **TINY_ARCH)
    summary = evaluate_model(model, clips, iters=1, visibility_threshold=0.6, device=torch.device("cpu"))
    assert {"AJ", "delta_avg", "OA"} <= set(summary) and 0.0 <= summary["delta_avg"] <= 1.0
