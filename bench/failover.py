"""Failovers for bench.chaos (--failovers N): a replication group on loopback (a primary, two replicas, three
sentinels: valkey-server from the embedded server's wheel, as the failover tests start it), a producer that
enqueues part of the jobs while the run goes on, and failovers forced at marks of the run's progress.

How a failover is made (`how`): `sentinel` is `SENTINEL FAILOVER` (a forced switch: the former primary is
demoted once the sentinels reach it); `sigkill` SIGKILLs the primary and starts it again `restart_s` after
the kill, or at the promotion if later (it comes back a primary from its AOF, then the sentinels turn it
into a replica); `sigkill-stay` leaves it dead; `alternate` takes `sentinel` and `sigkill` in turn.

What is measured, per failover: seconds from the event to the sentinels naming a new writable primary
(`promoted_s`) and from that promotion to the next job reaching a terminal state (`resumed_s`); for the
run: the producer's acknowledged enqueues, its NotDurable refusals (sent again with the same id) and
errors, and the successful provider calls made twice (from the simulated provider's ledger, a file outside
Redis, so what a failover rolled back is counted too).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

HOWS = ("alternate", "sentinel", "sigkill", "sigkill-stay")
DEFAULT_RESTART_S = 1.0


@dataclass
class FailoverReport:
    how: str
    failovers: list[dict] = field(default_factory=list)  # {how, promoted_s, resumed_s, at_progress}
    late: int = 0  # jobs the producer enqueued during the run
    acked: int = 0  # of them, acknowledged
    not_durable: int = 0  # NotDurable refusals, each sent again with the same id
    errors: list[str] = field(default_factory=list)  # other refusals (sent again with the same id too)
    duplicated_calls: int = 0  # successful provider calls beyond one per job
    duplicated_jobs: int = 0


def start_group(root: Path):
    """The replication group (tests/ha_servers.py's Group), started and in sync."""
    from tests.ha_servers import Group

    return Group(root).start()


class Producer(threading.Thread):
    """Enqueues `payloads` (job id, payload, max_retries) on a patient client that waits for every replica
    (GENQUEUE_WAIT_REPLICAS=all); a refusal is sent again with the same id. Paced by the run's progress, so
    the enqueues straddle every failover: the k-th goes once `progress` (jobs terminal, set by the run) is
    k/len(payloads) of the way to `span`, and never faster than `rate` per second."""

    def __init__(self, url: str, queue: str, payloads: list, rate: float, wait_replicas: bool, span: int) -> None:
        from genqueue.backend.connection import connect_url
        from genqueue.backend.durable import ALL, attach
        from genqueue.backend.outage import PatientRetry

        super().__init__(daemon=True)
        self.conn = connect_url(url, retry=PatientRetry(120))
        if wait_replicas:
            attach(self.conn, ALL, 1.0)
        self.queue, self.payloads, self.every_s, self.span = queue, payloads, 1.0 / rate, span
        self.progress = 0
        self.acked: list[str] = []
        self.not_durable = 0
        self.errors: list[str] = []
        self.stop_at = float("inf")

    def run(self) -> None:
        from genqueue.errors import Conflict, NotDurable
        from genqueue.jobs.enqueue import enqueue

        for k, (job_id, payload, max_retries) in enumerate(self.payloads):
            while self.progress < k * self.span / len(self.payloads) and time.monotonic() < self.stop_at:
                time.sleep(0.02)  # paced by the run, not a synchronisation
            sent = False
            while time.monotonic() < self.stop_at:
                try:  # a repeat is a resend: a job that finished meanwhile is not run again
                    enqueue(self.conn, self.queue, payload, job_id=job_id, max_retries=max_retries, resend=sent)
                    self.acked.append(job_id)
                    break
                except NotDurable:
                    self.not_durable += 1
                    sent = True
                except Conflict:
                    if not sent:
                        raise
                    self.acked.append(job_id)  # resent: dead-lettered meanwhile, so it was enqueued
                    break
                except Exception as exc:  # noqa: BLE001 - counted; the caller's retry, with the same id
                    sent = True
                    self.errors.append(f"{type(exc).__name__}: {str(exc)[:120]}")
                    time.sleep(0.2)
            time.sleep(self.every_s)


class Failovers:
    """Forces `count` failovers at even marks of progress (jobs terminal) and measures each."""

    def __init__(self, group, count: int, jobs: int, how: str, restart_s: float | None = None) -> None:
        if how not in HOWS:
            raise ValueError(f"--failover-how must be one of {', '.join(HOWS)}")
        self.group, self.count, self.how = group, count, how
        self.restart_s = DEFAULT_RESTART_S if restart_s is None else restart_s
        self.marks = [jobs * (k + 1) // (count + 1) for k in range(count)]
        self.report = FailoverReport(how)
        self.pending: dict | None = None  # the last failover, waiting for work to resume
        self.timers: list[threading.Timer] = []

    @property
    def done(self) -> int:
        return len(self.report.failovers)

    def tick(self, now: float, progress: int) -> None:
        if self.pending is not None and progress > self.pending["at_progress"]:
            self.pending["resumed_s"] = round(now - self.pending.pop("_promoted"), 2)
            self.pending = None
        if self.pending is None and self.done < self.count and progress >= self.marks[self.done]:
            self._fail_over(progress)

    def _fail_over(self, progress: int) -> None:
        from tests.ha_servers import SERVICE, promoted_after

        how = self.how if self.how != "alternate" else ("sentinel", "sigkill")[self.done % 2]
        old = self.group.primary_port()
        t0 = time.monotonic()
        if how == "sentinel":
            self.group.sentinels[0].client().execute_command("SENTINEL", "FAILOVER", SERVICE)
        else:
            self.group.node(old).kill()
        _, promoted = promoted_after(self.group, old, timeout=60)
        if how == "sigkill":  # started again restart_s after the kill (at the promotion, if that took longer)
            timer = threading.Timer(max(0.0, self.restart_s - (promoted - t0)), self.group.node(old).start)
            timer.daemon = True
            timer.start()
            self.timers.append(timer)
        self.pending = {"how": how, "promoted_s": round(promoted - t0, 2), "at_progress": progress}
        self.pending["_promoted"] = promoted
        self.report.failovers.append(self.pending)

    def finish(self, producer: Producer | None, ledger: Path) -> FailoverReport:
        for timer in self.timers:
            timer.join(30)
        report = self.report
        if producer is not None:
            report.late, report.acked = len(producer.payloads), len(producer.acked)
            report.not_durable, report.errors = producer.not_durable, producer.errors[:20]
        calls = Counter(ledger.read_text().split()) if ledger.exists() else Counter()
        report.duplicated_calls = sum(n - 1 for n in calls.values() if n > 1)
        report.duplicated_jobs = sum(1 for n in calls.values() if n > 1)
        for f in report.failovers:
            f.pop("_promoted", None)
        return report


def split_late(payloads: list, late: int, seed: int) -> tuple[list, list]:
    """(enqueued before the run, enqueued by the producer during it): `late` of them, spread at random."""
    rng = random.Random(seed)
    chosen = set(rng.sample(range(len(payloads)), min(late, len(payloads))))
    return [p for i, p in enumerate(payloads) if i not in chosen], [p for i, p in enumerate(payloads) if i in chosen]


def ledger_path(home: str) -> Path:
    return Path(home) / f"ledger-{os.getpid()}.txt"


class FailoverRun:
    """What bench.chaos does for --failovers, in one place: the ledger, the producer and the failovers."""

    def __init__(
        self,
        env: dict,
        queue: str,
        payloads: list,
        job_id,
        *,
        group,
        failovers: int,
        how: str,
        late: int,
        late_rate: float,
        restart_s: float | None,
        seed: int,
        jobs: int,
    ) -> None:
        self.ledger = ledger_path(env["GENQUEUE_HOME"])
        env["GENQUEUE_SIM_LEDGER"] = str(self.ledger)
        self.early, late_payloads = split_late(payloads, late, seed)
        self.producer = Producer(
            env["REDIS_URL"],
            queue,
            [(job_id(queue, i), p, m) for i, p, m in late_payloads],
            late_rate,
            bool(env.get("GENQUEUE_WAIT_REPLICAS")),
            span=jobs - len(late_payloads),
        )
        self.failing = Failovers(group, failovers, jobs, how, restart_s)

    def late_ids(self) -> tuple[list[str], set[str]]:
        """The producer's job ids, and those whose first outcome is `ok`."""
        ids = [job_id for job_id, _, _ in self.producer.payloads]
        return ids, {job_id for job_id, p, _ in self.producer.payloads if p["simulate"][0] == "ok"}

    def start(self, deadline_s: float) -> None:
        self.producer.stop_at = time.monotonic() + deadline_s
        self.producer.start()

    def tick(self, now: float, progress: int) -> None:
        self.producer.progress = progress
        self.failing.tick(now, progress)

    def stop(self) -> None:
        self.producer.stop_at = 0.0
        self.producer.join(10)

    def settle(self, result, ids: list[str]) -> list[str]:
        """Fill `result.failover`; the ids to audit (an enqueue never acknowledged is not the run's to lose)."""
        from dataclasses import asdict

        result.failover = asdict(self.failing.finish(self.producer, self.ledger))
        acked = set(self.producer.acked)
        never = {job_id for job_id, _, _ in self.producer.payloads if job_id not in acked}
        result.failover["never_acknowledged"] = len(never)
        ids = [job_id for job_id in ids if job_id not in never]
        result.jobs = len(ids)
        return ids


class NoFailovers:
    """FailoverRun's stand-in for a run without --failovers."""

    def __init__(self, payloads: list) -> None:
        self.early = payloads

    def late_ids(self) -> tuple[list[str], set[str]]:
        return [], set()

    def start(self, deadline_s: float) -> None:
        pass

    def tick(self, now: float, progress: int) -> None:
        pass

    def stop(self) -> None:
        pass

    def settle(self, result, ids: list[str]) -> list[str]:
        return ids
