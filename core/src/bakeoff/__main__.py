"""python -m bakeoff: the bakeoff command."""

from bakeoff.cli import main

raise SystemExit(main())
