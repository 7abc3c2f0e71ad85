"""Scenario — I/O-bound jobs (issue 22): 400 jobs that only wait 2 s, 50 at a time, on each system:

- genqueue `worker --concurrency 50`, with an `async def` task (the event loop) and with a sync one (threads);
- 50 `genqueue worker` processes (forking, what a default user runs) and 50 `genqueue worker --simple`;
- 50 bare `rq worker` processes, and `rq worker-pool -n 50` (one parent forking 50 workers);
- saq (the `bench` extra): one process, concurrency 50 ("not installed" when absent).

And 500 in flight: 1,000 jobs of 2 s, genqueue `--concurrency 500` (async and sync) against saq concurrency 500.

Per system, processes started fresh for each repetition, with the same env (REDIS_URL, GENQUEUE_HOME):
- start-up: from the first spawn until the worker side is ready to take jobs: every RQ worker (genqueue's
  are RQ workers) registered in `rq:workers:<queue>`; saq's worker wrote its `worker_info` key (its upkeep
  does so right before its consumers start);
- makespan: the jobs are enqueued once the workers are ready, and makespan runs from just before the
  enqueue to the last job's end (RQ's `ended_at`, saq's `completed`), ÷ the ideal jobs ÷ width × wait;
- memory: PSS (/proc/PID/smaps_rollup) summed over every process of the worker side (the spawned
  processes and their descendants, forked work horses included), sampled every 0.25 s while jobs are in
  flight; the peak is reported.

genqueue's and the bench's modules are byte-compiled before the first run, as an installed package's are: a
environment with PYTHONDONTWRITEBYTECODE (this one) would otherwise have every genqueue worker compile ~60
modules from source at each start (~0.1 s of start-up, measured), where saq and RQ start from their .pyc.

Goals (the issue's), on both genqueue `--concurrency 50` rows: PSS ≤ 1.5× saq's and ≤ 1/20 of 50 RQ
processes', makespan ≤ 1.05× the ideal, start-up ≤ 0.5 s. The 500-in-flight rows are reported, no goals.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .common import Ctx, Scenario, drop_queue
from .iojobs import WAIT_ASYNC, WAIT_SYNC

ROOT = Path(__file__).resolve().parents[2]
FULL = {"jobs": 400, "width": 50, "wait": 2.0, "wide_jobs": 1000, "wide_width": 500}
SMOKE = {"jobs": 4, "width": 2, "wait": 0.2, "wide_jobs": 10, "wide_width": 5}
SAMPLE_S = 0.25
TASKS = "bench.scenarios.jobs"


@dataclass(frozen=True)
class System:
    key: str
    label: str
    kind: str  # "rq": RQ-registered workers (genqueue, rq); "saq"
    command: Callable[[Ctx, str, int], list[list[str]]]  # (ctx, queue, width) -> one argv per process
    func: str = WAIT_SYNC
    processes: bool = False  # width processes (else one)


def _bin(name: str) -> str:
    return os.path.join(os.path.dirname(sys.executable), name)


def _gq(*extra: str) -> list[str]:
    return [sys.executable, "-m", "genqueue", "worker", "--tasks", TASKS, *extra]


def _gq_concurrent(ctx: Ctx, queue: str, width: int) -> list[list[str]]:
    return [_gq(queue, "--concurrency", str(width))]


def _gq_procs(simple: bool) -> Callable[[Ctx, str, int], list[list[str]]]:
    return lambda ctx, queue, width: [_gq(queue, *(["--simple"] if simple else [])) for _ in range(width)]


def _rq_procs(ctx: Ctx, queue: str, width: int) -> list[list[str]]:
    return [[_bin("rq"), "worker", "-u", ctx.url, "-S", "json", "-q", queue] for _ in range(width)]


def _rq_pool(ctx: Ctx, queue: str, width: int) -> list[list[str]]:
    return [[_bin("rq"), "worker-pool", "-n", str(width), "-u", ctx.url, "-S", "json", "-q", queue]]


def _saq(ctx: Ctx, queue: str, width: int) -> list[list[str]]:
    return [[sys.executable, "-m", "saq", "bench.scenarios.iojobs.saq_settings", "--quiet"]]


GQ_ASYNC = System("gq_async", "genqueue --concurrency {w}, async task", "rq", _gq_concurrent, WAIT_ASYNC)
GQ_SYNC = System("gq_sync", "genqueue --concurrency {w}, sync task", "rq", _gq_concurrent)
GQ_FORK = System("gq_fork", "{w} genqueue worker processes (fork)", "rq", _gq_procs(False), processes=True)
GQ_SIMPLE = System("gq_simple", "{w} genqueue worker --simple processes", "rq", _gq_procs(True), processes=True)
RQ_PROCS = System("rq", "{w} rq worker processes", "rq", _rq_procs, processes=True)
RQ_POOL = System("rq_pool", "rq worker-pool -n {w}", "rq", _rq_pool, processes=True)
SAQ = System("saq", "saq, 1 process, concurrency {w}", "saq", _saq)


def saq_installed() -> bool:
    return importlib.util.find_spec("saq") is not None


# -- memory --------------------------------------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    out = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(c) for c in f.read().split()]
    return out


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:  # it exited (a work horse between jobs)
        pass
    return 0


def tree_pss_mib(roots: list[int]) -> float:
    """PSS of the processes and all their descendants, in MiB."""
    seen, todo, total = set(), list(roots), 0
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += _pss_kib(pid)
        todo += _children(pid)
    return total / 1024


class PeakPss(threading.Thread):
    def __init__(self, roots: list[int]) -> None:
        super().__init__(daemon=True)
        self.roots, self.peak, self.samples = roots, 0.0, 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(SAMPLE_S):
            self.peak = max(self.peak, tree_pss_mib(self.roots))
            self.samples += 1

    def stop(self) -> float:
        self._stop_event.set()
        self.join()
        return self.peak


# -- one run -------------------------------------------------------------------------------------------------
def _env(ctx: Ctx, queue: str, width: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GENQUEUE_", "BENCH_SAQ_"))}
    env.update(
        GENQUEUE_HOME=str(ctx.home),
        GENQUEUE_LOG_FORMAT="json",
        REDIS_URL=ctx.url,
        PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        BENCH_SAQ_URL=ctx.url,
        BENCH_SAQ_QUEUE=queue,
        BENCH_SAQ_CONCURRENCY=str(width),
    )
    return env


def _ready(ctx: Ctx, system: System, queue: str, width: int) -> bool:
    if system.kind == "saq":
        return bool(ctx.conn.zcard(f"saq:{queue}:stats"))
    return ctx.conn.scard(f"rq:workers:{queue}") >= (width if system.processes else 1)


def _enqueue_rq(ctx: Ctx, queue: str, func: str, n: int, wait: float) -> list[str]:
    from .success import fill_queue

    return fill_queue(ctx, queue, n, func=func, payload=lambda i: {"s": wait})


def _ended_rq(ctx: Ctx, queue: str, ids: list[str], n: int) -> list[float] | None:
    if ctx.conn.zcard(f"rq:finished:{queue}") < n:
        failed = ctx.conn.zcard(f"rq:failed:{queue}")
        if failed:
            raise RuntimeError(f"{queue}: {failed} job(s) failed")
        return None
    with ctx.conn.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hget(f"rq:job:{job_id}", "ended_at")
        ended = pipe.execute()
    return [datetime.strptime(e.decode(), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp() for e in ended]


def _enqueue_saq(ctx: Ctx, queue: str, n: int, wait: float) -> list[str]:
    from .iojobs import saq_queue

    async def go() -> list[str]:
        q = saq_queue(ctx.url, queue)
        try:
            jobs = await asyncio.gather(*(q.enqueue("saq_wait", s=wait, timeout=60) for _ in range(n)))
        finally:
            await q.disconnect()
        return [job.id for job in jobs]

    return asyncio.run(go())


def _ended_saq(ctx: Ctx, queue: str, ids: list[str], n: int) -> list[float] | None:
    if ctx.conn.zcard(f"saq:{queue}:incomplete") or ctx.conn.llen(f"saq:{queue}:queued"):
        return None
    jobs = [json.loads(raw) for raw in ctx.conn.mget(ids) if raw]
    done = [j for j in jobs if j.get("status") == "complete"]
    if len(done) < n:
        bad = [j.get("status") for j in jobs if j.get("status") != "complete"]
        if len(jobs) == n and all(s in ("failed", "aborted") for s in bad):
            raise RuntimeError(f"saq {queue}: {len(bad)} job(s) {bad[0]}")
        return None
    return [j["completed"] / 1000 for j in done]


def _progress(ctx: Ctx, system: System, queue: str) -> str:
    c = ctx.conn
    if system.kind == "saq":
        return f"incomplete {c.zcard(f'saq:{queue}:incomplete')}, active {c.llen(f'saq:{queue}:active')}"
    return (
        f"finished {c.zcard(f'rq:finished:{queue}')}, started {c.zcard(f'rq:wip:{queue}')}, queued "
        f"{c.llen(f'rq:queue:{queue}')}, popped {c.llen(f'rq:intermediate:{queue}')}, failed "
        f"{c.zcard(f'rq:failed:{queue}')}, scheduled {c.zcard(f'rq:scheduled:{queue}')}"
    )


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGTERM)  # the group: rq worker-pool's workers and every work horse
    # Measured already: this is clean-up. A plain `rq worker` can sit on redis-py's 60 s pub/sub poll after
    # SIGTERM (the stall genqueue's workers fixed), so whatever is still up after 5 s is SIGKILLed.
    deadline = time.monotonic() + 5
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)


def _clean(ctx: Ctx, system: System, queue: str, ids: list[str]) -> None:
    if system.kind == "saq":
        keys = list(ctx.conn.scan_iter(f"saq:{queue}:*", count=1000)) + ids
        for start in range(0, len(keys), 1000):
            ctx.conn.unlink(*keys[start : start + 1000])
    else:
        drop_queue(ctx.conn, queue, ids)


def run_one(ctx: Ctx, system: System, n: int, width: int, wait: float) -> dict[str, float]:
    queue = ctx.name(f"io-{system.key}-{width}-{time.monotonic_ns()}")
    env = _env(ctx, queue, width)
    argvs = system.command(ctx, queue, width)
    ids: list[str] = []
    procs: list[subprocess.Popen] = []
    log = tempfile.TemporaryFile()  # the workers' stderr, shown if they fail to start
    try:
        spawned = time.perf_counter()
        procs = [
            subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
            for argv in argvs
        ]
        deadline = spawned + 120
        while not _ready(ctx, system, queue, width):
            dead = [p.returncode for p in procs if p.poll() is not None]
            if dead or time.perf_counter() > deadline:
                log.seek(0)
                tail = log.read()[-1500:].decode(errors="replace")
                why = f"exit {dead[0]}" if dead else "timeout"
                raise RuntimeError(f"{system.key}: not ready ({why}); stderr: {tail}")
            time.sleep(0.01)
        startup = time.perf_counter() - spawned
        sampler = PeakPss([p.pid for p in procs])
        t0 = time.time()
        sampler.start()
        if system.kind == "saq":
            ids = _enqueue_saq(ctx, queue, n, wait)
        else:
            ids = _enqueue_rq(ctx, queue, system.func, n, wait)
        ended_fn = _ended_saq if system.kind == "saq" else _ended_rq
        deadline = time.perf_counter() + 3 * n * wait / width + 60
        while (ended := ended_fn(ctx, queue, ids, n)) is None:
            if time.perf_counter() > deadline:
                log.seek(0)
                tail = log.read()[-1500:].decode(errors="replace")
                raise RuntimeError(
                    f"{system.key}: jobs not finished in time; {_progress(ctx, system, queue)}; stderr: {tail}"
                )
            time.sleep(0.1)
        pss = sampler.stop()
        makespan = max(ended) - t0
    finally:
        _stop(procs)
        log.close()
        _clean(ctx, system, queue, ids)
    ideal = n / width * wait
    return {
        "pss_mib": pss,
        "makespan_s": makespan,
        "makespan_x": makespan / ideal,
        "startup_s": startup,
        "processes": float(len(procs)),
    }


# -- the scenario --------------------------------------------------------------------------------------------
def _measure(ctx: Ctx, sc: Scenario, system: System, n: int, width: int, wait: float) -> dict[str, float] | None:
    label = system.label.format(w=width)
    if system.kind == "saq" and not saq_installed():
        sc.row(label, "not installed (pip install -e '.[bench]')", "")
        sc.notes.append(f"{label}: saq is not installed (the bench extra): no saq baseline")
        return None
    try:
        runs = [run_one(ctx, system, n, width, wait) for _ in range(ctx.reps)]
    except RuntimeError as exc:
        if system.key.startswith("gq"):
            raise
        sc.row(label, f"failed: {str(exc)[:60]}", "")  # a baseline's trouble: the rest of the table still stands
        sc.notes.append(f"{label} failed: {exc}")
        return None
    key = f"{system.key}_{width}"
    m = {
        k: sc.measure(f"{key}_{k}", unit, [r[k] for r in runs], system=system.key)
        for k, unit in (("pss_mib", "MiB"), ("makespan_s", "s"), ("makespan_x", "×"), ("startup_s", "s"))
    }
    text = (
        f"{m['pss_mib']:,.1f} MiB · {m['makespan_x']:.3f}× ({m['makespan_s']:.2f} s) · start-up {m['startup_s']:.2f} s"
    )
    if system.key.startswith("gq"):
        sc.row(label, "", text)
    else:
        sc.row(label, text, "")
    return m


def byte_compile() -> None:
    import compileall

    for package in ("genqueue", "bench"):
        compileall.compile_dir(ROOT / package, quiet=1)


def run(ctx: Ctx) -> Scenario:
    byte_compile()
    size = SMOKE if ctx.smoke else FULL
    n, width, wait = size["jobs"], size["width"], size["wait"]
    wide_n, wide = size["wide_jobs"], size["wide_width"]
    sc = Scenario(
        "iobound",
        f"{n} jobs waiting {wait:g} s, {width} at a time, then {wide_n} at {wide}: "
        "PSS at peak · makespan ÷ ideal · start-up",
        sizes=dict(size),
    )
    got = {
        s.key: _measure(ctx, sc, s, n, width, wait)
        for s in (GQ_ASYNC, GQ_SYNC, GQ_FORK, GQ_SIMPLE, RQ_PROCS, RQ_POOL, SAQ)
    }
    ideal = n / width * wait
    saq, rq = got["saq"], got["rq"]
    for key in ("gq_async", "gq_sync"):
        gq = got[key]
        label = "async" if key == "gq_async" else "sync"
        if saq:
            ratio = gq["pss_mib"] / saq["pss_mib"]
            sc.row(
                f"{label}: PSS vs saq",
                f"{saq['pss_mib']:,.1f} MiB",
                f"{gq['pss_mib']:,.1f} MiB",
                f"{ratio:.2f}×",
                "≤ 1.50×",
                sc.goal(f"iobound {label}: PSS ≤ 1.5× saq", ratio, 1.5, higher_is_better=False, unit="×"),
            )
        if rq:
            ratio = gq["pss_mib"] / rq["pss_mib"]
            sc.row(
                f"{label}: PSS vs {width} RQ processes",
                f"{rq['pss_mib']:,.1f} MiB",
                f"{gq['pss_mib']:,.1f} MiB",
                f"1/{1 / ratio:.0f}",
                "≤ 1/20",
                sc.goal(
                    f"iobound {label}: PSS ≤ 1/20 of {width} RQ processes",
                    ratio,
                    1 / 20,
                    higher_is_better=False,
                    unit="×",
                ),
            )
        sc.row(
            f"{label}: makespan ÷ ideal ({ideal:g} s)",
            f"{saq['makespan_x']:.3f}× (saq)" if saq else "",
            f"{gq['makespan_x']:.3f}×",
            "",
            "≤ 1.05×",
            sc.goal(
                f"iobound {label}: makespan ≤ 1.05× ideal", gq["makespan_x"], 1.05, higher_is_better=False, unit="×"
            ),
        )
        sc.row(
            f"{label}: start-up",
            f"{saq['startup_s']:.2f} s (saq)" if saq else "",
            f"{gq['startup_s']:.2f} s",
            "",
            "≤ 0.50 s",
            sc.goal(f"iobound {label}: start-up ≤ 0.5 s", gq["startup_s"], 0.5, higher_is_better=False, unit="s"),
        )
    wide_got = {s.key: _measure(ctx, sc, s, wide_n, wide, wait) for s in (GQ_ASYNC, GQ_SYNC, SAQ)}
    if wide_got["saq"]:
        for key in ("gq_async", "gq_sync"):
            ratio = wide_got[key]["pss_mib"] / wide_got["saq"]["pss_mib"]
            sc.row(
                f"{wide} in flight, {'async' if key == 'gq_async' else 'sync'}: PSS vs saq",
                f"{wide_got['saq']['pss_mib']:,.1f} MiB",
                f"{wide_got[key]['pss_mib']:,.1f} MiB",
                f"{ratio:.2f}×",
            )
    per_job = {k: (wide_got[k]["pss_mib"] - got[k]["pss_mib"]) / (wide - width) for k in ("gq_async", "gq_sync")}
    sc.metrics["pss_per_in_flight_job_kib"] = {k: v * 1024 for k, v in per_job.items()}
    sc.notes.append(
        "PSS per extra in-flight job (between width {} and {}): async {:.0f} KiB, sync {:.0f} KiB".format(
            width, wide, per_job["gq_async"] * 1024, per_job["gq_sync"] * 1024
        )
    )
    return sc
