"""Training scenes from photographs seen by a moving camera, with occluders (``make_warp_clip``).

Each scene picks a photograph for the plane the camera looks at and crops of the others for the
occluders, and draws its motion, occluders, lighting and blur from ``WarpClipConfig`` ranges wider than
the accuracy protocol's. Scenes are written in the Kubric layout, so stage-1 training reads them like
the layered scenes of ``training.data.synthetic``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from cotracker3_core.evaluation.warp_clips import WarpClipConfig, make_warp_clip
from training.data.kubric import write_kubric_sequence

#: Training ranges: faster and stronger camera motion than the protocol, 1-3 occluders, some blur.
TRAINING_WARP = WarpClipConfig(
    num_frames=24,
    height=240,
    width=320,
    num_points=256,
    num_keyframes=3,
    rotation_deg=30.0,
    scale_range=(0.6, 1.5),
    translation=0.35,
    perspective=0.12,
    num_occluders=(1, 3),
    occluder_size=(0.25, 0.6),
    lighting=0.2,
    motion_blur_prob=0.3,
    early_query_share=0.6,
)


def write_warp_dataset(
    out_dir: str | Path,
    num_sequences: int,
    photos: Sequence[np.ndarray],
    config: WarpClipConfig = TRAINING_WARP,
    seed: int = 0,
    prefix: str = "warp_",
) -> list[Path]:
    """Write ``num_sequences`` scenes as ``<out_dir>/<prefix>0000``, ...; scene i uses seed (seed, i)."""
    if num_sequences < 1:
        raise ValueError(f"num_sequences must be >= 1, got {num_sequences}")
    if len(photos) < 2:
        raise ValueError("need at least two photographs (one for the scene, one for occluders)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for index in range(num_sequences):
        rng = np.random.default_rng((seed, index))
        scene = int(rng.integers(len(photos)))
        others = [p for i, p in enumerate(photos) if i != scene]
        clip = make_warp_clip(photos[scene], others, config, rng)
        video = torch.from_numpy(np.ascontiguousarray(clip.video.transpose(0, 3, 1, 2)))
        written.append(write_kubric_sequence(out / f"{prefix}{index:04d}", video,
                                             torch.from_numpy(clip.tracks), torch.from_numpy(clip.visible)))
    return written
