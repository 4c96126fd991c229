"""The ``case-fast`` command line (entry point :func:`case_fast.cli.main.main`).

    main.py      the parser, error handling (one line, exit status 2), ``python -m case_fast``
    common.py    what every command shares: --config and overrides, UsageError, '-' as stdout
    commands.py  train, detect, info, profile
    evaluate.py  eval: any method's results scored against ground truth, under each protocol

``case-fast ablate`` and ``plot`` register their parsers from :mod:`case_fast.experiments`.
"""
