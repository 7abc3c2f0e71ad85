"""Chaos run: N jobs with mixed simulated outcomes, W forking workers, one SIGKILLed and replaced every
K seconds. At the end every job id must be in exactly one terminal place (finished xor DLQ), none lost,
none completed twice, none stranded in a queue or registry, and no job whose first outcome was `ok`
dead-lettered.

    python -m bench.chaos --jobs 10000 --workers 3 --kill-every 2

Uses REDIS_URL when set, else an embedded server in a temporary home.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

MIX = [  # (weight, outcomes, max_retries)
    (55, ["ok"], None),
    (10, ["500", "ok"], None),
    (5, ["reset", "502", "ok"], None),
    (5, ["429:retry_after=0.2", "ok"], None),
    (5, ["timeout", "ok"], None),
    (4, ["crash", "ok"], None),
    (6, ["401"], None),
    (5, ["422"], None),
    (5, ["503"], 1),
]


@dataclass
class ChaosResult:
    jobs: int
    workers: int
    kills: int
    seconds: float
    finished: int = 0
    dead: int = 0
    lost: list[str] = field(default_factory=list)
    both: list[str] = field(default_factory=list)
    completed_twice: list[str] = field(default_factory=list)
    ok_first_but_dead: list[str] = field(default_factory=list)
    stranded: int = 0
    dead_by_reason: dict = field(default_factory=dict)
    crash_retries: int = 0

    @property
    def ok(self) -> bool:
        return not (self.lost or self.both or self.completed_twice or self.ok_first_but_dead or self.stranded) \
            and self.finished + self.dead == self.jobs


def _payloads(n: int, rng: random.Random):
    weights = [w for w, _, _ in MIX]
    for i in range(n):
        _, outcomes, max_retries = rng.choices(MIX, weights)[0]
        yield i, {"prompt": f"chaos {i}", "user_id": f"u{i % 17}", "simulate": outcomes}, max_retries


def run_chaos(env: dict[str, str], queue: str, *, jobs: int = 1000, workers: int = 3, kill_every: float = 2.0,
              deadline_s: float = 300.0, seed: int = 7, log_dir: str | None = None) -> ChaosResult:
    from genqueue.connection import connect_url
    from genqueue.dlq.store import DLQStore
    from genqueue.producer import enqueue
    from tests.helpers import WorkerProcess

    from genqueue.connection import EmbeddedServer

    env = dict(env, GENQUEUE_QUEUE=queue, GENQUEUE_TEST_LOGDIR=log_dir or tempfile.mkdtemp())
    conn = connect_url(env.get("REDIS_URL") or EmbeddedServer(Path(env["GENQUEUE_HOME"])).url)
    store = DLQStore(conn, queue, retention_s=7 * 86400)
    rng = random.Random(seed)
    first_ok: set[str] = set()
    ids: list[str] = []
    for i, payload, max_retries in _payloads(jobs, rng):
        job_id = f"{queue}-{i:06d}"  # unique per run: RQ job ids and result streams are global
        enqueue(conn, queue, payload, job_id=job_id, max_retries=max_retries)
        ids.append(job_id)
        if payload["simulate"][0] == "ok":
            first_ok.add(job_id)

    pool = [WorkerProcess(env, queue) for _ in range(workers)]
    kills = 0
    started = time.monotonic()
    next_kill = started + kill_every
    try:
        while True:
            finished, dead = _terminal_counts(conn, store, ids)
            if finished + dead == jobs:
                break
            now = time.monotonic()
            if now - started > deadline_s:
                break
            if now >= next_kill:
                victim = pool.pop(rng.randrange(len(pool)))
                victim.kill()
                victim.stop()
                kills += 1
                pool.append(WorkerProcess(env, queue))
                next_kill = now + kill_every * rng.uniform(0.5, 1.5)
            time.sleep(0.1)
    finally:
        elapsed = time.monotonic() - started
        for w in pool:
            w.stop()
    return _audit(conn, store, queue, ids, first_ok, ChaosResult(jobs, workers, kills, round(elapsed, 1)))


def _terminal_counts(conn, store, ids) -> tuple[int, int]:
    with conn.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hget(f"rq:job:{job_id}", "status")
            pipe.exists(store.keys.entry(job_id))
        replies = pipe.execute()
    finished = sum(1 for s in replies[::2] if s == b"finished")
    dead = sum(1 for s, d in zip(replies[::2], replies[1::2]) if d and s is None)
    return finished, dead


def _audit(conn, store, queue, ids, first_ok, result: ChaosResult) -> ChaosResult:
    from genqueue.queues import SERIALIZER
    from rq.job import Job

    with conn.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hget(f"rq:job:{job_id}", "status")
            pipe.exists(store.keys.entry(job_id))
            pipe.xlen(f"rq:results:{job_id}")
        replies = pipe.execute()
    reasons: Counter = Counter()
    for k, job_id in enumerate(ids):
        status, in_dlq, results = replies[3 * k: 3 * k + 3]
        finished = status == b"finished"
        if finished and in_dlq:
            result.both.append(job_id)
        elif finished:
            result.finished += 1
        elif in_dlq and status is None:
            result.dead += 1
            entry = store.get(job_id)
            reasons[entry["reason"]] += 1
            if job_id in first_ok:
                result.ok_first_but_dead.append(job_id)
        else:
            result.lost.append(job_id)
        if results > 1:  # RQ appends one result per completed run (and per failed run it records)
            successes = sum(1 for _, fields in conn.xrange(f"rq:results:{job_id}") if fields.get(b"type") == b"1")
            if successes > 1:
                result.completed_twice.append(job_id)
    result.dead_by_reason = dict(reasons)
    result.stranded = sum(
        conn.zcard(k) for k in (f"rq:wip:{queue}", f"rq:scheduled:{queue}")
    ) + conn.llen(f"rq:queue:{queue}") + conn.llen(f"rq:queue:{queue}:intermediate")
    for job in Job.fetch_many([j for j in ids if j not in set(result.lost)], connection=conn, serializer=SERIALIZER):
        if job is not None:
            result.crash_retries += sum(1 for h in job.meta.get("genqueue", {}).get("history", []) if h["kind"] == "CRASH")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--kill-every", type=float, default=2.0)
    parser.add_argument("--deadline", type=float, default=1800.0)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    home = tempfile.mkdtemp(prefix="gqchaos-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENQUEUE_")}
    env.update(GENQUEUE_HOME=home, GENQUEUE_BACKOFF_SCALE="0.01", GENQUEUE_LOG_FORMAT="json",
               GENQUEUE_SIM_LATENCY="0.005", GENQUEUE_LIVENESS_TTL="1", GENQUEUE_SWEEP_INTERVAL="0.3",
               PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    from genqueue.connection import EmbeddedServer

    server = None if env.get("REDIS_URL") else EmbeddedServer(Path(home))
    if server:
        server.start()
    try:
        result = run_chaos(env, f"chaos-{uuid.uuid4().hex[:6]}", jobs=args.jobs, workers=args.workers,
                           kill_every=args.kill_every, deadline_s=args.deadline, log_dir=home)
    finally:
        if server:
            server.stop()
    report = {**asdict(result), "ok": result.ok}
    for key in ("lost", "both", "completed_twice", "ok_first_but_dead"):
        report[key] = len(report[key])
    print(json.dumps(report, indent=2))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
