"""Which items each process loads at each step: a deterministic, rank-sharded batch sampler.

The data order is a function of the step only. Think of an endless stream of item positions
``p = step * G + j`` (G: global batch size); position p belongs to epoch ``p // L`` (L: data set size) and
names item ``perm_epoch[p % L]``, where ``perm_epoch`` is a permutation seeded by (seed, epoch). Rank r of
R processes takes the contiguous slice ``[r * G/R, (r+1) * G/R)`` of each step's global batch, as
``DistributedSampler`` does. Hence

- the global batch of a step is the same for any number of processes (1 GPU or 32 see the same clips);
- resuming at step s needs no state: the sampler simply starts at s;
- with a random clip length (offline training, T in 30..60) one length is drawn per global batch from
  (seed, step), so every clip of a step has the same T on every rank and batches can be stacked.

Items are keys ``(epoch, index, num_frames)``; the data set turns a key into a clip with a generator seeded
by the key, so clips do not depend on DataLoader workers either.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

ItemKey = tuple[int, int, int | None]  # (epoch, index, num_frames or None for the configured length)

_FRAMES_STREAM = 1  # distinguishes the clip-length generator from the permutation generator


class StepBatchSampler(torch.utils.data.Sampler[list[ItemKey]]):
    """Yields this rank's keys for steps ``start_step, start_step + 1, ..., end_step - 1``.

    Args:
        dataset_len: L, number of items (sequences / videos).
        global_batch: G, clips per step over all processes; divisible by ``world_size``.
        rank, world_size: this process and the number of processes.
        seed: base seed of the order and of the clip lengths.
        start_step, end_step: the steps to cover.
        frames_range: inclusive (min, max) clip length drawn per step, or None.
    """

    def __init__(
        self,
        dataset_len: int,
        global_batch: int,
        rank: int,
        world_size: int,
        seed: int,
        start_step: int,
        end_step: int,
        frames_range: tuple[int, int] | None = None,
    ) -> None:
        if dataset_len < 1:
            raise ValueError(f"the data set is empty (dataset_len={dataset_len})")
        if global_batch < 1 or global_batch % world_size:
            raise ValueError(
                f"global batch size {global_batch} must be a positive multiple of the number of processes "
                f"({world_size})"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.dataset_len = dataset_len
        self.global_batch = global_batch
        self.local_batch = global_batch // world_size
        self.rank = rank
        self.seed = seed
        self.start_step = start_step
        self.end_step = end_step
        self.frames_range = frames_range
        self._perm_cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return max(0, self.end_step - self.start_step)

    def permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._perm_cache:
            self._perm_cache = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.dataset_len)}
        return self._perm_cache[epoch]

    def frames_for_step(self, step: int) -> int | None:
        if self.frames_range is None:
            return None
        low, high = self.frames_range
        return int(np.random.default_rng([self.seed, _FRAMES_STREAM, step]).integers(low, high + 1))

    def keys_for_step(self, step: int) -> list[ItemKey]:
        """This rank's keys of global batch ``step``."""
        frames = self.frames_for_step(step)
        first = step * self.global_batch + self.rank * self.local_batch
        keys = []
        for position in range(first, first + self.local_batch):
            epoch, offset = divmod(position, self.dataset_len)
            keys.append((epoch, int(self.permutation(epoch)[offset]), frames))
        return keys

    def __iter__(self) -> Iterator[list[ItemKey]]:
        for step in range(self.start_step, self.end_step):
            yield self.keys_for_step(step)
