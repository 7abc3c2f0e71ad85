"""The generation job: payload schema, the provider protocol, and the function RQ runs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from ..errors import InvalidInput
from .bounds import MAX_DEPTH, check_json, nesting_exceeds  # noqa: F401 - nesting_exceeds: importers

JOB_FUNC = "genqueue.jobs.generate"
PAYLOAD_FIELDS = ("prompt", "model", "params", "user_id", "provider_job_id", "simulate")
# Request arguments genqueue builds itself (providers/openai.build_request): in params they would send
# another model, other messages or another endpoint than the ones the limit key and the breaker count, or
# reshape the SDK's request (any extra_*). Refused at enqueue for every provider, and again by the provider.
RESERVED_PARAMS = frozenset(
    {
        "model",
        "prompt",
        "messages",
        "input",
        "instructions",
        "previous_response_id",
        "conversation",
        "endpoint",
        "stream",
        "timeout",
        "idempotency_key",
        "extra_body",
        "extra_headers",
        "extra_query",
    }
)
MAX_PAYLOAD_DEPTH = MAX_DEPTH  # kept for importers; the bounds are tasks/bounds.py


class Provider(Protocol):
    """A generation provider. Errors it raises should carry `status_code` and, for 429s, `retry_after`."""

    def call(self, payload: Mapping[str, Any], *, attempt: int, job_id: str) -> dict[str, Any]: ...


def describe(payload: Any) -> str:
    """The RQ job description every producer of generation jobs uses (enqueue, runs, replay)."""
    return f"generate({payload.get('model', '') if isinstance(payload, Mapping) else ''!s})"


def validate_payload(payload: Any) -> dict[str, Any]:
    """The payload as a dict, or InvalidInput saying what is wrong with it."""
    if not isinstance(payload, dict):
        raise InvalidInput(f"payload must be a JSON object, not {type(payload).__name__}")
    check_json(payload, "payload")
    prompt = payload.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidInput("payload.prompt must be a non-empty string")
    if "model" in payload and not isinstance(payload["model"], str):
        raise InvalidInput("payload.model must be a string")
    if "params" in payload and not isinstance(payload["params"], dict):
        raise InvalidInput("payload.params must be an object")
    clash = reserved_in(payload.get("params") or {})
    if clash:
        raise InvalidInput(f"payload.params may not set {', '.join(clash)}: genqueue builds the request")
    if payload.get("user_id") is not None and not isinstance(payload["user_id"], (str, int)):
        raise InvalidInput("payload.user_id must be a string or an integer")
    if "simulate" in payload:
        from .providers.simulated import parse_outcomes

        parse_outcomes(payload["simulate"])  # raises InvalidInput on a bad directive
    return payload


def reserved_in(params: Mapping[str, Any]) -> list[str]:
    """The keys of `params` that genqueue sets itself (RESERVED_PARAMS, any extra_*), sorted."""
    return sorted(k for k in params if k in RESERVED_PARAMS or str(k).startswith("extra_"))


def generate(payload: dict[str, Any]) -> dict[str, Any]:
    """The function every generation job runs, inside the RQ work horse."""
    from rq import get_current_job

    from ..retry.meta import attempt_number
    from .providers import default_provider

    try:
        validate_payload(payload)
    except InvalidInput as exc:
        raise ValueError(str(exc)) from None  # classified PERMANENT: retrying cannot fix the payload
    job = get_current_job()
    attempt = attempt_number(job) if job is not None else 1
    job_id = job.id if job is not None else "local"
    return default_provider().call(payload, attempt=attempt, job_id=job_id)


def _register() -> None:
    from .registry import register_builtin

    register_builtin(generate)


_register()
