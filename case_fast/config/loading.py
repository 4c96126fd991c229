"""Loading a configuration: a bundled name (``case_fast/config/<name>.yaml``) or a YAML path, then
dotted ``section.field=value`` overrides from the command line; every value coerced to its field's
type and the result validated (:class:`ConfigError` naming the key, file and line)."""
from __future__ import annotations

import dataclasses
import difflib
import os
import pathlib
from typing import Any, List, Optional

import yaml

from .schema import SECTIONS, Config, field_type
from .values import ConfigError, coerce, parse_value

CONFIG_DIR = pathlib.Path(__file__).resolve().parent


def _apply(cfg: Config, key: str, value: Any, source: str = "") -> None:
    parts = key.split(".")
    where = f"{source}: " if source else ""
    if len(parts) == 1 and parts[0] == "name":
        if isinstance(value, str) and source == "":
            value = parse_value(key, value)
        if value is None or isinstance(value, (bool, list, dict)):
            raise ConfigError(f"{where}config key name: expected a string, got {value!r}")
        cfg.name = str(value)
        return
    if len(parts) != 2 or parts[0] not in SECTIONS:
        raise ConfigError(f"{where}unknown config key {key!r}: use section.field with section in "
                          f"{', '.join(SECTIONS)}")
    section = getattr(cfg, parts[0])
    names = [f.name for f in dataclasses.fields(section)]
    if parts[1] not in names:
        close = difflib.get_close_matches(parts[1], names, n=1)
        hint = f" (did you mean {parts[0]}.{close[0]}?)" if close else ""
        raise ConfigError(f"{where}unknown config key {key!r}{hint}; `case-fast info --fields` lists them all")
    if isinstance(value, str) and source == "":   # a command-line value: YAML text
        value = parse_value(key, value)
    try:
        setattr(section, parts[1], coerce(key, value, field_type(parts[0], parts[1])))
    except ConfigError as e:
        raise ConfigError(f"{where}{e}") from None


def available_configs() -> List[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def _yaml_error(path, e: yaml.YAMLError) -> ConfigError:
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark is not None else str(path)
    what = " ".join(str(getattr(e, "problem", None) or e).split())
    ctx, ctx_mark = getattr(e, "context", None), getattr(e, "context_mark", None)
    if ctx and ctx_mark is not None and ctx_mark is not mark:
        what += f" ({ctx} started on line {ctx_mark.line + 1})"
    return ConfigError(f"{where}: YAML syntax error: {what}")


def read_config_file(path) -> dict:
    """The mapping of a YAML config file; ConfigError naming the file (and line) otherwise."""
    from ..data.annotations import DataError, read_text

    path = pathlib.Path(path)
    try:  # the checks every file the package reads gets (folder, unreadable, not UTF-8)
        text = read_text(path, "config", allow_empty=True)
    except DataError as e:
        raise ConfigError(str(e)) from e
    if not text.strip():
        raise ConfigError(f"config {path} is empty (a config is a mapping of sections data, model, "
                          "train, infer; use --config synthetic for the defaults)")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise _yaml_error(path, e) from e
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path}: a config must be a mapping of sections (data, model, train, "
                          f"infer), got {type(raw).__name__}")
    return raw


def load_config(name_or_path: Optional[str] = None, overrides: Optional[List[str]] = None) -> Config:
    """Bundled config name or YAML path (default 'synthetic'), then 'section.key=value' overrides;
    validated (:class:`ConfigError` naming the key or file)."""
    cfg = Config()
    name_or_path = name_or_path or "synthetic"
    path = pathlib.Path(os.path.expanduser(str(name_or_path)))
    if not path.exists():
        bundled = CONFIG_DIR / f"{name_or_path}.yaml"
        if "/" in str(name_or_path) or not bundled.is_file():
            raise ConfigError(f"no config file {str(name_or_path)!r} and no bundled config of that name "
                              f"(bundled: {', '.join(available_configs())})")
        path = bundled
    raw = read_config_file(path)
    name = raw.pop("name", path.stem)
    _apply(cfg, "name", name, str(path))
    for sec, values in raw.items():
        if sec not in SECTIONS:
            raise ConfigError(f"{path}: unknown section {sec!r} (expected name, {', '.join(SECTIONS)})")
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: section {sec!r} must be a mapping of keys, got {values!r}")
        for k, v in values.items():
            _apply(cfg, f"{sec}.{k}", v, str(path))
    try:
        return apply_overrides(cfg, overrides)
    except ConfigError as e:
        if overrides:
            raise
        raise ConfigError(f"{path}: {e}") from None


def apply_overrides(cfg: Config, overrides: Optional[List[str]]) -> Config:
    """Apply 'section.key=value' strings (values parsed as YAML) and re-validate."""
    for ov in overrides or []:
        if "=" not in ov:
            raise ConfigError(f"override {ov!r} must look like section.key=value")
        k, v = ov.split("=", 1)
        _apply(cfg, k.strip(), v)
    return cfg.validate()


def config_from_dict(d: dict) -> Config:
    if not isinstance(d, dict):
        raise ConfigError(f"a configuration must be a mapping, got {type(d).__name__}")
    cfg = Config()
    _apply(cfg, "name", d.get("name", "custom"), "config")
    for sec in SECTIONS:
        values = d.get(sec) or {}
        if not isinstance(values, dict):
            raise ConfigError(f"config section {sec!r} must be a mapping, got {type(values).__name__}")
        for k, v in values.items():
            _apply(cfg, f"{sec}.{k}", v, "config")
    return cfg.validate()
