"""Training: run configs and presets, the loop, checkpoints, distributed plumbing."""

from qphi.training.config import PRESETS, RunConfig, load_run_config
from qphi.training.trainer import TrainResult, load_run, train

__all__ = ["PRESETS", "RunConfig", "TrainResult", "load_run", "load_run_config", "train"]
