"""The five failover trials of the high-availability page, on a Sentinel URL with GENQUEUE_WAIT_REPLICAS=all:
each a fresh replication group (a primary, two replicas, three sentinels, down-after 1 s), 2 forking
workers, 50 jobs of the chaos mix enqueued first and 30 more by a producer through the event (paced by the
run's progress, at most 10/s; a NotDurable or an outage refusal is sent again with resend=True), one
failover when half the jobs are done, no worker killed. Prints one JSON line per trial, then a Markdown
table.

    python -m bench.failover_trials            # all five (~4 minutes)
    python -m bench.failover_trials --only 3   # one of them
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import uuid
from dataclasses import asdict
from pathlib import Path

TRIALS = [  # (what the trial does, how, restart the killed primary after s)
    ("`SENTINEL FAILOVER`", "sentinel", None),
    ("primary SIGKILLed, restarted after 10 s", "sigkill", 10.0),
    ("primary SIGKILLed, not restarted", "sigkill-stay", None),
    ("primary SIGKILLed, restarted at once", "sigkill", 0.0),
    ("`SENTINEL FAILOVER` (again)", "sentinel", None),
]
JOBS, LATE = 80, 30


def trial(what: str, how: str, restart_s: float | None, *, deadline_s: float = 180.0) -> dict:
    from bench.chaos import chaos_env, failover_env, run_chaos
    from bench.failover import start_group

    home = tempfile.mkdtemp(prefix="gqtrial-")
    group = start_group(Path(home) / "ha")
    try:
        env = failover_env(chaos_env(home, 0.05), group.url)
        result = run_chaos(
            env,
            f"trial-{uuid.uuid4().hex[:6]}",
            jobs=JOBS,
            workers=2,
            kill_every=1e9,  # no worker killed: what is measured is the failover's doing
            deadline_s=deadline_s,
            log_dir=home,
            group=group,
            failovers=1,
            failover_how=how,
            late=LATE,
            late_rate=10.0,
            restart_s=restart_s,
        )
    finally:
        group.stop()
    f = result.failover
    [event] = f["failovers"] or [{}]
    return {
        "trial": what,
        "workers_exited": len(result.exited),
        "promoted_s": event.get("promoted_s"),
        "resumed_s": event.get("resumed_s"),
        "acked": f["acked"],
        "late": f["late"],
        "not_durable": f["not_durable"],
        "producer_errors": len(f["errors"]),
        "acknowledged_lost": len(result.lost),
        "duplicated_calls": f["duplicated_calls"],
        "unfinished": result.jobs - result.finished - result.dead,
        "stranded": result.stranded,
        "seconds": result.seconds,
        "ok": result.ok,
        "result": {k: v for k, v in asdict(result).items() if k in ("finished", "dead", "completed_twice")},
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| trial | workers exited | promoted after | work resumed after promotion | enqueues acknowledged "
        "(NotDurable, sent again) | acknowledged enqueues lost | successful calls run twice | left unfinished |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['trial']} | {r['workers_exited']} | {r['promoted_s']} s | {r['resumed_s']} s | "
            f"{r['acked']} of {r['late']} ({r['not_durable']}) | {r['acknowledged_lost']} | {r['duplicated_calls']} | "
            f"{r['unfinished']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", type=int, choices=range(1, len(TRIALS) + 1), help="run only trial N")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from genqueue.support.logs import configure

    configure("console")  # this process's own logs (a patient producer's reconnects) to stderr: stdout is the report
    rows = []
    for n, (what, how, restart_s) in enumerate(TRIALS, start=1):
        if args.only in (None, n):
            rows.append(trial(what, how, restart_s))
            print(json.dumps(rows[-1]), flush=True)
    print(table(rows))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
