"""python -m bakeoff.cli: the bakeoff command."""

from bakeoff.cli import main

raise SystemExit(main())
