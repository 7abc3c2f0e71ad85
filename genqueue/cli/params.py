"""Shared click options and parameter types."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..errors import InvalidInput
from ..support.durations import parse_duration  # noqa: F401 - re-exported for the commands


def parse_json_arg(text: str, what: str) -> Any:
    """JSON from the text itself, or from a file when it starts with @ ('@-' reads stdin)."""
    if text.startswith("@"):
        name = text[1:]
        try:
            text = click.open_file("-").read() if name == "-" else Path(name).read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidInput(f"cannot read {what} file {name!r}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise InvalidInput(f"{what} file {name!r} is not UTF-8 text") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except (ValueError, RecursionError):  # over-long integers, absurd nesting
        raise InvalidInput(f"{what} is not valid JSON: a number too long or nesting too deep") from None


def queue_option(fn):
    return click.option(
        "--queue",
        "-q",
        "queue",
        default=None,
        metavar="NAME",
        help="Queue name (default: $GENQUEUE_QUEUE or generation-queue).",
    )(fn)


def json_option(fn):
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(fn)
