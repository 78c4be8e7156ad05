"""CI variant of the command that trains the shipped ``lite`` weights (``python -m training.lite``): the same
data generators, config and entry point, 4 scenes and 4 steps; then the export to a shipped-style file."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from cotracker3_core import build_model
from cotracker3_core.checkpoint import inference_settings, weights_digest
from cotracker3_core.config import ModelConfig, preset
from training.export_lite import RECOMMENDED, export
from training.lite import CONFIG, QUICK, REFINE, check_preset, main


def test_lite_config_is_the_lite_preset() -> None:
    check_preset(CONFIG)  # raises SystemExit when the YAML and PRESETS["lite"] disagree


def test_quick_lite_training_and_export(tmp_path: Path) -> None:
    assert main(["--quick", "--out", str(tmp_path)]) == 0
    out = tmp_path / "quick"
    plan = json.loads((out / "data" / "plan.json").read_text())
    assert plan["num_layered"] == QUICK.num_layered and plan["num_warp"] == QUICK.num_warp
    scenes = sorted(p.name for p in (out / "data" / "train").iterdir())
    assert len(scenes) == QUICK.num_layered + QUICK.num_warp and any(s.startswith("warp_") for s in scenes)
    metrics = [json.loads(line) for line in (out / "train" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "train/loss" in m] == [1, 2, 3, 4]
    assert any("eval/AJ" in m for m in metrics)
    # The refine stage starts from the base stage's final weights, with its own schedule and folder.
    refined = torch.load(out / "refine" / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    assert refined["step"] == 4 and refined["config"]["model"]["init_checkpoint"].endswith("train/checkpoints/last.pt")
    assert refined["config"]["optim"]["lr"] == float(REFINE["optim.lr"])

    shipped = export(out / "refine" / "checkpoints" / "last.pt", tmp_path / "lite.pt")
    content = torch.load(shipped, map_location="cpu", weights_only=True)
    assert content["preset"] == "lite" and content["training_step"] == 4
    assert content["weights_sha256"] == weights_digest(content["model"])
    assert inference_settings(shipped) == RECOMMENDED
    assert build_model("online", checkpoint=shipped).config == ModelConfig(**preset("lite"))
