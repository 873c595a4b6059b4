"""The bottleneck registry: name → config class, filled by the bottleneck modules themselves.

Every module of `qphi.bottlenecks` that defines a bottleneck decorates its config class with
`@register`. `configs()` imports all of them first, so a new bottleneck is one new module here:
the PHi layer, the presets, `qphi reproduce`, the sweep and the reports find it by its name.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Annotated, Union

from pydantic import Field

from qphi.bottlenecks.base import BottleneckConfig

_REGISTRY: dict[str, type[BottleneckConfig]] = {}
_INFRASTRUCTURE = {"base", "registry"}


def register(cls: type[BottleneckConfig]) -> type[BottleneckConfig]:
    """Class decorator: make a bottleneck config selectable by its `name` default."""
    name = cls.model_fields["name"].default
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__name__}.name needs a default: the bottleneck's name, e.g. name: Literal['vq'] = 'vq'")
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise TypeError(f"two bottlenecks are named '{name}': {_REGISTRY[name].__name__} and {cls.__name__}")
    _REGISTRY[name] = cls
    return cls


def configs() -> dict[str, type[BottleneckConfig]]:
    """Every registered bottleneck config, in table order."""
    import qphi.bottlenecks as package

    for module in pkgutil.iter_modules(package.__path__):
        if module.name not in _INFRASTRUCTURE:
            importlib.import_module(f"{package.__name__}.{module.name}")
    return dict(sorted(_REGISTRY.items(), key=lambda item: item[1].table_order))


def names() -> tuple[str, ...]:
    return tuple(configs())


def discrete_names() -> tuple[str, ...]:
    """The bottlenecks whose latent is a code stream (everything but the continuous one)."""
    return tuple(name for name, cls in configs().items() if cls().stage_sizes)


def config_class(name: str) -> type[BottleneckConfig]:
    return configs()[name]


def title(name: str) -> str:
    """How tables and figures name a bottleneck (the name itself if it is not registered)."""
    cls = configs().get(name)
    return cls.title if cls else name


def owners(key: str) -> tuple[str, ...]:
    """The bottlenecks that have an option `key`."""
    return tuple(name for name, cls in configs().items() if key in cls.model_fields and key != "name")


def config_type() -> object:
    """The pydantic type of "any registered bottleneck config", told apart by its `name`."""
    members = tuple(configs().values())
    return Annotated[Union[members], Field(discriminator="name")]  # noqa: UP007 (a runtime tuple of classes)
