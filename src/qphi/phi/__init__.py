"""The PHi layer: its configuration, the layer itself and its output."""

from qphi.phi.config import LossWeights, PHiConfig, PriorConfig
from qphi.phi.layer import PHiLayer, PHiOutput

__all__ = ["LossWeights", "PHiConfig", "PHiLayer", "PHiOutput", "PriorConfig"]
