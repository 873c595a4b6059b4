"""qphi: measure in-context computation by predicting a model's own (quantized) hidden states."""

from qphi.errors import QPhiError
from qphi.phi import LossWeights, PHiConfig, PHiLayer, PHiOutput, PriorConfig, VQConfig

__version__ = "0.1.0"

__all__ = ["LossWeights", "PHiConfig", "PHiLayer", "PHiOutput", "PriorConfig", "QPhiError", "VQConfig", "__version__"]
