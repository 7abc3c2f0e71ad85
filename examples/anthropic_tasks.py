"""A user task that calls Anthropic's Messages API: SDK retries off, a timeout inside the job's.

pip install anthropic
genqueue worker --tasks examples.anthropic_tasks
genqueue enqueue examples.anthropic_tasks.summarise --kwargs '{"text": "…"}'
"""

from __future__ import annotations

import anthropic

import genqueue

client = anthropic.AsyncAnthropic(max_retries=0, timeout=100)  # ANTHROPIC_API_KEY from the environment


@genqueue.task(timeout=120)
async def summarise(text: str, model: str = "claude-sonnet-4-5", max_tokens: int = 400) -> dict:
    # An async task: a worker runs it on an event loop. Errors (429 with retry-after, 529 overloaded,
    # APIConnectionError) are raised as the SDK raises them; genqueue's classifier knows them.
    message = await client.messages.create(
        model=model, max_tokens=max_tokens, messages=[{"role": "user", "content": f"Summarise:\n\n{text}"}]
    )
    return {"summary": message.content[0].text, "usage": message.usage.model_dump()}
