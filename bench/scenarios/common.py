"""What every scenario shares: the server, sizes, alternating repetitions, medians, key clean-up, command
counts, and the shape of a scenario's result (metrics + goals) that run.py prints and writes to JSON."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis import Redis

KEY_PREFIX = "gqbench"  # every queue and job id a bench run creates starts with it


@dataclass(frozen=True)
class Sizes:
    enqueue_jobs: int = 10_000
    enqueue_batch: int = 1_000  # jobs per Queue.enqueue_many call
    success_jobs: int = 2_000  # simple workers
    fork_jobs: int = 500  # forking workers: ~20 ms/job on 2 busy cores, see run.py --fork-jobs
    failure_jobs: int = 1_000
    dlq_entries: int = 1_000_000
    dlq_samples: int = 300  # latency samples per operation per repetition
    bulk_entries: int = 100_000
    bulk_baseline: int = 10_000  # failed jobs for `rq requeue --all` (a rate: see bulk.py)
    cli_runs: int = 5
    fair_jobs: int = 2_000  # tenant A's backlog in the fairness scenario (jobs of fair_ms)
    fair_ms: int = 50
    fair_workers: int = 4
    pop_jobs: int = 100_000  # the queue the pop is timed on, spread over 1 and over 1,000 tenants
    pop_samples: int = 5_000


FULL = Sizes()
SMOKE = Sizes(
    enqueue_jobs=50,
    enqueue_batch=20,
    success_jobs=50,
    fork_jobs=20,
    failure_jobs=30,
    dlq_entries=2_000,
    dlq_samples=20,
    bulk_entries=500,
    bulk_baseline=100,
    cli_runs=2,
    fair_jobs=40,
    fair_ms=5,
    fair_workers=2,
    pop_jobs=400,
    pop_samples=100,
)


@dataclass
class Ctx:
    """One bench run: the server, its sizes, and a token that makes every key name of this run unique."""

    conn: Redis
    url: str
    home: Path
    sizes: Sizes
    reps: int
    token: str
    smoke: bool = False

    def name(self, label: str) -> str:
        return f"{KEY_PREFIX}-{self.token}-{label}"


# -- results -------------------------------------------------------------------------------------------------
@dataclass
class Scenario:
    """A scenario's outcome: measured series (all runs kept, median reported), goals, notes."""

    name: str
    title: str
    sizes: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    rows: list[dict[str, str]] = field(default_factory=list)  # table rows, in order
    goals: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def measure(self, key: str, unit: str, runs: list[float], *, system: str) -> float:
        value = statistics.median(runs)
        self.metrics.setdefault(key, {})[system] = {"median": value, "unit": unit, "runs": runs}
        return value

    def row(self, measure: str, baseline: str, genqueue: str, ratio: str = "", goal: str = "", status: str = ""):
        self.rows.append(
            {
                "measure": measure,
                "baseline": baseline,
                "genqueue": genqueue,
                "ratio": ratio,
                "goal": goal,
                "status": status,
            }
        )

    def goal(self, text: str, measured: float, target: float, *, higher_is_better: bool, unit: str = "") -> str:
        """Record a goal; returns 'met' or 'missed by X %' (relative to the target)."""
        met = measured >= target if higher_is_better else measured <= target
        if met:
            status = "met"
        else:
            by = (target - measured) / target if higher_is_better else (measured - target) / target
            status = f"missed by {by:.0%}"
        self.goals.append(
            {
                "goal": text,
                "measured": measured,
                "target": target,
                "unit": unit,
                "higher_is_better": higher_is_better,
                "met": met,
                "status": status,
            }
        )
        return status

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "sizes": self.sizes,
            "metrics": self.metrics,
            "goals": self.goals,
            "notes": self.notes,
            "seconds": round(self.seconds, 2),
            "rows": self.rows,
        }


def compare(
    sc: Scenario,
    key: str,
    measure: str,
    rq_runs: list[float],
    gq_runs: list[float],
    *,
    unit: str,
    higher_is_better: bool,
    goal: float | None = None,
    fmt: str = "{:,.0f}",
    versus: str = "RQ",
) -> float:
    """Record an RQ-vs-genqueue pair and its ratio (>1: genqueue is faster) and table row; returns the ratio.
    `versus` names the baseline in the goal's text when it is not bare RQ."""
    rq = sc.measure(key, unit, rq_runs, system="rq")
    gq = sc.measure(key, unit, gq_runs, system="genqueue")
    ratio = gq / rq if higher_is_better else rq / gq
    sc.metrics[key]["ratio"] = ratio
    goal_text = status = ""
    if goal is not None:
        goal_text = f"≥ {goal:.2f}×"
        status = sc.goal(f"{sc.name}: {measure} ≥ {goal}× {versus}", ratio, goal, higher_is_better=True, unit="×")
    sc.row(measure, f"{fmt.format(rq)} {unit}", f"{fmt.format(gq)} {unit}", f"{ratio:.2f}×", goal_text, status)
    return ratio


