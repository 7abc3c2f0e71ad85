"""The demo: real worker processes, a provider that injects faults, live progress and a summary by kind.

Library defaults stay those of the design; the demo's workers run with GENQUEUE_BACKOFF_SCALE=0.04
(base 5 s → 0.2 s) so a run of ~200 jobs with retries finishes in well under a minute.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from rq.job import Job, JobStatus

from ..backend.queues import SERIALIZER
from ..dlq.store import DLQStore
from ..settings import Settings

DEMO_BACKOFF_SCALE = "0.04"
DEMO_LATENCY_S = "0.25"  # a generation call takes a while; override with GENQUEUE_SIM_LATENCY
PROMPTS = [
    "a red fox in snow",
    "a lighthouse at dusk",
    "an isometric city",
    "a cat astronaut",
    "a bowl of ramen",
    "a watercolor forest",
    "a neon street at night",
    "a paper boat",
    "a desert caravan",
    "a koi pond",
]
MODELS = ["sim-image-1", "sim-image-2", "sim-llm-small"]


@dataclass
class Tally:
    finished: int = 0
    dead: int = 0
    retrying: int = 0
    running: int = 0
    queued: int = 0

    @property
    def done(self) -> int:
        return self.finished + self.dead


@dataclass
class Summary:
    failures_by_kind: Counter = field(default_factory=Counter)
    retried_by_kind: Counter = field(default_factory=Counter)
    dead_by_kind: Counter = field(default_factory=Counter)
    dead_by_reason: Counter = field(default_factory=Counter)
    finished: int = 0
    finished_after_retry: int = 0
    dead_ids: list[str] = field(default_factory=list)


def start_workers(settings: Settings, count: int, log_dir: Path) -> list[subprocess.Popen]:
    env = dict(
        os.environ, GENQUEUE_BACKOFF_SCALE=DEMO_BACKOFF_SCALE, GENQUEUE_LOG_FORMAT="json", GENQUEUE_QUEUE=settings.queue
    )
    env.setdefault("GENQUEUE_SIM_LATENCY", DEMO_LATENCY_S)
    log_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    for i in range(count):
        log = open(log_dir / f"demo-worker-{i + 1}.log", "ab")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "genqueue", "worker", "--name", f"demo-{os.getpid()}-{i + 1}"],
                env=env,
                stdout=log,
                stderr=log,
            )
        )
    return procs


def stop_workers(procs: list[subprocess.Popen], timeout: float = 15.0) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)  # warm shutdown: finish the current job, then exit
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def make_payloads(n: int, rng: random.Random) -> list[tuple[dict, int | None]]:
    jobs = []
    for i in range(n):
        payload = {
            "prompt": f"{rng.choice(PROMPTS)} #{i}",
            "model": rng.choice(MODELS),
            "params": {"steps": rng.choice([20, 30, 50])},
            "user_id": f"user-{rng.randint(1, 8)}",
        }
        max_retries = 1 if rng.random() < 0.1 else None  # a few impatient jobs show exhaustion early
        jobs.append((payload, max_retries))
    return jobs


def tally(connection, store: DLQStore, job_ids: list[str]) -> Tally:
    with connection.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hget(Job.key_for(job_id), "status")
            pipe.exists(store.keys.entry(job_id))
        replies = pipe.execute()
    t = Tally()
    for status, dead in zip(replies[::2], replies[1::2], strict=False):
        status = status.decode() if status else None
        if dead and status is None:
            t.dead += 1
        elif status == JobStatus.FINISHED.value:
            t.finished += 1
        elif status == JobStatus.SCHEDULED.value:
            t.retrying += 1
        elif status == JobStatus.STARTED.value:
            t.running += 1
        else:
            t.queued += 1
    return t


def summarise(connection, store: DLQStore, job_ids: list[str]) -> Summary:
    s = Summary()
    jobs = Job.fetch_many(job_ids, connection=connection, serializer=SERIALIZER)
    for job_id, job in zip(job_ids, jobs, strict=False):
        if job is not None:
            history = job.meta.get("genqueue", {}).get("history", [])
            s.finished += 1
            s.finished_after_retry += bool(history)
        else:
            entry = store.get(job_id)
            history = entry["history"]
            s.dead_ids.append(job_id)
            s.dead_by_kind[entry["error"]["kind"]] += 1
            s.dead_by_reason[entry["reason"]] += 1
        for h in history:
            s.failures_by_kind[h["kind"]] += 1
            if h["action"] == "retry":
                s.retried_by_kind[h["kind"]] += 1
    return s
