"""Typed configuration values: YAML data checked against the annotations of dataclasses.

One configuration system for the build (`drrgen.build.config`), the fracture dataset and the
trainer (`xmatch_train.config`): YAML files with a ``defaults:`` include (`read_yaml`), dotted
``key=value`` overrides (`apply_overrides`) and one coercion (`from_dict`). Values are
checked, not guessed: an integer field refuses ``4.5`` and ``true`` (an integral float such as
``4.0`` is taken: nothing is lost), a range (a 2-tuple) refuses a scalar, a boolean refuses
``1``; a number may be given as a string (``3e-4`` is a string in YAML 1.1). Every error is a
`ConfigError` naming the source, the dotted key, the expected type and the value.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import yaml

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


def apply_overrides(data: dict, overrides: list[str] | None) -> dict:
    """Set ``a.b.c=value`` entries in a nested dict (values parsed as YAML)."""
    data = dict(data or {})
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. optim.lr=3e-4")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: invalid YAML, {yaml_problem(err)}") from None
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            node[part] = dict(child) if isinstance(child, dict) else {}
            node = node[part]
        node[parts[-1]] = value
    return data


def _merge(base: dict, top: dict) -> dict:
    """`top` over `base`, recursively for nested mappings."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            value = _merge(out[key], value)
        out[key] = value
    return out


def read_yaml(path: str | Path, _chain: tuple = ()) -> dict:
    """A YAML config as a dict, with its ``defaults:`` include resolved.

    ``defaults: other.yaml`` (a path relative to the file, or a list of them, applied in order)
    loads those files first; the file's own keys override theirs, nested sections key by key.

    Raises:
        ConfigError: unreadable file, invalid YAML, an include cycle (names the files).
    """
    path = Path(path)
    if path.resolve() in _chain:
        raise ConfigError(f"{path}: defaults include cycle ({' -> '.join(map(str, _chain))})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config ({err.strerror})") from err
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a YAML text file (not UTF-8 text)") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML, {yaml_problem(err)}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    includes = data.pop("defaults", None) or []
    merged: dict = {}
    for include in [includes] if isinstance(includes, str) else includes:
        merged = _merge(merged, read_yaml(path.parent / include, (*_chain, path.resolve())))
    return _merge(merged, data)


def load_typed(
    cls, path: str | Path | None, overrides: list[str] | None = None, check=None, upgrade=None
):
    """Dataclass `cls` from a YAML file (``defaults:`` resolved) and ``key=value`` overrides.

    `upgrade` (dict -> dict) renames keys of older files before the types are checked.

    `check` (the dataclass -> the dataclass, raising `ConfigError` or `ValueError` naming the
    key) runs last, so that its message also names the file and the overrides.

    Raises:
        ConfigError: unreadable file, invalid YAML, unknown key or ill-typed value; the message
            names the file, the overrides and the key.
    """
    source = "defaults" if path is None else str(path)
    if overrides:
        source += f" + overrides {list(overrides)}"
    data = {} if path is None else read_yaml(path)
    try:
        data = apply_overrides(data, overrides)
        cfg = from_dict(cls, upgrade(data) if upgrade else data)
        return check(cfg) if check else cfg
    except (ConfigError, ValueError) as err:
        raise ConfigError(f"{source}: {err}") from None
