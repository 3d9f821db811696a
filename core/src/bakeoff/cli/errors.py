"""Exit codes and the one error format of every ``bakeoff`` command.

Every command reports a failure as one line on stderr, ``bakeoff: error: ...``,
and exits with one of these codes (docs/run.md lists them for users):

===  ==========================================================================
0    success; for ``bakeoff run``/``demo``: a candidate was promoted
1    the command could not do its work (a process would not start, a cluster
     could not be reached, ...)
2    bad command line or configuration (nothing was started)
3    the bake-off stopped without a winner (every candidate rolled back or
     out, maxDuration or maxSamples reached, or aborted by a person)
4    the bake-off stopped because most requests to *every* variant failed
     (4xx/5xx): the load does not fit the service
5    ``bakeoff run`` ended (a signal, or ``--exit-on-decision`` not given) before
     any decision
130  interrupted (Ctrl-C) before a decision; 143 for SIGTERM
===  ==========================================================================
"""

from __future__ import annotations

import sys
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_NO_WINNER = 3
EXIT_BAD_TRAFFIC = 4
EXIT_UNDECIDED = 5


class CommandError(Exception):
    """A failure a command reports as ``bakeoff: error: <message>`` and exits with ``code``."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def error(message: str, code: int = EXIT_FAILED) -> int:
    """Print ``bakeoff: error: message`` on stderr; return ``code`` (for ``return error(...)``)."""
    print(f"bakeoff: error: {message}", file=sys.stderr, flush=True)
    return code


def decision_exit_code(decision: dict[str, Any] | None) -> int:
    """The exit code a bake-off's final decision maps to (``None``: no decision yet)."""
    if decision is None:
        return EXIT_UNDECIDED
    if decision.get("action") == "promote":
        return EXIT_OK
    if decision.get("cause") == "traffic":
        return EXIT_BAD_TRAFFIC
    return EXIT_NO_WINNER
