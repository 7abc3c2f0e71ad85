"""The relay on the real server, without workers: each wanted event becomes one delivery job, however many
relays run and however often; a subscription whose job never wrote an event is dropped; many waiting
subscribed jobs are read in turns (none starves behind the first BATCH)."""

from __future__ import annotations

import threading
import uuid

from genqueue.backend import events, keys
from genqueue.backend.queues import fetch_job
from genqueue.tenants.fair import waiting_ids
from genqueue.webhooks import relay as relay_module
from genqueue.webhooks import subscription
from genqueue.webhooks.relay import Relay, delivery_id


def emit(conn, job_id: str, *names: str) -> list[str]:
    with conn.pipeline(transaction=True) as pipe:
        for name in names:
            events.add(pipe, job_id, name, {"n": name})
        pipe.execute()
    return [i.decode() for i, _ in conn.xrange(keys.events(job_id))]


def subscribe(conn, job_id: str, wanted=("started", "finished"), tenant="t1") -> None:
    sub = subscription.Subscription("http://127.0.0.1:9/hook", tuple(wanted))
    subscription.register(conn, job_id, sub, tenant)


def test_each_wanted_event_becomes_one_delivery_whatever_runs_the_relay(conn, queue_name):
    wh = f"{queue_name}-wh"
    job_id = f"j-{uuid.uuid4().hex[:8]}"
    subscribe(conn, job_id)
    ids = emit(conn, job_id, "enqueued", "started", "progress")
    relays = [Relay(conn, wh) for _ in range(3)]
    threads = [threading.Thread(target=r.once) for r in relays for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(waiting_ids(conn, wh)) == [delivery_id(job_id, ids[1])]
    ids = emit(conn, job_id, "finished")
    assert relays[0].once() == 1 and relays[1].once() == 0
    assert sorted(waiting_ids(conn, wh)) == sorted(delivery_id(job_id, i) for i in (ids[1], ids[3]))
    delivery = fetch_job(conn, delivery_id(job_id, ids[3]))
    assert delivery is not None and delivery.func_name == "genqueue.webhook"
    assert delivery.kwargs["event"]["event"] == "finished" and delivery.kwargs["tenant"] == "t1"
    assert delivery.kwargs["msg_id"] == f"{job_id}:{ids[3]}"
    assert not conn.hexists(keys.WEBHOOK_SUBS, job_id)  # finished: the subscription ends
    assert conn.zscore(keys.WEBHOOK_DUE, job_id) is None


def test_a_subscription_without_a_stream_is_dropped_once_old(conn, queue_name):
    job_id = f"j-{uuid.uuid4().hex[:8]}"
    subscribe(conn, job_id)
    relay = Relay(conn, f"{queue_name}-wh")
    relay.once()
    assert conn.hexists(keys.WEBHOOK_SUBS, job_id)  # young: its enqueue may still be on its way
    relay.once(now=conn.time()[0] + relay_module.ORPHAN_S + 5)
    assert not conn.hexists(keys.WEBHOOK_SUBS, job_id)


def test_a_dead_lettered_job_is_read_again_later_and_its_replay_relayed(conn, queue_name):
    wh = f"{queue_name}-wh"
    job_id = f"j-{uuid.uuid4().hex[:8]}"
    subscribe(conn, job_id, wanted=("dead_lettered", "finished"))
    emit(conn, job_id, "enqueued", "dead_lettered")
    relay = Relay(conn, wh)
    assert relay.once() == 1
    due = conn.zscore(keys.WEBHOOK_DUE, job_id)
    assert due is not None and due > conn.time()[0] + relay_module.DEAD_RECHECK_S / 2
    emit(conn, job_id, "replayed", "finished")
    assert relay.once() == 0  # not read before its time
    assert relay.once(now=due + 1) == 1
    assert len(waiting_ids(conn, wh)) == 2


def test_waiting_subscriptions_are_read_in_turns(conn, queue_name, monkeypatch):
    monkeypatch.setattr(relay_module, "BATCH", 3)
    wh = f"{queue_name}-wh"
    # Only this test's subscriptions (each xdist worker has a server of its own; tests on it run one at a time).
    conn.delete(keys.WEBHOOK_DUE, keys.WEBHOOK_SUBS)
    idle = [f"idle-{uuid.uuid4().hex[:8]}-{i}" for i in range(6)]
    for job_id in idle:
        subscribe(conn, job_id)
        emit(conn, job_id, "enqueued")
    late = f"late-{uuid.uuid4().hex[:8]}"
    subscribe(conn, late)
    emit(conn, late, "started")
    relay = Relay(conn, wh)
    sent = sum(relay.once() for _ in range(3))  # 7 jobs, 3 a pass: the late one is read by the third pass
    assert sent == 1  # the late job's event, although six idle jobs were ahead of it in the line


def test_a_subscription_to_an_id_now_held_by_another_tenant_is_dropped_unheard(conn, queue_name):
    wh = f"{queue_name}-wh"
    job_id = f"j-{uuid.uuid4().hex[:8]}"
    subscribe(conn, job_id, wanted=("enqueued", "started"), tenant="t1")
    conn.hset(keys.rq_job(job_id), "meta", '{"genqueue": {"tenant": "t2"}}')  # the id's job is t2's now
    emit(conn, job_id, "enqueued", "started")
    assert Relay(conn, wh).once() == 0
    assert waiting_ids(conn, wh) == []
    assert not conn.hexists(keys.WEBHOOK_SUBS, job_id)
    conn.delete(keys.rq_job(job_id))


def test_a_reused_id_subscribes_from_its_current_jobs_enqueued_event(conn, queue_name):
    wh = f"{queue_name}-wh"
    job_id = f"j-{uuid.uuid4().hex[:8]}"
    ids = emit(conn, job_id, "enqueued", "finished")  # the id's earlier job
    ids = emit(conn, job_id, "enqueued")  # this one
    after = subscription.start_of_current_job(conn, job_id)
    sub = subscription.Subscription("http://127.0.0.1:9/hook", ("enqueued", "finished"))
    subscription.register(conn, job_id, sub, None, after=after, replace=True)
    ids = emit(conn, job_id, "finished")
    assert Relay(conn, wh).once() == 2
    assert sorted(waiting_ids(conn, wh)) == sorted(delivery_id(job_id, i) for i in ids[2:])
    assert subscription.start_of_current_job(conn, f"none-{job_id}") == "0-0"
