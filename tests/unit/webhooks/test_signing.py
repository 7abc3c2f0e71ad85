"""Signatures a Standard Webhooks receiver verifies, and what a response means for a delivery (pure)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from genqueue.errors import InvalidInput
from genqueue.retry.exceptions import PermanentError, RateLimited, TransientError
from genqueue.webhooks import signing
from genqueue.webhooks.deliver import outcome
from genqueue.webhooks.relay import delivery_id, event_body, message_id

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def test_a_signed_body_verifies_with_the_library_and_a_changed_one_does_not():
    body = json.dumps({"id": "1-0", "event": "finished", "job_id": "j", "data": {}}).encode()
    headers = signing.headers(signing.signer(SECRET), "j:1-0", body)
    assert headers["webhook-id"] == "j:1-0"
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(SECRET).verify(body, headers)["event"] == "finished"
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body.replace(b"finished", b"canceled"), headers)


def test_the_signature_depends_on_the_timestamp():
    body = b"{}"
    hook = signing.signer(SECRET)
    a = signing.headers(hook, "m", body, datetime(2026, 1, 1, tzinfo=UTC))
    b = signing.headers(hook, "m", body, datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC))
    assert a["webhook-timestamp"] != b["webhook-timestamp"]
    assert a["webhook-signature"] != b["webhook-signature"]


@pytest.mark.parametrize("secret", [None, "", "not-a-whsec", "whsec_"])
def test_a_missing_or_bad_secret_is_one_line_without_the_secret(secret):
    with pytest.raises(InvalidInput, match="GENQUEUE_WEBHOOK_SECRET") as err:
        signing.signer(secret)
    assert "not-a-whsec" not in str(err.value)


@pytest.mark.parametrize(
    ("status", "headers", "kind"),
    [
        (200, {}, None),
        (204, {}, None),
        (500, {}, TransientError),
        (503, {}, TransientError),
        (408, {}, TransientError),
        (429, {"retry-after": "7"}, RateLimited),
        (410, {}, PermanentError),
        (400, {}, PermanentError),
        (302, {"location": "https://elsewhere"}, PermanentError),
    ],
)
def test_what_a_response_means(status, headers, kind):
    failure = outcome(status, headers, "https://h/x")
    if kind is None:
        assert failure is None
    else:
        assert type(failure) is kind
        assert str(status) in str(failure)


def test_429_keeps_its_retry_after():
    failure = outcome(429, {"retry-after": "7"}, "https://h/x")
    assert isinstance(failure, RateLimited) and failure.retry_after == 7


def test_ids_are_stable_per_event_and_valid_job_ids():
    from rq.job import JOB_ID_PATTERN

    a = delivery_id("job-1", "1700000000000-0")
    assert a == delivery_id("job-1", "1700000000000-0") != delivery_id("job-1", "1700000000000-1")
    assert JOB_ID_PATTERN.fullmatch(a) and len(a) < 100
    assert message_id("job-1", "1700000000000-0") == "job-1:1700000000000-0"


def test_the_body_is_the_event_schema_with_data_masked():
    body = event_body("1700000000000-3", {"e": "finished", "j": "job-1", "d": '{"result":{"api_key":"sk-1"}}'})
    assert body == {
        "id": "1700000000000-3",
        "event": "finished",
        "job_id": "job-1",
        "at": "2023-11-14T22:13:20.000Z",
        "data": {"result": {"api_key": "***"}},
    }
