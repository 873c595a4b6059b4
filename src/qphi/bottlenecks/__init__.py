"""Information bottlenecks, one module each, found through the registry (see `registry`)."""

from qphi.bottlenecks.base import Bottleneck, BottleneckConfig, BottleneckOutput
from qphi.bottlenecks.registry import config_class, configs, discrete_names, names, register, title

__all__ = [
    "Bottleneck",
    "BottleneckConfig",
    "BottleneckOutput",
    "config_class",
    "configs",
    "discrete_names",
    "names",
    "register",
    "title",
]
