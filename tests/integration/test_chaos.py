"""CI-sized chaos: 1,000 jobs, 3 forking workers, one SIGKILLed and replaced every ~2 s, the server SIGKILLed
and restarted mid-run, and a worker frozen (SIGSTOP) past its liveness TTL, then resumed. No supervisor:
a worker that exits on its own fails the test."""

from __future__ import annotations

from bench.chaos import run_chaos
from genqueue.backend.connection import EmbeddedServer


def test_chaos_nothing_lost_nothing_twice(env, queue_name, tmp_path):
    home = tmp_path / "srv"  # a server of its own, to SIGKILL (also when the suite runs against REDIS_URL)
    server = EmbeddedServer(home)
    server.start()
    chaos_env = dict(env, GENQUEUE_HOME=str(home), GENQUEUE_LIVENESS_TTL="1", GENQUEUE_SWEEP_INTERVAL="0.3",
                     GENQUEUE_SIM_LATENCY="0.005")
    chaos_env.pop("REDIS_URL", None)
    try:
        result = run_chaos(chaos_env, queue_name, jobs=1000, workers=3, kill_every=2.0, deadline_s=240,
                           log_dir=str(tmp_path), server_kills=1, freezes=2, freeze_s=3.0)
    finally:
        server.stop()
    print(f"\nchaos: {result}")
    assert result.kills >= 3, "the run must actually kill workers"
    assert (result.server_kills, result.freezes) == (1, 2), "the run must crash the server and freeze workers"
    assert result.exited == [], "a worker exited on its own"
    assert result.lost == [] and result.both == [] and result.completed_twice == []
    assert result.ok_first_but_dead == []
    assert result.stranded == 0
    assert result.finished + result.dead == 1000
    assert result.dead_by_reason.get("non_retryable", 0) > 0 and result.dead_by_reason.get("exhausted", 0) > 0
