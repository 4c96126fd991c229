"""case-fast: fast, faithful CASE (ICCV 2023) for weakly-supervised temporal action localization."""

__version__ = "0.1.0"
