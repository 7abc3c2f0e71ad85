"""Chaos run: N jobs with mixed simulated outcomes, W workers, one SIGKILLed and replaced every K seconds;
optionally the server SIGKILLed and restarted mid-run (--server-kills), and workers frozen with SIGSTOP for
longer than the liveness TTL, then resumed (--freezes). A worker that exits on its own is not replaced (no
supervisor): it is counted in `exited`, which must stay empty. At the end every job id must be in exactly
one terminal place (finished xor DLQ), none lost, none completed twice, none stranded in a queue or registry
(RQ's FailedJobRegistry included), and no job whose first outcome was `ok` dead-lettered.

Provider limits (issue 21): --limit-concurrency N and/or --limit-rate R (e.g. 40/s) declare limits on the
run's limit key `simulated:<queue>` (`genqueue limits set`), and --provider-rate R makes the simulated
provider itself answer 429 + Retry-After beyond R calls (GENQUEUE_SIM_RATE_LIMIT). With a tight limit most
jobs sit parked at any moment; each server kill waits (3 s at most) for a moment with jobs parked and slots
held. The end state must then also have no parked list left non-empty, no job still `deferred`, the queue's
parked counter (`genqueue:parked`) back to 0 and no live slot lease left in the key's `slots`.

A concurrent worker (issue 22): --concurrent N makes one of the W workers a `--concurrency N` worker; every
W-th kill of the rotation is aimed at it, as soon as it has a job in flight (1 s at most). A job of the mix's
`crash` outcome SIGKILLs the whole process there (there is no work horse): such a death, exit -9 not sent by
the run, is counted in `self_crashes` and the worker replaced; any other exit of any worker is in `exited`.
--latency S sets the simulated provider's latency (default 5 ms: more in flight at each kill when longer).

Failovers (issue 28): --failovers N runs on a replication group (a primary, two replicas, three sentinels;
bench/failover.py) through its `redis+sentinel://` URL with GENQUEUE_WAIT_REPLICAS=all, forces N failovers
at even marks of progress (--failover-how: `SENTINEL FAILOVER` and SIGKILL of the primary in turn, by
default), and has a producer enqueue --late of the jobs (a fifth by default) while the run goes on. The report
gains `failover`: each failover's promotion and resume times, the producer's acknowledged enqueues and
NotDurable repeats, and the successful provider calls made twice (a ledger file outside Redis); its
`summary` has workers exited, resume times, acknowledged enqueues lost, jobs unfinished, duplicated calls.

    python -m bench.chaos --jobs 10000 --workers 3 --kill-every 2 --server-kills 3 --freezes 5
    python -m bench.chaos --jobs 1000 --workers 3 --failovers 2
    python -m bench.chaos --jobs 2000 --concurrent 8 --limit-concurrency 4 --limit-rate 60/s \\
        --provider-rate 60/s --server-kills 2 --freezes 2

Uses REDIS_URL when set, else an embedded server in a temporary home. Prints the result as JSON; exit 0
when every check holds, 1 when one fails, 2 (one line on stderr) for a bad limit or --concurrent option.
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
FAILOVER_HOWS = ("alternate", "sentinel", "sigkill", "sigkill-stay")  # bench/failover.py's HOWS
KILL_WAIT_S = 1.0  # how long a kill aimed at the concurrent worker waits for it to have a job in flight
SERVER_KILL_WAIT_S = 3.0  # how long a server kill waits for jobs parked and slots held (with a limit)


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
    # -- limits (issue 21) ------------------------------------------------------------------------------------
    limit_key: str | None = None
    deferred: list[str] = field(default_factory=list)  # jobs still parked (RQ status deferred) at the end
    parked_left: int = 0  # ids left in the key's parked lists
    parked_counter: int = 0  # genqueue:parked's count for the queue
    slots_held: list[str] = field(default_factory=list)  # live slot leases left (their holders are done)
    max_parked: int = 0  # the most jobs seen parked at once
    at_server_kills: list[dict] = field(default_factory=list)  # {"parked": n, "slots": n} at each server kill
    at_kills: list[tuple[int, int]] = field(default_factory=list)  # (jobs parked, slots held) at each worker kill
    limit_counters: dict = field(default_factory=dict)  # the key's throttled/paused/parked/woken/... totals
    provider_429: int = 0  # 429s of the simulated provider's own shared limit
    # -- the concurrent worker (issue 22) ---------------------------------------------------------------------
    concurrent: int = 0  # its --concurrency (0: none in the mix)
    concurrent_kills: list[int] = field(default_factory=list)  # jobs in flight on it at each of its kills
    concurrent_crash_retries: int = 0  # CRASH retries of jobs abandoned by a dead concurrent worker
    self_crashes: int = 0  # concurrent worker deaths from the mix's `crash` outcome (the whole process)
    # -- the breaker (issue 21) -------------------------------------------------------------------------------
    down_key: str | None = None  # a second limit key whose provider is down for the first down_for_s
    down_jobs: int = 0
    down_dead: list[str] = field(default_factory=list)  # its jobs dead-lettered: the outage must cost none
    down_deferred: list[str] = field(default_factory=list)  # its jobs still parked at the end
    breaker: dict = field(default_factory=dict)  # its breaker: opens, probes, held, final state
    # -- failovers (--failovers: bench/failover.py's FailoverReport) --------------------------------------------
    failover: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (
            not (
                self.lost
                or self.both
                or self.completed_twice
                or self.ok_first_but_dead
                or self.stranded
                or self.exited
                or self.deferred
                or self.parked_left
                or self.parked_counter
                or self.slots_held
                or self.down_dead
                or self.down_deferred
                or (self.down_jobs and self.breaker.get("state") != "closed")
            )
            and self.finished + self.dead == self.jobs
        )


def _payloads(n: int, rng: random.Random, model: str, down_jobs: int = 0, down_flag: str = ""):
    """The mix; with down_jobs, that many of the n (spread evenly) go to the model `<model>-down`, whose
    provider answers 503 while the run holds `down_flag` up, then succeeds: the breaker's outage."""
    weights = [w for w, _, _ in MIX]
    stride = max(1, n // down_jobs) if down_jobs else 0
    for i in range(n):
        if stride and i % stride == 0 and i // stride < down_jobs:
            yield (
                i,
                {
                    "prompt": f"chaos {i}",
                    "user_id": f"u{i % 17}",
                    "simulate": [f"down_while={down_flag}"],
                    "model": f"{model}-down",
                },
                None,
            )
            continue
        _, outcomes, max_retries = rng.choices(MIX, weights)[0]
        yield i, {"prompt": f"chaos {i}", "user_id": f"u{i % 17}", "simulate": outcomes, "model": model}, max_retries


class _Pool:
    """The run's workers. The `--concurrency N` one (if any) is named `<queue>-conc-<k>`, so its jobs in
    flight and the CRASH retries it leaves are found by name; it is replaced by another such worker."""

    def __init__(self, env: dict[str, str], queue: str, workers: int, concurrent: int) -> None:
        self.env, self.queue, self.concurrent = env, queue, concurrent
        self.names: list[str] = []  # of every concurrent worker started
        self.members = [self.start(bool(concurrent) and i == 0) for i in range(workers)]

    def start(self, conc: bool):
        from tests.helpers import WorkerProcess

        name = f"{self.queue}-conc-{len(self.names)}" if conc else None
        extra = ("--concurrency", str(self.concurrent), "--name", name) if conc else ()
        w = WorkerProcess(self.env, self.queue, extra=extra)
        w.concurrent_name = name
        if name:
            self.names.append(name)
        return w

    def replace(self, w) -> None:
        self.members.remove(w)
        w.stop()
        self.members.append(self.start(w.concurrent_name is not None))


def run_chaos(
    env: dict[str, str],
    queue: str,
    *,
    jobs: int = 1000,
    workers: int = 3,
    kill_every: float = 2.0,
    deadline_s: float = 300.0,
    seed: int = 7,
    log_dir: str | None = None,
    server_kills: int = 0,
    freezes: int = 0,
    freeze_s: float = 3.0,
    outage_s: float = 2.0,
    concurrent: int = 0,
    limit_concurrency: int | None = None,
    limit_rate: str | None = None,
    provider_rate: str | None = None,
    down_jobs: int = 0,
    down_for_s: float = 12.0,
    group=None,
    failovers: int = 0,
    failover_how: str = "alternate",
    late: int = 0,
    late_rate: float = 20.0,
    restart_s: float | None = None,
) -> ChaosResult:
    """`server_kills` / `freezes`: how many, spread evenly over the run's progress. Server kills need the
    embedded server (no REDIS_URL): it is SIGKILLed, left down `outage_s`, then started again.
    `concurrent` N: one of the `workers` is a `--concurrency N` worker. `limit_concurrency` / `limit_rate`:
    declared on the run's limit key; `provider_rate`: the simulated provider's own limit (429 beyond it).
    `down_jobs`: that many of the jobs use a second key, `simulated:<queue>-down` (breaker cooldown 1 s),
    whose provider is down (503) for at least the run's first `down_for_s` and until its breaker has opened,
    let two probes through and held jobs (at most 5 x `down_for_s`, so a slow machine still sees the whole
    cycle): it must open, probe, reopen and close while workers and the server are killed, and the outage
    must dead-letter none of them.
    `group` (bench/failover.py's replication group, REDIS_URL its sentinel URL): `failovers` forced at marks
    of progress (`failover_how`), and `late` of the jobs enqueued during the run by a producer at
    `late_rate`/s (waiting for every replica when GENQUEUE_WAIT_REPLICAS is set): `result.failover`."""
    from genqueue.backend import keys
    from genqueue.backend.connection import EmbeddedServer, connect_url
    from genqueue.backend.outage import PatientRetry
    from genqueue.dlq.store import DLQStore
    from genqueue.limits.rules import generate_key
    from genqueue.limits.store import set_limits

    if concurrent and workers < 2:
        raise ValueError("a concurrent worker is one of the workers: use at least 2")
    env = dict(env, GENQUEUE_QUEUE=queue, GENQUEUE_TEST_LOGDIR=log_dir or tempfile.mkdtemp())
    if provider_rate:
        env["GENQUEUE_SIM_RATE_LIMIT"] = provider_rate
    server = None if env.get("REDIS_URL") else EmbeddedServer(Path(env["GENQUEUE_HOME"]))
    if server_kills and server is None:
        raise ValueError("server kills need the embedded server (unset REDIS_URL)")
    conn = connect_url(env.get("REDIS_URL") or server.url, retry=PatientRetry(120))
    store = DLQStore(conn, queue, retention_s=7 * 86400)
    model = queue  # a limit key of the run's own: `simulated:<queue>`
    limit_key = generate_key(env.get("GENQUEUE_PROVIDER") or "simulated", {"model": model})
    limited = bool(limit_concurrency or limit_rate)
    if limited:
        set_limits(conn, limit_key, concurrency=limit_concurrency, rate=limit_rate)
    down_key = generate_key(env.get("GENQUEUE_PROVIDER") or "simulated", {"model": f"{model}-down"})
    if down_jobs:
        set_limits(conn, down_key, cooldown_s=1.0)
    conn.delete(keys.SIM_WINDOW, keys.SIM_STATS)
    rng = random.Random(seed)
    down_flag = f"{queue}-down"
    if down_jobs:
        conn.set(keys.sim_down(down_flag), 1, ex=int(deadline_s) + 60)
    payloads = list(_payloads(jobs, rng, model, down_jobs, down_flag))
    from bench.failover import FailoverRun, NoFailovers

    run = (
        FailoverRun(
            env,
            queue,
            payloads,
            _job_id,
            group=group,
            failovers=failovers,
            how=failover_how,
            late=late,
            late_rate=late_rate,
            restart_s=restart_s,
            seed=seed,
            jobs=jobs,
        )
        if group is not None
        else NoFailovers(payloads)
    )
    ids, first_ok, down_ids = _enqueue_all(conn, queue, run.early, model)
    late_ids, late_ok = run.late_ids()
    ids, first_ok = ids + late_ids, first_ok | late_ok

    pool = _Pool(env, queue, workers, concurrent)
    run.start(deadline_s)
    started = time.monotonic()
    mayhem = _Mayhem(
        pool,
        _Probe(conn, queue, limit_key),
        rng,
        server,
        jobs=jobs,
        concurrent=concurrent,
        limited=limited,
        kill_every=kill_every,
        next_kill=started + kill_every,
        server_kills=server_kills,
        outage_s=outage_s,
        freezes=freezes,
        freeze_s=freeze_s,
    )
    outage = _Outage(conn, down_key, keys.sim_down(down_flag), started, down_for_s) if down_jobs else None
    try:
        while True:
            finished, dead = _terminal_counts(conn, store, ids)
            if finished + dead == jobs:
                break
            now = time.monotonic()
            if now - started > deadline_s:
                break
            if outage is not None:
                outage.tick(now)
            run.tick(now, finished + dead)
            time.sleep(0.1 if mayhem.tick(now, finished + dead) else 0.01)
    finally:
        elapsed = time.monotonic() - started
        mayhem.stop()
        run.stop()
    result = ChaosResult(
        jobs,
        workers,
        mayhem.kills,
        round(elapsed, 1),
        server_kills=mayhem.done_kills,
        freezes=mayhem.done_freezes,
        exited=mayhem.exited,
        limit_key=limit_key,
        max_parked=mayhem.max_parked,
        at_server_kills=mayhem.at_server_kills,
        at_kills=mayhem.at_kills,
        concurrent=concurrent,
        concurrent_kills=mayhem.concurrent_kills,
        self_crashes=mayhem.self_crashes,
        down_key=down_key if down_jobs else None,
        down_jobs=len(down_ids),
    )
    ids = run.settle(result, ids)
    return _audit(conn, store, queue, ids, first_ok, result, set(pool.names), set(down_ids))


def _job_id(queue: str, i: int) -> str:
    return f"{queue}-{i:06d}"  # unique per run: RQ job ids and result streams are global


class _Outage:
    """Ends the down key's provider outage once the breaker has been seen through its cycle (opened, two
    probes let through, jobs held) and `down_for_s` has passed, or at 5 x `down_for_s` whatever it saw."""

    def __init__(self, conn, down_key: str, flag_key: str, started: float, down_for_s: float):
        self.conn, self.down_key, self.flag_key = conn, down_key, flag_key
        self.not_before, self.at_latest = started + down_for_s, started + 5 * down_for_s
        self.next_look = 0.0
        self.over = False

    def tick(self, now: float) -> None:
        from genqueue.limits.store import describe

        if self.over or now < self.not_before or now < self.next_look:
            return
        self.next_look = now + 0.5
        try:
            [row] = describe(self.conn, self.down_key)
        except Exception:  # noqa: BLE001 - the server may be down mid-chaos: look again at the next tick
            return
        seen = row["counters"]
        if now >= self.at_latest or (
            seen.get("breaker_opens", 0) >= 1 and seen.get("probes", 0) >= 2 and seen.get("held", 0) > 0
        ):
            try:
                self.conn.delete(self.flag_key)
                self.over = True
            except Exception:  # noqa: BLE001 - as above
                return


def _enqueue_all(conn, queue: str, payloads, model: str) -> tuple[list[str], set[str], list[str]]:
    """Enqueue the mix: every job id, those whose first outcome is `ok`, those on the down key."""
    from genqueue.jobs.enqueue import enqueue

    first_ok: set[str] = set()
    ids: list[str] = []
    down_ids: list[str] = []
    for i, payload, max_retries in payloads:
        job_id = _job_id(queue, i)
        enqueue(conn, queue, payload, job_id=job_id, max_retries=max_retries)
        ids.append(job_id)
        if payload["simulate"][0] == "ok":
            first_ok.add(job_id)
        if payload["model"] != model:
            down_ids.append(job_id)
    return ids, first_ok, down_ids


class _Mayhem:
    """What the run does to the workers and the server, one tick at a time: replace workers that died of
    the mix's crash (count the others as exited), thaw frozen workers, kill the server and freeze a worker
    at their marks of progress, and kill a worker every ~`kill_every` seconds."""

    def __init__(
        self,
        pool: _Pool,
        probe: _Probe,
        rng: random.Random,
        server,
        *,
        jobs: int,
        concurrent: int,
        limited: bool,
        kill_every: float,
        next_kill: float,
        server_kills: int,
        outage_s: float,
        freezes: int,
        freeze_s: float,
    ) -> None:
        self.pool, self.probe, self.rng, self.server = pool, probe, rng, server
        self.concurrent, self.limited, self.kill_every, self.next_kill = concurrent, limited, kill_every, next_kill
        self.server_kills, self.outage_s, self.freezes, self.freeze_s = server_kills, outage_s, freezes, freeze_s
        self.workers = len(pool.members)
        self.server_marks = [jobs * (k + 1) // (server_kills + 1) for k in range(server_kills)]
        self.freeze_marks = [jobs * (k + 1) // (freezes + 2) for k in range(freezes)]
        self.kills = self.self_crashes = self.done_kills = self.done_freezes = self.max_parked = 0
        self.exited: list[int] = []
        self.concurrent_kills: list[int] = []
        self.at_kills: list[tuple[int, int]] = []
        self.at_server_kills: list[dict] = []
        self.frozen: list[tuple[float, object]] = []  # (thaw at, worker)
        self.server_due_since: float | None = None
        self.aim_since: float | None = None

    def tick(self, now: float, progress: int) -> bool:
        """One round at `progress` jobs terminal. False: a kill aimed at the concurrent worker waits for it to
        have a job in flight (tick again soon)."""
        self.max_parked = max(self.max_parked, self.probe.parked())
        self._reap()
        for thaw_at, w in [f for f in self.frozen if f[0] <= now]:
            w.proc.send_signal(signal.SIGCONT)
            self.frozen.remove((thaw_at, w))
        if self.done_kills < self.server_kills and progress >= self.server_marks[self.done_kills]:
            self._kill_server(now)
        thawed = [w for w in self.pool.members if all(w is not f for _, f in self.frozen)]
        if self.done_freezes < self.freezes and progress >= self.freeze_marks[self.done_freezes] and thawed:
            victim = self.rng.choice(thawed)
            victim.proc.send_signal(signal.SIGSTOP)
            self.frozen.append((now + self.freeze_s, victim))
            self.done_freezes += 1
        if now >= self.next_kill and thawed:
            return self._kill_worker(now, thawed)
        return True

    def _reap(self) -> None:
        for w in [w for w in self.pool.members if not w.alive()]:  # ended on its own: no supervisor
            if w.concurrent_name and w.proc.returncode == -signal.SIGKILL:  # the mix's crash took the process
                self.self_crashes += 1
                self.pool.replace(w)
                continue
            self.pool.members.remove(w)
            self.exited.append(w.proc.returncode)
            w.stop()

    def _kill_server(self, now: float) -> None:
        self.server_due_since = self.server_due_since or now
        parked, slots = self.probe.parked(), self.probe.slots()
        if not self.limited or (parked and slots) or now - self.server_due_since > SERVER_KILL_WAIT_S:
            self.at_server_kills.append({"parked": parked, "slots": slots})
            os.kill(int(self.server.pidfile.read_text()), signal.SIGKILL)
            time.sleep(self.outage_s)  # the outage itself
            self.server.start()
            self.done_kills += 1
            self.server_due_since = None

    def _kill_worker(self, now: float, thawed: list) -> bool:
        aimed = [w for w in thawed if w.concurrent_name] if self.concurrent and self.kills % self.workers == 0 else []
        victim = aimed[0] if aimed else self.rng.choice([w for w in thawed if not w.concurrent_name] or thawed)
        in_flight = self.probe.in_flight(victim.concurrent_name) if victim.concurrent_name else 0
        self.aim_since = self.aim_since or now
        if victim.concurrent_name and not in_flight and now - self.aim_since < KILL_WAIT_S:
            return False  # aimed at the concurrent worker: kill it with jobs in flight
        self.at_kills.append((self.probe.parked(), self.probe.slots()))
        victim.kill()
        self.kills += 1
        if victim.concurrent_name:
            self.concurrent_kills.append(in_flight)
        self.pool.replace(victim)
        self.next_kill = now + self.kill_every * self.rng.uniform(0.5, 1.5)
        self.aim_since = None
        return True

    def stop(self) -> None:
        """Resume the frozen workers and stop every worker, counting those that had ended on their own."""
        for _, w in self.frozen:
            w.proc.send_signal(signal.SIGCONT)
        for w in self.pool.members:
            if w.concurrent_name and w.proc.poll() == -signal.SIGKILL:
                self.self_crashes += 1
            elif not w.alive():
                self.exited.append(w.proc.returncode)
            w.stop()


class _Probe:
    """Reads of the run's state while it runs: parked jobs, held slots, a worker's jobs in flight."""

    def __init__(self, conn, queue: str, limit_key: str) -> None:
        from genqueue.backend import keys

        self.conn, self.queue = conn, queue
        self.parked_key, self.slots_key = keys.PARKED, keys.limit_prefix(limit_key) + "slots"

    def parked(self) -> int:
        return int(self.conn.hget(self.parked_key, self.queue) or 0)

    def slots(self) -> int:
        return self.conn.zcount(self.slots_key, int(time.time() * 1000), "+inf")

    def in_flight(self, worker_name: str) -> int:
        """How many executions of this worker are in the queue's started registry."""
        from genqueue.backend import keys

        members = self.conn.zrange(f"rq:wip:{self.queue}", 0, -1)
        with self.conn.pipeline(transaction=False) as pipe:
            for member in members:
                pipe.hget(keys.RQ_EXECUTION_PREFIX.encode() + member, "worker_name")
            owners = pipe.execute()
        return sum(1 for o in owners if o == worker_name.encode())


def _terminal_counts(conn, store, ids) -> tuple[int, int]:
    with conn.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hget(f"rq:job:{job_id}", "status")
            pipe.exists(store.keys.entry(job_id))
        replies = pipe.execute()
    finished = sum(1 for s in replies[::2] if s == b"finished")
    dead = sum(1 for s, d in zip(replies[::2], replies[1::2], strict=False) if d and s is None)
    return finished, dead


def _audit(
    conn, store, queue, ids, first_ok, result: ChaosResult, concurrent_names: set[str], down_ids: set[str] = frozenset()
) -> ChaosResult:
    from rq.job import Job

    from genqueue.backend import keys
    from genqueue.backend.queues import SERIALIZER

    with conn.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hget(f"rq:job:{job_id}", "status")
            pipe.exists(store.keys.entry(job_id))
            pipe.xlen(f"rq:results:{job_id}")
        replies = pipe.execute()
    reasons: Counter = Counter()
    for k, job_id in enumerate(ids):
        status, in_dlq, results = replies[3 * k : 3 * k + 3]
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
            if job_id in down_ids:
                result.down_dead.append(job_id)
        elif status == b"deferred":  # parked on its limit and never woken: stranded, not lost
            (result.down_deferred if job_id in down_ids else result.deferred).append(job_id)
        else:
            result.lost.append(job_id)
        if results > 1:  # RQ appends one result per completed run (and per failed run it records)
            successes = sum(1 for _, fields in conn.xrange(f"rq:results:{job_id}") if fields.get(b"type") == b"1")
            if successes > 1:
                result.completed_twice.append(job_id)
    result.dead_by_reason = dict(reasons)
    result.stranded = (
        sum(conn.zcard(k) for k in (f"rq:wip:{queue}", f"rq:scheduled:{queue}", f"rq:failed:{queue}"))
        + conn.llen(f"rq:queue:{queue}")
        + conn.llen(f"rq:queue:{queue}:intermediate")
    )
    _audit_limits(conn, queue, result)
    result.provider_429 = int(conn.hget(keys.SIM_STATS, "rate_limited") or 0)
    for job in Job.fetch_many([j for j in ids if j not in set(result.lost)], connection=conn, serializer=SERIALIZER):
        if job is not None:
            for h in job.meta.get("genqueue", {}).get("history", []):
                if h["kind"] == "CRASH":
                    result.crash_retries += 1
                    result.concurrent_crash_retries += h.get("worker") in concurrent_names
    return result


def _audit_limits(conn, queue: str, result: ChaosResult) -> None:
    """The limit keys' end state: parked lists and counter, live slot leases, counters, the down key's breaker."""
    from genqueue.backend import keys
    from genqueue.limits.store import describe

    prefix = keys.limit_prefix(result.limit_key)
    result.parked_left = sum(conn.llen(k) for k in conn.scan_iter(match=_glob_escape(prefix) + "parked:*"))
    result.parked_counter = int(conn.hget(keys.PARKED, queue) or 0)
    now_ms = int(time.time() * 1000)
    result.slots_held = [m.decode() for m in conn.zrangebyscore(prefix + "slots", now_ms, "+inf")]
    [row] = describe(conn, result.limit_key)
    result.limit_counters = row["counters"]
    if result.down_key:
        [down] = describe(conn, result.down_key)
        down_prefix = keys.limit_prefix(result.down_key)
        result.parked_left += sum(conn.llen(k) for k in conn.scan_iter(match=_glob_escape(down_prefix) + "parked:*"))
        result.breaker = {
            "opens": down["counters"].get("breaker_opens", 0),
            "probes": down["counters"].get("probes", 0),
            "held": down["counters"].get("held", 0),
            "state": down["state"],
        }


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


def chaos_env(home: str, latency: float) -> dict[str, str]:
    """The environment of a chaos run's processes: fast backoff, 1 s liveness, frequent sweeps."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENQUEUE_")}
    env.update(
        GENQUEUE_HOME=home,
        GENQUEUE_BACKOFF_SCALE="0.01",
        GENQUEUE_LOG_FORMAT="json",
        GENQUEUE_SIM_LATENCY=str(latency),
        GENQUEUE_LIVENESS_TTL="1",
        GENQUEUE_SWEEP_INTERVAL="0.3",
        PYTHONPATH=str(Path(__file__).resolve().parents[1]),
    )
    return env


def failover_env(env: dict[str, str], url: str, *, wait_replicas: bool = True) -> dict[str, str]:
    """`env` on a replication group's sentinel URL, patient through a failover, acknowledging writes only
    once every replica has them (unless not `wait_replicas`)."""
    env = dict(env, REDIS_URL=url, GENQUEUE_WAIT_TIMEOUT="1", GENQUEUE_REDIS_OUTAGE_S="60")
    if wait_replicas:
        env["GENQUEUE_WAIT_REPLICAS"] = "all"
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--kill-every", type=float, default=2.0)
    parser.add_argument("--deadline", type=float, default=1800.0)
    parser.add_argument(
        "--server-kills",
        type=int,
        default=0,
        help="SIGKILL the embedded server this many times mid-run (down --outage s each)",
    )
    parser.add_argument("--outage", type=float, default=2.0)
    parser.add_argument(
        "--freezes",
        type=int,
        default=0,
        help="SIGSTOP a worker this many times, for --freeze-s (> the 1 s liveness TTL)",
    )
    parser.add_argument("--freeze-s", type=float, default=3.0)
    parser.add_argument(
        "--concurrent",
        type=int,
        default=0,
        metavar="N",
        help="one of the workers runs with --concurrency N (and is every W-th kill's victim)",
    )
    parser.add_argument(
        "--limit-concurrency",
        type=int,
        default=None,
        metavar="N",
        help="declare a concurrency cap on the run's limit key simulated:<queue>",
    )
    parser.add_argument("--limit-rate", default=None, metavar="R", help="declare a rate on it, e.g. 40/s")
    parser.add_argument(
        "--provider-rate",
        default=None,
        metavar="R",
        help="the simulated provider's own limit (GENQUEUE_SIM_RATE_LIMIT): 429 beyond R",
    )
    parser.add_argument(
        "--down-jobs",
        type=int,
        default=0,
        metavar="N",
        help="N of the jobs use a second key whose provider is down (503) for --down-for s: "
        "its breaker opens, probes and closes mid-chaos",
    )
    parser.add_argument("--down-for", type=float, default=12.0, metavar="S")
    parser.add_argument(
        "--latency",
        type=float,
        default=0.005,
        metavar="S",
        help="the simulated provider's latency per call (GENQUEUE_SIM_LATENCY)",
    )
    parser.add_argument(
        "--failovers",
        type=int,
        default=0,
        metavar="N",
        help="run on a replication group (primary, 2 replicas, 3 sentinels; a redis+sentinel:// URL and "
        "GENQUEUE_WAIT_REPLICAS=all) and force N failovers mid-run",
    )
    parser.add_argument("--failover-how", default="alternate", choices=FAILOVER_HOWS)
    parser.add_argument(
        "--late",
        type=int,
        default=None,
        metavar="N",
        help="with --failovers: N of the jobs (default a fifth) enqueued during the run by a producer",
    )
    parser.add_argument("--late-rate", type=float, default=20.0, metavar="R", help="the producer's enqueues per second")
    parser.add_argument(
        "--no-wait-replicas", action="store_true", help="with --failovers: leave GENQUEUE_WAIT_REPLICAS off"
    )
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from genqueue.errors import InvalidInput
    from genqueue.limits.rules import Limits
    from genqueue.support.logs import configure

    configure("console")  # this process's own logs (a patient producer's reconnects) to stderr: stdout is the report

    try:
        Limits.parse(
            {
                k: v
                for k, v in (("concurrency", args.limit_concurrency), ("rate", args.limit_rate), ("max_wait", None))
                if v is not None
            }
        )
        if args.provider_rate:
            Limits.parse({"rate": args.provider_rate})
        if args.down_jobs < 0 or args.down_jobs > args.jobs or args.down_for <= 0:
            raise InvalidInput("--down-jobs N needs 0 ≤ N ≤ --jobs, and --down-for a positive number of seconds")
        if args.concurrent < 0 or (args.concurrent and args.workers < 2):
            raise InvalidInput("--concurrent N needs N ≥ 1 and --workers ≥ 2 (it is one of them)")
        if args.failovers < 0 or (args.failovers and args.server_kills):
            raise InvalidInput("--failovers N needs N ≥ 0 and no --server-kills (the group is not the embedded server)")
        if args.late is not None and not 0 <= args.late <= args.jobs or args.late_rate <= 0:
            raise InvalidInput("--late N needs 0 ≤ N ≤ --jobs, and --late-rate a positive number")
    except InvalidInput as exc:
        print(f"bench.chaos: {exc}", file=sys.stderr)
        return 2
    home = tempfile.mkdtemp(prefix="gqchaos-")
    env = chaos_env(home, args.latency)
    from genqueue.backend.connection import EmbeddedServer

    group = None
    if args.failovers:
        from bench.failover import start_group

        group = start_group(Path(home) / "ha")
        env = failover_env(env, group.url, wait_replicas=not args.no_wait_replicas)
    server = None if env.get("REDIS_URL") else EmbeddedServer(Path(home))
    if server:
        server.start()
    try:
        result = run_chaos(
            env,
            f"chaos-{uuid.uuid4().hex[:6]}",
            jobs=args.jobs,
            workers=args.workers,
            kill_every=args.kill_every,
            deadline_s=args.deadline,
            log_dir=home,
            server_kills=args.server_kills,
            outage_s=args.outage,
            freezes=args.freezes,
            freeze_s=args.freeze_s,
            concurrent=args.concurrent,
            limit_concurrency=args.limit_concurrency,
            limit_rate=args.limit_rate,
            provider_rate=args.provider_rate,
            down_jobs=args.down_jobs,
            down_for_s=args.down_for,
            group=group,
            failovers=args.failovers,
            failover_how=args.failover_how,
            late=(args.jobs // 5 if args.late is None else args.late) if group else 0,
            late_rate=args.late_rate,
        )
    finally:
        if server:
            server.stop()
        if group:
            group.stop()
    report = {**asdict(result), "ok": result.ok}
    for key in (
        "lost",
        "both",
        "completed_twice",
        "ok_first_but_dead",
        "deferred",
        "slots_held",
        "down_dead",
        "down_deferred",
    ):
        report[key] = len(report[key])
    report["at_kills"] = {
        "kills": len(result.at_kills),
        "with_jobs_parked": sum(1 for p, _ in result.at_kills if p),
        "with_jobs_parked_and_slots_held": sum(1 for p, s in result.at_kills if p and s),
    }
    if result.failover:
        report["failover"]["summary"] = {
            "workers_exited": len(result.exited),
            "resumed_s": [f.get("resumed_s") for f in result.failover["failovers"]],
            "acknowledged_enqueues_lost": len(result.lost),
            "jobs_unfinished": result.jobs - result.finished - result.dead,
            "duplicated_provider_calls": result.failover["duplicated_calls"],
        }
    print(json.dumps(report, indent=2))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
