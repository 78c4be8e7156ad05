"""Turn a ``lite`` training checkpoint into the shipped file ``cotracker3_core/weights/lite.pt``.

    python -m training.export_lite [--checkpoint runs/lite/refine/checkpoints/last.pt] [--out PATH]

The shipped file holds the weights only (no optimiser state), with what a user of the name ``lite`` needs:
its preset, the training config and step, the recommended inference settings (``RECOMMENDED``: chosen
from the option table of ``python -m benchmarks.accuracy``, docs/models.md), the licence and a SHA-256 of
the weights that ``build_model`` verifies on every load.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from cotracker3_core.checkpoint import build_model, save_checkpoint
from cotracker3_core.config import ModelConfig, preset
from cotracker3_core.hub import WEIGHTS_DIR, load_checkpoint_file

#: Inference settings recorded in the shipped file; StreamConfig fields a caller leaves unset take them.
RECOMMENDED = {
    "model_resolution": [192, 256],
    "window_len": 8,
    "step": 4,
    "iters": 2,
    "visibility_threshold": 0.4,
    "update": "window",
    "motion_init": False,
}
LICENCE = "Apache-2.0 (weights trained by this project on CC0 / public-domain photographs; docs/models.md)"


def export(checkpoint: Path, out: Path) -> Path:
    """Write the shipped file from a training checkpoint of the ``lite`` preset."""
    content = load_checkpoint_file(checkpoint)
    model = build_model("online", checkpoint=checkpoint)
    if model.config != ModelConfig(**preset("lite")):
        raise SystemExit(f"{checkpoint}: not the lite preset ({model.config})")
    return save_checkpoint(
        out, model,
        preset="lite",
        training_config=content.get("config", {}),
        training_step=int(content.get("step", -1)),
        inference=dict(RECOMMENDED),
        licence=LICENCE,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.export_lite", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=Path("runs/lite/refine/checkpoints/last.pt"))
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR / "lite.pt")
    args = parser.parse_args(argv)
    path = export(args.checkpoint, args.out)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
