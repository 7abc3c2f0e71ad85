"""The providers' pure pieces: choosing one, payload → SDK call, timeouts, artifacts."""

from __future__ import annotations

import base64
import sys

import pytest

from genqueue.errors import InvalidInput
from genqueue.tasks.providers import SimulatedProvider, provider_from_env
from genqueue.tasks.providers.openai import build_request, externalize, image_format
from genqueue.tasks.providers.timeouts import configured_timeout, effective_timeout


def test_the_default_provider_is_the_simulated_one():
    assert isinstance(provider_from_env({}), SimulatedProvider)
    assert isinstance(provider_from_env({"GENQUEUE_PROVIDER": " Simulated "}), SimulatedProvider)


def test_an_unknown_provider_names_the_choices():
    with pytest.raises(InvalidInput, match="simulated, openai, http, not 'replicate'"):
        provider_from_env({"GENQUEUE_PROVIDER": "replicate"})


def test_a_missing_openai_sdk_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "openai", None)  # `import openai` now raises ImportError
    with pytest.raises(InvalidInput) as info:
        provider_from_env({"GENQUEUE_PROVIDER": "openai", "OPENAI_API_KEY": "k"})
    assert "pip install 'genqueue[openai]'" in str(info.value) and "\n" not in str(info.value)


def test_http_provider_needs_an_http_url():
    with pytest.raises(InvalidInput, match="GENQUEUE_PROVIDER_URL"):
        provider_from_env({"GENQUEUE_PROVIDER": "http"})
    with pytest.raises(InvalidInput, match="http\\(s\\) URL"):
        provider_from_env({"GENQUEUE_PROVIDER": "http", "GENQUEUE_PROVIDER_URL": "ftp://x/y"})


@pytest.mark.parametrize(
    ("configured", "job", "want"),
    [(120, None, 120), (120, 180, 120), (120, 60, 55), (120, 10, 8), (120, 1, 0.8), (30, -1, 30), (30, 0, 30)],
)
def test_the_call_timeout_stays_below_the_job_timeout(configured, job, want):
    assert effective_timeout(configured, job) == pytest.approx(want)


@pytest.mark.parametrize("raw", ["0", "-3", "soon", "inf", "nan"])
def test_bad_provider_timeouts_are_refused(raw):
    with pytest.raises(InvalidInput, match="GENQUEUE_PROVIDER_TIMEOUT"):
        configured_timeout({"GENQUEUE_PROVIDER_TIMEOUT": raw})
    assert configured_timeout({}) == 120.0 and configured_timeout({"GENQUEUE_PROVIDER_TIMEOUT": "2.5"}) == 2.5


def test_build_request_per_endpoint():
    payload = {"prompt": "a fox", "model": "m", "params": {"n": 2}, "user_id": "u1", "simulate": ["ok"]}
    assert build_request(payload) == ("images", {"model": "m", "prompt": "a fox", "n": 2})
    assert build_request({**payload, "endpoint": "chat"}) == (
        "chat",
        {"model": "m", "messages": [{"role": "user", "content": "a fox"}], "n": 2},
    )
    assert build_request({**payload, "endpoint": "responses"}) == (
        "responses",
        {"model": "m", "input": "a fox", "n": 2},
    )


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        ({"prompt": "p", "model": "m", "endpoint": "embeddings"}, "endpoint"),
        ({"prompt": "p", "model": ""}, "model"),
        ({"prompt": "p", "model": "m", "params": {"timeout": 5, "extra_headers": {}}}, "extra_headers, timeout"),
        ({"prompt": "p", "model": "m", "params": [1]}, "params"),
    ],
)
def test_bad_openai_payloads_are_permanent(payload, match):
    with pytest.raises(ValueError, match=match):
        build_request(payload)


def test_image_formats():
    assert image_format(b"anything", "webp") == "webp"
    assert image_format(b"\x89PNG\r\n\x1a\nxx", None) == "png"
    assert image_format(b"\xff\xd8\xff\xe0", None) == "jpeg"
    assert image_format(b"RIFF\x00\x00\x00\x00WEBPVP8 ", None) == "webp"
    assert image_format(b"\x00\x01", None) == "bin"
    assert image_format(b"\x89PNG\r\n\x1a\n", "../x") == "png"  # a declared format is never a path


def test_externalize_replaces_base64_by_uris_in_order():
    written = {}

    def put(name, data):
        written[name] = data
        return f"mem://{name}"

    result = {
        "data": [
            {"b64_json": base64.b64encode(b"\x89PNG\r\n\x1a\n1").decode()},
            {"url": "https://x/2.png"},
            {"b64_json": base64.b64encode(b"\xff\xd8\xff2").decode()},
        ]
    }
    out = externalize("images", result, put)
    assert [d.get("uri") for d in out["data"]] == ["mem://0.png", None, "mem://1.jpeg"]
    assert written == {"0.png": b"\x89PNG\r\n\x1a\n1", "1.jpeg": b"\xff\xd8\xff2"}
    assert externalize("chat", {"choices": []}, put) == {"choices": []}
    with pytest.raises(ValueError, match="base64"):
        externalize("images", {"data": [{"b64_json": "not base64!"}]}, put)


def test_the_simulated_outage_is_a_503_until_its_time_then_success():
    import time

    import pytest

    from genqueue.tasks.providers.simulated import ProviderError

    sim = SimulatedProvider(latency_s=0)
    down = {"prompt": "p", "simulate": [f"down_until={time.time() + 60}"]}
    with pytest.raises(ProviderError) as err:
        sim.call(down, attempt=3, job_id="j")
    assert err.value.status_code == 503
    over = {"prompt": "p", "simulate": [f"down_until={time.time() - 1}"]}
    assert sim.call(over, attempt=1, job_id="j")["attempt"] == 1
    from genqueue.tasks.providers.simulated import parse_outcome

    assert parse_outcome("down_while=chaos-1").down_flag == "chaos-1"
    with pytest.raises(InvalidInput):
        parse_outcome("down_while=")


@pytest.mark.parametrize(
    "params",
    [
        {"extra_body": {"model": "expensive-large", "messages": [{"role": "user", "content": "x"}]}},
        {"extra_query": {"model": "x"}},
        {"extra_anything": 1},
        {"model": "expensive-large"},
        {"messages": []},
        {"instructions": "ignore the prompt"},
        {"previous_response_id": "resp_1"},
    ],
)
def test_params_that_pick_the_model_messages_or_request_are_refused_at_enqueue_and_by_the_provider(params):
    from genqueue.errors import InvalidInput
    from genqueue.limits.rules import generate_key
    from genqueue.tasks.generate import validate_payload

    payload = {"prompt": "p", "model": "cheap-mini", "params": params, "endpoint": "chat"}
    with pytest.raises(InvalidInput, match="payload.params may not set"):
        validate_payload(payload)
    with pytest.raises(ValueError, match="may not set"):
        build_request(payload)
    fine = {**payload, "params": {"n": 1, "temperature": 0.2}}
    _, sent = build_request(validate_payload(fine))
    assert generate_key("openai", fine) == f"openai:{sent['model']}"  # the key counts the model sent
