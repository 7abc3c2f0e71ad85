"""Scenario — a token storm (spend limits): N LLM-shaped jobs of varied sizes (prompts of 50 to 1,000 tokens,
max_tokens 100 to 1,000, each generating 50-100 % of its max_tokens), W simple worker processes, the lab
provider limiting tokens per window (bench/scenarios/tokenlab.lua: a sliding window, 429 + reset headers
beyond it). The window is a scaled-down minute (WINDOW_S seconds) so that a run takes about half a minute.

Two genqueue runs against the same provider and storm:
- `tokens`: the key limited in tokens (`genqueue limits set tokenlab:<model> --tokens L/<W>s`): each job
  reserves its estimate (max_tokens + prompt / 4) at start, settles with what it reported;
- `rate`: the key limited by a request rate only, set so that an average job's tokens fill the window
  exactly (`--rate n/<W>s`, n = L ÷ the mean tokens per job): what a request-count limit does with varied sizes.

Reported: the provider-side 429 share (goal ≤ 2 % with the token limit), makespan ÷ the tokens-per-window
ideal (all the tokens spent ÷ L × W; goal ≤ 1.15×), and jobs dead-lettered (goal 0).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time

from .common import Ctx, Scenario, stop_processes

JOBS, WORKERS, WINDOW_S, LIMIT = 300, 4, 10, 100_000
SMOKE_JOBS = 30
MODES = ("tokens", "rate")


def storm(jobs: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(jobs):
        prompt_tokens, max_tokens = rng.randint(50, 1000), rng.randint(100, 1000)
        out.append(
            {
                "prompt": "x" * (4 * prompt_tokens),
                "max_tokens": max_tokens,
                "output_tokens": int(max_tokens * rng.uniform(0.5, 1.0)),
            }
        )
    return out


def spent(job: dict) -> int:
    return len(job["prompt"]) // 4 + job["output_tokens"]


def _run(ctx: Ctx, mode: str, jobs: list[dict], limit: int) -> dict[str, float]:
    from genqueue.dlq.store import DLQStore
    from genqueue.jobs.enqueue import enqueue_task
    from genqueue.limits.store import set_limits

    from . import tokenlab

    queue = ctx.name(f"tokens-{mode}-{time.monotonic_ns()}")
    model = queue
    ctx.conn.delete(tokenlab.WINDOW_KEY, tokenlab.STATS_KEY)
    key = f"tokenlab:{model}"
    if mode == "tokens":
        set_limits(ctx.conn, key, units={"tokens": f"{limit}/{WINDOW_S}s"})
    else:
        per_job = sum(spent(j) for j in jobs) / len(jobs)
        set_limits(ctx.conn, key, rate=f"{max(1, int(limit / per_job))}/{WINDOW_S}s")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENQUEUE_")}
    env.update(
        GENQUEUE_HOME=str(ctx.home),
        GENQUEUE_QUEUE=queue,
        GENQUEUE_LOG_FORMAT="json",
        REDIS_URL=ctx.url,
        TOKENLAB_WINDOW_MS=str(WINDOW_S * 1000),
        TOKENLAB_LIMIT=str(limit),
    )
    args = [sys.executable, "-m", "genqueue", "worker", "--simple", "--tasks", "bench.scenarios.tokenlab"]
    procs = [
        subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(WORKERS)
    ]
    store = DLQStore(ctx.conn, queue, retention_s=3600)
    total = sum(spent(j) for j in jobs)
    try:
        time.sleep(1.0)  # the workers' start-up is not what this measures
        started = time.perf_counter()
        for job in jobs:
            enqueue_task(ctx.conn, queue, "bench.tokenlab.llm", {**job, "model": model})
        deadline = started + 10 * total / limit * WINDOW_S + 120
        while time.perf_counter() < deadline:
            if int(ctx.conn.hget(tokenlab.STATS_KEY, "tokens") or 0) >= total:
                break
            time.sleep(0.1)
        makespan = time.perf_counter() - started
    finally:
        stop_processes(procs)
    stats = {k.decode(): int(v) for k, v in ctx.conn.hgetall(tokenlab.STATS_KEY).items()}
    calls, limited = stats.get("calls", 0), stats.get("rate_limited", 0)
    ideal = total / limit * WINDOW_S
    return {
        "makespan_x": makespan / ideal,
        "share_429": limited / max(1, calls),
        "dead": float(store.count()),
        "done": float(stats.get("tokens", 0) >= total),
        "makespan_s": makespan,
        "ideal_s": ideal,
    }


def run(ctx: Ctx) -> Scenario:
    from . import tokenlab  # noqa: F401 - registers the task here too: the enqueue checks its estimate

    jobs = storm(SMOKE_JOBS if ctx.smoke else JOBS)
    total = sum(spent(j) for j in jobs)
    sc = Scenario(
        "tokens",
        f"{len(jobs)} LLM-shaped jobs ({total:,} tokens), {WORKERS} simple workers, the lab provider limited to "
        f"{LIMIT:,} tokens per {WINDOW_S}-s window (a scaled-down minute; 429 + reset headers beyond it)",
        sizes={"jobs": len(jobs), "tokens": total, "limit": LIMIT, "window_s": WINDOW_S, "workers": WORKERS},
    )
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    for rep in range(ctx.reps):
        for mode in MODES[rep % 2 :] + MODES[: rep % 2]:
            runs[mode].append(_run(ctx, mode, jobs, LIMIT))
    med = {}
    for mode in MODES:
        for key in runs[mode][0]:
            sc.measure(f"{mode}_{key}", "", [r[key] for r in runs[mode]], system="genqueue")
        med[mode] = {key: sc.metrics[f"{mode}_{key}"]["genqueue"]["median"] for key in runs[mode][0]}
    t, r = med["tokens"], med["rate"]
    sc.row(
        "provider-side 429 share",
        f"{r['share_429']:.1%} (rate limit only)",
        f"{t['share_429']:.1%}",
        "",
        "≤ 2 %",
        sc.goal("tokens: 429 share ≤ 2 %", t["share_429"], 0.02, higher_is_better=False),
    )
    sc.row(
        f"makespan ÷ tokens-per-window ideal ({t['ideal_s']:.0f} s)",
        f"{r['makespan_x']:.2f}× (rate limit only)",
        f"{t['makespan_x']:.2f}×",
        "",
        "≤ 1.15×",
        sc.goal("tokens: makespan ≤ 1.15× ideal", t["makespan_x"], 1.15, higher_is_better=False, unit="×"),
    )
    sc.row(
        "dead-lettered",
        f"{r['dead']:.0f} (rate limit only)",
        f"{t['dead']:.0f}",
        "",
        "0",
        sc.goal("tokens: every job finished, none dead", t["done"] - t["dead"], 1.0, higher_is_better=True),
    )
    sc.notes.append(
        f"baseline column: the same storm with a request-rate limit only ({LIMIT:,} tokens ÷ the mean job's "
        f"tokens per {WINDOW_S} s); window scaled down from a minute to {WINDOW_S} s"
    )
    return sc
