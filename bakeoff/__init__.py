"""bakeoff: run several implementations of a service on live traffic, judge them, promote the winner.

The parts install under this one root: ``bakeoff.router`` (the data plane),
``bakeoff.judge`` (pure statistics), ``bakeoff.controller`` (the decision loop
and its platforms); ``bakeoff.contracts`` holds the wire formats they share,
``bakeoff.common`` the plumbing (logs, YAML, durations, cluster access), and
``bakeoff.cli`` the ``bakeoff`` command.
"""

__version__ = "0.2.0"
