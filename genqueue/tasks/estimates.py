"""What one call of a task is expected to spend (tokens, images, usd), reserved in its limit key's unit limits
at start and recorded as its usage when the attempt reports none. Pure: no Redis.

A task declares it with `estimate=`: a fixed mapping (`{"images": 1}`, `{"usd": 0.04}`) or a function of the
call's kwargs returning one (`lambda kw: {"tokens": kw.get("max_tokens", 0) + len(kw.get("prompt", "")) // 4}`).
The built-in generate task has one with the openai provider: the payload's max tokens (params max_tokens,
max_completion_tokens or max_output_tokens) plus the prompt's length / 4; an image request, its n images.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import InvalidInput
from ..limits.rules import check_amounts
from .registry import TaskSpec

CHARS_PER_TOKEN = 4
MAX_TOKEN_PARAMS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


def generate_estimate(provider: str, payload: Any) -> dict[str, float]:
    """The built-in generate task's estimate: openai (and the lab's `openai`-shaped providers) only."""
    if provider != "openai" or not isinstance(payload, Mapping):
        return {}
    params = payload.get("params") if isinstance(payload.get("params"), Mapping) else {}
    assert isinstance(params, Mapping)
    if payload.get("endpoint") == "images":
        n = params.get("n", 1)
        return {"images": float(n)} if isinstance(n, int) and not isinstance(n, bool) and n > 0 else {"images": 1.0}
    most = next((params[p] for p in MAX_TOKEN_PARAMS if isinstance(params.get(p), int)), 0)
    prompt = payload.get("prompt")
    return {"tokens": float(max(0, most) + len(prompt if isinstance(prompt, str) else "") // CHARS_PER_TOKEN)}


def estimate_of(spec: TaskSpec, args: Sequence[Any], kwargs: Mapping[str, Any], provider: str) -> dict[str, float]:
    """The call's estimate ({} when its task declares none); InvalidInput when the declaration fails or
    returns something that is not {unit: amount >= 0}."""
    if spec.positional:
        return generate_estimate(provider, args[0] if args else None)
    declared = spec.estimate
    if declared is None:
        return {}
    if callable(declared):
        try:
            raw = declared(dict(kwargs))
        except Exception as exc:  # noqa: BLE001 - the user's function: its failure is one line
            raise InvalidInput(f"task {spec.name}: its estimate failed: {type(exc).__name__}: {exc}") from None
        return check_amounts(raw, f"task {spec.name}'s estimate")
    return dict(declared)
