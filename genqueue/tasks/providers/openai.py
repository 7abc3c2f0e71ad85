"""Any OpenAI-compatible endpoint, through the official `openai` SDK (`pip install 'genqueue[openai]'`).

Configured by the SDK's own variables (OPENAI_API_KEY, OPENAI_BASE_URL, OPENAI_ORG_ID, …) and
GENQUEUE_PROVIDER_TIMEOUT. Payload: `{"prompt", "model", "params", "endpoint"}`, endpoint one of

    images     client.images.generate(model=…, prompt=…, **params)            (the default)
    chat       client.chat.completions.create(model=…, messages=[{"role": "user", "content": prompt}], **params)
    responses  client.responses.create(model=…, input=prompt, **params)

The result is the API's answer as JSON (`model_dump(mode="json")`), with every base64 image (images:
`data[i].b64_json`; responses: an `image_generation_call`'s `result`) written to the artifact store and
replaced by `"uri"`.

A successful answer whose `x-ratelimit-remaining-requests` (or `-tokens`) is 0 pauses the job's limit key
until its `x-ratelimit-reset-*` (providers/headers.py), so the key's next jobs park instead of calling into
a 429. The client makes exactly one HTTP request per call: `max_retries=0`, because genqueue retries the job
(the SDK's default of 2 retries would multiply with genqueue's and can sleep past the job timeout), and a
timeout below the job's. The job id goes out as `Idempotency-Key`, so a provider that honours it does not
bill a retry after a timeout twice; a canceled job's request is closed (providers/abort.py). The SDK is
imported on first use, so the other providers never load it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from typing import Any

from ...errors import InvalidInput
from ...support.secrets import check_credential
from ..artifacts import location
from ..context import current
from ..generate import reserved_in
from .abort import abort_on_cancel, abortable_transport, httpx_of
from .headers import pause_if_spent
from .timeouts import call_timeout, configured_timeout

ENDPOINTS = ("images", "chat", "responses")
DEFAULT_ENDPOINT = "images"
MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"GIF8", "gif"),
    (b"<svg", "svg"),
    (b"<?xml", "svg"),
)


def sdk():
    """The openai module, or one clear line saying how to install it."""
    try:
        import openai
    except ImportError:
        raise InvalidInput("GENQUEUE_PROVIDER=openai needs the openai SDK: pip install 'genqueue[openai]'") from None
    return openai


def build_request(payload: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(endpoint, keyword arguments of the SDK method) for a payload; ValueError (PERMANENT) if it can't be."""
    endpoint = payload.get("endpoint", DEFAULT_ENDPOINT)
    if endpoint not in ENDPOINTS:
        raise ValueError(f"payload.endpoint must be one of {', '.join(ENDPOINTS)}, not {endpoint!r}")
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise ValueError("payload.model must name the model for the openai provider")
    params = payload.get("params") or {}
    if not isinstance(params, Mapping):
        raise ValueError("payload.params must be an object")
    clash = reserved_in(params)  # refused at enqueue already (generate.validate_payload); again here
    if clash:
        raise ValueError(f"payload.params may not set {', '.join(clash)} (genqueue sets them)")
    prompt = payload["prompt"]
    if endpoint == "images":
        return endpoint, {"model": model, "prompt": prompt, **params}
    if endpoint == "chat":
        return endpoint, {"model": model, "messages": [{"role": "user", "content": prompt}], **params}
    return endpoint, {"model": model, "input": prompt, **params}


