"""Architecture configuration of CoTracker3.

Every size of the network is a field here, with the official values as defaults. Derived sizes (the
correlation volume, the transformer's input width) are computed, never typed in, so that shrinking a radius
or a depth for a test or a small robot cannot silently break another layer.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

MODES = ("online", "offline")

#: Window length each official checkpoint was trained with.
DEFAULT_WINDOW_LEN = {"online": 16, "offline": 60}

#: Named architectures: the ModelConfig fields each one sets (the rest keep the official defaults).
#: ``official`` is the released CoTracker3; ``lite`` is the project's CPU-real-time model (its shipped
#: weights record this preset); ``tiny`` is for tests and demos that need a model in milliseconds.
PRESETS: dict[str, dict[str, Any]] = {
    "official": {},
    "lite": {
        "window_len": 8,
        "model_resolution": (144, 192),
        "latent_dim": 32,
        "hidden_size": 64,
        "time_depth": 2,
        "space_depth": 1,
        "num_heads": 4,
        "num_virtual_tracks": 16,
        "corr_levels": 3,
        "corr_radius": 2,
        "corr_hidden": 64,
        "corr_embed_dim": 32,
    },
    "tiny": {
        "latent_dim": 16,
        "hidden_size": 32,
        "num_heads": 2,
        "num_virtual_tracks": 4,
        "corr_hidden": 32,
        "corr_embed_dim": 16,
    },
}


def preset(name: str) -> dict[str, Any]:
    """The ModelConfig fields of the named architecture (a copy; see ``PRESETS``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown architecture preset {name!r}; known: {sorted(PRESETS)}")
    return dict(PRESETS[name])


@dataclass(frozen=True)
class ModelConfig:
    """Sizes and constants of a CoTracker3 network.

    Args:
        mode: "online" (sliding windows) or "offline" (the whole clip is one window).
        window_len: frames per window; the offline model interpolates its time embedding to the clip.
        model_resolution: (H, W) the network was trained at. It only sets the displacement normalisation;
            the raw model never resizes its input.
        stride: encoder output stride.
        latent_dim: channels of the feature maps.
        hidden_size: width of the update transformer.
        time_depth / space_depth: number of temporal / spatial attention layers.
        num_heads: attention heads.
        mlp_ratio: MLP width as a multiple of hidden_size inside the transformer.
        num_virtual_tracks: learned tokens through which tracks exchange information.
        corr_levels: pyramid levels of the correlation.
        corr_radius: neighbourhood radius r; neighbourhoods and query supports are (2r+1)^2 points.
        corr_hidden / corr_embed_dim: hidden and output width of the correlation MLP.
        posenc_degrees: octaves of the displacement Fourier encoding.
    """

    mode: str = "online"
    window_len: int = 16
    model_resolution: tuple[int, int] = (384, 512)
    stride: int = 4
    latent_dim: int = 128
    hidden_size: int = 384
    time_depth: int = 3
    space_depth: int = 3
    num_heads: int = 8
    mlp_ratio: float = 4.0
    num_virtual_tracks: int = 64
    corr_levels: int = 4
    corr_radius: int = 3
    corr_hidden: int = 384
    corr_embed_dim: int = 256
    posenc_degrees: int = 10
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        object.__setattr__(self, "model_resolution", tuple(int(v) for v in self.model_resolution))
        if len(self.model_resolution) != 2 or min(self.model_resolution) <= 0:
            raise ValueError(f"model_resolution must be (H, W) > 0, got {self.model_resolution}")
        if any(v % self.stride for v in self.model_resolution):
            raise ValueError(f"model_resolution {self.model_resolution} must be divisible by stride {self.stride}")
        if self.window_len < 2:
            raise ValueError(f"window_len must be >= 2, got {self.window_len}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.latent_dim % 4:
            raise ValueError(f"latent_dim must be divisible by 4, got {self.latent_dim}")
        if self.space_depth and self.time_depth % self.space_depth:
            raise ValueError("time_depth must be a multiple of space_depth")
        for name in ("time_depth", "num_virtual_tracks", "corr_levels", "corr_hidden", "corr_embed_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.corr_radius < 0:
            raise ValueError(f"corr_radius must be >= 0, got {self.corr_radius}")

    @property
    def support_size(self) -> int:
        """Points in one (2r+1)x(2r+1) neighbourhood."""
        return (2 * self.corr_radius + 1) ** 2

    @property
    def corr_volume_dim(self) -> int:
        """Flattened 4D correlation of one level: every neighbourhood point against every support point."""
        return self.support_size**2

    @property
    def posenc_dim(self) -> int:
        """Displacement encoding width: 4 raw values plus sin and cos of each at every octave."""
        return 4 + 4 * 2 * self.posenc_degrees

    @property
    def transformer_input_dim(self) -> int:
        """Visibility and confidence logits, the per-level correlation embeddings, the displacement code."""
        return 2 + self.corr_levels * self.corr_embed_dim + self.posenc_dim

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("extra")
        d["model_resolution"] = list(self.model_resolution)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown architecture fields: {unknown}; known: {sorted(known)}")
        return cls(**d)

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)
