"""Chaos run: N jobs with mixed simulated outcomes, W forking workers, one SIGKILLed and replaced every
K seconds; optionally the server SIGKILLed and restarted mid-run (--server-kills), and workers frozen with
SIGSTOP for longer than the liveness TTL, then resumed (--freezes). A worker that exits on its own is not
replaced (no supervisor): it is counted in `exited`, which must stay empty. At the end every job id must
be in exactly one terminal place (finished xor DLQ), none lost, none completed twice, none stranded in a
queue or registry (RQ's FailedJobRegistry included), and no job whose first outcome was `ok`
dead-lettered.

    python -m bench.chaos --jobs 10000 --workers 3 --kill-every 2 --server-kills 3 --freezes 5

Uses REDIS_URL when set, else an embedded server in a temporary home.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
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
    server_kills: int = 0
    freezes: int = 0
    exited: list[int] = field(default_factory=list)  # exit codes of workers that ended on their own

    @property
    def ok(self) -> bool:
        return not (self.lost or self.both or self.completed_twice or self.ok_first_but_dead or self.stranded
                    or self.exited) and self.finished + self.dead == self.jobs


def _payloads(n: int, rng: random.Random):
    weights = [w for w, _, _ in MIX]
    for i in range(n):
        _, outcomes, max_retries = rng.choices(MIX, weights)[0]
        yield i, {"prompt": f"chaos {i}", "user_id": f"u{i % 17}", "simulate": outcomes}, max_retries


def run_chaos(env: dict[str, str], queue: str, *, jobs: int = 1000, workers: int = 3, kill_every: float = 2.0,
              deadline_s: float = 300.0, seed: int = 7, log_dir: str | None = None, server_kills: int = 0,
              freezes: int = 0, freeze_s: float = 3.0, outage_s: float = 2.0) -> ChaosResult:
    """`server_kills` / `freezes`: how many, spread evenly over the run's progress. Server kills need the
    embedded server (no REDIS_URL): it is SIGKILLed, left down `outage_s`, then started again."""
    from genqueue.backend.connection import EmbeddedServer, connect_url
    from genqueue.backend.outage import PatientRetry
    from genqueue.dlq.store import DLQStore
    from genqueue.jobs.enqueue import enqueue
    from tests.helpers import WorkerProcess

    env = dict(env, GENQUEUE_QUEUE=queue, GENQUEUE_TEST_LOGDIR=log_dir or tempfile.mkdtemp())
    server = None if env.get("REDIS_URL") else EmbeddedServer(Path(env["GENQUEUE_HOME"]))
    if server_kills and server is None:
        raise ValueError("server kills need the embedded server (unset REDIS_URL)")
    conn = connect_url(env.get("REDIS_URL") or server.url, retry=PatientRetry(120))
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
    exited: list[int] = []
    server_marks = [jobs * (k + 1) // (server_kills + 1) for k in range(server_kills)]
    freeze_marks = [jobs * (k + 1) // (freezes + 2) for k in range(freezes)]
    frozen: list[tuple[float, object]] = []  # (thaw at, worker)
    done_kills = done_freezes = 0
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
            for w in [w for w in pool if not w.alive()]:  # ended on its own: no supervisor replaces it
                pool.remove(w)
                exited.append(w.proc.returncode)
                w.stop()
            for thaw_at, w in [f for f in frozen if f[0] <= now]:
                w.proc.send_signal(signal.SIGCONT)
                frozen.remove((thaw_at, w))
            if done_kills < server_kills and finished + dead >= server_marks[done_kills]:
                os.kill(int(server.pidfile.read_text()), signal.SIGKILL)
                time.sleep(outage_s)  # the outage itself
                server.start()
                done_kills += 1
            thawed = [w for w in pool if all(w is not f for _, f in frozen)]
            if done_freezes < freezes and finished + dead >= freeze_marks[done_freezes] and thawed:
                victim = rng.choice(thawed)
                victim.proc.send_signal(signal.SIGSTOP)
                frozen.append((now + freeze_s, victim))
                done_freezes += 1
            if now >= next_kill and thawed:
                victim = thawed[rng.randrange(len(thawed))]
                pool.remove(victim)
                victim.kill()
                victim.stop()
                kills += 1
                pool.append(WorkerProcess(env, queue))
                next_kill = now + kill_every * rng.uniform(0.5, 1.5)
            time.sleep(0.1)
    finally:
        elapsed = time.monotonic() - started
        for _, w in frozen:
            w.proc.send_signal(signal.SIGCONT)
        for w in pool:
            if not w.alive():
                exited.append(w.proc.returncode)
            w.stop()
    result = ChaosResult(jobs, workers, kills, round(elapsed, 1), server_kills=done_kills, freezes=done_freezes,
                         exited=exited)
    return _audit(conn, store, queue, ids, first_ok, result)


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
    from rq.job import Job

    from genqueue.backend.queues import SERIALIZER

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
        conn.zcard(k) for k in (f"rq:wip:{queue}", f"rq:scheduled:{queue}", f"rq:failed:{queue}")
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
    parser.add_argument("--server-kills", type=int, default=0,
                        help="SIGKILL the embedded server this many times mid-run (down --outage s each)")
    parser.add_argument("--outage", type=float, default=2.0)
    parser.add_argument("--freezes", type=int, default=0,
                        help="SIGSTOP a worker this many times, for --freeze-s (> the 1 s liveness TTL)")
    parser.add_argument("--freeze-s", type=float, default=3.0)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    home = tempfile.mkdtemp(prefix="gqchaos-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENQUEUE_")}
    env.update(GENQUEUE_HOME=home, GENQUEUE_BACKOFF_SCALE="0.01", GENQUEUE_LOG_FORMAT="json",
               GENQUEUE_SIM_LATENCY="0.005", GENQUEUE_LIVENESS_TTL="1", GENQUEUE_SWEEP_INTERVAL="0.3",
               PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    from genqueue.backend.connection import EmbeddedServer

    server = None if env.get("REDIS_URL") else EmbeddedServer(Path(home))
    if server:
        server.start()
    try:
        result = run_chaos(env, f"chaos-{uuid.uuid4().hex[:6]}", jobs=args.jobs, workers=args.workers,
                           kill_every=args.kill_every, deadline_s=args.deadline, log_dir=home,
                           server_kills=args.server_kills, outage_s=args.outage, freezes=args.freezes,
                           freeze_s=args.freeze_s)
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
