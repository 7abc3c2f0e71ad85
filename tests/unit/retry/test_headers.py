"""The provider headers that say how long a limit key must wait (retry/headers.py), with the values the
providers document: OpenAI's x-ratelimit-* (Go durations), Anthropic's anthropic-ratelimit-* (RFC 3339),
Retry-After / retry-after-ms; and the classifier reading them from a 429 that has no Retry-After."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
import requests.structures

from genqueue.retry.classify import retry_after_from
from genqueue.retry.headers import (
    exhausted_limits,
    parse_go_duration,
    parse_reset,
    reset_wait,
    wait_from_headers,
)
from genqueue.tasks.context import TaskContext, take_pause

NOW = datetime(2025, 10, 25, 12, 0, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("20ms", 0.02),
        ("12ms", 0.012),
        ("17.28s", 17.28),
        ("1h2m3.5s", 3723.5),
        ("300us", 0.0003),
        ("2µs", 2e-6),
        ("0s", 0.0),
        ("0", 0.0),
        (".5s", 0.5),
        ("", None),
        ("5", None),
        ("s", None),
        ("1x", None),
        ("1m-2s", None),
        ("-1s", None),
        ("1 s", None),
        (None, None),
        (60, None),
    ],
)
def test_parse_go_duration(text, seconds):
    assert parse_go_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("6m0s", 360.0),  # OpenAI
        ("20ms", 0.02),
        ("2025-10-25T12:00:30Z", 30.0),  # Anthropic
        ("2025-10-25T12:01:00.250000Z", 60.25),
        ("2025-10-25T14:00:30+02:00", 30.0),
        ("2025-10-25T12:00:30", 30.0),  # no offset: UTC
        ("2025-10-25T11:59:00Z", 0.0),  # already past
        ("3", 3.0),  # Azure OpenAI, GitHub-style delay in seconds
        (str(int(NOW) + 45), 45.0),  # a Unix time
        (str(int(NOW) - 45), 0.0),
        ("soon", None),
        ("-3", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_reset(value, seconds):
    assert parse_reset(value, now=NOW) == (pytest.approx(seconds) if seconds is not None else None)


OPENAI_FRESH = {  # OpenAI's documented example: nothing spent
    "x-ratelimit-limit-requests": "5000",
    "x-ratelimit-limit-tokens": "160000",
    "x-ratelimit-remaining-requests": "4999",
    "x-ratelimit-remaining-tokens": "159976",
    "x-ratelimit-reset-requests": "12ms",
    "x-ratelimit-reset-tokens": "9ms",
}
ANTHROPIC_FRESH = {
    "anthropic-ratelimit-requests-limit": "50",
    "anthropic-ratelimit-requests-remaining": "49",
    "anthropic-ratelimit-requests-reset": "2025-10-25T12:00:00Z",
    "anthropic-ratelimit-tokens-limit": "50000",
    "anthropic-ratelimit-tokens-remaining": "49500",
    "anthropic-ratelimit-tokens-reset": "2025-10-25T12:01:00Z",
}


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        (OPENAI_FRESH, None),
        ({**OPENAI_FRESH, "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s"}, 1.0),
        ({**OPENAI_FRESH, "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "6m0s"}, 360.0),
        (
            {
                **OPENAI_FRESH,
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": "1s",
                "x-ratelimit-remaining-tokens": "0",
                "x-ratelimit-reset-tokens": "6m0s",
            },
            360.0,
        ),  # the latest reset
        ({"x-ratelimit-remaining-tokens_usage_based": "0", "x-ratelimit-reset-tokens_usage_based": "9ms"}, 0.009),
        ({"X-RateLimit-Remaining-Requests": "0", "X-RateLimit-Reset-Requests": "20ms"}, 0.02),  # any case
        ({"x-ratelimit-remaining-tokens": "-1", "x-ratelimit-reset-tokens": "0"}, None),  # Azure: not applicable
        ({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "4"}, 4.0),  # Azure: seconds
        (ANTHROPIC_FRESH, None),
        (
            {
                **ANTHROPIC_FRESH,
                "anthropic-ratelimit-requests-remaining": "0",
                "anthropic-ratelimit-requests-reset": "2025-10-25T12:00:30Z",
            },
            30.0,
        ),
        (
            {
                **ANTHROPIC_FRESH,
                "anthropic-ratelimit-requests-remaining": "0",
                "anthropic-ratelimit-requests-reset": "2025-10-25T12:00:30Z",
                "anthropic-ratelimit-input-tokens-remaining": "0",
                "anthropic-ratelimit-input-tokens-reset": "2025-10-25T12:00:50Z",
            },
            50.0,
        ),
        (
            {
                "anthropic-ratelimit-output-tokens-remaining": "0",
                "anthropic-ratelimit-output-tokens-reset": "2025-10-25T12:00:05Z",
            },
            5.0,
        ),
        ({"ratelimit-remaining": "0", "ratelimit-reset": "30"}, 30.0),  # the IETF draft
        ({"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 45)}, 45.0),  # GitHub style
        ({"x-ratelimit-remaining-requests": "0"}, None),  # exhausted, but no reset: nothing to go by
        ({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "whenever"}, None),
        ({"x-items-remaining": "0", "x-items-reset": "5"}, None),  # not a rate limit's header
        ({}, None),
        (None, None),
    ],
)
def test_reset_wait(headers, wait):
    assert reset_wait(headers, now=NOW) == (pytest.approx(wait) if wait is not None else None)


def test_exhausted_limits_names_each_spent_limit():
    headers = {**OPENAI_FRESH, "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s"}
    assert exhausted_limits(headers, now=NOW) == {"x-ratelimit-remaining-requests": 1.0}


@pytest.mark.parametrize("make", [dict, httpx.Headers, requests.structures.CaseInsensitiveDict])
def test_header_containers_of_the_clients(make):
    headers = make({"X-RateLimit-Remaining-Requests": "0", "X-RateLimit-Reset-Requests": "6m0s", "Retry-After": "7"})
    assert reset_wait(headers, now=NOW) == 360.0
    assert wait_from_headers(headers, now=NOW) == 7.0


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        (
            {
                "retry-after-ms": "1500",
                "retry-after": "7",
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": "1m0s",
            },
            1.5,
        ),  # the server's own word first, in the SDKs' order
        ({"retry-after": "7", "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1m0s"}, 7.0),
        ({"retry-after": "Sat, 25 Oct 2025 12:00:20 GMT"}, 20.0),
        ({"retry-after": "later", "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1m0s"}, 60.0),
        ({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1m0s"}, 60.0),
        (OPENAI_FRESH, None),
    ],
)
def test_wait_from_headers(headers, wait):
    assert wait_from_headers(headers, now=NOW) == (pytest.approx(wait) if wait is not None else None)


class StatusError(Exception):
    def __init__(self, status: int, headers: dict[str, str]):
        super().__init__(f"HTTP {status}")
        self.status_code = status
        self.headers = headers


def test_a_429_without_retry_after_waits_for_its_spent_limits_reset():
    spent = {
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-reset-tokens": "6m0s",
        "x-ratelimit-remaining-requests": "12",
        "x-ratelimit-reset-requests": "1s",
    }
    assert retry_after_from(StatusError(429, spent)) == (360.0, None)
    assert retry_after_from(StatusError(429, {**spent, "retry-after": "3"})) == (3.0, None)  # Retry-After wins
    assert retry_after_from(StatusError(429, OPENAI_FRESH)) == (None, None)
    assert retry_after_from(StatusError(503, spent)) == (None, None)  # a 429's headers only


def test_pause_key_keeps_the_latest_end_and_is_taken_once():
    ctx = TaskContext(job_id="job-pk", task="t", queue="q", attempt=1, replays=0, tenant=None, deadline=None)
    assert take_pause("job-pk") == 0.0
    ctx.pause_key(30)
    ctx.pause_key(5)  # a shorter pause never shortens the one asked for
    assert 29 < take_pause("job-pk") <= 30
    assert take_pause("job-pk") == 0.0
    for bad in (-1, float("nan"), float("inf"), "5", True, None):
        with pytest.raises(ValueError):
            ctx.pause_key(bad)
