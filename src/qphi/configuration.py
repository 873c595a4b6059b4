"""Typed, validated configuration: pydantic models, YAML files and `key=value` overrides.

Every config in qphi derives from `Config`: unknown keys are rejected (with the closest
valid name suggested), values are type-checked and range-checked at construction, and
instances are immutable so a run cannot silently drift from what was saved beside it.

YAML is read with a bounded subset of the safe loader: no aliases (nine levels of ten
aliases expand to 10⁹ nodes), no repeated keys (the second would silently replace the
first), and `010` is ten, not the YAML 1.1 octal eight.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar, get_args

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from qphi.errors import QPhiError, closest

C = TypeVar("C", bound="Config")


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_truth_values_as_numbers(cls, data: Any) -> Any:
        """pydantic reads `true` as 1 for a number (`train.steps=true` would train one step)."""
        for key, value in data.items() if isinstance(data, dict) else ():
            field = cls.model_fields.get(key) if isinstance(key, str) else None
            if (
                field is not None
                and isinstance(value, bool)
                and {int, float} & {field.annotation, *get_args(field.annotation)}
            ):
                raise ValueError(f"{key} must be a number, not {str(value).lower()}")
        return data

    def replace(self: C, **changes: Any) -> C:
        """A validated copy with some fields changed."""
        return build(type(self), {**self.model_dump(), **changes})


class RefusedYAML(yaml.MarkedYAMLError):
    """Valid YAML that qphi does not read: `problem` says what, `fix` what to write instead."""

    def __init__(self, problem: str, fix: str, mark: yaml.Mark):
        super().__init__(problem=problem, problem_mark=mark)
        self.fix = fix


class BoundedLoader(yaml.SafeLoader):
    """The safe loader without aliases or repeated keys, reading integers in decimal."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            mark = event.start_mark
            raise RefusedYAML(
                f"an alias (*{event.anchor}) at line {mark.line + 1}, column {mark.column + 1}",
                "write the value out in full (aliases are not read)",
                mark,
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<:` is flattened by the safe loader
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:  # an unhashable key: the safe loader's own error names it
                continue
            if first is not key_node.start_mark:
                raise RefusedYAML(
                    f"key '{key}' twice (lines {first.line + 1} and {key_node.start_mark.line + 1})",
                    "keep one of them (a second one would replace the first)",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        text = str(self.construct_scalar(node)).replace("_", "")
        if re.fullmatch(r"[-+]?0[0-9]+", text):  # YAML 1.1 reads 010 as octal 8; people mean 10
            return int(text, 10)
        return super().construct_yaml_int(node)


BoundedLoader.add_constructor("tag:yaml.org,2002:int", BoundedLoader.construct_yaml_int)


def load_yaml(text: str) -> Any:
    """Parse YAML text with `BoundedLoader` (raises `yaml.YAMLError`, `RefusedYAML` among them)."""
    try:
        return yaml.load(text, Loader=BoundedLoader)  # a SafeLoader: builds no Python objects
    except RecursionError:
        raise yaml.YAMLError("nested too deeply") from None


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping, turning every way it can fail into a one-line `QPhiError`."""
    p = Path(path)
    if p.is_dir():
        raise QPhiError(
            f"config '{p}' is a folder, not a YAML file: pass the YAML file inside it (e.g. '{p / 'config.yaml'}')"
        )
    if not p.is_file():
        raise QPhiError(f"config file '{p}' does not exist: pass the path of a YAML file or a preset name")
    try:
        data = load_yaml(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise QPhiError(f"cannot read config file '{p}' ({e.strerror}): pass a readable YAML file") from None
    except UnicodeDecodeError:
        raise QPhiError(f"config file '{p}' is not UTF-8 text: save it as UTF-8") from None
    except yaml.YAMLError as e:
        if isinstance(e, RefusedYAML):
            raise QPhiError(f"config file '{p}' holds {e.problem}: {e.fix}") from None
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e) or "invalid YAML"
        raise QPhiError(f"config file '{p}' is not valid YAML{where}: {problem}; fix the syntax there") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise QPhiError(
            f"config file '{p}' holds a {type(data).__name__}, not a mapping of keys to values: "
            "write it as `section: {key: value}` lines, like the presets"
        )
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides (values parsed as YAML scalars or lists) to a nested dict."""
    result = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise QPhiError(
                f"override '{item}' is not of the form key=value: write it as section.key=value (e.g. train.steps=500)"
            )
        try:
            value = load_yaml(raw) if raw.strip() else None
        except RefusedYAML as e:
            raise QPhiError(f"override '{item}' holds {e.problem}: {e.fix}") from None
        except yaml.YAMLError:
            value = raw
        node = result
        parts = key.strip().split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise QPhiError(
                    f"override '{item}': '{where}' is a value ({child!r}), not a section of keys: "
                    f"override '{where}' itself, or make it a section in the config file"
                )
            node = child
        node[parts[-1]] = value
    return result


def section(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    """`data[key]` when it is a mapping of keys (absent or empty: {}); anything else is a
    structural mistake named by its key in one line."""
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise QPhiError(f"{where}: '{key}' must be a section of keys, not {value!r}: write it as {key}: {{key: value}}")
    return value


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Nested dict update: mappings merge key by key, anything else is replaced."""
    result = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = value
    return result


def build(cls: type[C], data: dict[str, Any], source: str = "config", overrides: Sequence[str] = ()) -> C:
    """Validate `data` into `cls`; a failure becomes one `QPhiError` line naming every problem.

    A problem at (or inside, or around) a key that one of the `key=value` `overrides` set is
    reported against that override, the rest against `source` (e.g. "preset 'cpu'").
    """
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise QPhiError(format_validation_error(cls, e, source, overrides)) from None


def format_validation_error(
    cls: type[BaseModel], error: ValidationError, source: str = "config", overrides: Sequence[str] = ()
) -> str:
    problems = []
    for err in error.errors():
        loc = _walk(cls, [str(p) for p in err["loc"]])[0]
        key = ".".join(loc) or "(top level)"
        got = _shown(err.get("input"))
        if err["type"] == "extra_forbidden":
            parent = _walk(cls, [str(p) for p in err["loc"][:-1]])[1]
            fields = _accepted_keys(parent)
            hint = closest(loc[-1], fields) or (f" (valid keys there: {', '.join(fields)})" if fields else "")
            problem = f"unknown key '{key}'{hint}"
        elif err["type"] == "missing":
            problem = f"missing required key '{key}'"
        elif err["type"] in ("model_type", "model_attributes_type", "dict_type"):
            problem = f"'{key}' must be a section of keys, not {got} (write {key}: {{key: value}})"
        elif err["type"] in ("list_type", "tuple_type"):
            problem = f"'{key}' must be a list, not {got} (write {key}: [a, b])"
        else:
            msg = err["msg"].removeprefix("Value error, ")
            shown = "" if isinstance(err.get("input"), dict) else f" (got {got})"  # not a whole section
            problem = f"'{key}': {msg}{shown}" if loc else msg
        culprits = [o for o in overrides if _related(loc, o.partition("=")[0].strip().split("."))]
        if culprits:
            origin = ", ".join(f"override '{o}'" for o in culprits)
        elif not loc and overrides:  # a check across sections: the overrides may be to blame
            origin = f"invalid {source} with {', '.join(repr(o) for o in overrides)}"
        else:
            origin = f"invalid {source}"
        problems.append(f"{origin}: {problem}")
    return "; ".join(problems)


def _shown(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _related(loc: list[str], key: list[str]) -> bool:
    """Whether a problem at `loc` can come from setting `key`: one path is a prefix of the other,
    the top level (a check across sections) excepted."""
    n = min(len(loc), len(key))
    return n > 0 and loc[:n] == key[:n]


def _walk(cls: type[BaseModel], loc: list[str]) -> tuple[list[str], Any]:
    """The error location as the user writes it, and the model it ends in. A discriminated union
    (e.g. the bottleneck configs) puts the chosen member's tag into pydantic's location: dropped;
    and where the model takes the member's options flat (`flat_keys`), so is the union's own key."""
    model: Any = cls
    shown: list[str] = []
    parts = iter(loc)
    for part in parts:
        field = getattr(model, "model_fields", {}).get(part)
        members = _union_members(field) if field is not None else {}
        if not members:
            shown.append(part)
            if field is None:
                return shown + list(parts), None
            model = field.annotation
            continue
        flat = hasattr(model, "flat_keys")
        tag = next(parts, None)
        rest = list(parts)
        model = members.get(tag)
        if model is None:
            return [*shown, part, *([tag] if tag else []), *rest], None
        inner, model = _walk(model, rest)
        return [*shown, *([] if flat and inner else [part]), *inner], model
    return shown, model


def _union_members(field: Any) -> dict[str, Any]:
    """tag → member model of a field that is a union of models told apart by a discriminator."""
    if not field.discriminator:
        return {}
    members = {}
    for member in get_args(field.annotation):
        tag = getattr(member, "model_fields", {}).get(field.discriminator)
        if tag is not None:
            members[str(tag.default)] = member
    return members


def _accepted_keys(model: Any) -> list[str]:
    """The keys a model accepts (a model may accept more than its fields: `flat_keys`)."""
    return list(model.flat_keys()) if hasattr(model, "flat_keys") else list(getattr(model, "model_fields", {}))
