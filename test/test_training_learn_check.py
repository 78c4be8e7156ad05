"""CI variant of the learning demonstration: a few stage-1 steps on generated scenes lower the loss."""

from __future__ import annotations

import json
from pathlib import Path

from training.learn_check import QUICK_STEPS, main


def test_quick_learn_check_passes(tmp_path: Path) -> None:
    assert main(["--quick", "--check", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "quick" / "learn_check.json").read_text())
    assert report["passed"] and report["steps"] == QUICK_STEPS
    assert report["fixed_batch_loss_trained"] < report["fixed_batch_loss_initial"]
    assert Path(report["checkpoint"]).is_file()
