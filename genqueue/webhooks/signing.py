"""Standard Webhooks signatures (https://www.standardwebhooks.com), through the `standardwebhooks` library:
`webhook-id` (stable across a delivery's retries), `webhook-timestamp` (unix seconds of this attempt),
`webhook-signature` (`v1,` + base64 HMAC-SHA256 of `id.timestamp.body` under the `whsec_…` secret)."""

from __future__ import annotations

from datetime import UTC, datetime

from standardwebhooks import Webhook

from ..errors import InvalidInput

SECRET_PREFIX = "whsec_"


def signer(secret: str | None, where: str = "GENQUEUE_WEBHOOK_SECRET") -> Webhook:
    """A signer for a `whsec_…` secret; InvalidInput naming `where` for a missing or malformed one."""
    if not secret or not secret.startswith(SECRET_PREFIX):
        raise InvalidInput(f"{where} must be a Standard Webhooks secret (whsec_ followed by base64)")
    try:
        return Webhook(secret)
    except Exception:  # noqa: BLE001 - binascii.Error, EmptyWebhookSecretError: one line, never the secret
        raise InvalidInput(f"{where} is not a valid whsec_ secret (base64 after the prefix)") from None


def headers(hook: Webhook, msg_id: str, body: bytes, now: datetime | None = None) -> dict[str, str]:
    when = now or datetime.now(UTC)
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": hook.sign(msg_id, when, body),
    }


def new_secret() -> str:
    import base64
    import secrets

    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def set_tenant_secret(connection, tenant: str, secret: str | None) -> str | None:
    """Set (a new one when `secret` is None) or, with secret == "", remove a tenant's own signing secret."""
    from ..backend import keys

    if not tenant or len(tenant) > 200 or any(c.isspace() for c in tenant):
        raise InvalidInput(f"invalid tenant {tenant!r}")
    if secret == "":
        connection.hdel(keys.WEBHOOK_SECRETS, tenant)
        return None
    value = secret or new_secret()
    signer(value, "the secret")
    connection.hset(keys.WEBHOOK_SECRETS, tenant, value)
    return value
