"""The node-overhead benchmark (benchmarks/node.py) over real rclpy and Fast DDS.

Runs a short version of `python -m benchmarks.node` in this process (its own rclpy context and a private domain):
every stage is timed, every published Tracks message reaches the subscriber, and --check exits non-zero when
the target is missed. The 1 ms target itself is a benchmark result (docs/benchmarks.md), not asserted here.
"""

from __future__ import annotations

import json
import os

import pytest

from benchmarks import node as bench_node

DOMAIN_ID = 140 + os.getpid() % 60


@pytest.mark.parametrize("extra", [["--encoding", "bgr8"], ["--compressed"]], ids=["bgr8", "jpeg"])
def test_short_run_times_every_stage_and_delivers(tmp_path, capsys, extra):
    path = tmp_path / "node.json"
    rc = bench_node.main(
        ["--frames", "40", "--points", "1024", "--domain-id", str(DOMAIN_ID), "--json", str(path), "--markdown"] + extra
    )
    result = json.loads(path.read_text())
    r = result["result"]
    assert result["schema"] == bench_node.SCHEMA and rc == 0
    assert r["delivered"] == r["published"] == 40 + 20  # timed + warm-up frames, none lost
    assert r["encoding"] == ("jpeg" if "--compressed" in extra else "bgr8")
    assert 21_000 < r["tracks_message_bytes"] < 22_000  # 1,024 points: 21 B per point + header
    for stage in (*bench_node.STAGES, "target_total", "total"):
        t = r["stages_ms"][stage]
        assert t["n"] == 40 and 0 < t["median"] <= t["p90"] <= t["max"], stage
    parts = sum(r["stages_ms"][s]["median"] for s in ("convert", "fill", "publish"))
    assert r["stages_ms"]["target_total"]["median"] <= parts * 1.5 + 0.05
    out = capsys.readouterr().out
    assert "conversion + fill + publish (target)" in out and "| publish" in out


def test_check_exits_non_zero_when_the_target_is_missed(tmp_path):
    args = ["--frames", "5", "--points", "16", "--domain-id", str(DOMAIN_ID), "--check"]
    assert bench_node.main(args + ["--target-ms", "1e-9"]) == 1
    assert bench_node.main(args + ["--target-ms", "1000"]) == 0


def test_bad_arguments_exit_with_usage_errors():
    for bad in (["--camera", "480"], ["--encoding", "yuv422"], ["--points", "0"]):
        with pytest.raises(SystemExit) as e:
            bench_node.main(bad)
        assert e.value.code not in (0, None)
