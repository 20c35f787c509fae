"""``python -m tape``: the same command line as ``tape``."""

from .cli import main

raise SystemExit(main())
