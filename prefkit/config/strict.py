"""Strict, typed configuration: dataclasses are the schema, YAML is the serialised form.

Every key is checked against the dataclass fields; an unknown or misspelt key is an error
that names the full dotted path and suggests the closest valid key. Values are converted to
the annotated type (``int``, ``float``, ``bool``, ``str``, ``Literal``, ``Optional``, ``list``,
``dict`` and nested dataclasses) and rejected when they do not fit.

Command-line overrides are dotted ``key=value`` strings whose value is parsed as YAML, so
``train.lr=3e-4``, ``loss.params={label_smoothing: 0.1}`` and ``eval.worlds=[a, b]`` all work.

YAML is read strictly: a key given twice in one mapping is an error (naming both lines), and
only ``true``/``false`` are booleans. YAML 1.1's other boolean words (``yes``, ``no``, ``on``,
``off``), which PyYAML would silently read as booleans, are refused wherever they
appear unquoted (quote them to mean the string).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value or key is invalid; the message names the dotted path."""


class CrossSectionError(ConfigError):
    """A rule between keys of different sections is broken. A file alone may break one that the
    command-line overrides then fix, so :func:`load` checks these on the merged config only."""


class Yaml11Bool(str):
    """An unquoted YAML 1.1 boolean word other than true/false (``yes``, ``off``, ...), kept as
    text so that :func:`from_dict` can refuse it by name instead of guessing."""


_BOOL_TAG = "tag:yaml.org,2002:bool"
_YAML11_BOOL_TAG = "tag:prefkit,2025:yaml11-bool"


class _DuplicateKey(yaml.MarkedYAMLError):
    pass


class StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 booleans (only true/false) and no duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                seen = key in first_line
            except TypeError:  # an unhashable key: SafeLoader reports it below
                continue
            if seen:
                raise _DuplicateKey(
                    problem=f"duplicate key '{key}' (first given at line {first_line[key]})",
                    problem_mark=key_node.start_mark,
                )
            first_line[key] = line
        return super().construct_mapping(node, deep=deep)


StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
StrictLoader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
StrictLoader.add_implicit_resolver(
    _YAML11_BOOL_TAG, re.compile(r"^(?:yes|Yes|YES|no|No|NO|on|On|ON|off|Off|OFF)$"), list("yYnNoO"),
)
StrictLoader.add_constructor(_YAML11_BOOL_TAG, lambda loader, node: Yaml11Bool(loader.construct_scalar(node)))


def safe_load(text: str) -> Any:
    """Parse YAML text with :class:`StrictLoader` (safe: plain data only)."""
    return yaml.load(text, Loader=StrictLoader)  # a SafeLoader subclass: plain data only


