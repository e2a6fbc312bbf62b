"""Reading configs: strict conversion of YAML / JSON data to the config dataclasses, dotted
overrides, loading and dumping."""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

from csvdnet.config.schema import Config
from csvdnet.config.values import ConfigValueError
from csvdnet.errors import CsvdnetInputError



def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, where: str, source: str) -> Any:
    """Convert ``value`` to type ``tp`` or raise a CsvdnetInputError naming ``where``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    def bad(expected: str) -> CsvdnetInputError:
        return CsvdnetInputError(source, f"{where}: expected {expected}, got {value!r}")

    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise bad(f"a mapping for section {tp.__name__}")
        return _from_mapping(tp, value, where, source)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where, source)
            except CsvdnetInputError as exc:
                errors.append(exc)
        raise bad(" or ".join(_type_name(a) for a in args))
    if origin is Literal:
        if value not in args:
            raise bad("one of " + ", ".join(repr(a) for a in args))
        return value
    if origin is tuple:
        if isinstance(value, (int, float)) and len(args) > 1 and args[-1] is not Ellipsis \
                and len(set(args)) == 1 and not isinstance(value, bool):
            value = [value] * len(args)  # a scalar for an isotropic triple
        if not isinstance(value, (list, tuple)):
            raise bad(f"a list ({_type_name(tp)})")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{where}[{i}]", source) for i, v in enumerate(value))
        if len(value) != len(args):
            raise bad(f"a list of {len(args)} values")
        return tuple(_convert(v, a, f"{where}[{i}]", source)
                     for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise bad("a mapping")
        kt, vt = args
        return {_convert(k, kt, where, source): _convert(v, vt, f"{where}.{k}", source)
                for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if tp is Any:
        return value
    raise TypeError(f"unsupported config type {tp!r} at {where}")  # a bug in this module


def _from_mapping(cls: type, data: Mapping[str, Any], where: str, source: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        prefix = f"{where}." if where else ""
        raise CsvdnetInputError(
            source, f"unknown key {prefix}{unknown[0]} (known: {', '.join(sorted(names))})")
    kwargs = {}
    for key, value in data.items():
        sub = f"{where}.{key}" if where else key
        kwargs[key] = _convert(value, hints[key], sub, source)
    try:
        return cls(**kwargs)
    except ConfigValueError as exc:  # a section's range check: name the file too
        raise ConfigValueError(exc.key, exc.reason, source) from None


def from_dict(cls: type, data: Mapping[str, Any], source: str = "<config>") -> Any:
    """Build dataclass ``cls`` from a plain mapping, strictly.

    Args:
        cls: A config dataclass (e.g. :class:`Config`, :class:`PreprocessConfig`).
        data: Plain data (e.g. parsed YAML / JSON).
        source: Name of the file the data came from, for error messages.

    Raises:
        CsvdnetInputError: Unknown key or wrong type, naming ``source`` and the dotted key.
    """
    return _from_mapping(cls, data or {}, "", source)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain-data form of a config dataclass (tuples as lists), for YAML / JSON."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(cfg)


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise CsvdnetInputError("<override>", f"{text!r} is not of the form section.key=value")
    key, raw = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw)


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides (values parsed as YAML) to plain config data."""
    for text in overrides:
        keys, value = _parse_override(text)
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise CsvdnetInputError("<override>", f"{text!r}: {k} is not a section")
        node[keys[-1]] = value
    return data


def load_config(path: str | os.PathLike | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config (or the defaults when ``path`` is None) and apply overrides.

    Relative paths in ``data.cohort``, ``data.cache``, ``data.val_cohort`` and ``train.run_dir``
    stay as written: they are resolved against the current directory, like any CLI path.

    Raises:
        CsvdnetInputError: Missing or unreadable file, invalid YAML, unknown key, wrong type.
    """
    data: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        p = Path(path)
        if not p.is_file():
            raise CsvdnetInputError(p, "config file not found")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise CsvdnetInputError(p, f"not valid YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise CsvdnetInputError(p, "a config must be a YAML mapping of sections")
    data = apply_overrides(data, list(overrides))
    return from_dict(Config, data, source)


def dump_config(cfg: Any) -> str:
    """YAML text of a config dataclass (round-trips through :func:`from_dict`)."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
