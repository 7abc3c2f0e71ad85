"""Export to and import from JSONL, one entry per line, exactly as stored (byte-for-byte round trip)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO

from ..backend import durable
from ..errors import Conflict, GenqueueError, InvalidInput
from ..support.secrets import has_secrets, mask, may_hold_secrets
from .bulk import matching
from .entry import check_entry, decode, encode, failed_at_score, index_values, parse_iso
from .store import DLQStore, Filters

MAX_REPORTED = 10
IMPORT_BATCH = 1000
RETRY_IMPORT = "import the same file again with --overwrite"


def export_chunks(store: DLQStore, filters: Filters, *, include_secrets: bool = False) -> Iterator[tuple[bytes, int]]:
    """(JSONL bytes, line count) per batch of 1,000 entries: the stored JSON text itself, or a masked copy.
    Bytes from Redis to the file, never decoded to str and back; every entry is still parsed (a corrupt
    one is left out; `dlq list` reports it) unless the caller asked for the stored text with its secrets."""
    for batch in matching(store, filters, batch=1000):
        lines = []
        # Most entries hold no secret-looking key: their stored JSON is already what mask() gives. One test
        # over the whole batch's text (13 substring scans of ~2 MB) clears most batches at once: per entry,
        # the same test cost 25 µs, five times the JSON parse.
        suspect = not include_secrets and may_hold_secrets(b"\n".join(raw for _, _, raw in batch))
        for job_id, _, raw in batch:
            if not include_secrets:
                try:
                    entry = decode(raw, job_id)
                except GenqueueError:
                    continue
                if suspect and may_hold_secrets(raw) and has_secrets(entry):
                    raw = encode(mask(entry)).encode()
            lines.append(raw)
        if lines:
            lines.append(b"")
            yield b"\n".join(lines), len(lines) - 1


@dataclass
class ImportResult:
    imported: int = 0
    replaced: int = 0
    expired: int = 0
    bad_lines: list[tuple[int, str]] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)


def parse_lines(lines: Iterable[str]) -> tuple[list[tuple[int, str, dict]], list[tuple[int, str]]]:
    good, bad = [], []
    for number, line in enumerate(lines, start=1):
        text = line.rstrip("\n").rstrip("\r")
        if not text.strip():
            continue
        try:
            entry = check_entry(decode(text, f"on line {number}"))
            # Everything import_file and store.add read from an entry, checked before anything is written.
            failed_at_score(entry)
            if entry.get("expires_at"):
                parse_iso(entry["expires_at"])
            index_values(entry)
        except (GenqueueError, ValueError, KeyError, TypeError, AttributeError, OverflowError) as exc:
            bad.append((number, str(exc) if isinstance(exc, GenqueueError) else f"bad field {exc}"))
            continue
        good.append((number, text, entry))
    return good, bad


def import_file(store: DLQStore, fh: IO[str], *, skip_bad: bool = False, overwrite: bool = False) -> ImportResult:
    """All or nothing on malformed lines (unless skip_bad); existing ids are refused unless overwrite.
    With GENQUEUE_WAIT_REPLICAS each batch is acknowledged by the replicas (NotDurable if not in time: the
    same file imported again with `overwrite` writes the same entries, byte for byte)."""
    good, bad = parse_lines(fh)
    result = ImportResult(bad_lines=bad)
    if bad and not skip_bad:
        listed = "; ".join(f"line {n}: {why}" for n, why in bad[:MAX_REPORTED])
        more = f" (+{len(bad) - MAX_REPORTED} more)" if len(bad) > MAX_REPORTED else ""
        raise InvalidInput(f"{len(bad)} malformed line(s), nothing imported: {listed}{more}")
    ids = [entry["job_id"] for _, _, entry in good]
    with store.connection.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.exists(store.keys.entry(job_id))
        exists = pipe.execute()
    result.existing = [job_id for job_id, e in zip(ids, exists, strict=False) if e]
    if result.existing and not overwrite:
        listed = ", ".join(result.existing[:MAX_REPORTED])
        raise Conflict(
            f"{len(result.existing)} entr(y/ies) already in {store.keys.dlq_name}, nothing imported: "
            f"{listed} (use --overwrite to replace them)"
        )
    now = time.time()
    for start in range(0, len(good), IMPORT_BATCH):  # one MULTI per batch keeps the server responsive
        with store.connection.pipeline(transaction=True) as pipe:
            for _, text, entry in good[start : start + IMPORT_BATCH]:
                ttl = int(parse_iso(entry["expires_at"]) - now) if entry.get("expires_at") else store.retention_s
                if ttl <= 0:
                    result.expired += 1
                    continue
                store.add(entry, pipeline=pipe, raw=text, ttl_s=ttl, counter="imported")
                result.imported += 1
            replies = pipe.execute()
        # WAIT is not honoured inside MULTI: with GENQUEUE_WAIT_REPLICAS, one more round trip per batch.
        durable.confirm(store.connection, f"import of {len(replies)} entries", RETRY_IMPORT)
        for reply in replies:
            store.note_pruned(reply)
            result.replaced += int(reply[0]) if isinstance(reply, list) else 0
    return result