def _suggest(key: str, valid: Iterable[str]) -> str:
    valid = list(valid)
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"{hint} (valid keys: {', '.join(sorted(valid))})"


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, path: str) -> Any:
    """Convert ``value`` to annotated type ``tp`` or raise ``ConfigError`` naming ``path``."""
    _refuse_yaml11_bools(value, path)
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, path)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{path}: {value!r} does not fit {_type_name(tp)}")
    if origin is typing.Literal:
        if value in args:
            return value
        close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"{path}: {value!r} is not one of {list(args)}{hint}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, prefix=path)
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        item_tp = args[0] if args else Any
        items = [_convert(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin is tuple or tp is tuple) else items
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        val_tp = args[1] if len(args) == 2 else Any
        return {str(k): _convert(v, val_tp, _join(path, str(k))) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{path}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{path}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{path}: expected a string, got {value!r}")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{path}: cannot read {value!r} as {_type_name(tp)}")


def _refuse_yaml11_bools(value: Any, path: str) -> None:
    """An unquoted ``yes``/``no``/``on``/``off`` anywhere in ``value`` is an error naming it."""
    if isinstance(value, Yaml11Bool):
        raise ConfigError(
            f"{path}: {str(value)!r} is a YAML 1.1 boolean, which prefkit does not guess at: "
            f"write true/false (or quote '{value}' if you mean the text)"
        )
    if isinstance(value, Mapping):
        for key, item in value.items():
            _refuse_yaml11_bools(key, _join(path, str(key)))
            _refuse_yaml11_bools(item, _join(path, str(key)))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _refuse_yaml11_bools(item, f"{path}[{i}]")


def from_dict(cls: type[T], data: Mapping[str, Any], *, prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and ill-typed values."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        _refuse_yaml11_bools(key, _join(prefix, str(key)))
        if key not in fields:
            raise ConfigError(f"{_join(prefix, str(key))}: unknown key{_suggest(str(key), fields)}")
        kwargs[key] = _convert(value, hints[key], _join(prefix, key))
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{prefix or cls.__name__}: {err}") from err


def to_dict(obj: Any) -> Any:
    """Plain-data (YAML-safe) form of a config dataclass."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): to_dict(v) for k, v in obj.items()}
    return obj


def _field_type(cls: Any, key: str, path: str) -> Any:
    if not dataclasses.is_dataclass(cls):
        return Any
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    if key not in fields:
        raise ConfigError(f"{path}: unknown key{_suggest(key, fields)}")
    tp = typing.get_type_hints(cls)[key]
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        non_none = [a for a in typing.get_args(tp) if a is not type(None)]
        dcs = [a for a in non_none if dataclasses.is_dataclass(a)]
        if dcs:
            return dcs[0]
    return tp


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into its key path and YAML-parsed value."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key=value (for example train.lr=3e-4)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r}: empty key")
    try:
        value = safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: cannot parse value: {err}") from err
    return key.split("."), value


def apply_overrides(cls: type, data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Merge dotted overrides into ``data`` (a nested dict), validating each path against ``cls``."""
    data = to_dict(data)
    for text in overrides:
        parts, value = parse_override(text)
        node, node_cls = data, cls
        for depth, part in enumerate(parts[:-1]):
            path = ".".join(parts[: depth + 1])
            tp = _field_type(node_cls, part, path)
            if not (dataclasses.is_dataclass(tp) or typing.get_origin(tp) is dict or tp is dict):
                raise ConfigError(f"{path}: is a value, not a section (override {text!r})")
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node, node_cls = child, tp if dataclasses.is_dataclass(tp) else None
        if node_cls is not None:
            _field_type(node_cls, parts[-1], ".".join(parts))
        node[parts[-1]] = value
    return data


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, reporting the file (and line, where YAML gives one) on error."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory; --config takes a YAML file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise ConfigError(f"{path}: no such config file") from err
    except PermissionError as err:
        raise ConfigError(f"{path}: cannot read the config file (permission denied)") from err
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config file ({err.strerror or err})") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not valid UTF-8 ({err.reason} at byte {err.start})") from err
    try:
        data = safe_load(text)
    except _DuplicateKey as err:
        mark = err.problem_mark
        raise ConfigError(f"{path}:{mark.line + 1}: {err.problem}") from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: invalid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``top``'s values on top, sections merged key by key."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load(cls: type[T], path: str | Path | None = None, overrides: Iterable[str] = (), *,
         defaults: Iterable[str] = ()) -> T:
    """Resolve a config: dataclass defaults <- ``defaults`` (dotted, e.g. a command's own
    defaults) <- YAML file <- dotted overrides."""
    data = load_yaml(path) if path is not None else {}
    if path is not None:
        try:
            from_dict(cls, data)
        except CrossSectionError:
            pass  # the overrides may fix it: checked on the merged config below
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from err
    data = _merge(apply_overrides(cls, {}, defaults), data)
    return from_dict(cls, apply_overrides(cls, data, overrides))


def save_yaml(obj: Any, path: str | Path) -> Path:
    """Write a config (dataclass or mapping) as YAML, atomically."""
    from prefkit._atomic import atomic_write_text

    return atomic_write_text(path, yaml.safe_dump(to_dict(obj), sort_keys=False))
