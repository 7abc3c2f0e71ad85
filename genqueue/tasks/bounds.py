"""The bounds every job's JSON input has, whoever sends it: a generate payload and a task's kwargs alike.

Every layer that copies a job's input recurses (json, orjson — whose dumps stops at 254 levels —, mask,
RQ's serializer, the DLQ entry two levels further down): an input deeper than MAX_DEPTH would be accepted
at the edge and fail later, as a 500 with the job already stored, or in the worker. MAX_BYTES is the HTTP
body limit (api/config.MAX_BODY_BYTES), so the Python and CLI producers get what the API allows.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import InvalidInput

MAX_DEPTH = 64  # objects and arrays inside one another, the value itself being level 1
MAX_BYTES = 1024 * 1024  # of compact JSON


def nesting_exceeds(value: Any, limit: int) -> bool:
    """Whether dicts and lists nest more than `limit` levels (the value itself is level 1). A loop, not
    recursion: the value may be nested too deeply for Python's own stack."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, (list, tuple)) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list, tuple)))
    return False


def check_json(value: Any, what: str) -> Any:
    """`value` if it is JSON within the bounds; InvalidInput naming `what` otherwise. Depth first: json.dumps
    recurses and would raise RecursionError on what the loop above refuses calmly."""
    if nesting_exceeds(value, MAX_DEPTH):
        raise InvalidInput(f"{what} nests objects and arrays more than {MAX_DEPTH} levels deep")
    try:
        size = len(json.dumps(value, allow_nan=False, separators=(",", ":")).encode())
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{what} must be JSON: {exc}") from None
    if size > MAX_BYTES:
        raise InvalidInput(f"{what} is {size:,} bytes of JSON, over the {MAX_BYTES:,}-byte limit")
    return value
