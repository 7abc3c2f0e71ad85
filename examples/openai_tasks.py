"""A user task that calls OpenAI, written the genqueue way: the SDK's retries off (genqueue retries, with
classified backoff and the server's retry-after-ms), a client timeout inside the job's, the job id as the
idempotency key, and large outputs stored as artifacts instead of in the result.

    pip install 'genqueue[openai]'
    genqueue worker --tasks examples.openai_tasks
    genqueue enqueue examples.openai_tasks.caption --kwargs '{"image_url": "https://…/fox.png"}'
"""

from __future__ import annotations

import base64

import openai

import genqueue
from genqueue.tasks.artifacts import put

client = openai.OpenAI(max_retries=0, timeout=100)  # OPENAI_API_KEY / OPENAI_BASE_URL from the environment


@genqueue.task(timeout=120, max_retries=4)
def caption(image_url: str, model: str = "gpt-4o-mini") -> dict:
    ctx = genqueue.current()
    answer = client.chat.completions.create(
        model=model,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Caption this image in one line."},
                    {"type": "image_url", "image_url": {"url": image_url}},
                ],
            }
        ],
        extra_headers={"Idempotency-Key": ctx.job_id},
    )
    return {"caption": answer.choices[0].message.content, "model": answer.model}


@genqueue.task(timeout=300, policy={"RATE_LIMITED": {"max": 10}})
def image(prompt: str, size: str = "1024x1024") -> dict:
    ctx = genqueue.current()
    result = client.images.generate(
        model="gpt-image-1", prompt=prompt, size=size, extra_headers={"Idempotency-Key": ctx.job_id}
    )
    uris = [put(ctx.job_id, f"{n}.png", base64.b64decode(item.b64_json)) for n, item in enumerate(result.data)]
    return {"images": uris}  # a result is at most 1 MiB: store the bytes, return where they are
