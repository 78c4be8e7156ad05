"""``cotracker3-replay-eval`` against the real tracker node process over real Fast DDS, no mocks.

The tool starts the node itself (``python -m cotracker3_ros.node --ros-args --params-file config/tracker.yaml
-p ...``) in a domain id unique to this module and process, discovery kept on this host, with the same seeded
small checkpoint and settings as ``cotracker3-bag-eval`` (helpers from test_eval_bag.py); both run torch on one
thread. With lockstep pacing nothing is dropped, so the live tracks equal the offline ones to 1e-3 px and the
scores to 1e-6.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from test_eval_bag import CLIP_NAMES, NUM_FRAMES, make_dataset, model_args, small_checkpoint

from cotracker3_core.windows import frames_emitted
from cotracker3_ros.tools import bag_eval, replay_eval, tapvid_to_bag

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG = REPO_ROOT / "config" / "tracker.yaml"
# Fast DDS domain ids 0..232: test_launch takes 10..99, test_msgs_dds 100..199, test_ros_node 200..231.
DOMAIN_ID = 1 + os.getpid() % 9
NAMESPACE = f"/ct3_replay_eval_{os.getpid()}"

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("eval_replay")
    pkl, bags = make_dataset(root)
    return pkl, bags, small_checkpoint(root / "small.pth")


def replay_args(bags: Path | list[Path], checkpoint: Path, out: Path, *extra: str) -> list[str]:
    paths = [str(p) for p in bags] if isinstance(bags, list) else [str(bags)]
    return [
        *paths,
        *model_args(checkpoint),
        "--params-file", str(CONFIG),
        "--namespace", NAMESPACE,
        "--domain-id", str(DOMAIN_ID),
        "--localhost",
        "--node-threads", "1",
        "--timeout", "60",
        "--out", str(out),
        *extra,
    ]  # fmt: skip


def test_live_replay_matches_bag_eval(
    data: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, bags, checkpoint = data
    live_out, offline_out = tmp_path / "live", tmp_path / "offline"
    rc = replay_eval.main(replay_args(bags, checkpoint, live_out, "--save-tracks", "--compare-offline"))
    err = capsys.readouterr().err
    assert rc == 0, err + (live_out / "node.log").read_text()[-3000:]
    rc = bag_eval.main([str(bags), *model_args(checkpoint), "--params-file", str(CONFIG), "--out", str(offline_out),
                        "--save-tracks"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    live = json.loads((live_out / "results.json").read_text())
    offline = json.loads((offline_out / "results.json").read_text())
    assert [c["clip"] for c in live["clips"]] == list(CLIP_NAMES)
    for lc, oc in zip(live["clips"], offline["clips"], strict=True):
        assert lc["published_frames"] == NUM_FRAMES
        assert lc["dropped_frames"] == lc["rejected_frames"] == lc["frames_without_tracks"] == 0
        assert lc["refused_queries"] == [] and lc["duplicate_tracks"] == 0
        assert lc["metrics"]["missing_points"] == 0
        for key in ("AJ", "delta_avg", "OA", "occlusion_accuracy", "jaccard_1", "pts_within_16"):
            assert lc["metrics"][key] == pytest.approx(oc["metrics"][key], abs=1e-6), key
        assert 0.0 < lc["metrics"]["OA"] < 1.0
        lag = lc["lag"]
        assert lag["count"] > 0 and 0.0 <= lag["mean_ms"] <= lag["max_ms"]
        comparison = lc["offline_comparison"]
        assert comparison["max_abs_xy_diff_px"] <= 1e-3 and comparison["visible_disagreements"] == 0
        assert comparison["compared_points"] > 0 and comparison["max_abs_score_diff"] <= 1e-6
        # The saved tracks of both tools, entry by entry.
        a = np.load(live_out / f"{lc['clip']}_first_tracks.npz")
        b = np.load(offline_out / f"{oc['clip']}_first_tracks.npz")
        np.testing.assert_array_equal(a["ids"], b["ids"])
        np.testing.assert_array_equal(a["visible"], b["visible"])
        np.testing.assert_array_equal(np.isnan(a["xy"]), np.isnan(b["xy"]))
        np.testing.assert_allclose(a["xy"], b["xy"], atol=1e-3, equal_nan=True)
    assert "| **mean (2 clips)** | first |" in (live_out / "results.md").read_text()
    assert (live_out / f"{CLIP_NAMES[0]}_first.png").is_file()
    log = (live_out / "node.log").read_text()
    assert "tracker ready" in log and " grid (" not in log  # grid_size 0: only the ground-truth queries


def test_realtime_replay_of_compressed_images_with_clock(
    data: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Recorded pace (x2) with /clock and the node on sim time, JPEG images: whatever the node drops is
    accounted for: every frame without tracks was dropped or rejected by the node."""
    pkl, _, checkpoint = data
    bags = tmp_path / "jpeg"
    assert tapvid_to_bag.main([str(pkl), str(bags), "--encoding", "jpeg", "--fps", "15", "--no-progress"]) == 0
    out = tmp_path / "out"
    args = replay_args([bags / CLIP_NAMES[0]], checkpoint, out, "--pace", "realtime", "--rate", "2", "--clock",
                       "--png-frames", "0")  # fmt: skip
    rc = replay_eval.main(args)
    err = capsys.readouterr().err
    assert rc == 0, err + (out / "node.log").read_text()[-3000:]
    clip = json.loads((out / "results.json").read_text())["clips"][0]
    assert clip["pace"] == "realtime" and clip["published_frames"] == NUM_FRAMES
    assert clip["frames_without_tracks"] == clip["dropped_frames"] + clip["rejected_frames"]
    assert clip["rejected_frames"] == 0
    log = (out / "node.log").read_text()
    assert "(CompressedImage)" in log


