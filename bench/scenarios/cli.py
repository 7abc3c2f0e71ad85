"""Scenario 6 — CLI start-up: wall time of `genqueue --help` and `genqueue dlq list` (which connects and
reads a page) against `rq info --help`, each run as a fresh process through the installed console scripts
(the same way a user types them), median of sizes.cli_runs runs after one warm-up."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from .common import Ctx, Scenario, timed


def _script(name: str) -> str:
    """The console script next to this interpreter (the venv's), else on PATH."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise RuntimeError(f"console script {name!r} not found")
    return found


def _time(ctx: Ctx, args: list[str]) -> list[float]:
    env = {**os.environ, "REDIS_URL": ctx.url, "GENQUEUE_HOME": str(ctx.home)}

    def once() -> None:
        proc = subprocess.run(args, env=env, capture_output=True, timeout=60, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}: {proc.stderr.decode()[-300:]}")

    once()  # warm-up: page cache, .pyc files
    return [timed(once) for _ in range(ctx.sizes.cli_runs)]


def run(ctx: Ctx) -> Scenario:
    sc = Scenario("cli", "CLI start-up (fresh process, wall time)", sizes={"runs": ctx.sizes.cli_runs})
    rq_help = _time(ctx, [_script("rq"), "info", "--help"])
    rq_median = sc.measure("rq_info_help", "s", rq_help, system="rq")
    rq_info = sc.measure("rq_info", "s", _time(ctx, [_script("rq"), "info", "-u", ctx.url]), system="rq")
    ms = 1000
    help_runs = _time(ctx, [_script("genqueue"), "--help"])
    value = sc.measure("help", "s", help_runs, system="genqueue")
    sc.metrics["help"]["ratio"] = rq_median / value
    status = sc.goal("cli: genqueue --help ≤ 300 ms", value * ms, 300.0, higher_is_better=False, unit="ms")
    sc.row(
        "genqueue --help",
        f"{rq_median * ms:.0f} ms (rq info --help)",
        f"{value * ms:.0f} ms",
        f"{rq_median / value:.2f}×",
        "≤ 300 ms",
        status,
    )
    value = sc.measure(
        "dlq_list", "s", _time(ctx, [_script("genqueue"), "dlq", "list", "-q", ctx.name("cli")]), system="genqueue"
    )
    sc.metrics["dlq_list"]["ratio"] = value / rq_info
    status = sc.goal("cli: genqueue dlq list ≤ 250 ms", value * ms, 250.0, higher_is_better=False, unit="ms")
    sc.row("genqueue dlq list", "", f"{value * ms:.0f} ms", "", "≤ 250 ms", status)
    status = sc.goal("cli: genqueue dlq list ≤ 0.75× rq info", value / rq_info, 0.75, higher_is_better=False)
    sc.row(
        "genqueue dlq list vs rq info",
        f"{rq_info * ms:.0f} ms (rq info)",
        f"{value * ms:.0f} ms",
        f"{value / rq_info:.2f}× the time",
        "≤ 0.75×",
        status,
    )
    return sc
