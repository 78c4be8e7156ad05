"""Training stack for CoTracker3: data readers, synthetic scenes, samplers and losses.

Subpackages and modules:
    training.data.kubric     reader/writer for the released CoTracker3 Kubric layout.
    training.data.synthetic  procedural layered scenes with exact tracks, written in that layout.
    training.data.sampling   clip/point sampling and spatial augmentation for training.
    training.losses          track, visibility and confidence losses (pure tensor functions).
"""