# -- timing --------------------------------------------------------------------------------------------------
def alternate(reps: int, runners: dict[str, Callable[[int], float]]) -> dict[str, list[float]]:
    """Run each runner once per repetition, alternating which goes first, so drift hits both alike."""
    out: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    for rep in range(reps):
        for name in names if rep % 2 == 0 else names[::-1]:
            out[name].append(runners[name](rep))
    return out


def stop_processes(procs: list[subprocess.Popen], grace_s: float = 30) -> None:
    """SIGTERM each worker process still running, wait up to `grace_s` for each, SIGKILL what is left (plain
    RQ can sit in its 60-s pub/sub read after SIGTERM: stopping is clean-up, never what is measured)."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(grace_s)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def median(values: list[float]) -> float:
    return statistics.median(values)


# -- server --------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def bench_server() -> Iterator[tuple[str, Path, bool]]:
    """(url, home, embedded): REDIS_URL when set, else an embedded Valkey in a temporary GENQUEUE_HOME that
    is stopped and removed afterwards."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url, Path(os.environ.get("GENQUEUE_HOME") or tempfile.gettempdir()), False
        return
    from genqueue.backend.connection import EmbeddedServer

    home = Path(tempfile.mkdtemp(prefix="gqbench-"))
    server = EmbeddedServer(home)
    server.start()
    try:
        yield server.url, home, True
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


def server_info(conn: Redis) -> dict[str, Any]:
    info = conn.info("server")
    persistence = conn.info("persistence")
    return {
        "redis_version": info.get("redis_version"),
        "valkey_version": info.get("valkey_version"),
        "server_name": info.get("server_name", "redis"),
        "appendonly": bool(persistence.get("aof_enabled")),
    }


def quiet_logs() -> None:
    """Both systems log as in production (INFO), but into /dev/null so the table stays readable."""
    import genqueue.support.logs

    devnull = open(os.devnull, "w")  # lives as long as the process
    genqueue.support.logs.configure("json", stream=devnull, level=logging.INFO)
    for name in ("rq.worker", "rq.job", "rq.queue", "rq.scheduler"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [logging.StreamHandler(devnull)]  # RQ adds its stderr handler only when none
        logger.setLevel(logging.INFO)
        logger.propagate = False


# -- clean-up ------------------------------------------------------------------------------------------------
REGISTRY_TEMPLATES = (
    "rq:wip:{}",
    "rq:finished:{}",
    "rq:failed:{}",
    "rq:deferred:{}",
    "rq:scheduled:{}",
    "rq:canceled:{}",
)


def drop_queue(conn: Redis, queue: str, job_ids: list[str] | None = None) -> None:
    """Delete a bench queue: its jobs (given, or found in the queue and its registries) and RQ's keys."""
    ids = list(job_ids or [])
    if job_ids is None:
        ids = [i.decode() for i in conn.lrange(f"rq:queue:{queue}", 0, -1)]
        for template in REGISTRY_TEMPLATES:
            ids += [i.decode().split(":")[0] for i in conn.zrange(template.format(queue), 0, -1)]
    for start in range(0, len(ids), 2000):
        with conn.pipeline(transaction=False) as pipe:
            for job_id in ids[start : start + 2000]:
                pipe.unlink(
                    f"rq:job:{job_id}",
                    f"rq:results:{job_id}",
                    f"rq:executions:{job_id}",
                    f"rq:job:{job_id}:dependents",
                    f"rq:job:{job_id}:dependencies",
                )
            pipe.execute()
    conn.unlink(
        f"rq:queue:{queue}",
        f"rq:intermediate:{queue}",
        f"rq:workers:{queue}",
        f"rq:clean_registries:{queue}",
        f"rq:scheduler-lock:{queue}",
        *(t.format(queue) for t in REGISTRY_TEMPLATES),
    )
    conn.srem("rq:queues", f"rq:queue:{queue}")


# -- Redis command counts ------------------------------------------------------------------------------------
def command_counts(conn: Redis) -> Counter:
    stats = conn.info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()})


@contextlib.contextmanager
def counting(conn: Redis) -> Iterator[Counter]:
    """Counter of commands the server ran inside the block (server-wide: keep the server otherwise idle)."""
    delta: Counter = Counter()
    before = command_counts(conn)
    yield delta
    after = command_counts(conn)
    delta.update({k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0) > 0})
    delta["info"] -= 1  # our own INFO
    if delta["info"] <= 0:
        del delta["info"]
