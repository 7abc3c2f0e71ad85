"""A worker stops promptly: an idle worker of each class (fork, `--simple`, `--concurrency`) exits cleanly on
SIGTERM, whatever its command channel (pub/sub) thread is doing. RQ's thread waited in a 60 s read that the
reply to its own UNSUBSCRIBE could send it back into; here commands are published to the worker's channel
right up to the signal, ten times per class, and each worker must be gone well before that read could end
(a deadline poll; the times are printed, never asserted). A signal that comes before RQ's loop has installed
its handlers stops the worker the same way (exit 0), not Python's default action."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid

import pytest

from tests.helpers import WorkerProcess, wait_for

CLASSES = {"fork": (), "simple": ("--simple",), "concurrent": ("--concurrency", "4")}
ROUNDS = 10
STOP_DEADLINE_S = 10.0  # stretched by DEADLINE_SCALE (3): still short of the 60 s read RQ's thread could sit in


def subscribed(conn, channel: str) -> bool:
    [(_, count)] = conn.pubsub_numsub(channel)
    return count >= 1


@pytest.mark.parametrize("kind", sorted(CLASSES))
def test_an_idle_worker_exits_cleanly_on_sigterm_with_commands_in_flight(conn, env, settings, kind):
    took = []
    for _ in range(ROUNDS):
        name = f"stop-{uuid.uuid4().hex[:8]}"
        channel = f"rq:pubsub:{name}"
        worker = WorkerProcess(env, settings.queue, extra=("--name", name, *CLASSES[kind]))
        try:
            wait_for(lambda channel=channel: subscribed(conn, channel), timeout=30, message="the worker's channel")
            done, delivered = threading.Event(), [0]

            def publish(channel=channel, done=done, delivered=delivered) -> None:  # RQ ignores both commands
                while not done.is_set():
                    delivered[0] += conn.publish(channel, json.dumps({"command": "noop"}))
                    delivered[0] += conn.publish(channel, json.dumps({"command": "stop-job", "job_id": "not-it"}))

            publisher = threading.Thread(target=publish, daemon=True)
            publisher.start()
            wait_for(lambda delivered=delivered: delivered[0] >= 20, message="commands reaching the worker")
            sent_at = time.monotonic()
            worker.proc.send_signal(signal.SIGTERM)
            wait_for(
                lambda worker=worker: not worker.alive(),
                timeout=STOP_DEADLINE_S,
                interval=0.01,
                message="the worker to exit",
            )
            took.append(time.monotonic() - sent_at)
            done.set()
            publisher.join(5)
            assert worker.proc.returncode == 0, worker.log()[-2000:]
        finally:
            worker.stop()
    print(
        f"\n{kind}: SIGTERM to exit, {ROUNDS} idle workers: max {max(took):.2f} s, mean {sum(took) / len(took):.2f} s"
    )


@pytest.mark.parametrize("kind", ["fork", "simple", "concurrent"])
def test_the_command_channel_never_holds_a_stop_even_when_it_loses_the_race(conn, settings, kind):
    """The race itself, made to happen: the channel thread reads the reply to the stop's UNSUBSCRIBE (if one is
    sent) and goes back to its read before the stop flag is cleared. RQ's thread then sat in a 60 s read; the
    worker's unsubscribe must return all the same, and the thread end, well before that read could. (In-process
    worker object, real server; the deadline is only when to give up.)"""
    from genqueue.worker import build_worker

    worker = build_worker(
        conn, settings, [settings.queue], simple=kind == "simple", concurrency=4 if kind == "concurrent" else None
    )
    worker.subscribe()
    wait_for(lambda: worker.pubsub.subscribed, message="the channel subscribed")
    real = worker.pubsub.unsubscribe

    def unsubscribe_and_lose_the_race(*args, **kwargs):
        real(*args, **kwargs)  # then the main thread is "descheduled" until the thread has read the reply
        wait_for(lambda: not worker.pubsub.subscribed, timeout=5, message="the thread to read the reply")

    worker.pubsub.unsubscribe = unsubscribe_and_lose_the_race
    thread = worker.pubsub_thread
    stopped = threading.Thread(target=worker.unsubscribe, daemon=True)
    stopped.start()
    wait_for(lambda: not stopped.is_alive(), timeout=STOP_DEADLINE_S, message="the unsubscribe to return")
    wait_for(lambda: not thread.is_alive(), timeout=STOP_DEADLINE_S, message="the channel thread to end")
    assert worker.pubsub_thread is None


@pytest.mark.parametrize("kind", ["fork", "simple", "concurrent"])
def test_a_signal_before_the_loop_is_a_clean_stop_and_takes_no_job(conn, settings, kind):
    """SIGTERM right after the worker registered and subscribed, before RQ's loop installs its handlers: the
    worker returns from `work` (no default-action death), deregistered, and its queue's job is still waiting."""
    from rq import Queue

    from genqueue.jobs.enqueue import enqueue
    from genqueue.worker import build_worker

    job_id = enqueue(conn, settings.queue, {"prompt": "x"}).job.id
    worker = build_worker(
        conn, settings, [settings.queue], simple=kind == "simple", concurrency=4 if kind == "concurrent" else None
    )
    real_subscribe = worker.subscribe

    def subscribe_then_signal() -> None:
        real_subscribe()
        os.kill(os.getpid(), signal.SIGTERM)  # handled at once, in this (the main) thread

    worker.subscribe = subscribe_then_signal
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        worker.work(burst=False)
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
    assert worker._early_signal == signal.SIGTERM
    assert not conn.sismember(f"rq:workers:{settings.queue}", worker.key)
    assert Queue(settings.queue, connection=conn).get_job_ids() == [job_id]
