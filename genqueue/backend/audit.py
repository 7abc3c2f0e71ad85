"""Audit log: every admin action on the DLQ, appended to a capped Redis stream."""

from __future__ import annotations

import getpass
import json
import socket
import time
from typing import Any, cast

from redis import Redis
from redis.typing import EncodableT, FieldT

from . import keys
from .replies import StreamEntries

AUDIT_KEY = keys.AUDIT
AUDIT_MAXLEN = 10_000
IDS_KEPT = 50


def who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def record(
    connection: Redis,
    action: str,
    queue: str,
    *,
    filters: dict[str, Any] | None = None,
    counts: dict[str, int] | None = None,
    ids: list[str] | None = None,
    note: str | None = None,
    actor: str | None = None,
) -> None:
    """`actor`: who did it when it is not this process's user — over HTTP, "sub (tenant T) from ADDRESS"."""
    fields: dict[FieldT, EncodableT] = {
        "ts": f"{time.time():.3f}",
        "who": actor or who(),
        "action": action,
        "queue": queue,
        "filters": json.dumps({k: v for k, v in (filters or {}).items() if v not in (None, "")}, sort_keys=True),
        "counts": json.dumps(counts or {}, sort_keys=True),
        "ids": json.dumps((ids or [])[:IDS_KEPT]),
    }
    if note:
        fields["note"] = note
    connection.xadd(AUDIT_KEY, fields, maxlen=AUDIT_MAXLEN, approximate=True)


def recent(connection: Redis, limit: int = 20) -> list[dict[str, Any]]:
    rows = []
    for stream_id, fields in cast(StreamEntries, connection.xrevrange(AUDIT_KEY, count=limit)):
        row: dict[str, Any] = {k.decode(): v.decode() for k, v in fields.items()}
        for key in ("filters", "counts", "ids"):
            row[key] = json.loads(row.get(key) or "null")
        row["id"] = stream_id.decode()
        row["ts"] = float(row["ts"])
        rows.append(row)
    return rows
