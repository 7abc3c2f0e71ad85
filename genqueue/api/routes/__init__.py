"""One module of routes per resource; shared helpers here."""

from __future__ import annotations

from fastapi import Request

from ...tenants.tenancy import Principal


def actor(request: Request, who: Principal) -> str:
    """Who did it, for the audit stream."""
    address = request.client.host if request.client else "unknown"
    return f"{who.sub} (tenant {who.tenant}) from {address}"


def principal_name(who: Principal) -> str:
    """How a principal is named in a job's history (`by` of a manual retry)."""
    return f"{who.sub} (tenant {who.tenant})"
