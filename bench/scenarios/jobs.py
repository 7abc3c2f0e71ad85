"""Job functions the bench's workers run; the same functions for bare RQ and genqueue."""

from __future__ import annotations

from typing import Any

NOOP = "bench.scenarios.jobs.noop"
FLAKY = "bench.scenarios.jobs.flaky"
PROVIDER_CALL = "bench.scenarios.jobs.provider_call"
MARK = "bench.scenarios.jobs.mark"


class BenchProviderError(Exception):
    """Shaped like a provider's HTTP 503, so genqueue classifies it TRANSIENT."""

    status_code = 503


def noop(payload: dict[str, Any]) -> int:
    return len(payload)


def mark(payload: dict[str, Any]) -> int:
    """Appends its job id to the list `payload["log"]` as it starts (the order jobs are taken in), then
    sleeps `payload["ms"]`: a job of known length."""
    import time

    from rq import get_current_job

    job = get_current_job()
    job.connection.rpush(payload["log"], job.id)
    time.sleep(float(payload.get("ms", 0)) / 1000)
    return 1


def failed_attempts(job) -> int:
    """Attempts of this job that failed so far, read from what each system already loaded with the job
    (no extra Redis command): genqueue's history records, or RQ's Retry countdown."""
    meta = job.meta.get("genqueue")
    if meta is not None:
        return len(meta.get("history") or [])
    if job.retries_left is None:
        return 0
    return int(job.meta.get("bench_retries", 0)) - int(job.retries_left)


def flaky(payload: dict[str, Any]) -> int:
    """Fails `payload["fail"]` times, then succeeds."""
    from rq import get_current_job

    job = get_current_job()
    if failed_attempts(job) < int(payload["fail"]):
        raise BenchProviderError("HTTP 503: service temporarily unavailable (bench)")
    return 1


def provider_call(payload: dict[str, Any]) -> dict[str, Any]:
    """Bare RQ's generate: one call of the provider GENQUEUE_PROVIDER names (the simulated one, with its
    shared GENQUEUE_SIM_RATE_LIMIT), as genqueue's built-in task makes it; its errors just fail the job."""
    from rq import get_current_job

    from genqueue.tasks.providers import default_provider

    job = get_current_job()
    return default_provider().call(payload, attempt=failed_attempts(job) + 1, job_id=job.id)


def _register() -> None:
    """genqueue workers run registered tasks only: the bench's functions are tasks under their dotted names
    (the names bare RQ imports), taking one positional payload like the built-in generate."""
    from genqueue.tasks.registry import TaskSpec, register

    from . import iojobs

    register(TaskSpec(NOOP, noop, positional=True))
    register(TaskSpec(FLAKY, flaky, positional=True))
    register(TaskSpec(MARK, mark, positional=True))
    register(TaskSpec(iojobs.WAIT_SYNC, iojobs.wait_sync, positional=True))
    register(TaskSpec(iojobs.WAIT_ASYNC, iojobs.wait_async, positional=True))


_register()
