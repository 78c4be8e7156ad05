"""Smoke test of the engine benchmark (benchmarks/engine.py) and the engine's motion_init option.

The quick run uses a shrunk transformer at 64x96 so that it finishes in well under a minute on two CPU
cores; it checks the JSON schema, that the engine beats re-encoding the whole window, and that --check
turns a missed target into a non-zero exit.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benchmarks import common, engine, report, sections
from cotracker3_core import build_model
from cotracker3_core.model import IterationEstimate, extrapolate_motion, initial_estimates
from cotracker3_core.reference_weights import apply_reference_weights
from cotracker3_core.streaming import StreamConfig, StreamingTracker


@pytest.fixture(scope="module")
def quick_result(tmp_path_factory) -> tuple[int, dict]:
    path = tmp_path_factory.mktemp("bench") / "quick.json"
    threads = torch.get_num_threads()
    # One thread: an oversubscribed CPU (another process's threads on the same cores) slows OpenMP
    # kernels by orders of magnitude, and the test's numbers need only be consistent within the run.
    rc = engine.main(
        [
            "--threads",
            "1",
            "--quick",
            "--check",
            "--quiet",
            "--json",
            str(path),
            "--sections",
            "throughput,deviation,latency,layout",
            "--soak",
            "300",
        ]
    )
    torch.set_num_threads(threads)
    return rc, json.loads(path.read_text())


@pytest.mark.timeout(300)
def test_quick_run_schema(quick_result):
    rc, result = quick_result
    assert result["schema"] == engine.SCHEMA
    for key in ("machine", "settings", "sections", "targets", "passed", "seconds", "load_start", "load_end"):
        assert key in result, key
    assert result["settings"]["quick"] is True
    assert {"cpu", "cpu_count", "torch", "torch_threads", "device"} <= set(result["machine"])
    assert {r["precision"] for r in result["throughput"]} == set(result["settings"]["precisions"])
    for row in result["throughput"]:
        for path in ("engine", "reencode"):
            step = row[path]["step_ms"]
            assert step["n"] == result["settings"]["steps"]
            assert 0 < step["median"] <= step["p90"] <= step["p99"] <= step["max"]
            assert row[path]["fps"] > 0
        assert row["engine"]["state_mb"] > 0
    for row in result["deviation"]:
        assert row["precision"] != "fp32"
        assert 0 <= row["median_px"] <= row["p99_px"] <= row["max_px"]
    steps = sorted(r["step"] for r in result["latency"] if r["precision"] == "fp32")
    assert steps == [4, 8]
    for row in result["latency"]:
        assert row["frames"] == row["step"]  # one measured window per step mode in quick mode
        assert row["latency_ms"]["median"] > 0
    assert [r["precision"] for r in result["layout"]] == result["settings"]["precisions"]
    for row in result["layout"]:
        assert row["contiguous_ms"]["median"] > 0 and row["channels_last_ms"]["median"] > 0
        assert row["max_abs_diff"] < (1e-3 if row["precision"] == "fp32" else 0.1)  # same encoder, other layout
    soak = result["soak"]
    assert soak["frames"] == 300 and soak["state_bytes_constant"]
    assert result["passed"] is True and rc == 0, result["targets"]


def test_engine_beats_reencoding(quick_result):
    _, result = quick_result
    fp32 = next(r for r in result["throughput"] if r["precision"] == "fp32")
    assert fp32["engine"]["step_ms"]["median"] < fp32["reencode"]["step_ms"]["median"]
    assert fp32["speedup"] > 1.0


def test_reencoding_path_computes_the_same_tracks_as_the_engine():
    """The baseline must differ from the engine only in what it re-encodes, or the ratio means nothing."""
    torch.manual_seed(0)
    resolution = (64, 96)
    model = apply_reference_weights(build_model("online", model_resolution=resolution, **common.ARCHS["small"]))
    model = model.eval()
    frames, _ = common.load_frames(24, resolution, None)  # synthetic panning texture
    points = common.query_points(5, resolution)
    engine = StreamingTracker(model, sections.engine_config(model, torch.device("cpu"), "fp32", iters=4))
    latest = {}
    for i, frame in enumerate(frames):
        for ft in engine.push(frame, stamp=i + 1):
            latest[ft.frame_index] = ft.xy
        if i == 0:
            engine.add_queries(points, stamp=1)
    baseline = sections.ReencodingTracker(model, torch.device("cpu"), "fp32", step=8, iters=4)
    baseline.add_queries(points, resolution)
    baseline.track(frames[:16])
    second = baseline.track(frames[8:24]).numpy()  # (16, N, 2): frames 8..23, model pixels = input pixels here
    engine_xy = np.stack([latest[i] for i in range(8, 24)])
    # Batched and per-frame convolutions round differently; 5e-3 px is the reference's predictor tolerance.
    assert np.abs(second - engine_xy).max() < 5e-3


def test_check_fails_on_a_missed_target():
    result = {
        "machine": {"device": "cpu"},
        "sections": ["throughput", "soak"],
        "throughput": [
            {
                "points": 100,
                "precision": "fp32",
                "speedup": 1.2,
                "engine": {"step_ms": {"median": 10.0}},
                "reencode": {"step_ms": {"median": 12.0}},
            },
            {
                "points": 100,
                "precision": "bf16",
                "speedup": 1.5,
                "engine": {"step_ms": {"median": 4.0}},
                "reencode": {"step_ms": {"median": 6.0}},
            },
        ],
        "soak": {"frames": 10_000, "from_frame": 1000, "rss_growth_mb": 3.0, "state_bytes_constant": True},
    }
    verdicts = {t["name"].split(",")[0]: t["passed"] for t in report.evaluate_targets(result, quick=False)}
    assert verdicts["fp32 engine vs fp32 re-encoding"] is False  # 1.2 < 1.5
    assert verdicts["bf16 engine vs fp32 re-encoding"] is True  # 12 / 4 = 3 >= 2.5
    assert verdicts["RSS growth"] is True
    # On a CPU without bf16 instructions the bf16 target is reported but not decided.
    emulated = {**result, "machine": {"device": "cpu", "avx512_bf16": False, "native_bf16": False}}
    targets = {t["name"].split(",")[0]: t for t in report.evaluate_targets(emulated, quick=False)}
    assert targets["bf16 engine vs fp32 re-encoding"]["passed"] is None
    assert "no bf16 instructions" in targets["bf16 engine vs fp32 re-encoding"]["note"]
    assert targets["fp32 engine vs fp32 re-encoding"]["passed"] is False


def test_help_and_bad_arguments(capsys):
    with pytest.raises(SystemExit) as e:
        engine.main(["--help"])
    assert e.value.code == 0
    assert "--soak" in capsys.readouterr().out
    for bad in (["--resolution", "384by512"], ["--points", "0"], ["--precisions", "int8"]):
        with pytest.raises(SystemExit) as e:
            engine.main(bad)
        assert e.value.code == 2


def test_extrapolate_motion_continues_constant_velocity():
    carried = torch.tensor([[0.0, 0.0], [1.0, 2.0], [2.0, 4.0], [3.0, 6.0], [4.0, 8.0]])  # (C=5, 2)
    coords = carried[None, :, None]  # (B=1, C, N=1, 2)
    out = extrapolate_motion(coords, fill=3)
    assert out.shape == (1, 8, 1, 2)
    assert torch.allclose(out[0, 5:, 0], torch.tensor([[5.0, 10.0], [6.0, 12.0], [7.0, 14.0]]))
    # A single carried frame has no motion: the position is repeated.
    assert torch.equal(extrapolate_motion(coords[:, -1:], 2)[0, :, 0], carried[-1:].expand(3, 2))


def test_initial_estimates_extrapolate_only_carried_coordinates():
    query_xy = torch.tensor([[[10.0, 10.0], [20.0, 20.0]]])  # (1, N=2, 2)
    c = torch.arange(8, dtype=torch.float32)[None, :, None, None].expand(1, 8, 2, 2)  # moving +1/frame
    carry = IterationEstimate(c, torch.full((1, 8, 2), 0.5), torch.full((1, 8, 2), -0.5))
    use = torch.tensor([[True, False]])
    held = initial_estimates(query_xy, 16, carry, use)
    moved = initial_estimates(query_xy, 16, carry, use, extrapolate=True)
    assert torch.equal(held.coords[0, 8:, 0], torch.full((8, 2), 7.0))
    assert torch.equal(moved.coords[0, 8:, 0], torch.arange(8, 16, dtype=torch.float32)[:, None].expand(8, 2))
    assert torch.equal(moved.coords[0, :, 1], held.coords[0, :, 1])  # not carried: the query point
    assert torch.equal(moved.vis_logits, held.vis_logits) and torch.equal(moved.conf_logits, held.conf_logits)


def test_motion_init_engine_runs_and_is_off_by_default():
    assert StreamConfig().motion_init is None and StreamConfig().resolved().motion_init is False  # unset: off
    outputs = {}
    for motion_init in (False, True):
        torch.manual_seed(0)  # the same random weights for both runs
        model = build_model("online", model_resolution=(32, 48), **common.ARCHS["small"])
        tracker = StreamingTracker(
            model, StreamConfig(model_resolution=(32, 48), device="cpu", step=4, motion_init=motion_init)
        )
        rng = np.random.default_rng(0)
        base = rng.integers(0, 255, (32, 90, 3), dtype=np.uint8)
        emitted = []
        for i in range(28):
            emitted += tracker.push(np.ascontiguousarray(base[:, i : i + 48]), stamp=i + 1)
            if i == 0:
                tracker.add_queries([[10.0, 10.0], [30.0, 20.0]])
        outputs[motion_init] = np.stack([f.xy for f in emitted])
        assert np.isfinite(outputs[motion_init]).all()
    assert outputs[False].shape == outputs[True].shape
    # The first window has nothing to extrapolate from; later windows start elsewhere, so they differ.
    assert np.array_equal(outputs[False][:16], outputs[True][:16])
    assert not np.array_equal(outputs[False], outputs[True])
