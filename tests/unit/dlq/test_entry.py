import pytest

from genqueue.dlq.entry import REQUIRED_FIELDS, build_entry, decode, encode, fingerprint, index_values
from genqueue.errors import CorruptEntry
from genqueue.support.secrets import mask


def entry(**over):
    base = dict(
        job_id="j1",
        queue="q",
        func="genqueue.jobs.generate",
        args=[{"prompt": "p", "user_id": 7}],
        kwargs={},
        reason="exhausted",
        error={"kind": "TRANSIENT", "type": "E", "message": "m 12"},
        history=[],
        retry_count=5,
        crash_count=0,
        enqueued_at=None,
        failed_at=1_700_000_000.0,
        retention_s=60,
    )
    base.update(over)
    return build_entry(**base)


def test_entry_has_every_design_field_and_round_trips():
    e = entry()
    for f in (
        "v",
        "job_id",
        "queue",
        "func",
        "args",
        "kwargs",
        "user_id",
        "provider_job_id",
        "reason",
        "error",
        "history",
        "retry_count",
        "crash_count",
        "enqueued_at",
        "failed_at",
        "expires_at",
        "replays",
        "replayed_from",
        "fingerprint",
    ):
        assert f in e
    assert set(REQUIRED_FIELDS) <= set(e)
    assert e["user_id"] == "7" and e["expires_at"] == "2023-11-14T22:14:20.000Z"
    assert decode(encode(e), "j1") == e


def test_fingerprint_ignores_numbers_and_ids():
    a = fingerprint("ProviderError", "HTTP 503: upstream 10.0.0.7 failed for req 1f2e3d4c5b6a7980")
    b = fingerprint("ProviderError", "HTTP 503: upstream 10.0.0.9 failed for req 0a0b0c0d0e0f1234")
    assert a == b
    assert a != fingerprint("OtherError", "HTTP 503: upstream 10.0.0.7 failed for req 1f2e3d4c5b6a7980")


def test_index_values_skip_missing_user():
    e = entry(args=[{"prompt": "p"}])
    assert set(index_values(e)) == {"kind", "func", "reason", "fingerprint"}


@pytest.mark.parametrize("raw", [b"{not json", b"[1,2]", b'{"v": 1}', b"\xff\xfe"])
def test_corrupt_entries_raise_one_clear_error(raw):
    with pytest.raises(CorruptEntry, match="DLQ entry j1 is corrupt"):
        decode(raw, "j1")


def test_secrets_are_masked_nested_but_counts_are_not():
    e = entry(
        args=[{"prompt": "p", "params": {"api_key": "sk-1", "max_tokens": 5}, "headers": {"Authorization": "Bearer x"}}]
    )
    m = mask(e)
    assert m["args"][0]["params"] == {"api_key": "***", "max_tokens": 5}
    assert m["args"][0]["headers"]["Authorization"] == "***"
    assert e["args"][0]["params"]["api_key"] == "sk-1"  # the original is untouched


SECRET_SAMPLES = [
    {"prompt": "p", "params": {"max_tokens": 5, "temperature": 0.2}},
    {"prompt": "p", "params": {"api_key": "sk-1"}},
    {"headers": [{"Authorization": "Bearer x"}], "n": [1, [2, {"X-Api-Key": "k"}]]},
    {"password": ""},  # empty: nothing to mask
    {"nested": {"deep": {"access_token": None, "refresh_token": "r"}}},
    {"text": "my token is in a value, not a key", "Cookie": "c=1"},
    {"private-key": "-----BEGIN", "prompt": "ünïcode"},
    ["plain", {"no": "secrets"}],
]


def test_fast_secret_checks_agree_with_mask():
    import json

    from genqueue.support.secrets import has_secrets, may_hold_secrets

    for sample in SECRET_SAMPLES:
        changes = mask(sample) != sample
        assert has_secrets(sample) is changes, sample
        for text in (json.dumps(sample), json.dumps(sample, ensure_ascii=True).replace("_", "\\u005f")):
            # conservative: never False where mask() would change something, escaped keys included
            assert may_hold_secrets(text.encode()) or not changes, text
    assert not may_hold_secrets(b'{"prompt": "a red fox", "params": {"temperature": 0.7}}')
