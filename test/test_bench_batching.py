"""Smoke test of the batching benchmark (benchmarks/batching.py): its rows, and --check failing on a missed
target."""

from __future__ import annotations

import json

import torch

from benchmarks import batching


def test_batching_benchmark_rows_and_check(tmp_path, monkeypatch):
    path = tmp_path / "batching.json"
    threads = torch.get_num_threads()
    try:
        args = ["--models", "tiny", "--resolution", "32", "48", "--cameras", "1", "2", "--points", "5",
                "--reps", "1", "--threads", "1", "--json", str(path)]
        assert batching.main(args) == 0
        rows = json.loads(path.read_text())["rows"]
        assert [(r["model"], r["cameras"]) for r in rows] == [("tiny", 1), ("tiny", 2)]
        assert all(r["max_coord_diff_px"] <= batching.COORD_TOL for r in rows)
        assert all(r["ms"]["refine_batched"] > 0 and r["ms"]["step_each"] > 0 for r in rows)
        monkeypatch.setattr(batching, "MAX_SLOWDOWN", 0.0)  # no batched step can meet this
        assert batching.main([*args, "--check"]) == 1
    finally:
        torch.set_num_threads(threads)
