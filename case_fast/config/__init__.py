"""The configuration: dataclasses, their checks, loading YAML files and overrides, the bundled configs.

    schema.py   the four sections as dataclasses and ``Config.validate``
    loading.py  ``load_config`` (bundled name or path, then overrides), ``config_from_dict``
    fields.py   each field's range rule and meaning
    values.py   parsing and coercing values, :class:`ConfigError`
    *.yaml      the bundled configs (synthetic, thumos14, anet12, ...)
"""
