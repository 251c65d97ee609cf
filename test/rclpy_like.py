"""Message classes that check field values the way rclpy's generated classes do (no ROS needed).

rosidl_generator_py (ros2/rosidl_python, ``resource/_msg.py.em``) generates setters that assert:
only declared fields are passed to the constructor; ``bool``/``float``/``int``/``str`` scalars are
exactly those Python types (numpy scalars such as ``np.float32`` or ``np.bool_`` fail; ``np.float64``
passes as a ``float`` subclass); integers are in range; ``byte`` is a length-1 ``bytes``; nested
messages are instances of the right class; fixed arrays of numbers are numpy arrays of the exact
dtype and size (or sequences); number sequences are ``array.array`` of the right type code or Python
sequences (a numpy array is neither); other sequences are Python sequences of the right elements.
These classes are built from a ``rosbags`` Typestore's field definitions, so the conversion code can
be checked against rclpy's rules here.
"""

from __future__ import annotations

import array
from collections import UserList
from collections.abc import Sequence, Set
from typing import Any

import numpy as np

_NUMERIC = {
    "float32": ("f", np.float32), "float64": ("d", np.float64),
    "int8": ("b", np.int8), "uint8": ("B", np.uint8), "int16": ("h", np.int16),
    "uint16": ("H", np.uint16), "int32": ("i", np.int32), "uint32": ("I", np.uint32),
    "int64": ("q", np.int64), "uint64": ("Q", np.uint64),
}
_BASE, _NAME, _ARRAY, _SEQUENCE = 1, 2, 3, 4


def _int_bounds(typename: str) -> tuple[int, int]:
    bits = int(typename.lstrip("uint"))
    return (0, 2 ** bits) if typename.startswith("u") else (-(2 ** (bits - 1)), 2 ** (bits - 1))


def _check_scalar(typename: str, value: Any, where: str) -> None:
    if typename == "bool":
        assert isinstance(value, bool), f"{where} must be of type 'bool', got {type(value)}"
    elif typename in ("byte", "octet"):
        assert isinstance(value, bytes) and len(value) == 1, f"{where} must be bytes of length 1"
    elif typename in ("float32", "float64"):
        assert isinstance(value, float), f"{where} must be of type 'float', got {type(value)}"
    elif typename == "string":
        assert isinstance(value, str), f"{where} must be of type 'str', got {type(value)}"
    elif typename in _NUMERIC or typename == "char":
        assert isinstance(value, int), f"{where} must be of type 'int', got {type(value)}"
        low, high = _int_bounds(typename) if typename != "char" else (0, 256)
        assert low <= value < high, f"{where} must be in [{low}, {high - 1}], got {value}"
    else:
        raise AssertionError(f"unknown base type {typename}")


def _is_sequence(value: Any) -> bool:
    return (isinstance(value, (Sequence, Set, UserList))) and not isinstance(value, str)


class RclpyLikeTypes:
    """``types[name]`` gives a strict class for each message of a rosbags Typestore."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self._classes: dict[str, type] = {}

    def __getitem__(self, name: str) -> type:
        if name not in self._classes:
            self._classes[name] = self._build(name)
        return self._classes[name]

    def _build(self, name: str) -> type:
        constants, fields = self._store.fielddefs[name]
        registry = self

        def default(kind: int, detail: Any) -> Any:
            if kind == _BASE:
                typename = detail[0]
                return {"bool": False, "string": "", "byte": b"\x00", "octet": b"\x00",
                        "float32": 0.0, "float64": 0.0}.get(typename, 0)
            if kind == _NAME:
                return registry[detail]()
            (inner_kind, inner), size = detail
            if inner_kind == _BASE and inner[0] in _NUMERIC:
                code, dtype = _NUMERIC[inner[0]]
                return np.zeros(size, dtype=dtype) if kind == _ARRAY else array.array(code)
            return [default(inner_kind, inner) for _ in range(size)] if kind == _ARRAY else []

        def convert(field: str, kind: int, detail: Any, value: Any) -> Any:
            where = f"{name}.{field}"
            if kind == _BASE:
                _check_scalar(detail[0], value, where)
                return value
            if kind == _NAME:
                assert isinstance(value, registry[detail]), (
                    f"{where} must be a sub message of type {detail}, got {type(value)}")
                return value
            (inner_kind, inner), size = detail
            if inner_kind == _BASE and inner[0] in _NUMERIC:
                code, dtype = _NUMERIC[inner[0]]
                if kind == _ARRAY and isinstance(value, np.ndarray):
                    assert value.dtype == dtype, f"{where} numpy array must have dtype {dtype}"
                    assert value.size == size, f"{where} numpy array must have size {size}"
                    return value
                if kind == _SEQUENCE and isinstance(value, array.array):
                    assert value.typecode == code, f"{where} array.array must have type code {code}"
                    return value
            assert _is_sequence(value), f"{where} must be a set or sequence, got {type(value)}"
            if kind == _ARRAY:
                assert len(value) == size, f"{where} must have length {size}"
            for k, item in enumerate(value):
                convert(f"{field}[{k}]", inner_kind, inner, item)
            if inner_kind == _BASE and inner[0] in _NUMERIC:
                code, dtype = _NUMERIC[inner[0]]
                return np.array(value, dtype=dtype) if kind == _ARRAY else array.array(code, value)
            return value

        field_specs = {field: spec for field, spec in fields}

        def __init__(self, **kwargs: Any) -> None:
            unknown = sorted(set(kwargs) - set(field_specs))
            assert not unknown, f"Invalid arguments passed to constructor: {', '.join(unknown)}"
            for field, (kind, detail) in field_specs.items():
                setattr(self, field, kwargs[field] if field in kwargs else default(kind, detail))

        def __setattr__(self, field: str, value: Any) -> None:
            assert field in field_specs, f"{name} has no field {field}"
            kind, detail = field_specs[field]
            object.__setattr__(self, field, convert(field, kind, detail, value))

        @classmethod
        def get_fields_and_field_types(cls) -> dict[str, str]:
            return {field: repr(spec) for field, spec in field_specs.items()}

        namespace: dict[str, Any] = {
            "__init__": __init__, "__setattr__": __setattr__,
            "get_fields_and_field_types": get_fields_and_field_types,
        }
        for constant, typename, value in constants:
            namespace[constant] = bytes([value]) if typename in ("byte", "octet") else value
        return type(name.rsplit("/", 1)[-1], (), namespace)
