"""YAML configuration into (nested, frozen) dataclasses, with ``key.sub=value`` overrides.

A config file is a mapping whose keys are the dataclass's field names; nested dataclass fields take
nested mappings. Unknown keys and values of the wrong type are refused with the file and the dotted
key in the message, so a typo never silently falls back to a default. Overrides from the command
line (``--set optim.lr=3e-4``) are parsed as YAML scalars and applied the same way.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

__all__ = ["load_config", "config_from_dict", "config_to_dict", "apply_overrides", "size_wxh"]

T = TypeVar("T")


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict of a dataclass config (tuples become lists, as YAML writes them)."""
    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(config)


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """``value`` converted to ``annotation`` (dataclass, tuple, list, optional, scalar)."""
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping for {annotation.__name__}, got {value!r}")
        return config_from_dict(annotation, value, where)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except ValueError as error:
                errors.append(str(error))
        raise ValueError("; ".join(errors))
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(annotation)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ValueError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or annotation is Any or annotation is object:
        return value
    if annotation is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, str):
        # YAML 1.1 reads exponents without a dot ("3e-4") as strings.
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"{where}: expected float, got {value!r}") from None
    if annotation in (int, str, bool) and type(value) is not annotation:
        raise ValueError(f"{where}: expected {annotation.__name__}, got {value!r}")
    return value


def config_from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from a mapping; missing keys keep their defaults."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; {cls.__name__} has {sorted(fields)}")
    values = {name: _coerce(value, hints[name], f"{where}.{name}") for name, value in data.items()}
    return cls(**values)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Copy of ``data`` with ``dotted.key=value`` overrides applied (values parsed as YAML)."""
    result = yaml.safe_load(yaml.safe_dump(data)) or {}
    for override in overrides:
        key, separator, raw = override.partition("=")
        if not separator or not key:
            raise ValueError(f"override {override!r} must look like key.sub=value")
        node = result
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {override!r}: {part} is not a section")
        node[parts[-1]] = yaml.safe_load(raw)
    return result


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] = ()) -> T:
    """Dataclass ``cls`` from a YAML file (or defaults when ``path`` is None) plus overrides."""
    data: dict[str, Any] = {}
    where = "defaults"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: the top level must be a mapping")
        where = str(path)
    return config_from_dict(cls, apply_overrides(data, list(overrides)), where)


def size_wxh(text: str) -> tuple[int, int]:
    """``"832x512"`` -> ``(832, 512)``: an image size as the command lines write it."""
    width, separator, height = text.lower().partition("x")
    try:
        size = int(width), int(height)
    except ValueError:
        size = (0, 0)
    if not separator or min(size) <= 0:
        raise ValueError(f"expected a size WxH of positive integers, got {text!r}")
    return size
