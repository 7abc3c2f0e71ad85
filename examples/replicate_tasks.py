"""A user task that runs a Replicate model and waits for it, bounded by the job's deadline.

    pip install replicate
    genqueue worker --tasks examples.replicate_tasks
    genqueue enqueue examples.replicate_tasks.upscale --kwargs '{"image": "https://…/fox.png"}'

Replicate's client keeps no response headers on its errors (so a 429's Retry-After is not seen; genqueue
falls back to its RATE_LIMITED backoff) and `predictions.create()` has no timeout unless you give `wait`;
this task passes one and polls no longer than the job may run.
"""

from __future__ import annotations

import time

import replicate

import genqueue

client = replicate.Client()  # REPLICATE_API_TOKEN from the environment


@genqueue.task(timeout=600)
def upscale(image: str, scale: int = 2, version: str = "nightmareai/real-esrgan") -> dict:
    ctx = genqueue.current()
    prediction = client.models.predictions.create(model=version, input={"image": image, "scale": scale}, wait=30)
    while prediction.status not in ("succeeded", "failed", "canceled"):
        if ctx.deadline is not None and time.time() > ctx.deadline - 10:
            prediction.cancel()
            raise TimeoutError(f"replicate prediction {prediction.id} still {prediction.status} at the deadline")
        time.sleep(2)
        prediction.reload()
    if prediction.status != "succeeded":
        raise genqueue.PermanentError(f"prediction {prediction.id} {prediction.status}: {prediction.error}")
    return {"output": prediction.output, "prediction_id": prediction.id}
