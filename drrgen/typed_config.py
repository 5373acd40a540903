"""Typed configuration values: YAML data checked against the annotations of dataclasses.

One coercion shared by the build configuration (`drrgen.build.config`) and the trainer's
(`xmatch_train.config`). Values are checked, not guessed: an integer field refuses ``4.5``
and ``true`` (an integral float such as ``4.0`` is taken: nothing is lost), a range (a
2-tuple) refuses a scalar, a boolean refuses ``1``; a number may be given as a string
(``3e-4`` is a string in YAML 1.1). Every error is a `ConfigError` naming the source, the
dotted key, the expected type and the value.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from drrgen.errors import UserError


class ConfigError(UserError):
    """A configuration value or key is wrong; the message names the source and the key."""


_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
_PLURALS = {int: "integers", float: "numbers", bool: "booleans", str: "strings"}


def _describe(tp: Any) -> str:
    """'an integer', 'a list of 2 numbers', ... for a message."""
    if tp in _NAMES:
        return _NAMES[tp]
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_PLURALS.get(args[0], 'values')}"
        if len(set(args)) == 1 and args[0] in _PLURALS:
            return f"a list of {len(args)} {_PLURALS[args[0]]}"
        return f"a list of {len(args)} values"
    if dataclasses.is_dataclass(tp) or tp is dict or typing.get_origin(tp) is dict:
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _key(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _at(where: str, text: str) -> str:
    return f"{where}: {text}" if where else text


def coerce(value: Any, tp: Any, where: str) -> Any:
    """`value` (from YAML or an override) checked and converted to the annotated type `tp`.

    Args:
        value: the value as parsed from YAML.
        tp: the field's annotation (int, float, bool, str, tuples, unions with None, nested
            dataclasses, dicts).
        where: the dotted key, for messages.

    Raises:
        ConfigError: ``<where>: expected <type>, got <value>``.
    """
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        expected = " or ".join(_describe(a) for a in args if a is not type(None))
        if type(None) in args:
            expected += " or null"
        raise ConfigError(f"{where}: expected {expected}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            if not isinstance(value, list | tuple):
                value = [value]  # one value for a list of any length
            return tuple(coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ConfigError(f"{where}: expected {_describe(tp)}, got {value!r}")
        return tuple(
            coerce(v, a, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True))
        )
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
    else:
        return value
    raise ConfigError(f"{where}: expected {_describe(tp)}, got {value!r}")


def yaml_problem(err: Exception) -> str:
    """A YAML parse error in one line: ``line 3, column 7: expected ',' or ']' (while parsing
    a flow sequence)``."""
    problem = getattr(err, "problem", None)
    if not problem:
        return " ".join(str(err).split())
    mark = getattr(err, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    context = getattr(err, "context", None)
    return f"{where}{problem}" + (f" ({context})" if context else "")


def from_dict(cls, data: dict | None, where: str = ""):
    """Build dataclass `cls` from a nested dict; missing keys keep their defaults.

    Args:
        cls: the dataclass.
        data: its values (None: all defaults).
        where: the dotted key of `data` ("" at the top level), for messages.

    Raises:
        ConfigError: unknown keys (listing the known ones) or ill-typed values.
    """
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(_at(where, f"expected a mapping of key: value, got {data!r}"))
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(_at(where, f"unknown key(s) {unknown}; known: {sorted(names)}"))
    kwargs = {k: coerce(v, hints[k], _key(where, k)) for k, v in data.items()}
    return cls(**kwargs)