def test_bad_input_is_reported_before_any_node_starts(
    data: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, bags, checkpoint = data
    rc = replay_eval.main(replay_args(bags / CLIP_NAMES[0], checkpoint, tmp_path / "a", "--image-topic", "/nope"))
    err = capsys.readouterr().err
    assert rc == 2 and "no topic '/nope'" in err
    assert not (tmp_path / "a" / "node.log").exists()
    rc = replay_eval.main(replay_args(bags / CLIP_NAMES[0], checkpoint, tmp_path / "b", "--max-in-flight", "3"))
    assert rc == 2 and "--max-in-flight must be >= window_len" in capsys.readouterr().err
    # A node that cannot start (a bad parameter after ours): its exit and log are reported at once.
    rc = replay_eval.main(replay_args(bags / CLIP_NAMES[0], checkpoint, tmp_path / "d", "--node-arg=-p",
                                      "--node-arg=step:=3"))  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "the tracker node exited with 2" in err and "step must be one of" in err
    # Connecting to a node that is not there: a clear timeout, not a hang.
    args = replay_args(bags / CLIP_NAMES[0], checkpoint, tmp_path / "c", "--connect", "--timeout", "2")
    args[args.index("--namespace") + 1] = "/nobody_here"
    rc = replay_eval.main(args)
    err = capsys.readouterr().err
    assert rc == 2 and "/nobody_here/tracker_node/get_parameters is not available" in err


def test_emission_rule_matches_the_engine(data: tuple[Path, Path, Path]) -> None:
    """The replay's end-of-clip wait counts on the engine's emission plan: `frames_emitted` says when the engine
    publishes first estimates (docs/ros.md)."""
    from cotracker3_core.streaming import StreamConfig, StreamingTracker

    _, _, checkpoint = data
    tracker = StreamingTracker.from_config(
        StreamConfig(checkpoint=str(checkpoint), device="cpu", model_resolution=(64, 64), window_len=8, step=4)
    )
    frame = np.zeros((64, 64, 3), np.uint8)
    emitted = 0
    for pushed in range(1, 20):
        emitted += sum(not t.refined for t in tracker.push(frame, pushed))
        assert emitted == frames_emitted(pushed, 8, 4), pushed


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        replay_eval.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for word in ("--pace", "--connect", "--compare-offline", "--max-in-flight", "--clock", "--params-file"):
        assert word in text
