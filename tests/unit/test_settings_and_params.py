from datetime import timedelta

import pytest

from genqueue.backend.connection import redact
from genqueue.cli.params import parse_duration, parse_json_arg
from genqueue.errors import InvalidInput
from genqueue.settings import Settings
from genqueue.tasks.generate import validate_payload
from genqueue.tasks.providers.simulated import SimulatedProvider, parse_outcomes


def test_settings_from_env():
    s = Settings.from_env(
        {
            "REDIS_URL": "redis://x",
            "GENQUEUE_QUEUE": "q2",
            "GENQUEUE_BACKOFF_SCALE": "0.5",
            "GENQUEUE_HOME": "/tmp/h",
            "GENQUEUE_DLQ_RETENTION": "60",
        }
    )
    assert (s.redis_url, s.queue, s.backoff_scale, str(s.home), s.dlq_retention_s) == (
        "redis://x",
        "q2",
        0.5,
        "/tmp/h",
        60,
    )
    assert Settings.from_env({}).redis_url is None


@pytest.mark.parametrize(
    "env", [{"GENQUEUE_BACKOFF_SCALE": "-1"}, {"GENQUEUE_DLQ_RETENTION": "week"}, {"GENQUEUE_LOG_FORMAT": "xml"}]
)
def test_bad_settings_are_invalid_input(env):
    with pytest.raises(InvalidInput):
        Settings.from_env(env)


def test_redact_hides_passwords_only():
    assert redact("redis://:s3cret@h:6380/1") == "redis://:***@h:6380/1"
    assert redact("rediss://user:pw@h/0") == "rediss://user:***@h/0"
    assert redact("unix:///tmp/x.sock") == "unix:///tmp/x.sock"
    assert redact("redis://h?password=s3cret&db=2") == "redis://h?password=***&db=2"
    assert redact("redis://:pw@host:abc/0") == "redis://:***@host:abc/0"  # a bad port must not raise here
    assert redact("redis://h:6379/0") == "redis://h:6379/0"


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("5m", 300), ("2h", 7200), ("1d", 86400), ("15", 15)])
def test_durations(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "soon", "-5s", "5y"])
def test_bad_durations(text):
    with pytest.raises(InvalidInput):
        parse_duration(text)


def test_json_args(tmp_path):
    f = tmp_path / "p.json"
    f.write_text('{"prompt": "x"}')
    assert parse_json_arg(f"@{f}", "--payload") == {"prompt": "x"}
    with pytest.raises(InvalidInput, match="not valid JSON"):
        parse_json_arg("{bad", "--payload")
    with pytest.raises(InvalidInput, match="cannot read"):
        parse_json_arg("@/nonexistent/p.json", "--payload")


def test_a_json_arg_from_stdin():
    import click
    from click.testing import CliRunner

    @click.command()
    @click.argument("text")
    def show(text):
        click.echo(repr(parse_json_arg(text, "--payload")))

    result = CliRunner().invoke(show, ["@-"], input='{"prompt": "from stdin"}')
    assert result.exit_code == 0 and result.output == "{'prompt': 'from stdin'}\n"


@pytest.mark.parametrize(
    "payload",
    [
        [],
        {"prompt": ""},
        {"prompt": "x", "params": 3},
        {"prompt": "x", "simulate": ["nope"]},
        {"prompt": "x", "simulate": []},
        {"prompt": "x", "user_id": [1]},
    ],
)
def test_bad_payloads(payload):
    with pytest.raises(InvalidInput):
        validate_payload(payload)


def test_simulate_outcomes_apply_per_attempt_and_the_last_repeats():
    p = SimulatedProvider(latency_s=0)
    payload = {"prompt": "x", "simulate": ["500", "429:retry_after=2", "ok"]}
    assert [p.pick(payload, a, "j").name for a in (1, 2, 3, 4)] == ["500", "429", "ok", "ok"]
    assert p.pick(payload, 2, "j").retry_after == 2.0
    assert [o.name for o in parse_outcomes(["sleep=0.5", "timeout", "reset", "crash"])] == [
        "sleep",
        "timeout",
        "reset",
        "crash",
    ]


def test_rate_draws_are_reproducible_per_job_and_attempt():
    p = SimulatedProvider(latency_s=0)
    assert [p.pick({"prompt": "x"}, a, "job-1") for a in range(1, 20)] == [
        p.pick({"prompt": "x"}, a, "job-1") for a in range(1, 20)
    ]
    always = SimulatedProvider({"503": 1.0}, latency_s=0)
    assert always.pick({"prompt": "x"}, 1, "j").name == "503"


def test_public_api_resolves_lazily():
    import genqueue

    assert {n: getattr(genqueue, n) for n in genqueue.__all__}  # every advertised name imports
    with pytest.raises(AttributeError):
        genqueue.nope  # noqa: B018


def test_cli_reason_choices_are_the_reason_enum():
    from genqueue.cli.dlq_shared import REASONS
    from genqueue.retry.kinds import Reason

    assert REASONS == tuple(r.value for r in Reason)


@pytest.mark.parametrize("text", ["99999999999999d", "1e400"])
def test_huge_durations_are_invalid_input_not_a_crash(text):
    with pytest.raises(InvalidInput):
        parse_duration(text)


@pytest.mark.parametrize(
    "env",
    [
        {"GENQUEUE_LIVENESS_TTL": "inf"},
        {"GENQUEUE_BACKOFF_SCALE": "nan"},
        {"GENQUEUE_POLICY_TRANSIENT": "max=inf"},
        {"GENQUEUE_POLICY_TIMEOUT": "base=1e400"},
    ],
)
def test_non_finite_numbers_in_the_environment_are_invalid_input(env):
    with pytest.raises(InvalidInput):
        Settings.from_env(env)


@pytest.mark.parametrize("text", ["[" * 100000, '{"n": ' + "9" * 5000 + "}"])
def test_json_that_python_refuses_without_a_decode_error_is_invalid_input(text):
    with pytest.raises(InvalidInput, match="not valid JSON"):
        parse_json_arg(text, "--payload")
