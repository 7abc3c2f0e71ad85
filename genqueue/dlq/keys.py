"""Every DLQ key, built from the queue name in one place. The {queue} hash tag keeps one queue's DLQ keys
in one Redis Cluster slot, so the Lua scripts and MULTI blocks that touch several of them stay legal."""

from __future__ import annotations

from dataclasses import dataclass

INDEXED_FIELDS = ("kind", "func", "user", "reason", "fingerprint")


@dataclass(frozen=True, slots=True)
class DLQKeys:
    queue: str

    @property
    def prefix(self) -> str:
        return f"genqueue:dlq:{{{self.queue}}}:"

    @property
    def dlq_name(self) -> str:
        return f"{self.queue}-dlq"

    def entry(self, job_id: str) -> str:
        return f"{self.prefix}e:{job_id}"

    @property
    def all(self) -> str:
        return f"{self.prefix}all"

    @property
    def stats(self) -> str:
        return f"{self.prefix}stats"

    def index(self, field: str, value: str) -> str:
        return f"{self.prefix}by:{field}:{value}"
