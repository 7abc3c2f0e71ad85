"""The DLQ entry schema (versioned JSON) and its pure helpers: building, fingerprinting, index values."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Any

import orjson

from ..errors import CorruptEntry

SCHEMA_VERSION = 1
REQUIRED_FIELDS = ("v", "job_id", "queue", "func", "reason", "error", "history", "failed_at")

_NORMALISERS = (
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I), "<uuid>"),
    (re.compile(r"\b(?:0x)?[0-9a-f]{12,}\b", re.I), "<hex>"),
    (re.compile(r"\d+(?:\.\d+)?"), "<n>"),
)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def fingerprint(error_type: str, message: str) -> str:
    """Groups failures that differ only by numbers, ids and uuids."""
    normalised = message
    for pattern, repl in _NORMALISERS:
        normalised = pattern.sub(repl, normalised)
    return hashlib.sha1(f"{error_type}|{normalised}".encode()).hexdigest()[:16]


def call_payload(args: Any, kwargs: Any) -> Any:
    """What a job was asked to do: the generate task's payload (its one argument), or a task's kwargs."""
    return args[0] if args else (kwargs or None)


def payload_of(entry: dict[str, Any]) -> Any:
    return call_payload(entry.get("args"), entry.get("kwargs"))


def build_entry(
    *,
    job_id: str,
    queue: str,
    func: str,
    args: list[Any],
    kwargs: dict[str, Any],
    reason: str,
    error: dict[str, Any],
    history: list[dict[str, Any]],
    retry_count: int,
    crash_count: int,
    enqueued_at: str | None,
    failed_at: float,
    retention_s: int,
    replays: int = 0,
    replayed_from: str | None = None,
    provider_job_id: str | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    payload = call_payload(args, kwargs)
    payload = payload if isinstance(payload, dict) else {}
    user_id = payload.get("user_id")
    return {
        "v": SCHEMA_VERSION,
        "job_id": job_id,
        "queue": queue,
        "func": func,
        "args": args,
        "kwargs": kwargs,
        "user_id": None if user_id is None else str(user_id),
        "provider_job_id": provider_job_id or payload.get("provider_job_id"),
        "reason": reason,
        "error": error,
        "history": history,
        "retry_count": retry_count,
        "crash_count": crash_count,
        "enqueued_at": enqueued_at,
        "failed_at": iso(failed_at),
        "expires_at": iso(failed_at + retention_s),
        "replays": replays,
        "replayed_from": replayed_from,
        "fingerprint": fingerprint(error.get("type", ""), error.get("message", "")),
        "options": options or {},
    }


def index_values(entry: dict[str, Any]) -> dict[str, str]:
    """field → value for every index this entry belongs to (absent values are not indexed)."""
    values = {
        "kind": (entry.get("error") or {}).get("kind"),
        "func": entry.get("func"),
        "user": entry.get("user_id"),
        "reason": entry.get("reason"),
        "fingerprint": entry.get("fingerprint"),
    }
    return {k: str(v) for k, v in values.items() if v not in (None, "")}


def encode(entry: dict[str, Any]) -> str:
    return json.dumps(entry, separators=(",", ":"), sort_keys=True)


def decode(raw: bytes | str, job_id: str) -> dict[str, Any]:
    """The entry, validated. orjson parses a 2 KB entry ~3× faster than json; the few texts it refuses
    that json accepts (integers beyond 64 bits, NaN) get a second chance with json, so nothing json
    reads is ever called corrupt."""
    try:
        entry = orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            entry = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CorruptEntry(f"DLQ entry {job_id} is corrupt: not JSON ({exc.__class__.__name__})") from None
    if not isinstance(entry, dict) or any(f not in entry for f in REQUIRED_FIELDS):
        raise CorruptEntry(f"DLQ entry {job_id} is corrupt: missing fields")
    return entry


def failed_at_score(entry: dict[str, Any]) -> float:
    return parse_iso(entry["failed_at"])
