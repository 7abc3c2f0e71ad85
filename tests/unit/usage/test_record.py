"""What an attempt spent and record.lua's arguments: reported usage wins over the estimate, tokens are input
plus output, the bucket keys are backend/keys.py's (hour, tenant day, tenant month "YYYYMM" in UTC), a job with
no tenant counts under "*"."""

from __future__ import annotations

from datetime import UTC, datetime

from genqueue.backend import keys
from genqueue.usage.record import month_of, record_args, settle_of, spent


def test_reported_usage_wins_and_tokens_are_input_plus_output():
    reported = {"input_tokens": 120, "output_tokens": 30, "usd": 0.01}
    assert spent(reported, {"tokens": 500}) == {"input_tokens": 120, "output_tokens": 30, "usd": 0.01, "tokens": 150}
    assert spent(None, {"tokens": 500, "images": 0}) == {"tokens": 500}
    assert spent({}, {}) == {}
    assert settle_of(spent(reported, {})) == {"tokens": 150, "usd": 0.01}


def test_month_is_the_utc_calendar_month_of_the_hour():
    assert month_of(int(datetime(2026, 12, 31, 23, tzinfo=UTC).timestamp()) // 3600) == "202612"
    assert month_of(int(datetime(2027, 1, 1, 0, tzinfo=UTC).timestamp()) // 3600) == "202701"
    assert month_of(int(datetime(2024, 2, 29, 12, tzinfo=UTC).timestamp()) // 3600) == "202402"


def test_record_args_name_the_buckets_and_the_field():
    now_ms = int(datetime(2026, 12, 5, 7, 30, tzinfo=UTC).timestamp() * 1000)
    args = record_args(None, "app.chat", "openai:gpt-4o", {"tokens": 150.0, "usd": 0.01}, now_ms)
    hour, day = now_ms // 3_600_000, now_ms // 86_400_000
    assert args[:7] == [
        keys.usage_hour(hour),
        keys.usage_tenant_day("*", day),
        keys.usage_tenant_month("*", "202612"),
        keys.USAGE_HOUR_TTL_S,
        keys.USAGE_DAY_TTL_S,
        keys.USAGE_MONTH_TTL_S,
        "*\tapp.chat\topenai:gpt-4o\t",
    ]
    assert args[7:] == ["tokens", "150.0", "usd", "0.01"]
    assert record_args("acme", "t", None, {}, now_ms) == []
    assert record_args("acme", "t", None, {"images": 2}, now_ms)[6] == "acme\tt\t\t"
