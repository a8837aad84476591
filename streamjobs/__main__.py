"""`python -m streamjobs`: the same command line as the `streamjobs` console script."""

from .cli import main

raise SystemExit(main())
