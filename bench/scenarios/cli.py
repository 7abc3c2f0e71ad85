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
    ms = 1000
    for key, args in (("help", ["--help"]), ("dlq_list", ["dlq", "list", "-q", ctx.name("cli")])):
        runs = _time(ctx, [_script("genqueue"), *args])
        value = sc.measure(key, "s", runs, system="genqueue")
        sc.metrics[key]["ratio"] = rq_median / value
        goal = status = ""
        if key == "help":
            goal = "≤ 300 ms"
            status = sc.goal("cli: genqueue --help ≤ 300 ms", value * ms, 300.0, higher_is_better=False, unit="ms")
        sc.row(f"genqueue {' '.join(args[:2])}", f"{rq_median * ms:.0f} ms (rq info --help)", f"{value * ms:.0f} ms",
               f"{rq_median / value:.2f}×", goal, status)
    return sc
