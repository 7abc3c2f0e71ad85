"""How far one primary goes: genqueue's moves per second of one Redis core.

N trivial jobs (the simulated provider, no latency) are enqueued one by one through genqueue's enqueue (the
submit script), then drained by W real workers (`genqueue worker --burst`, simple by default). The server's
own CPU time (INFO cpu: used_cpu_user + used_cpu_sys) is read before and after each phase, and its script
calls (INFO commandstats: evalsha/eval/fcall). What the server spends per job, not the wall clock, is the
figure: on a loaded machine the workers' Python is the bottleneck long before the server is, so jobs per
second of *server* CPU is what one saturated Redis core would sustain (everything a job costs the server:
the moves, the heartbeats, the reads around them).

    python -m bench.moves --jobs 5000 --workers 4
    python -m bench.moves --jobs 5000 --workers 2 --concurrency 16

Uses REDIS_URL when set (it must be otherwise idle), else an embedded server in a temporary home. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

IDLE_S = 3.0
SCRIPT_COMMANDS = ("evalsha", "eval", "evalsha_ro", "eval_ro", "fcall", "fcall_ro")


def server_counters(conn) -> dict[str, float]:
    cpu = conn.info("cpu")
    stats = conn.info("commandstats")
    scripts = sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in SCRIPT_COMMANDS)
    commands = sum(int(v.get("calls", 0)) for v in stats.values() if isinstance(v, dict))
    return {
        "cpu_s": float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
        "scripts": scripts,
        "commands": commands,
        "wall": time.monotonic(),
    }


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before[k] for k in before}


def phase(name: str, jobs: int, d: dict[str, float], idle_cpu_per_s: float) -> dict:
    """The phase's figures; `busy` ones net of what the idle server spends meanwhile (its cron, AOF fsync)."""
    busy = max(1e-9, d["cpu_s"] - idle_cpu_per_s * d["wall"])
    return {
        "phase": name,
        "jobs": jobs,
        "wall_s": round(d["wall"], 2),
        "jobs_per_s_wall": round(jobs / d["wall"], 1),
        "server_cpu_s": round(d["cpu_s"], 3),
        "server_cpu_us_per_job": round(d["cpu_s"] * 1e6 / jobs, 1),
        "jobs_per_server_cpu_s": round(jobs / d["cpu_s"]) if d["cpu_s"] else None,
        "script_calls": int(d["scripts"]),
        "script_calls_per_server_cpu_s": round(d["scripts"] / d["cpu_s"]) if d["cpu_s"] else None,
        "commands_per_job": round(d["commands"] / jobs, 1),
        "busy_server_cpu_us_per_job": round(busy * 1e6 / jobs, 1),
        "jobs_per_busy_server_cpu_s": round(jobs / busy),
        "script_calls_per_busy_server_cpu_s": round(d["scripts"] / busy),
    }


def run(url: str, env: dict[str, str], jobs: int, workers: int, concurrency: int) -> dict:
    from genqueue.backend.connection import connect_url
    from genqueue.jobs.enqueue import enqueue

    queue = f"moves-{uuid.uuid4().hex[:6]}"
    conn = connect_url(url)
    payload = {"prompt": "m", "simulate": ["ok"]}
    idle = server_counters(conn)
    time.sleep(IDLE_S)  # the idle server's own CPU, subtracted from the phases' (a measurement, not a sync)
    start = server_counters(conn)
    idle_cpu_per_s = max(0.0, (start["cpu_s"] - idle["cpu_s"]) / (start["wall"] - idle["wall"]))
    for i in range(jobs):
        enqueue(conn, queue, payload, job_id=f"{queue}-{i}")
    enqueued = server_counters(conn)
    extra = ["--concurrency", str(concurrency)] if concurrency else ["--simple"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "genqueue", "worker", "--queue", queue, "--burst", *extra],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(workers)
    ]
    for p in procs:
        p.wait()
    drained = server_counters(conn)
    finished = sum(1 for i in range(jobs) if conn.hget(f"rq:job:{queue}-{i}", "status") == b"finished")
    return {
        "jobs": jobs,
        "workers": workers,
        "concurrency": concurrency,
        "finished": finished,
        "idle_server_cpu_per_s": round(idle_cpu_per_s, 4),
        "enqueue": phase("enqueue", jobs, delta(start, enqueued), idle_cpu_per_s),
        "claim_and_finish": phase("claim + finish", jobs, delta(enqueued, drained), idle_cpu_per_s),
        "whole_job": phase("enqueue + claim + finish", jobs, delta(start, drained), idle_cpu_per_s),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=0, help="workers run with --concurrency N (0: --simple)")
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.workers < 1 or args.concurrency < 0:
        print("bench.moves: --jobs and --workers need 1 or more, --concurrency 0 or more", file=sys.stderr)
        return 2
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from genqueue.backend.connection import EmbeddedServer

    home = tempfile.mkdtemp(prefix="gqmoves-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENQUEUE_")}
    env.update(
        GENQUEUE_HOME=home,
        GENQUEUE_SIM_LATENCY="0",
        PYTHONPATH=str(Path(__file__).resolve().parents[1]),
    )
    server = None if env.get("REDIS_URL") else EmbeddedServer(Path(home))
    if server:
        server.start()
    try:
        result = run(env.get("REDIS_URL") or server.url, env, args.jobs, args.workers, args.concurrency)
    finally:
        if server:
            server.stop()
    print(json.dumps(result, indent=2))
    return 0 if result["finished"] == args.jobs else 1


if __name__ == "__main__":
    sys.exit(main())
