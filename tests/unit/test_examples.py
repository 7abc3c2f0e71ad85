"""The README's example tasks import (their SDKs are test dependencies) and register what they say."""

from __future__ import annotations

import importlib

import pytest

from genqueue.tasks.registry import lookup


@pytest.mark.parametrize(
    ("module", "tasks"),
    [
        ("examples.openai_tasks", {"caption": 120, "image": 300}),
        ("examples.anthropic_tasks", {"summarise": 120}),
        ("examples.replicate_tasks", {"upscale": 600}),
    ],
)
def test_example_tasks_register(monkeypatch, module, tasks):
    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "REPLICATE_API_TOKEN"):
        monkeypatch.setenv(key, "test-key")
    importlib.import_module(module)
    for name, timeout in tasks.items():
        spec = lookup(f"{module}.{name}")
        assert spec is not None and spec.timeout == timeout, name
