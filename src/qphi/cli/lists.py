"""List options followed by `key=value` overrides: `--sizes 16 64 train.steps=100`. A list option
would otherwise swallow the overrides; these actions keep the values before them as the option's
and collect the key=value pairs for `overrides`."""

from __future__ import annotations

import argparse
import re


class ValuesThenOverrides(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None) -> None:
        own = [v for v in values if "=" not in v]
        if not own:
            parser.error(f"argument {option_string}: expected at least one value before the key=value overrides")
        setattr(namespace, self.dest, self.convert(parser, option_string, own))
        namespace.trailing_overrides = [*getattr(namespace, "trailing_overrides", []), *(v for v in values if "=" in v)]

    def convert(self, parser: argparse.ArgumentParser, option_string: str, values: list[str]) -> list:
        return values


class NumbersThenOverrides(ValuesThenOverrides):
    def convert(self, parser: argparse.ArgumentParser, option_string: str, values: list[str]) -> list:
        bad = [v for v in values if not re.fullmatch(r"-?[0-9]+", v)]
        if bad:
            parser.error(f"argument {option_string}: expected integers, got {' '.join(bad)}")
        return [int(v) for v in values]


def overrides(args: argparse.Namespace) -> tuple[str, ...]:
    """The positional overrides and those that followed a list option."""
    return (*args.overrides, *getattr(args, "trailing_overrides", []))
