"""structlog, configured once for every part: JSON off a terminal, readable on one.

Lines about a variant carry ``bakeoff``, ``variant`` and ``commit`` where they
are known; ``bind_variant`` makes a logger that always does.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog

_configured = False


def configure_logging(level: str | None = None, json: bool | None = None) -> None:
    global _configured
    if _configured:
        return
    _configured = True
    level_name = (level or os.environ.get("BAKEOFF_LOG_LEVEL", "info")).upper()
    if json is None:
        json = not sys.stderr.isatty()
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level_name, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def bind_variant(logger: structlog.typing.FilteringBoundLogger, bakeoff: str, variant: str, commit: str | None = None):
    return logger.bind(bakeoff=bakeoff, variant=variant, commit=commit)
