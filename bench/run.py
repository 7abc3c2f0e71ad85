"""genqueue against bare RQ, side by side on the same server, in one run.

    python -m bench                      # every scenario, full sizes, 3 repetitions (~10 min on 2 cores)
    python -m bench --smoke              # tiny sizes, 1 repetition: seconds (CI runs this)
    python -m bench --only failure,dlq --dlq-entries 200000

Uses REDIS_URL when set, else a fresh embedded Valkey in a temporary home. Prints one table (median of the
repetitions, ratios > 1 mean genqueue is faster) and writes every run's numbers to bench/results.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import platform
import sys
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

from .scenarios import NAMES
from .scenarios.common import FULL, SMOKE, Ctx, Scenario, bench_server, quiet_logs, server_info

RESULTS = Path(__file__).with_name("results.json")


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from importlib.metadata import version

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "os": platform.platform(),
        "rq": version("rq"),
        "redis_py": version("redis"),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and one repetition (seconds)")
    parser.add_argument("--only", default=",".join(NAMES), help=f"comma-separated scenarios ({', '.join(NAMES)})")
    parser.add_argument("--reps", type=int, help="repetitions per measurement (default 3, smoke 1)")
    parser.add_argument("--fork-jobs", type=int, help="jobs per forking-worker drain")
    parser.add_argument("--dlq-entries", type=int, help="DLQ size for the latency scenario")
    parser.add_argument("--bulk-entries", type=int, help="DLQ size for bulk replay/export")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the JSON results")
    parser.add_argument("--markdown", type=Path, help="print the table of this results.json as Markdown and exit")
    args = parser.parse_args(argv)
    unknown = set(args.only.split(",")) - set(NAMES)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    return args


def sizes_from(args: argparse.Namespace):
    sizes = SMOKE if args.smoke else FULL
    overrides = {"fork_jobs": args.fork_jobs, "dlq_entries": args.dlq_entries, "bulk_entries": args.bulk_entries}
    return dataclasses.replace(sizes, **{k: v for k, v in overrides.items() if v})


def table(scenarios: list[Scenario]) -> str:
    header = ("measure", "bare RQ / baseline", "genqueue", "ratio", "goal", "status")
    rows = []
    for sc in scenarios:
        rows.append((f"[{sc.name}] {sc.title}", "", "", "", "", ""))
        rows += [
            (f"  {r['measure']}", r["baseline"], r["genqueue"], r["ratio"], r["goal"], r["status"]) for r in sc.rows
        ]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def markdown(report: dict[str, Any]) -> str:
    """The performance table of docs/performance.md, from a results.json report."""
    m, srv = report["machine"], report["server"]
    lines = [
        f"Measured {report['when']} on {m['cpu']} ({m['cores']} cores), Python {m['python']}, rq {m['rq']}, "
        f"{srv.get('server_name')} {srv.get('valkey_version') or srv.get('redis_version')}"
        f"{' (embedded, AOF on)' if srv.get('embedded') else ''}; median of {report['reps']} repetition(s), "
        f"{report['seconds']:.0f} s in all. Ratio > 1: genqueue is faster.",
        "",
        "| scenario | measure | bare RQ / baseline | genqueue | ratio | goal | status |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, sc in report["scenarios"].items():
        for r in sc["rows"]:
            lines.append(
                f"| {name} | {r['measure']} | {r['baseline']} | {r['genqueue']} | {r['ratio']} | {r['goal']} "
                f"| {r['status']} |"
            )
    return "\n".join(lines)


def settle(conn, deadline_s: float = 300.0) -> None:
    """Wait until the server runs no background rewrite or save: after the DLQ scenario's 1M entries
    (~2.6 GB) the embedded server's AOF rewrite takes one of the two cores for minutes, and the scenarios
    after it (bulk, cli, api) measured that, not genqueue."""
    until = time.monotonic() + deadline_s
    while time.monotonic() < until:
        info = conn.info("persistence")
        if not any(
            int(info.get(k, 0) or 0)
            for k in ("aof_rewrite_in_progress", "aof_rewrite_scheduled", "rdb_bgsave_in_progress")
        ):
            return
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return 0
    sizes = sizes_from(args)
    reps = args.reps or (1 if args.smoke else 3)
    quiet_logs()
    started = time.perf_counter()
    results: list[Scenario] = []
    failed: list[str] = []
    with bench_server() as (url, home, embedded):
        from genqueue.backend.connection import connect_url

        conn = connect_url(url)
        ctx = Ctx(conn=conn, url=url, home=home, sizes=sizes, reps=reps, token=uuid.uuid4().hex[:8], smoke=args.smoke)
        server = {**server_info(conn), "embedded": embedded}
        for name in args.only.split(","):
            settle(conn)
            module = importlib.import_module(f"bench.scenarios.{name}")
            print(f"running {name} …", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            try:
                scenario = module.run(ctx)
            except Exception as exc:  # noqa: BLE001 - one scenario that cannot run must say why, and let the others run
                traceback.print_exc()
                failed.append(f"scenario {name} could not run: {type(exc).__name__}: {exc}")
                print(f"error: {failed[-1]}", file=sys.stderr, flush=True)
                continue
            scenario.seconds = time.perf_counter() - t0
            print(f"  {name}: {scenario.seconds:.1f} s", file=sys.stderr, flush=True)
            print(table([scenario]), file=sys.stderr, flush=True)  # as it completes: a long run shows progress
            results.append(scenario)
    total = time.perf_counter() - started
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "server": server,
        "smoke": args.smoke,
        "reps": reps,
        "sizes": dataclasses.asdict(sizes),
        "seconds": round(total, 1),
        "scenarios": {sc.name: sc.to_json() for sc in results},
    }
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    m = report["machine"]
    print(
        f"\ngenqueue vs bare RQ — {m['cpu']}, {m['cores']} cores, Python {m['python']}, rq {m['rq']}, "
        f"{server.get('server_name')} {server.get('valkey_version') or server.get('redis_version')}"
        f"{' (embedded, AOF on)' if embedded else ''}; {reps} repetition(s), medians; ratio > 1: genqueue faster"
    )
    print(table(results))
    for sc in results:
        for note in sc.notes:
            print(f"note [{sc.name}]: {note}")
    missed = [g for sc in results for g in sc.goals if not g["met"]]
    print(
        f"\n{sum(len(sc.goals) for sc in results) - len(missed)} goal(s) met, {len(missed)} missed; "
        f"{total:.0f} s; results in {args.output}"
    )
    if failed:  # last on stderr, and first in the summary a caller reads: why the run failed
        print("error: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0
