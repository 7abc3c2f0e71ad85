"""Scenario — what job events cost on the success path: the `success` drain (no-op jobs, one genqueue worker
in burst mode, simple and forking classes) with the events written, as shipped, against the same drain with
the worker's event writes left out.

Events cannot be turned off in genqueue, and building main from before they landed would also change
everything else merged since; so the baseline is the same code with `backend.events.add` (the XADD + EXPIRE
queued into the start claim's and the success move's scripts: `started` and `finished`) and the worker's
`finished_data` (the result's JSON encode for the `finished` event) patched to no-ops for the timed drain
only, in the same process, alternating which goes first. What remains is exactly the cost events add to a
successful job: 4 commands inside two scripts that run anyway (no extra round trip) and one JSON encode.
An extra untimed pass per variant counts the server's commands per job (INFO commandstats, Lua included).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager

from .common import Ctx, Scenario, alternate, counting, drop_queue
from .success import check_finished, drain, fill_queue, make_worker

COUNT_JOBS = 200  # jobs in the command-counting pass


@contextmanager
def events_off() -> Iterator[None]:
    from genqueue.backend import events
    from genqueue.worker import claims

    add, finished_data = events.add, claims.finished_data
    events.add = lambda *args, **kwargs: None
    claims.finished_data = lambda job: {}
    try:
        yield
    finally:
        events.add, claims.finished_data = add, finished_data


@contextmanager
def as_shipped() -> Iterator[None]:
    yield


VARIANTS = {"off": events_off, "on": as_shipped}


def server_cpu(ctx: Ctx) -> float:
    info = ctx.conn.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def _drain(
    ctx: Ctx, name: str, n: int, variant: str, simple: bool, cpu: dict[tuple[str, str], list[float]] | None = None
) -> float:
    ids = fill_queue(ctx, name, n)  # untimed, outside the patch: the `enqueued` event is not part of the drain
    worker = make_worker(ctx, "genqueue", name, simple=simple)
    try:
        with VARIANTS[variant]():
            own, server = time.process_time(), server_cpu(ctx)
            seconds = drain(worker)
            own, server = time.process_time() - own, server_cpu(ctx) - server
        check_finished(ctx, name, n)
        if cpu is not None:  # CPU seconds per job: what the other processes on a loaded machine disturb least
            cpu.setdefault(("worker", variant), []).append(own / n)
            cpu.setdefault(("server", variant), []).append(server / n)
        return n / seconds
    finally:
        drop_queue(ctx.conn, name, ids)


def server_usec(ctx: Ctx) -> dict[str, float]:
    """Microseconds the server spent per command name (INFO commandstats; a script's own commands count both
    in its EVALSHA and under their names)."""
    return {k.removeprefix("cmdstat_"): float(v["usec"]) for k, v in ctx.conn.info("commandstats").items()}


def commands_per_job(ctx: Ctx, variant: str, n: int) -> tuple[float, int, float, float]:
    """Commands per job, XADDs in all, and the server's µs per job in XADD + EXPIRE and in scripts."""
    before = server_usec(ctx)
    with counting(ctx.conn) as delta:
        _drain(ctx, ctx.name(f"ev-count-{variant}"), n, variant, simple=True)
    after = server_usec(ctx)
    spent = {k: after[k] - before.get(k, 0.0) for k in after}
    scripts = sum(v for k, v in spent.items() if k.startswith(("evalsha", "eval", "fcall")))
    events = spent.get("xadd", 0.0) + spent.get("expire", 0.0)
    return sum(delta.values()) / n, delta.get("xadd", 0), events / n, scripts / n


def run(ctx: Ctx) -> Scenario:
    # Many short pairs rather than a few long runs: on a shared machine the load moves by more than the 5 %
    # looked for, and one pair's two drains (run back to back, the order alternating) see nearly the same load.
    sizes = {"simple": max(1, ctx.sizes.success_jobs // 4), "forking": max(1, ctx.sizes.fork_jobs // 2)}
    pairs = {"simple": ctx.reps * 4, "forking": ctx.reps * 2}
    sc = Scenario("events", "Job events on the success path: written vs left out", sizes=dict(sizes))
    cpu: dict[tuple[str, str], list[float]] = {}
    for kind, n in sizes.items():
        simple = kind == "simple"

        def runner(variant: str, kind: str = kind, n: int = n, simple: bool = simple):
            meter = cpu if simple else None  # a forking worker's horses are other processes
            return lambda rep: _drain(ctx, ctx.name(f"ev-{kind}-{variant}-{rep}"), n, variant, simple, meter)

        runs = alternate(pairs[kind], {"off": runner("off"), "on": runner("on")})
        sc.measure(kind, "jobs/s", runs["off"], system="rq")
        sc.measure(kind, "jobs/s", runs["on"], system="genqueue")
        ratio = statistics.median(on / off for on, off in zip(runs["on"], runs["off"], strict=True))
        sc.metrics[kind]["ratio"] = ratio
        status = sc.goal(f"events: {kind} worker, events on ≥ 0.95× events off", ratio, 0.95, higher_is_better=True)
        sc.row(
            f"{n:,} jobs × {pairs[kind]} pairs, {kind} worker",
            f"{statistics.median(runs['off']):,.0f} jobs/s",
            f"{statistics.median(runs['on']):,.0f} jobs/s",
            f"{ratio:.2f}×",
            "≥ 0.95×",
            status,
        )
    for side in ("worker", "server"):
        off_us, on_us = (statistics.median(cpu[(side, v)]) * 1e6 for v in ("off", "on"))
        sc.metrics[f"{side}_cpu_us_per_job"] = {
            "off": off_us,
            "on": on_us,
            "runs": {v: cpu[(side, v)] for v in VARIANTS},
        }
        sc.row(
            f"{side} CPU per job, simple worker",
            f"{off_us:.0f} µs",
            f"{on_us:.0f} µs",
            f"{on_us / off_us:.2f}× the CPU",
        )
    count = min(COUNT_JOBS, sizes["simple"])
    off, _, off_ev, off_scripts = commands_per_job(ctx, "off", count)
    on, xadds, on_ev, on_scripts = commands_per_job(ctx, "on", count)
    sc.metrics["commands_per_job"] = {"off": off, "on": on, "xadd_per_job": xadds / count}
    sc.metrics["server_us_per_job"] = {
        "xadd_expire": {"off": off_ev, "on": on_ev},
        "scripts": {"off": off_scripts, "on": on_scripts},
    }
    sc.row("Redis commands per job (enqueue, drain, clean-up)", f"{off:.1f}", f"{on:.1f}", f"+{on - off:.1f}")
    sc.row(
        "server µs per job in XADD + EXPIRE / in scripts",
        f"{off_ev:.1f} / {off_scripts:.0f} µs",
        f"{on_ev:.1f} / {on_scripts:.0f} µs",
        f"+{on_ev - off_ev:.1f} µs",
    )
    sc.notes.append(
        "ratio: the median of each pair's events-on / events-off rate (one pair: two drains back to back, "
        "the order alternating); the rates shown are each variant's median; "
        "baseline: the same build with the worker's event writes (backend.events.add, claims.finished_data) "
        "patched out for the timed drain; events add XADD + EXPIRE to the start claim's and the success "
        "move's scripts, no round trip"
    )
    return sc
