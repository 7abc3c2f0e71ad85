"""structlog, configured once per process: JSON lines off a TTY (or GENQUEUE_LOG_FORMAT=json), console on one.
Payload secrets are masked by a processor so no log line carries them.

Imported lazily: `import structlog` costs ~60 ms (it imports rich's traceback and pretty-printer when rich is
installed), a quarter of `genqueue dlq list`'s wall time, and most commands never log. Modules take their
logger from get_logger(); structlog is imported, and configure()'s settings applied, at the first log call.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any, TextIO

from .secrets import mask, scrub

if TYPE_CHECKING:
    from structlog.typing import EventDict, WrappedLogger

_settings: dict[str, Any] | None = None
_applied = False


class _LazyLogger:
    """Stands for structlog.get_logger(name) until first used."""

    __slots__ = ("_name", "_logger")

    def __init__(self, name: str) -> None:
        self._name: str = name
        self._logger: Any = None  # structlog's bound logger, once made

    def __getattr__(self, attr: str) -> Any:
        if self._logger is None:
            import structlog

            _apply()
            self._logger = structlog.get_logger(self._name)
        return getattr(self._logger, attr)


def get_logger(name: str) -> Any:
    return _LazyLogger(name)


def _mask_processor(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    masked: EventDict = mask(event_dict)
    return masked


def _scrub_rendered(_logger: Any, _name: str, line: Any) -> Any:
    """The last processor: the rendered line (tracebacks included) without any known secret value."""
    return scrub(line)


class _ScrubbingRecord(logging.LogRecord):
    """Standard-library records (RQ's own log lines, their tracebacks) without any known secret value."""

    def getMessage(self) -> str:
        return scrub(super().getMessage())


def _install_record_scrubbing() -> None:
    if logging.getLogRecordFactory() is not _record_factory:
        logging.setLogRecordFactory(_record_factory)


def _record_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _ScrubbingRecord(*args, **kwargs)
    if record.exc_info and not record.exc_text:
        record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
    return record


def configure(log_format: str = "auto", *, stream: TextIO | None = None, level: int = logging.INFO) -> None:
    """Record the settings; applied now if structlog is already in use, else at the first log call."""
    global _settings, _applied
    _install_record_scrubbing()
    _settings, _applied = {"log_format": log_format, "stream": stream, "level": level}, False
    if "structlog" in sys.modules:
        _apply()


def _apply() -> None:
    global _applied
    if _applied or _settings is None:
        return
    _applied = True
    _configure(**_settings)


def _configure(log_format: str, stream: TextIO | None, level: int) -> None:
    import structlog

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
            _scrub_rendered,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
