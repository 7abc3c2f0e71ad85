"""Shared click options and parameter types."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from ..errors import InvalidInput

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(text: str) -> timedelta:
    match = _DURATION.match(text or "")
    if not match:
        raise InvalidInput(f"bad duration {text!r}: use e.g. 30s, 5m, 2h, 1d")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def parse_json_arg(text: str, what: str) -> Any:
    """JSON from the text itself, or from a file when it starts with @ ('@-' reads stdin)."""
    if text.startswith("@"):
        name = text[1:]
        try:
            text = click.get_text_stream("stdin").read() if name == "-" else Path(name).read_text()
        except OSError as exc:
            raise InvalidInput(f"cannot read {what} file {name!r}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def queue_option(fn):
    return click.option(
        "--queue", "-q", "queue", default=None, metavar="NAME",
        help="Queue name (default: $GENQUEUE_QUEUE or generation-queue).",
    )(fn)


def json_option(fn):
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(fn)
