"""``python -m case_fast ...``: the same as the ``case-fast`` command."""
import sys

from .cli.main import main

sys.exit(main())
