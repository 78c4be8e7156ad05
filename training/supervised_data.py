"""Stage 1 items: Kubric-layout clips addressed by the keys of ``training.batching``."""

from __future__ import annotations

import dataclasses

from training.batching import ItemKey
from training.data.kubric import KubricReader
from training.data.sampling import ClipSamplingConfig, KubricClipDataset, TrainingClip


class KeyedKubricClips:
    """``dataset[(epoch, index, num_frames)]`` -> TrainingClip.

    Wraps one ``KubricClipDataset`` per clip length (T is fixed per global batch when drawn from a
    range), all sharing the reader; the clip depends on (seed, epoch, index) only.
    """

    def __init__(self, reader: KubricReader, sampling: ClipSamplingConfig, seed: int) -> None:
        self.reader = reader
        self.sampling = sampling
        self.seed = seed
        self._by_length: dict[int | None, KubricClipDataset] = {}

    def __len__(self) -> int:
        return len(self.reader)

    def _dataset(self, num_frames: int | None) -> KubricClipDataset:
        if num_frames not in self._by_length:
            config = self.sampling
            if num_frames is not None:
                config = dataclasses.replace(config, num_frames=num_frames, num_frames_range=None)
            self._by_length[num_frames] = KubricClipDataset(self.reader, config, seed=self.seed)
        return self._by_length[num_frames]

    def __getitem__(self, key: ItemKey) -> TrainingClip:
        epoch, index, num_frames = key
        dataset = self._dataset(num_frames)
        dataset.set_epoch(epoch)
        return dataset[index]
