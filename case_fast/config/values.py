"""Configuration values: parsing a command-line value as YAML, coercing a value to its field's type
(the key named in every error) and checking it against its range rule."""
from __future__ import annotations

import math
import re
import typing
from typing import Any, List

import yaml


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or out of range; the message names the key."""


def describe_type(tp) -> str:
    args = typing.get_args(tp)
    if typing.get_origin(tp) is typing.Union and type(None) in args:
        inner = [a for a in args if a is not type(None)][0]
        return f"{describe_type(inner)} or null"
    if typing.get_origin(tp) in (list, List):
        return f"list of {describe_type(args[0])}"
    return getattr(tp, "__name__", str(tp))


def parse_value(key: str, text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"config key {key}: cannot parse the value {text!r} "
                          f"({' '.join(str(getattr(e, 'problem', '') or e).split())})") from e


def _int_text(text: str):
    """An integer field's text: '3600', '0x10', '1_000'; '3600.0' and '1e3' as floats (integral ones
    are accepted by the caller)."""
    if any(c in text for c in ".eE") and not text.strip().lower().startswith(("0x", "0o", "0b")):
        return float(text)
    return int(text.strip().replace("_", ""), 0)


def _from_text(key: str, value: Any, parse, what: str) -> Any:
    """``parse(value)`` when ``value`` is still text (ConfigError 'expected <what>' if it does not
    parse); any other value unchanged."""
    if not isinstance(value, str):
        return value
    try:
        return parse(value)
    except ValueError:
        raise ConfigError(f"config key {key}: expected {what}, got {value!r}") from None


def coerce(key: str, value: Any, tp) -> Any:
    """``value`` (YAML-parsed, or a string still to parse) as a value of type ``tp`` (the field's
    annotation), or ConfigError naming ``key``. Floats accept ints and decimal strings such as
    ``1e-3`` (YAML 1.1 reads that as a string); ints accept integral floats (``3600.0``)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union and type(None) in args:
        if value is None:
            return None
        if isinstance(value, str) and value.strip() in ("null", "~", "None", ""):
            return None
        return coerce(key, value, [a for a in args if a is not type(None)][0])
    if origin in (list, List):
        if isinstance(value, str):
            value = parse_value(key, value)
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            value = [value]
        return [coerce(f"{key}[{i}]", v, args[0]) for i, v in enumerate(value)]
    want = getattr(tp, "__name__", str(tp))
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"config key {key}: expected a string, got {value!r}")
    if tp is bool:
        if isinstance(value, str):
            low = value.strip().lower()
            if low in ("true", "yes", "on"):
                return True
            if low in ("false", "no", "off"):
                return False
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key {key}: expected true or false, got {value!r}")
    if tp is int:
        v = _from_text(key, value, _int_text, "an integer")
        if isinstance(v, float) and not isinstance(v, bool) and math.isfinite(v) and v.is_integer():
            v = int(v)
        if isinstance(v, int) and not isinstance(v, bool):
            return v
        raise ConfigError(f"config key {key}: expected an integer, got {value!r}")
    if tp is float:
        v = _from_text(key, value, lambda t: float(t.strip().replace("_", "")), "a number")
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"config key {key}: expected a number, got {value!r}")
        try:
            v = float(v)
        except OverflowError:
            raise ConfigError(f"config key {key}: {value!r} is too large") from None
        if not math.isfinite(v):
            raise ConfigError(f"config key {key}: expected a finite number, got {value!r}")
        return v
    if not isinstance(value, tp):   # pragma: no cover - no other field types today
        raise ConfigError(f"config key {key}: expected {want}, got {value!r}")
    return value


def check_rule(key: str, value: Any, rule) -> None:
    """ConfigError naming ``key`` unless ``value`` (None always passes) meets every check of
    ``rule``: ("choice", values) | (">", x) | (">=", x) | ("<=", x) | ("<", x) | ("nonempty",) |
    ("each", rule) (every element of a list) | ("device",) (auto, cpu, cuda, cuda:N)."""
    if value is None:
        return
    for check in rule:
        op = check[0]
        if op == "choice":
            if value not in check[1]:
                raise ConfigError(f"config key {key}: must be one of {', '.join(map(str, check[1]))}; "
                                  f"got {value!r}")
        elif op == "nonempty":
            if (isinstance(value, str) and not value.strip()) or (isinstance(value, list) and not value):
                raise ConfigError(f"config key {key}: must not be empty")
        elif op == "each":
            for i, v in enumerate(value):
                check_rule(f"{key}[{i}]", v, check[1])
        elif op == "device":
            if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(value)):
                raise ConfigError(f"config key {key}: must be auto, cpu, cuda or cuda:N; got {value!r}")
        else:
            bound = check[1]
            ok = {">": value > bound, ">=": value >= bound, "<": value < bound, "<=": value <= bound}[op]
            if not ok:
                raise ConfigError(f"config key {key}: must be {op} {bound}, got {value!r}")
