"""The learned autoregressive prior over latents."""

from qphi.prior.attention import SequenceLayout
from qphi.prior.config import PriorConfig
from qphi.prior.prior import AutoregressivePrior

__all__ = ["AutoregressivePrior", "PriorConfig", "SequenceLayout"]
