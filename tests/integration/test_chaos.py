"""CI-sized chaos: 1,000 jobs (60 of them on a second key whose provider is down for the first 12 s: its
breaker opens, probes and closes mid-chaos), 3 workers (one of them a `--concurrency 8` worker), one SIGKILLed
and replaced every ~2 s (every third kill the concurrent one), the server SIGKILLed and restarted mid-run, and a worker
frozen (SIGSTOP) past its liveness TTL, then resumed. The jobs' limit key has a declared concurrency cap and
rate, and the simulated provider a shared rate limit of its own (429 + Retry-After), so most jobs are parked
at any moment and slots are held when the server and the workers die. No supervisor: a worker that exits on
its own fails the test (a concurrent worker killed by the mix's `crash` outcome is replaced: there is no work
horse, the job kills the process)."""

from __future__ import annotations

from bench.chaos import run_chaos
from genqueue.backend.connection import EmbeddedServer


def test_chaos_nothing_lost_nothing_twice(env, queue_name, tmp_path):
    home = tmp_path / "srv"  # a server of its own, to SIGKILL (also when the suite runs against REDIS_URL)
    server = EmbeddedServer(home)
    server.start()
    chaos_env = dict(
        env,
        GENQUEUE_HOME=str(home),
        GENQUEUE_LIVENESS_TTL="1",
        GENQUEUE_SWEEP_INTERVAL="0.3",
        GENQUEUE_SIM_LATENCY="0.005",
    )
    chaos_env.pop("REDIS_URL", None)
    try:
        result = run_chaos(
            chaos_env,
            queue_name,
            jobs=1000,
            workers=3,
            kill_every=2.0,
            deadline_s=240,
            log_dir=str(tmp_path),
            server_kills=1,
            freezes=2,
            freeze_s=3.0,
            concurrent=8,
            limit_concurrency=6,
            limit_rate="50/s",
            provider_rate="50/s",
            down_jobs=60,
            down_for_s=12.0,
        )
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
    # Limits (issue 21): the kills happened with jobs parked and slots held, and nothing stayed parked or held.
    [at_kill] = result.at_server_kills
    assert at_kill["parked"] > 0 and at_kill["slots"] > 0, at_kill
    assert sum(1 for parked, slots in result.at_kills if parked and slots) >= 3, result.at_kills
    assert result.limit_counters["throttled"] > 0, "the declared limit must park jobs (not only 429 pauses)"
    assert result.limit_counters["parked"] == result.limit_counters["woken"], result.limit_counters
    assert result.deferred == [] and result.parked_left == 0 and result.parked_counter == 0
    assert result.slots_held == [], "a slot outlived its job"
    # The concurrent worker (issue 22) was killed by the rotation, and its jobs in flight came back as CRASH.
    assert len(result.concurrent_kills) >= 1 and result.concurrent_crash_retries > 0, result
    # The breaker (issue 21): 60 jobs on a key whose provider is down for the first 12 s. It opened, let
    # probes through (reopening while still down), closed when the provider came back, and the outage cost
    # none of those jobs: none dead-lettered, none left parked.
    assert result.breaker["opens"] >= 1 and result.breaker["probes"] >= 2 and result.breaker["held"] > 0, result.breaker
    assert result.breaker["state"] == "closed", result.breaker
    assert result.down_jobs == 60 and result.down_dead == [] and result.down_deferred == []


def test_chaos_through_a_failover_loses_no_acknowledged_enqueue(env, queue_name, tmp_path):
    """bench.chaos --failovers, CI-sized: 60 jobs (20 of them enqueued by the producer while the run goes on,
    with GENQUEUE_WAIT_REPLICAS=all), a forking and a simple worker's worth of chaos on a Sentinel URL, one
    forced `SENTINEL FAILOVER` mid-run: every job ends in one place, none acknowledged is lost, no worker exits."""
    from bench.chaos import failover_env
    from bench.failover import start_group

    group = start_group(tmp_path / "ha")
    e = failover_env(dict(env, GENQUEUE_LIVENESS_TTL="1", GENQUEUE_SWEEP_INTERVAL="0.3"), group.url)
    try:
        result = run_chaos(
            e,
            queue_name,
            jobs=60,
            workers=2,
            kill_every=1e9,
            deadline_s=120,
            log_dir=str(tmp_path),
            group=group,
            failovers=1,
            failover_how="sentinel",
            late=20,
        )
    finally:
        group.stop()
    print(f"\nchaos with a failover: {result.failover}")
    [event] = result.failover["failovers"]
    assert event.get("resumed_s") is not None, "work must resume after the promotion"
    assert result.failover["acked"] == 20 and result.ok, result