def usage_of(endpoint: str, result: Mapping[str, Any]) -> dict[str, float]:
    """What a response says it spent: its `usage` (chat's prompt/completion tokens, the responses and
    images APIs' input/output tokens) and, for images, how many came back. {} when it says nothing."""
    usage = result.get("usage") if isinstance(result.get("usage"), Mapping) else {}
    assert isinstance(usage, Mapping)

    def number(*names: str) -> float | None:
        for name in names:
            value = usage.get(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
                return float(value)
        return None

    spent: dict[str, float] = {}
    inp, out = number("input_tokens", "prompt_tokens"), number("output_tokens", "completion_tokens")
    if inp is not None:
        spent["input_tokens"] = inp
    if out is not None:
        spent["output_tokens"] = out
    if endpoint == "images" and isinstance(result.get("data"), list):
        spent["images"] = float(len(result["data"]))
    return spent


def method_of(client: Any, endpoint: str) -> Callable[..., Any]:
    if endpoint == "images":
        return client.images.generate
    if endpoint == "chat":
        return client.chat.completions.create
    return client.responses.create


def image_format(data: bytes, declared: Any) -> str:
    """The file extension of an image: the format the API declared, else sniffed from its first bytes."""
    if isinstance(declared, str) and declared.isalnum():
        return declared.lower()
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return next((ext for magic, ext in MAGIC if data.startswith(magic)), "bin")


def externalize(endpoint: str, result: dict[str, Any], put: Callable[[str, bytes], str]) -> dict[str, Any]:
    """`result` with each base64 image replaced by `"uri": put(name, bytes)`; names 0.png, 1.png, … in order."""
    if endpoint == "images":
        items, field, declared = result.get("data") or [], "b64_json", result.get("output_format")
    elif endpoint == "responses":
        items = [
            o for o in result.get("output") or [] if isinstance(o, dict) and o.get("type") == "image_generation_call"
        ]
        field, declared = "result", None
    else:
        return result
    n = 0
    for item in items:
        encoded = item.get(field) if isinstance(item, dict) else None
        if not isinstance(encoded, str) or not encoded:
            continue
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"the provider's {field} is not valid base64") from None
        item["uri"] = put(f"{n}.{image_format(data, item.get('output_format', declared))}", data)
        item[field] = None
        n += 1
    return result


class OpenAIProvider:
    def __init__(self, client: Any, *, timeout_s: float, store: Any, openai_module: Any):
        self.client = client
        self.timeout_s = timeout_s
        self.store = store
        self._openai = openai_module

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> OpenAIProvider:
        from ..artifacts import default_store

        openai = sdk()
        timeout_s = configured_timeout(env)
        try:
            client = openai.OpenAI(
                api_key=check_credential("OPENAI_API_KEY", env.get("OPENAI_API_KEY")) or None,
                base_url=env.get("OPENAI_BASE_URL") or None,
                max_retries=0,
                timeout=timeout_s,
                # the SDK's own client settings, on a transport whose request a cancel closes (abort.py)
                http_client=openai.DefaultHttpxClient(
                    transport=abortable_transport(httpx_of(openai.DefaultHttpxClient))
                ),
            )
        except openai.OpenAIError as exc:  # e.g. no OPENAI_API_KEY: a configuration error, said in one line
            raise InvalidInput(f"openai provider: {exc}") from None
        return cls(client, timeout_s=timeout_s, store=default_store(env), openai_module=openai)

    def call(self, payload: Mapping[str, Any], *, attempt: int, job_id: str) -> dict[str, Any]:
        endpoint, kwargs = build_request(payload)
        method = method_of(self.client.with_raw_response, endpoint)  # the same call, its headers kept
        # The SDK's errors go to the classifier as they are: it reads their status, retry-after-ms,
        # Retry-After, x-should-retry and the x-ratelimit-* headers, and knows APITimeoutError/
        # APIConnectionError by type and cause.
        with abort_on_cancel():  # the job canceled: the request is closed, JobCanceled raised (abort.py)
            raw = method(**kwargs, extra_headers={"Idempotency-Key": job_id}, timeout=call_timeout(self.timeout_s))
        pause_if_spent(raw.headers)  # a 200 with x-ratelimit-remaining-*: 0 pauses the key until the reset
        result = raw.parse().model_dump(mode="json")
        spent = usage_of(endpoint, result)
        ctx = current()
        if spent and ctx is not None:  # settles the key's unit limits and is recorded as the job's usage
            ctx.usage(**spent)
        where = location(job_id)
        return externalize(endpoint, result, lambda name, data: self.store.put(where, name, data))
