"""A generic JSON provider: POST the payload to GENQUEUE_PROVIDER_URL, the 2xx JSON answer is the result.

Headers: `Idempotency-Key: <job id>` (a retry of the job carries the same key) and, when
GENQUEUE_PROVIDER_TOKEN is set, `Authorization: Bearer <token>`. Any other status raises ProviderHTTPError,
an `httpx.HTTPStatusError` that also carries `status_code`, `headers` (so the classifier sees Retry-After)
and `retry_after` from `retry-after-ms`; httpx's timeouts and connection errors propagate as they are
(classified TIMEOUT and TRANSIENT by type name). A 2xx whose limit headers say a limit is spent
(`x-ratelimit-remaining-*: 0`, `anthropic-ratelimit-*-remaining: 0`, …, with their reset) pauses the job's
limit key until the reset (providers/headers.py). The client never retries and never follows redirects:
genqueue retries the job. The token is never logged, and never part of an error's message: a server that
echoes the request back in its error body gets the token replaced by *** (before the body is cut to length).
The request in flight is closed when the job is canceled (providers/abort.py).
A token with whitespace or a newline in it is refused when the provider is configured (`genqueue worker`
exits 2 naming GENQUEUE_PROVIDER_TOKEN).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from ...errors import InvalidInput
from ...support.secrets import check_credential
from ...support.secrets import scrub as scrub_known
from .abort import abort_on_cancel, abortable_transport
from .headers import pause_if_spent
from .timeouts import call_timeout, configured_timeout

BODY_SNIPPET = 500  # characters of an error body kept in the message (and so in the job's history)


def safe_url(url: str) -> str:
    """The URL without user info, query or fragment: what an error message may show."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """This provider's own secrets, then every known one (support.secrets), out of `text`."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return scrub_known(text)


class ProviderHTTPError(httpx.HTTPStatusError):
    """A non-2xx answer: the status, the response headers, and a short body with secrets removed."""

    def __init__(self, response: httpx.Response, *, url: str, secrets: tuple[str, ...] = ()):
        body = scrub(response.text, secrets).strip()[:BODY_SNIPPET]  # scrubbed, then cut: no secret's prefix kept
        reason = response.reason_phrase or ""
        message = f"HTTP {response.status_code} {reason} from {safe_url(url)}".rstrip()
        super().__init__(f"{message}: {body}" if body else message, request=response.request, response=response)
        self.status_code = response.status_code
        self.headers = response.headers  # Retry-After, retry-after-ms, x-should-retry: read by the classifier


class HTTPProvider:
    def __init__(self, url: str, *, token: str | None, timeout_s: float, client: httpx.Client | None = None):
        self.url = url
        self._token = token or None
        self.timeout_s = timeout_s
        self.client = client or httpx.Client(follow_redirects=False, transport=abortable_transport())

    def __repr__(self) -> str:  # never the token
        return f"HTTPProvider({safe_url(self.url)!r}, token={'***' if self._token else None})"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> HTTPProvider:
        url = (env.get("GENQUEUE_PROVIDER_URL") or "").strip()
        if not url:
            raise InvalidInput("GENQUEUE_PROVIDER=http needs GENQUEUE_PROVIDER_URL (the endpoint to POST payloads to)")
        if urlsplit(url).scheme not in ("http", "https"):
            raise InvalidInput(f"GENQUEUE_PROVIDER_URL must be an http(s) URL, not {safe_url(url)!r}")
        token = check_credential("GENQUEUE_PROVIDER_TOKEN", env.get("GENQUEUE_PROVIDER_TOKEN"))
        return cls(url, token=token, timeout_s=configured_timeout(env))

    def headers(self, job_id: str) -> dict[str, str]:
        headers = {"Idempotency-Key": job_id, "Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def call(self, payload: Mapping[str, Any], *, attempt: int, job_id: str) -> Any:
        with abort_on_cancel():  # the job canceled: the request is closed, JobCanceled raised (abort.py)
            response = self.client.post(
                self.url, json=dict(payload), headers=self.headers(job_id), timeout=call_timeout(self.timeout_s)
            )
        if not response.is_success:
            raise ProviderHTTPError(response, url=self.url, secrets=(self._token or "",))
        pause_if_spent(response.headers)  # a 2xx saying a limit is spent (remaining 0) pauses the key
        try:
            return response.json()
        except ValueError:
            raise ValueError(
                f"HTTP {response.status_code} from {safe_url(self.url)} is not JSON "
                f"(content-type {response.headers.get('content-type', 'none')!r})"
            ) from None
