"""YAML configuration into (nested, frozen) dataclasses, with ``key.sub=value`` overrides.

A config file is a mapping whose keys are the dataclass's field names; nested dataclass fields take
nested mappings. Unknown keys, duplicate keys and values of the wrong type (``true`` is no number,
``1.5`` no integer) are refused with the file, the dotted key and the expected type in the message
(``FILE: optim.lr: expected float, got True``), so a typo never silently falls back to a default.
Files are read with a safe loader (no ``!!python`` tags); a YAML syntax error names the file and
line. Overrides from the command line (``--set optim.lr=3e-4``) are parsed as YAML scalars and
applied the same way.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

__all__ = ["ConfigError", "load_config", "config_from_dict", "config_to_dict", "apply_overrides",
           "read_yaml", "size_wxh"]

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the file and the key."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a mapping that repeats a key (PyYAML keeps the last value)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first on line {seen[key]})",
                        key_node.start_mark)
            except TypeError:  # an unhashable key: the base class reports it
                break
            seen[key] = line
        return super().construct_mapping(node, deep)


def _one_line(error: yaml.YAMLError) -> str:
    """A YAML error as ``line L, column C: problem`` (PyYAML's own text spans several lines)."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    context = getattr(error, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + " ".join(f"{context or ''} {problem}".split())


def read_yaml(text: str, source: str) -> Any:
    """YAML ``text`` parsed safely with duplicate keys refused; ``ConfigError`` naming ``source``
    and the line otherwise."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: invalid YAML at {_one_line(error)}") from None


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
            raise ConfigError(f"{where}: expected a mapping for {annotation.__name__}, got {value!r}")
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
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(annotation)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return value
    if annotation is Any or annotation is object:
        return value
    if annotation is float:
        return _float(value, where)
    if annotation in (int, str, bool) and type(value) is not annotation:
        # type(), not isinstance: bool is an int subclass, and True is no step count.
        raise ConfigError(f"{where}: expected {annotation.__name__}, got {value!r}")
    return value


def _float(value: Any, where: str) -> float:
    """A YAML number as float; ``true``, lists, mappings and other text refused."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        # YAML 1.1 reads exponents without a dot ("3e-4") as strings.
        try:
            return float(value)
        except ValueError:
            pass
    raise ConfigError(f"{where}: expected float, got {value!r}")


def config_from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from a mapping; missing keys keep their defaults.

    ``where`` is the dotted key of ``data`` ("" at the top level), the start of every message.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(str(key) for key in set(data) - set(fields))
    if unknown:
        section = f"{where}: " if where else ""
        raise ConfigError(f"{section}unknown key(s) {unknown}; {cls.__name__} has {sorted(fields)}")
    values = {name: _coerce(value, hints[name], f"{where}.{name}" if where else name)
              for name, value in data.items()}
    return cls(**values)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Copy of ``data`` with ``dotted.key=value`` overrides applied (values parsed as YAML)."""
    result = yaml.safe_load(yaml.safe_dump(data)) or {}
    for override in overrides:
        key, separator, raw = override.partition("=")
        if not separator or not key:
            raise ConfigError(f"override {override!r} must look like key.sub=value")
        node = result
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {override!r}: {part} is not a section")
        node[parts[-1]] = read_yaml(raw, f"override {override!r}")
    return result


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] = ()) -> T:
    """Dataclass ``cls`` from a YAML file (or defaults when ``path`` is None) plus overrides.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ConfigError: the file is not UTF-8 or not YAML, repeats a key, or a key or value (also of
            an override, or refused by the dataclass itself) is bad; the message starts with the
            file and names the dotted key.
    """
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise ConfigError(f"{path}: not UTF-8 text (byte {error.start}): {error.reason}") from None
        data = read_yaml(text, source)
        data = {} if data is None else data
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    try:
        return config_from_dict(cls, apply_overrides(data, list(overrides)))
    except ValueError as error:  # also the dataclasses' own __post_init__ checks
        message = str(error)
        raise ConfigError(message if message.startswith(source) else f"{source}: {message}") from None


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
