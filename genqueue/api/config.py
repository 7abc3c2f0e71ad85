"""The service's settings: JWT key material, rate limit, body limit — from the environment, checked once."""

from __future__ import annotations

import functools
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidInput

DEFAULT_RATE_LIMIT = "60/minute"
DEFAULT_AUTH_FAIL_LIMIT = "30/minute"  # per client address, for requests that fail authentication
MAX_BODY_BYTES = 1024 * 1024
LOCAL_SECRET_FILE = "api-jwt-secret"
LOOPBACK = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class ApiConfig:
    algorithm: str  # pinned: tokens signed with anything else are refused
    verify_key: str | bytes
    signing_key: str | bytes | None  # None with a public key: this service cannot mint tokens
    configured: bool  # a key came from the environment (not the local secret under GENQUEUE_HOME)
    audience: str | None = None
    issuer: str | None = None
    rate_limit: str = DEFAULT_RATE_LIMIT
    auth_fail_limit: str = DEFAULT_AUTH_FAIL_LIMIT
    max_body_bytes: int = MAX_BODY_BYTES
    metrics_token: str | None = None
    cookie_secure: bool | None = None  # GENQUEUE_COOKIE_SECURE; None: Secure when the request came over HTTPS

    @classmethod
    def from_env(cls, home: Path, env: Mapping[str, str] | None = None) -> ApiConfig:
        env = os.environ if env is None else env
        make = functools.partial(  # the fields every key source shares
            cls,
            audience=env.get("GENQUEUE_API_JWT_AUDIENCE") or None,
            issuer=env.get("GENQUEUE_API_JWT_ISSUER") or None,
            rate_limit=_limit(env, "GENQUEUE_API_RATE_LIMIT", DEFAULT_RATE_LIMIT),
            auth_fail_limit=_limit(env, "GENQUEUE_API_AUTH_FAIL_LIMIT", DEFAULT_AUTH_FAIL_LIMIT),
            metrics_token=env.get("GENQUEUE_METRICS_TOKEN") or None,
            cookie_secure=_flag(env, "GENQUEUE_COOKIE_SECURE"),
        )
        secret = env.get("GENQUEUE_API_JWT_SECRET")
        public_path = env.get("GENQUEUE_API_JWT_PUBLIC_KEY")
        if secret and public_path:
            raise InvalidInput("set GENQUEUE_API_JWT_SECRET or GENQUEUE_API_JWT_PUBLIC_KEY, not both")
        if secret:
            if len(secret) < 32:
                raise InvalidInput("GENQUEUE_API_JWT_SECRET must be at least 32 characters")
            return make("HS256", secret, secret, True)
        if public_path:
            pem = _read(public_path)
            return make(_algorithm_of(pem, public_path), pem, None, True)
        local = local_secret(home)
        return make("HS256", local, local, False)


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InvalidInput(f"GENQUEUE_API_JWT_PUBLIC_KEY: cannot read {path}: {exc.strerror}") from None


# The JWS algorithm each EC curve is specified for (RFC 7518 §3.4): pinning ES256 for a P-384 key made
# PyJWT refuse every token with InvalidKeyError.
EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
SUPPORTED_KEYS = "an RSA key (RS256) or an EC key on P-256, P-384 or P-521 (ES256, ES384, ES512)"


def _algorithm_of(pem: bytes, path: str) -> str:
    """The algorithm pinned for this public key, or InvalidInput (at start-up) for a key no token could
    be verified with."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(pem)
    except (ValueError, TypeError):
        raise InvalidInput(f"GENQUEUE_API_JWT_PUBLIC_KEY: {path} is not a PEM public key") from None
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name in EC_ALGORITHMS:
            return EC_ALGORITHMS[key.curve.name]
        raise InvalidInput(
            f"GENQUEUE_API_JWT_PUBLIC_KEY: {path} is an EC key on {key.curve.name}, which is not "
            f"supported; use {SUPPORTED_KEYS}"
        )
    kind = type(key).__name__.lstrip("_").removesuffix("PublicKey") or "unknown"
    raise InvalidInput(
        f"GENQUEUE_API_JWT_PUBLIC_KEY: {path} holds a key of type {kind}, which is not supported; use {SUPPORTED_KEYS}"
    )


def _flag(env: Mapping[str, str], name: str) -> bool | None:
    """true/false (1/0, yes/no, on/off) from the environment; None when unset."""
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return None
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise InvalidInput(f"{name} must be true or false, not {raw!r}")


def _limit(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name) or default
    from limits import parse

    try:
        parse(raw)
    except ValueError:
        raise InvalidInput(f"{name} must look like 60/minute or 1000/hour, not {raw!r}") from None
    return raw


def local_secret(home: Path) -> str:
    """A random HS256 secret kept under GENQUEUE_HOME (mode 0600), made on first use."""
    path = Path(home) / LOCAL_SECRET_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value


def check_bind(host: str, config: ApiConfig) -> None:
    """Listening beyond loopback needs a real (configured) key: the local secret is for one machine."""
    if host not in LOOPBACK and not config.configured:
        raise InvalidInput(
            f"refusing to listen on {host} without GENQUEUE_API_JWT_SECRET or "
            "GENQUEUE_API_JWT_PUBLIC_KEY: the local secret is for 127.0.0.1 only"
        )
