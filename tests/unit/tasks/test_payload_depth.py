"""The payload's nesting bound: counted without recursion, so any depth json can parse is answered."""

from __future__ import annotations

import pytest

from genqueue.errors import InvalidInput
from genqueue.tasks.generate import MAX_PAYLOAD_DEPTH, nesting_exceeds, validate_payload


def chain(depth: int):
    value: object = "leaf"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def test_nesting_is_counted_per_container_level():
    assert not nesting_exceeds({}, 1) and nesting_exceeds({"a": []}, 1)
    assert not nesting_exceeds({"a": [1, "x", None], "b": {"c": 2}}, 2)
    assert nesting_exceeds({"a": [1, [2]]}, 2)
    assert not nesting_exceeds(chain(10), 10) and nesting_exceeds(chain(11), 10)
    assert nesting_exceeds(chain(200_000), MAX_PAYLOAD_DEPTH)  # far past Python's recursion limit


def test_validate_payload_refuses_only_past_the_bound():
    deep = {"prompt": "p", "params": chain(MAX_PAYLOAD_DEPTH - 1)}
    assert validate_payload(deep) is deep
    with pytest.raises(InvalidInput, match="levels deep"):
        validate_payload({"prompt": "p", "params": chain(MAX_PAYLOAD_DEPTH)})
