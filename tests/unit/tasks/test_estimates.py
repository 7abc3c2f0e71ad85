"""Estimates (a task's fixed mapping or function of its kwargs; the built-in generate task's with the openai
provider), what the openai provider reads from a response's `usage`, and `genqueue.current().usage()`
adding up within an attempt."""

from __future__ import annotations

import pytest

from genqueue.errors import InvalidInput
from genqueue.tasks.context import TaskContext, take_usage
from genqueue.tasks.estimates import estimate_of, generate_estimate
from genqueue.tasks.providers.openai import usage_of
from genqueue.tasks.registry import TaskSpec, declare


def fn(prompt: str = "", max_tokens: int = 0) -> None: ...


def test_a_declared_function_or_mapping_is_the_estimate():
    spec = declare(fn, name="est.fn", estimate=lambda kw: {"tokens": kw.get("max_tokens", 0) + len(kw["prompt"]) // 4})
    assert estimate_of(spec, (), {"prompt": "x" * 40, "max_tokens": 100}, "simulated") == {"tokens": 110.0}
    fixed = declare(fn, name="est.fixed", estimate={"images": 1, "usd": 0.04})
    assert estimate_of(fixed, (), {}, "simulated") == {"images": 1.0, "usd": 0.04}
    assert estimate_of(TaskSpec("est.none", fn), (), {}, "simulated") == {}


def test_a_bad_estimate_is_refused_at_declaration_or_as_one_line():
    with pytest.raises(InvalidInput):
        declare(fn, name="est.bad", estimate={"tokenz": 1})
    failing = declare(fn, name="est.fails", estimate=lambda kw: {"tokens": 1 / 0})
    with pytest.raises(InvalidInput, match="estimate failed: ZeroDivisionError"):
        estimate_of(failing, (), {}, "simulated")
    wrong = declare(fn, name="est.wrong", estimate=lambda kw: {"tokens": -5})
    with pytest.raises(InvalidInput):
        estimate_of(wrong, (), {}, "simulated")


def test_the_builtin_generate_estimate_is_openais_only():
    payload = {"prompt": "y" * 400, "model": "gpt-4o", "params": {"max_tokens": 256}}
    assert generate_estimate("openai", payload) == {"tokens": 356.0}
    assert generate_estimate("openai", {"prompt": "p", "params": {"max_output_tokens": 9}}) == {"tokens": 9.0}
    assert generate_estimate("openai", {"prompt": "p", "endpoint": "images", "params": {"n": 3}}) == {"images": 3.0}
    assert generate_estimate("simulated", payload) == {}


def test_the_openai_provider_reads_the_responses_usage():
    assert usage_of("chat", {"usage": {"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42}}) == {
        "input_tokens": 12.0,
        "output_tokens": 30.0,
    }
    assert usage_of("responses", {"usage": {"input_tokens": 5, "output_tokens": 7}}) == {
        "input_tokens": 5.0,
        "output_tokens": 7.0,
    }
    assert usage_of("images", {"data": [{}, {}], "usage": None}) == {"images": 2.0}
    assert usage_of("chat", {}) == {}


def test_usage_adds_up_within_an_attempt_and_is_taken_once():
    ctx = TaskContext("job-usage-1", "t", "q", 1, 0, None, None)
    ctx.usage(input_tokens=10, output_tokens=5)
    ctx.usage(input_tokens=2, usd=0.25)
    assert take_usage("job-usage-1") == {"input_tokens": 12.0, "output_tokens": 5.0, "usd": 0.25}
    assert take_usage("job-usage-1") is None
    for bad in ({"input_tokens": -1}, {"usd": float("nan")}, {"images": True}):
        with pytest.raises(ValueError):
            ctx.usage(**bad)
