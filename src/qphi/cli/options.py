"""From parsed command-line options to an experiment's typed config."""

from __future__ import annotations

import argparse
from typing import Any, TypeVar

from pydantic import ValidationError

from qphi.configuration import Config
from qphi.errors import QPhiError

C = TypeVar("C", bound=Config)


def config_from_args(cls: type[C], args: argparse.Namespace, **values: Any) -> C:
    """`cls` from the options of the same names (and `values`); a value the config refuses is a
    one-line error that names the option (`--top-k`), what is wrong and what to pass."""
    options = {name: getattr(args, name) for name in cls.model_fields if hasattr(args, name)}
    try:
        return cls.model_validate({**options, **values})
    except ValidationError as e:
        raise QPhiError(_option_error(e.errors()[0])) from None


def _option_error(error: dict[str, Any]) -> str:
    message = error["msg"].removeprefix("Value error, ")
    if not error["loc"]:  # a check of several options together says which
        return message
    option = "--" + str(error["loc"][0]).replace("_", "-")
    bound, got = error.get("ctx", {}), error.get("input")
    if error["type"] == "greater_than_equal":
        return f"{option} must be at least {bound['ge']}, got {got}: pass {option} {bound['ge']} or more"
    if error["type"] == "finite_number":
        return f"{option} must be a finite number, got {got}: pass a number such as the default"
    if error["type"] == "greater_than":
        return f"{option} must be above {bound['gt']}, got {got}: pass {option} above {bound['gt']}"
    return f"{option} {message}"  # the config's own validators say what is wrong and what to pass
