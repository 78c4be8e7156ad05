"""cotracker3_core: CoTracker3 point tracking in pure PyTorch — model, predictors, streaming engine,
evaluation. No ROS dependency."""

from .checkpoint import build_model, load_weights, save_checkpoint, to_official_state_dict
from .config import ModelConfig
from .model import CoTracker3, TrackerOutput
from .predictor import CoTrackerOnlinePredictor, CoTrackerPredictor

__all__ = [
    "CoTracker3",
    "CoTrackerOnlinePredictor",
    "CoTrackerPredictor",
    "ModelConfig",
    "TrackerOutput",
    "build_model",
    "load_weights",
    "save_checkpoint",
    "to_official_state_dict",
]
