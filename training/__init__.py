"""Training stack for CoTracker3: data readers, synthetic scenes, samplers and losses.

Subpackages and modules:
    training.data.kubric     reader/writer for the released CoTracker3 Kubric layout.
    training.data.synthetic  procedural layered scenes with exact tracks, written in that layout.
    training.data.sampling   clip/point sampling and spatial augmentation for training.
    training.losses          track, visibility and confidence losses (pure tensor functions).
    training.train           the training entry point (stages 1 and 2, DDP, resume); see its docstring.
    training.learn_check     learning demonstration on generated scenes (--check, --quick).
    training.config, .batching, .objectives, .optim, .checkpointing, .distributed, .evaluation,
    .supervised_data, .pseudo_labels, .teachers, .video_sources: the pieces train.py composes.
"""
