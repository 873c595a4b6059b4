"""Information bottlenecks: continuous (Gaussian), Gumbel, VQ, residual and FSQ."""

from qphi.bottlenecks.base import Bottleneck, BottleneckOutput
from qphi.bottlenecks.continuous import GaussianBottleneck
from qphi.bottlenecks.fsq import FSQBottleneck
from qphi.bottlenecks.quantized import ResidualQuantizer
from qphi.phi.config import PHiConfig


def build_bottleneck(config: PHiConfig) -> Bottleneck:
    """The bottleneck named by `config.bottleneck`."""
    if config.bottleneck == "continuous":
        return GaussianBottleneck(config)
    if config.bottleneck == "fsq":
        return FSQBottleneck(config)
    if config.bottleneck == "residual":
        return ResidualQuantizer(config, config.residual_quantizer, config.num_stages)
    return ResidualQuantizer(config, config.bottleneck, num_stages=1)


__all__ = [
    "Bottleneck",
    "BottleneckOutput",
    "FSQBottleneck",
    "GaussianBottleneck",
    "ResidualQuantizer",
    "build_bottleneck",
]
