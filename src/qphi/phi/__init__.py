"""The PHi layer: its configuration, the layer itself and its output."""

from qphi.phi.config import BOTTLENECKS, LossWeights, PHiConfig, PriorConfig, VQConfig
from qphi.phi.layer import PHiLayer, PHiOutput

__all__ = ["BOTTLENECKS", "LossWeights", "PHiConfig", "PHiLayer", "PHiOutput", "PriorConfig", "VQConfig"]
