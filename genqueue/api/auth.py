"""Bearer JWTs (PyJWT): the algorithm is pinned by configuration, never taken from the token; `exp` is
required; `aud`/`iss` are checked when configured."""

from __future__ import annotations

import time
from typing import Any

import jwt

from ..errors import GenqueueError, InvalidInput
from ..tenants.tenancy import ADMIN_ROLE, Principal
from .config import ApiConfig


class Unauthorized(GenqueueError):
    code = "UNAUTHORIZED"
    exit_code = 2


def principal_from_header(authorization: str | None, config: ApiConfig) -> Principal:
    if not authorization:
        raise Unauthorized("missing Authorization: Bearer <token>")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    return principal_from_token(token.strip(), config)


_verified: dict[tuple, tuple[Principal, float]] = {}  # (key material, token) -> (principal, exp)
CACHE_MAX = 10_000


def principal_from_token(token: str, config: ApiConfig) -> Principal:
    """Verify the token. A verified token is remembered until its `exp` (a front end sends the same token
    on every call; verifying costs ~90 us of the request): only the signature check is skipped, never the
    expiry."""
    key = (config.algorithm, config.verify_key, config.audience, config.issuer, token)
    cached = _verified.get(key)
    if cached is not None and cached[1] > time.time():
        return cached[0]
    principal, exp = _verify(token, config)
    if len(_verified) >= CACHE_MAX:
        _verified.clear()
    _verified[key] = (principal, exp)
    return principal


def _verify(token: str, config: ApiConfig) -> tuple[Principal, float]:
    try:
        claims = jwt.decode(
            token,
            config.verify_key,
            algorithms=[config.algorithm],
            audience=config.audience,
            issuer=config.issuer,
            options={"require": ["exp", "sub"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the token has expired") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"invalid token: {exc}") from None
    except jwt.PyJWTError:  # InvalidKeyError is no InvalidTokenError: the token does not fit the key
        raise Unauthorized("invalid token: it cannot be verified with the service's key") from None
    return principal_from_claims(claims), float(claims["exp"])


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    sub = claims.get("sub")
    tenant = claims.get("tenant") or sub
    roles = claims.get("roles") or []
    if not isinstance(sub, str) or not sub or not isinstance(tenant, str):
        raise Unauthorized("invalid token: sub and tenant must be strings")
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise Unauthorized("invalid token: roles must be a list of strings")
    return Principal(sub, tenant, frozenset(roles))


def mint(config: ApiConfig, *, sub: str, tenant: str | None = None, admin: bool = False, ttl_s: float = 3600) -> str:
    if config.signing_key is None:
        raise InvalidInput("GENQUEUE_API_JWT_PUBLIC_KEY is set: tokens are minted by whoever holds the private key")
    if not sub:
        raise InvalidInput("--sub must not be empty")
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": sub,
        "tenant": tenant or sub,
        "roles": [ADMIN_ROLE] if admin else [],
        "iat": now,
        "exp": now + max(1, int(ttl_s)),
    }
    if config.audience:
        claims["aud"] = config.audience
    if config.issuer:
        claims["iss"] = config.issuer
    return jwt.encode(claims, config.signing_key, algorithm=config.algorithm)
