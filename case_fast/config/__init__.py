"""The configuration: dataclasses, their checks, loading YAML files and overrides, the bundled configs.

    schema.py   the four sections as dataclasses, each field with its meaning, range rules and
                run-invariance; ``Config.validate``, ``field_table``, ``RUN_INVARIANT_KEYS``
    loading.py  ``load_config`` (bundled name or path, then overrides), ``config_from_dict``
    values.py   parsing and coercing values, checking range rules, :class:`ConfigError`
    *.yaml      the bundled configs (synthetic, thumos14, anet12, ...)
"""
