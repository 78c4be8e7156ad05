"""The deterministic weights of ../shared/reference: every parameter from a seeded normal draw.

No trained weights ship with this project. Tests, benchmarks and demos that need a model which computes the
official function on known inputs use these: the same rule made the reference vectors.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import torch

from .checkpoint import official_key
from .model import CoTracker3


def rule_tensor(key: str, shape: tuple[int, ...]) -> torch.Tensor:
    """The value the reference rule gives the official parameter `key` of `shape`."""
    rng = np.random.RandomState(zlib.crc32(key.encode()))
    noise = rng.standard_normal(shape).astype(np.float32)
    if len(shape) >= 2:
        value = 0.5 * noise / math.sqrt(int(np.prod(shape[1:])))
    elif "norm" in key and key.endswith(".weight"):
        value = 1.0 + 0.1 * noise
    else:
        value = 0.1 * noise
    return torch.from_numpy(np.asarray(value, dtype=np.float32))


@torch.no_grad()
def apply_reference_weights(model: CoTracker3) -> CoTracker3:
    """Fill every parameter of `model` by the rule (buffers keep their computed values); returns it."""
    for name, param in model.named_parameters():
        param.copy_(rule_tensor(official_key(name), tuple(param.shape)))
    return model
