"""Who may see and act on a job or a run: pure rules, shared by the HTTP service and the library.

Every job records its tenant in `meta["genqueue"]["tenant"]` (over HTTP: the token's tenant); a job
enqueued from the CLI or Python without one belongs to its payload's `user_id`, and a job with neither is
visible to admins only. A DLQ entry keeps the tenant in `options.tenant` (and `user_id`), a run in its hash.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import Forbidden

ADMIN_ROLE = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    sub: str
    tenant: str
    roles: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_admin(self) -> bool:
        return ADMIN_ROLE in self.roles


def payload_tenant(payload: Any) -> str | None:
    user_id = payload.get("user_id") if isinstance(payload, Mapping) else None
    return None if user_id is None else str(user_id)


def job_tenant(meta: Mapping[str, Any], payload: Any) -> str | None:
    """`meta` is the job's genqueue bookkeeping (`retry.meta.gq`)."""
    return meta.get("tenant") or payload_tenant(payload)


def entry_tenant(entry: Mapping[str, Any]) -> str | None:
    options = entry.get("options") or {}
    return options.get("tenant") or entry.get("user_id")


def may_access(principal: Principal, tenant: str | None) -> bool:
    return principal.is_admin or (tenant is not None and tenant == principal.tenant)


def check_access(principal: Principal, tenant: str | None, what: str) -> None:
    if not may_access(principal, tenant):
        raise Forbidden(f"{what} belongs to another tenant")


def require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise Forbidden("this needs the admin role")
