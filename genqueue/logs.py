"""structlog, configured once per process: JSON lines off a TTY (or GENQUEUE_LOG_FORMAT=json), console on one.
Payload secrets are masked by a processor so no log line carries them."""

from __future__ import annotations

import logging
import sys

import structlog

from .secrets import mask


def _mask_processor(_logger, _name, event_dict):
    return mask(event_dict)


def configure(log_format: str = "auto", *, stream=None, level: int = logging.INFO) -> None:
    stream = stream or sys.stderr
    use_json = log_format == "json" or (log_format == "auto" and not stream.isatty())
    renderer = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _mask_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
