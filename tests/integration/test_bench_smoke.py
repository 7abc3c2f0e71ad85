"""The bench's smoke mode runs every scenario at tiny sizes, so the bench never rots. It checks that each
scenario produced its numbers and goals; it asserts no time (speed is measured in bench/, not tested).
One test per scenario, so they run side by side and a failure names its scenario."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.scenarios import NAMES

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", NAMES)
def test_bench_smoke_runs_every_scenario(tmp_path, name):
    out = tmp_path / "results.json"
    env = {k: v for k, v in os.environ.items() if k != "GENQUEUE_HOME"}
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--only", name, "--output", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    why = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode == 0, "\n".join([*why[-1:], proc.stderr[-3000:]])
    report = json.loads(out.read_text())
    assert report["smoke"] is True and set(report["scenarios"]) == {name}
    scenario = report["scenarios"][name]
    assert scenario["rows"], name
    for goal in scenario["goals"]:
        # a rate or a ratio the goal wants high is a positive number; one it wants low (a share of 429s, the
        # jobs taken before a job starts) may be measured as exactly 0
        assert goal["measured"] > 0 if goal["higher_is_better"] else goal["measured"] >= 0, (name, goal)
        assert goal["status"], (name, goal)
    if name == "failure":
        failure = scenario["metrics"]["commands_per_failed_attempt"]
        assert failure["rq"]["median"] > 0 and failure["genqueue"]["median"] > 0
    assert "genqueue vs bare RQ" in proc.stdout and "goal(s) met" in proc.stdout


def test_bench_instructions_fills_and_drains_what_callgrind_counts(server, tmp_path):
    """bench.instructions' two helpers, without valgrind (minutes under it): the fill queues n jobs and the
    drain runs each system's worker until all n are finished (check_finished raises otherwise)."""
    from bench import instructions
    from genqueue.backend.connection import connect_url

    url, _home = server
    conn = connect_url(url)
    for system in ("rq", "genqueue"):
        name = f"instr-smoke-{system}-{tmp_path.name}"
        instructions.fill(url, name, 3)
        assert conn.llen(f"rq:queue:{name}") == 3
        instructions.drain(url, name, 3, system)
        assert conn.llen(f"rq:queue:{name}") == 0
    cg = tmp_path / "callgrind.out"
    cg.write_text("events: Ir\nfn=main\n1 5\nsummary: 12345\n")
    assert instructions._total(cg) == 12345
