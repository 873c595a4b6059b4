"""Training: run configs and presets, the loop, checkpoints, run directories, distributed plumbing."""

from qphi.training.config import PRESETS, RunConfig, load_run_config
from qphi.training.run_dir import load_run
from qphi.training.trainer import TrainResult, train

__all__ = ["PRESETS", "RunConfig", "TrainResult", "load_run", "load_run_config", "train"]
