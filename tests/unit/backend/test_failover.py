"""Failover-shaped replies and REDIS_URL parsing: pure, no server."""

from __future__ import annotations

import pytest
from redis.exceptions import BusyLoadingError, ConnectionError, MasterDownError, ReadOnlyError, ResponseError

from genqueue.backend.connection import client_for, parse_target, redact
from genqueue.backend.outage import PrimaryMoved, primary_moved, short_retry
from genqueue.errors import InvalidInput


@pytest.mark.parametrize(
    "error",
    [
        ReadOnlyError("You can't write against a read only replica."),
        ReadOnlyError("You can't write against a read only replica. script: on @user_script:1."),
        MasterDownError("Link with MASTER is down and replica-serve-stale-data is set to 'no'."),
        BusyLoadingError("Valkey is loading the dataset in memory"),
        ResponseError("NOREPLICAS Not enough good replicas to write."),
        ResponseError("NOREPLICAS Not enough good replicas to write. script: on @user_script:1."),
        ResponseError("UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)"),
    ],
)
def test_failover_replies_mean_the_primary_moved(error):
    assert primary_moved(error)


@pytest.mark.parametrize(
    "error",
    [
        ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
        ResponseError("ERR unknown command 'EVALSHA'"),
        ResponseError("NOSCRIPT No matching script."),
        ConnectionError("Connection refused"),
        ValueError("READONLY is not a redis error here"),
    ],
)
def test_other_errors_are_not_a_failover(error):
    assert not primary_moved(error)


def test_primary_moved_is_a_connection_error_so_redis_py_retries_and_watch_aborts():
    assert issubclass(PrimaryMoved, ConnectionError)


def test_a_plain_url_is_one_server():
    target = parse_target("redis://:pw@10.0.0.5:6380/3")
    assert not target.is_sentinel and target.url == "redis://:pw@10.0.0.5:6380/3"


def test_a_sentinel_url_names_the_sentinels_the_service_and_the_db():
    target = parse_target("redis+sentinel://app:s3cret@s1:26379,s2,[::1]:26380/gq/2?sentinel_password=sp")
    assert target.sentinels == (("s1", 26379), ("s2", 26379), ("::1", 26380))
    assert (target.service, target.db, target.tls) == ("gq", 2, False)
    assert (target.username, target.password, target.sentinel_password) == ("app", "s3cret", "sp")
    assert "s3cret" not in repr(target) and "'sp'" not in repr(target)


def test_the_tls_variant():
    target = parse_target("rediss+sentinel://h:1/gq")
    assert target.tls and target.sentinels == (("h", 1),) and target.db == 0 and target.password is None


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://h:26379",  # no service
        "redis+sentinel://h:26379/gq/x",  # db not a number
        "redis+sentinel://h:26379/gq/1/2",
        "redis+sentinel://h:port/gq",
        "redis+sentinel://h:26379/gq?sentinel_pasword=typo",
    ],
)
def test_a_malformed_sentinel_url_is_invalid_input_in_one_line(url):
    with pytest.raises(InvalidInput) as info:
        parse_target(url)
    assert "\n" not in str(info.value) and "REDIS_URL" in str(info.value)


def test_redact_hides_both_passwords():
    shown = redact("redis+sentinel://u:pw1@h:1/gq?sentinel_password=pw2")
    assert "pw1" not in shown and "pw2" not in shown and "gq" in shown


def test_a_sentinel_client_is_built_without_io_and_carries_its_target():
    client = client_for("redis+sentinel://127.0.0.1:1/gq/4", retry=short_retry(), socket_timeout=1)
    pool = client.connection_pool
    assert pool.service_name == "gq" and pool.connection_kwargs["db"] == 4
    assert client.genqueue_target.service == "gq"
    client.close()


@pytest.mark.parametrize(
    "raw,expected", [(None, None), ("", None), ("0", None), ("off", None), ("all", -1), ("ALL", -1), ("2", 2)]
)
def test_wait_replicas_parses_a_number_all_or_off(raw, expected):
    from genqueue.settings import parse_wait_replicas

    assert parse_wait_replicas(raw) == expected


@pytest.mark.parametrize("raw", ["most", "-1", "1.5"])
def test_wait_replicas_refuses_anything_else(raw):
    from genqueue.settings import parse_wait_replicas

    with pytest.raises(InvalidInput):
        parse_wait_replicas(raw)


def test_not_durable_is_a_retryable_503():
    from genqueue.api.errors import status_of
    from genqueue.errors import NotDurable

    error = NotDurable("x")
    assert status_of(error) == (503, "NOT_DURABLE") and error.retryable and error.exit_code == 5
