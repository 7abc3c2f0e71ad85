"""Limit keys are bounded: a cap on distinct keys checked at enqueue (GENQUEUE_MAX_LIMIT_KEYS), idle keys
expiring, and /metrics staying bounded whatever models tenants send. Real server, real worker, the real app."""

from __future__ import annotations

import json
import re
import uuid

import pytest

from genqueue.backend import keys
from genqueue.errors import InvalidInput
from genqueue.jobs.enqueue import enqueue
from genqueue.limits.rules import IDLE_TTL_S
from genqueue.limits.store import known_keys
from tests.helpers import run_cli, wait_for


def metric_keys(text: str) -> set[str]:
    return set(re.findall(r'^genqueue_limit_\w+\{[^}]*key="([^"]+)"', text, re.M))


def test_2000_distinct_models_are_capped_and_metrics_stay_bounded(conn, queue_name, monkeypatch, client, token, env):
    tag = uuid.uuid4().hex[:6]
    room = 100
    cap = len(known_keys(conn)) + room
    monkeypatch.setenv("GENQUEUE_MAX_LIMIT_KEYS", str(cap))
    admitted, refused = [], 0
    for i in range(2000):
        try:
            enqueue(conn, queue_name, {"prompt": "p", "model": f"cap-{tag}-{i}"})
            admitted.append(f"simulated:cap-{tag}-{i}")
        except InvalidInput as exc:
            refused += 1
            assert "GENQUEUE_MAX_LIMIT_KEYS" in str(exc)
    try:
        assert (len(admitted), refused) == (room, 1900)
        enqueue(conn, queue_name, {"prompt": "again", "model": f"cap-{tag}-0"})  # a known key is always admitted
        r = run_cli(
            dict(env, GENQUEUE_MAX_LIMIT_KEYS=str(cap)),
            "enqueue",
            "--payload",
            json.dumps({"prompt": "p", "model": f"cap-{tag}-new"}),
        )
        assert r.code == 2 and "refused" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        body = client.get("/metrics", headers=token("ops", admin=True)).text
        shown = metric_keys(body)
        assert len(shown) <= cap and set(admitted) <= shown
        assert not any(f"cap-{tag}-{i}" in body for i in range(room, 2000))
    finally:
        for key in admitted:
            conn.delete(keys.limit_prefix(key) + "cfg")
        known_keys(conn)
    assert not set(admitted) & set(known_keys(conn))  # expired state: pruned from the known set


def test_an_idle_key_expires_and_an_overridden_one_does_not(env, workers, conn):
    model = f"idle-{uuid.uuid4().hex[:6]}"
    key, kept = f"simulated:{model}", f"simulated:{model}-set"
    assert run_cli(env, "limits", "set", kept, "--concurrency", "2").code == 0
    ids = []
    for m in (model, f"{model}-set"):
        r = run_cli(env, "enqueue", "--payload", json.dumps({"prompt": "p", "model": m}), "--json")
        ids.append(r.json()["id"])
    workers(simple=True)
    wait_for(
        lambda: all(run_cli(env, "jobs", "show", i, "--json").json()["status"] == "finished" for i in ids),
        message="both jobs to finish",
    )
    cfg = keys.limit_prefix(key) + "cfg"
    wait_for(lambda: conn.pttl(cfg) > 0, message="the idle key's state to get its expiry")
    assert 0 < conn.pttl(cfg) <= IDLE_TTL_S * 1000
    assert conn.pttl(keys.limit_prefix(kept) + "cfg") == -1  # an override keeps its key
    for part in ("cfg", "stats", "win"):  # what the expiry does, an hour early
        conn.delete(keys.limit_prefix(key) + part)
    listed = {row["key"] for row in run_cli(env, "limits", "--json").json()["limits"]}
    assert key not in listed and kept in listed
    assert not conn.sismember(keys.LIMITS_KNOWN, key)


@pytest.mark.parametrize("value", ["0", "abc", "1000001"])
def test_a_bad_max_limit_keys_is_exit_2(env, value):
    r = run_cli(dict(env, GENQUEUE_MAX_LIMIT_KEYS=value), "limits")
    assert r.code == 2 and "GENQUEUE_MAX_LIMIT_KEYS" in r.stderr and "Traceback" not in r.stderr
