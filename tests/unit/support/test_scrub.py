"""Secrets removed by value: the environment's secret-named variables and remembered values, from any text,
before it is cut; a credential with whitespace refused, naming the variable only."""

from __future__ import annotations

import logging

import pytest

from genqueue.errors import InvalidInput
from genqueue.retry import RetryManager
from genqueue.support import secrets
from genqueue.support.secrets import check_credential, remember, scrub, scrub_data

TOKEN = "sk-live-0123456789abcdefghij"


def test_secret_named_variables_are_scrubbed_by_value(monkeypatch):
    monkeypatch.setenv("GENQUEUE_PROVIDER_TOKEN", TOKEN + "\n")
    monkeypatch.setenv("MY_SERVICE_PASSWORD", "hunter2hunter2")
    monkeypatch.setenv("MAX_TOKENS", "4096000000")  # a count, not a secret
    monkeypatch.setenv("PWD", "/home/someone/project")  # a directory, whatever "pwd" means elsewhere
    text = f"Illegal header value b'Bearer {TOKEN}\\n' (hunter2hunter2) 4096000000 in /home/someone/project"
    out = scrub(text)
    assert TOKEN not in out and "hunter2" not in out
    assert "4096000000" in out and "/home/someone/project" in out
    assert scrub_data({"a": [f"x{TOKEN}y"], TOKEN: 1}) == {"a": ["x***y"], "***": 1}


def test_short_values_are_left_alone(monkeypatch):
    monkeypatch.setenv("SOME_TOKEN", "1")
    assert scrub("1 + 1 = 2") == "1 + 1 = 2"


def test_a_failure_is_scrubbed_before_it_is_cut():
    remember("zz-remembered-secret-value-0001")
    exc = RuntimeError("x" * 1990 + "zz-remembered-secret-value-0001")
    failure = RetryManager().failure_from_exception(exc, "Traceback ...\nRuntimeError: zz-remembered-secret-value-0001")
    assert "zz-remembered" not in failure.message and "zz-remembered" not in failure.traceback
    assert "zz-remembe" not in failure.message  # no prefix survives the cut


@pytest.mark.parametrize("value", [TOKEN + "\n", " " + TOKEN, "sk-a b"])
def test_a_credential_with_whitespace_is_refused_naming_the_variable_only(value):
    with pytest.raises(InvalidInput) as info:
        check_credential("OPENAI_API_KEY", value)
    assert "OPENAI_API_KEY" in str(info.value) and value.strip() not in str(info.value)


def test_standard_library_log_records_are_scrubbed(capsys):
    from genqueue.support.logs import configure

    remember("zz-logged-secret-value-0002")
    configure("json")
    logger = logging.getLogger("rq.worker.test")
    handler = logging.StreamHandler()
    logger.addHandler(handler)
    try:
        try:
            raise ValueError("boom zz-logged-secret-value-0002")
        except ValueError:
            logger.exception("failed with %s", "zz-logged-secret-value-0002")
    finally:
        logger.removeHandler(handler)
    err = capsys.readouterr().err
    assert "boom ***" in err and "failed with ***" in err and "zz-logged" not in err


def test_structlog_lines_are_scrubbed(capsys):
    import io

    from genqueue.support.logs import configure, get_logger

    remember("zz-structlog-secret-0003")
    stream = io.StringIO()
    configure("json", stream=stream)
    get_logger("t").warning("retry.dead_lettered", error="said zz-structlog-secret-0003")
    assert "zz-structlog" not in stream.getvalue() and "said ***" in stream.getvalue()


@pytest.fixture(autouse=True)
def _forget():
    yield
    secrets._remembered.clear()
    secrets._values = None
