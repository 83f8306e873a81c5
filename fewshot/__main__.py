"""``python -m fewshot``: the command line (:mod:`fewshot.cli`)."""
from fewshot.cli import main

raise SystemExit(main())
