"""The token storm's task and lab provider (bench.scenarios.tokens): an LLM-shaped call that spends the prompt's
tokens (its length / 4) plus the tokens it generates, against a provider that lets at most TOKENLAB_LIMIT
tokens through in any sliding window of TOKENLAB_WINDOW_MS (tokenlab.lua), answering 429 with the reset
headers (`x-ratelimit-reset-tokens`, Retry-After) beyond it. The task declares its estimate the way the
built-in openai one does: max_tokens + the prompt's length / 4; it reports what it spent."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from rq import get_current_job

import genqueue
from genqueue.tasks.providers.simulated import ProviderError

LAB = Path(__file__).with_name("tokenlab.lua").read_text()
WINDOW_KEY, STATS_KEY = "genqueue:bench:tokenlab:window", "genqueue:bench:tokenlab:stats"
LATENCY_S = 0.05


def estimate(kw) -> dict[str, float]:
    return {"tokens": kw["max_tokens"] + len(kw["prompt"]) // 4}


@genqueue.task(name="bench.tokenlab.llm", limit_key="tokenlab:{model}", estimate=estimate, timeout=60)
def llm(prompt: str, max_tokens: int, output_tokens: int, model: str = "lab") -> dict:
    conn = get_current_job().connection
    spent_in, spent_out = len(prompt) // 4, output_tokens
    window_ms, limit = int(os.environ["TOKENLAB_WINDOW_MS"]), int(os.environ["TOKENLAB_LIMIT"])
    ok, reset_ms = conn.eval(
        LAB, 2, WINDOW_KEY, STATS_KEY, int(time.time() * 1000), window_ms, limit, spent_in + spent_out, uuid.uuid4().hex
    )
    if not int(ok):
        error = ProviderError(429, "rate limit reached for tokens per min", retry_after=int(reset_ms) / 1000)
        error.headers.update({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": f"{int(reset_ms)}ms"})
        raise error
    time.sleep(LATENCY_S)
    ctx = genqueue.current()
    assert ctx is not None
    ctx.usage(input_tokens=spent_in, output_tokens=spent_out)
    return {"tokens": spent_in + spent_out}
