"""Dashboard login: a one-time code (5 minutes, usable once) printed by `genqueue api token --login`, traded
for a session kept in Redis behind an HttpOnly, SameSite=Strict cookie; each session carries a CSRF token
that every form posts back."""

from __future__ import annotations

import hmac
import json
import secrets
from dataclasses import dataclass

from redis import Redis

from ...backend import keys
from ...tenants.tenancy import Principal

LOGIN_TTL_S = 300
SESSION_TTL_S = 8 * 3600
COOKIE = "genqueue_session"


@dataclass(frozen=True)
class Session:
    sid: str
    principal: Principal
    csrf: str


def _dump(principal: Principal) -> str:
    return json.dumps({"sub": principal.sub, "tenant": principal.tenant, "roles": sorted(principal.roles)})


def _load(raw: bytes | str) -> Principal:
    data = json.loads(raw)
    return Principal(data["sub"], data["tenant"], frozenset(data["roles"]))


def create_login(connection: Redis, principal: Principal) -> str:
    code = secrets.token_urlsafe(24)
    connection.set(keys.login_code(code), _dump(principal), ex=LOGIN_TTL_S)
    return code


def redeem_login(connection: Redis, code: str) -> Session | None:
    """Trade a login code for a new session; None when the code is unknown, expired or already used."""
    raw = connection.getdel(keys.login_code(code)) if code else None
    if raw is None:
        return None
    sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    record = json.dumps({"principal": json.loads(raw), "csrf": csrf})
    connection.set(keys.session(sid), record, ex=SESSION_TTL_S)
    return Session(sid, _load(raw), csrf)


def load_session(connection: Redis, sid: str | None) -> Session | None:
    if not sid:
        return None
    raw = connection.get(keys.session(sid))
    if raw is None:
        return None
    record = json.loads(raw)
    return Session(sid, _load(json.dumps(record["principal"]).encode()), record["csrf"])


def csrf_ok(session: Session, given: str | None) -> bool:
    if not given:
        return False
    return hmac.compare_digest(given.encode(), session.csrf.encode())


def end_session(connection: Redis, sid: str) -> None:
    connection.delete(keys.session(sid))
