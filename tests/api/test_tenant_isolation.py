"""Tenant isolation over /api, as a Hypothesis state machine. Two tenants (alice, bob) and an admin call the
HTTP API (in-process, over the session's real server) with ids from one small shared pool, plain job ids that
are also run item ids, so collisions are the common case. Real worker processes (`worker --burst --simple`),
started only by the drain step, make jobs finish, fail, retry and dead-letter; nothing moves between steps,
so "unchanged" below is exact equality of the admin's reads. Checked on every step:

1. nothing answered to a tenant contains the other tenant's name (its payload markers, its `tenant`);
2. a tenant's step leaves every job, DLQ entry and run of the other tenant exactly as the admin read it
   before; every object carries its creator's tenant and payload marker, and a run shows no other
   tenant's job (not among its failed items, not counted in a job status);
3. a refused step (any 4xx, 403 in particular) changes nothing at all;
4. credits go only from the caller's own balance, one per charged item, and only for its own items;
5. usage and budgets: a tenant's /api/usage is its own whatever tenant it names, another tenant's budget is
   403, and no tenant can set or clear a budget (each tenant's budget and usage stay as the admin set them).
"""

from __future__ import annotations

import itertools
import json
import time
from datetime import datetime
from types import SimpleNamespace

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.api.conftest import SECRET
from tests.helpers import run_cli, wait_for
from tests.usage_helpers import record as record_usage

OTHER = {"alice": "bob", "bob": "alice"}
RUNS = ("r0", "r1")
ITEMS = {run: [f"{run}-item-{i}" for i in range(2)] for run in RUNS}
POOL = ("j0", "r0-item-0", "r1-item-1")  # ids a tenant may enqueue as plain jobs
ALL_JOBS = ("j0", *ITEMS["r0"], *ITEMS["r1"])
KEYS = [(kind, j) for j in ALL_JOBS for kind in ("jobs", "dlq")] + [("runs", r) for r in RUNS]
OUTCOMES = {
    "ok": ["ok"],
    "dead": ["500"],  # TRANSIENT with this test's budget of 0: dead-lettered, reason exhausted (Continue: charged)
    "permanent": ["422"],  # PERMANENT: dead-lettered at once, never retried by Continue
    "flaky": ["429", "ok"],  # RATE_LIMITED once, retried, then succeeds
}
ACTIVE = {"queued", "running", "scheduled", "retrying", "parked"}  # parked: waiting on its limit key
JOB_STATUSES = ACTIVE | {"finished", "failed", "dead", "stopped", "canceled", "deferred"}  # not "missing"
REFUSED = (403, 409)  # how a refused collision may be answered (with the error envelope, changing nothing)
RESERVED = 400  # a plain enqueue of a run-item-shaped id: refused, those ids are reserved for runs
CREDITS = 3
ctx = SimpleNamespace()
tags = itertools.count()
who_ = st.sampled_from(sorted(OTHER))
jobs_, runs_, outcome_ = st.sampled_from(POOL), st.sampled_from(RUNS), st.sampled_from(list(OUTCOMES))


@pytest.fixture
def api_config():
    """The shared one, with a rate limit the machine's thousands of requests a minute stay under."""
    from genqueue.api.config import ApiConfig

    return ApiConfig("HS256", SECRET, SECRET, True, rate_limit="1000000/minute")


class Isolation(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        from genqueue.tenants import credits

        tag = f"{ctx.queue}-{next(tags)}"  # every example has fresh ids and tenants (job and run keys are global)
        self.p = tag + "-"
        self.tenant = {a: f"{a}-{tag}" for a in OTHER}
        self.h = {a: ctx.token(a, tenant=self.tenant[a]) for a in OTHER}
        self.admin = ctx.token("ops", admin=True)
        self.owner: dict[str, str] = {}  # pool id (job or run) -> the tenant whose create succeeded
        self.freed: set[str] = set()  # ids whose last trace an admin deleted: anyone may create them again
        self.credits = dict.fromkeys(OTHER, CREDITS)
        for a in OTHER:
            credits.set_balance(ctx.conn, self.tenant[a], CREDITS)
            r = ctx.client.put(f"/api/budgets/{self.tenant[a]}", json={"usd": "1000000/d"}, headers=self.admin)
            assert r.status_code == 200, r.text
            record_usage(ctx.conn, self.tenant[a], "usd", 1.5, task=f"{self.tenant[a]}-task")
        self.budgets = self.budget_view()
        self.markers = itertools.count()
        self.view = dict.fromkeys(KEYS)  # the admin's reads (fresh ids: nothing yet)

    # -- the admin's view of every object, and the calls of a tenant ------------------------------------------
    def admin_get(self, path: str):
        r = ctx.client.get(path, headers=self.admin)
        assert r.status_code in (200, 404), r.text
        return r.json()["data"] if r.status_code == 200 else None

    def snapshot(self, touched=()) -> dict:
        """The admin's reads of every id someone owns or this step named (no other can have changed)."""
        view, read = dict(self.view), {*self.owner, *touched}
        for j in read.intersection(ALL_JOBS):  # a dead job's view is its DLQ entry; an RQ job may have one beside it
            job = view["jobs", j] = self.admin_get(f"/api/jobs/{self.p}{j}")
            view["dlq", j] = self.admin_get(f"/api/dlq/{self.p}{j}") if job and job["status"] != "dead" else None
        return view | {("runs", r): self.admin_get(f"/api/runs/{self.p}{r}") for r in read.intersection(RUNS)}

    def call(self, who: str, method: str, path: str, body: dict | None = None, touched=()):
        r = ctx.client.request(method, path, headers=self.h[who], json=body)
        other = OTHER[who]
        assert self.tenant[other] not in r.text, f"{who} was shown {other}'s data: {r.text}"  # 1
        if r.status_code >= 400:
            assert set(r.json()["error"]) >= {"code", "message", "retryable"}, r.text
        before, self.view = self.view, self.snapshot(touched)
        for key, now in self.view.items():
            if r.status_code >= 400 or self.owner.get(key[1]) == other:  # 3, 2
                assert now == before[key], (
                    f"{who}'s {method} {path} -> {r.status_code} changed {key} "
                    f"(owner {self.owner.get(key[1])}):\nbefore {before[key]}\nafter  {now}"
                )
        return r

    def payload(self, who: str, outcome: str) -> dict:
        return {"prompt": f"{self.tenant[who]}-secret-{next(self.markers)}", "simulate": OUTCOMES[outcome]}

    def expect(self, r, who: str, owner: str | None, mine: tuple[int, ...], free: tuple[int, ...] = (404,)) -> None:
        wanted = free if owner is None else mine if owner == who else REFUSED
        assert r.status_code in wanted, f"{who}, owner {owner}: {r.status_code} {r.text}"

    def foreign(self, who: str, ids) -> list[str]:
        return [i for i in ids if self.owner.get(i.removeprefix(self.p)) != who]

    def adopted(self, who: str, run: str, data: dict) -> bool:
        """Does `who`'s run show another tenant's jobs: among its failed items, or as more items in a job
        status (queued … dead) than `who` has items?"""
        shown = sum(n for status, n in data["counts"].items() if status in JOB_STATUSES)
        mine = sum(self.owner.get(i) == who for i in ITEMS[run])
        return bool(self.foreign(who, [f["id"] for f in data["failed_items"]])) or shown > mine

    def some(self, kind: str, statuses=None) -> bool:
        return any(v and (statuses is None or v["status"] in statuses) for (k, _), v in self.view.items() if k == kind)

    # -- rules ------------------------------------------------------------------------------------------------
    @rule(who=who_, job=jobs_, outcome=outcome_)
    def enqueue(self, who, job, outcome):
        # A webhook whose URL names its tenant: the check every call makes (1) shows nobody else ever sees it.
        hook = f"http://127.0.0.1:9/{self.tenant[who]}-hook?token=t"
        body = {"payload": self.payload(who, outcome), "job_id": self.p + job, "webhook": hook}
        r = self.call(who, "POST", "/api/jobs", body, [job])
        if "-item-" in job and r.status_code == RESERVED:
            return  # refused before anything was read or written (self.call checked that nothing changed)
        self.expect(r, who, self.owner.get(job), (200, 201, 409), (201, *REFUSED) if job in self.freed else (201,))
        if r.status_code == 201:
            self.owner.setdefault(job, who)

    @rule(who=who_, run=runs_, outcomes=st.tuples(outcome_, outcome_))
    def submit_run(self, who, run, outcomes):
        body = {"items": [self.payload(who, o) for o in outcomes], "run_id": self.p + run}
        r = self.call(who, "POST", "/api/runs", body, [run, *ITEMS[run]])
        taken = any(self.owner.get(i) not in (None, who) or i in self.freed for i in ITEMS[run])
        self.expect(r, who, self.owner.get(run), (200, 409), (201, *REFUSED) if taken else (201,))
        if r.status_code == 201:
            self.owner[run] = who
            for i in ITEMS[run]:
                self.owner.setdefault(i, who)

    @precondition(lambda self: self.some("jobs"))
    @rule(who=who_, job=st.sampled_from(ALL_JOBS))
    def get_job(self, who, job):
        self.expect(self.call(who, "GET", f"/api/jobs/{self.p}{job}", None, [job]), who, self.owner.get(job), (200,))

    @precondition(lambda self: self.some("runs"))
    @rule(who=who_, run=runs_)
    def get_run(self, who, run):
        r = self.call(who, "GET", f"/api/runs/{self.p}{run}", None, [run, *ITEMS[run]])
        self.expect(r, who, self.owner.get(run), (200,))
        if r.status_code == 200:
            assert not self.adopted(who, run, r.json()["data"]), f"{who}'s run {run} shows others' jobs: {r.text}"

    @precondition(lambda self: self.some("jobs"))
    @rule(who=who_, job=st.sampled_from(ALL_JOBS))
    def retry_job(self, who, job):
        r = self.call(who, "POST", f"/api/jobs/{self.p}{job}/retry", None, [job])
        self.expect(r, who, self.owner.get(job), (200, 400, 409))

    @precondition(lambda self: self.some("runs"))
    @rule(who=who_, run=runs_)
    def continue_run(self, who, run):
        r = self.call(who, "POST", f"/api/runs/{self.p}{run}/retry-failed", None, [run, *ITEMS[run]])
        self.expect(r, who, self.owner.get(run), (200, 400, 402, 409))
        if r.status_code == 200:
            data = r.json()["data"]
            assert not self.foreign(who, data["retried"] + data["charged"]), f"{who} retried others' jobs: {r.text}"
            assert data["credits_debited"] == len(data["charged"]), r.text  # 4
            self.credits[who] -= data["credits_debited"]

    @precondition(lambda self: self.some("jobs"))
    @rule(who=who_, job=st.sampled_from(ALL_JOBS))
    def cancel_job(self, who, job):
        r = self.call(who, "POST", f"/api/jobs/{self.p}{job}/cancel", None, [job])
        self.expect(r, who, self.owner.get(job), (200, 409))  # 409: it had already finished

    @precondition(lambda self: self.some("jobs"))
    @rule(who=who_)
    def cancel_by_filter(self, who):
        """Admins only: a tenant's filtered cancel — even of its own tenant — is refused and changes nothing."""
        r = self.call(who, "POST", "/api/jobs/cancel", {"tenant": self.tenant[OTHER[who]]}, ALL_JOBS)
        assert r.status_code == 403, r.text
        r = self.call(who, "POST", "/api/jobs/cancel", {"tenant": self.tenant[who], "dry_run": True}, ALL_JOBS)
        assert r.status_code == 403, r.text

    @precondition(lambda self: self.some("runs"))
    @rule(who=who_, run=runs_)
    def cancel_run(self, who, run):
        r = self.call(who, "POST", f"/api/runs/{self.p}{run}/cancel", None, [run, *ITEMS[run]])
        self.expect(r, who, self.owner.get(run), (200,))

    @precondition(lambda self: self.some("jobs") or self.some("runs"))
    @rule(who=who_, job=st.sampled_from(ALL_JOBS), run=runs_)
    def others_events(self, who, job, run):
        """Another tenant's job or run events are refused (an owner's own stream would wait for its end)."""
        for path, owner, touched in (
            (f"/api/jobs/{self.p}{job}/events", self.owner.get(job), [job]),
            (f"/api/runs/{self.p}{run}/events", self.owner.get(run), [run]),
        ):
            if owner is not None and owner != who:
                r = self.call(who, "GET", path, None, touched)
                assert r.status_code in (403, 404), f"{who} read {owner}'s events: {r.status_code} {r.text}"

    def budget_view(self) -> dict:
        views = {a: self.admin_get(f"/api/budgets/{self.tenant[a]}") for a in OTHER}
        return {a: [(c["unit"], c["period"], c["limit"]) for c in v["caps"]] for a, v in views.items()}

    @rule(who=who_, whose=who_, query=st.sampled_from(["", "?tenant={t}", "?by=task,key&tenant={t}"]))
    def read_usage_and_budget(self, who, whose, query):
        r = self.call(who, "GET", "/api/usage" + query.format(t=self.tenant[whose]))
        assert r.status_code == 200 and r.json()["tenant"] == self.tenant[who], r.text  # 5
        if "task" in query:
            assert f"{self.tenant[who]}-task" in {row["task"] for row in r.json()["data"]}, r.text
        r = self.call(who, "GET", f"/api/budgets/{self.tenant[whose]}")
        assert r.status_code == (200 if whose == who else 403), r.text
        assert [b["tenant"] for b in self.call(who, "GET", "/api/budgets").json()["data"]] == [self.tenant[who]]

    @rule(who=who_, whose=who_, clear=st.booleans())
    def change_a_budget(self, who, whose, clear):
        path = f"/api/budgets/{self.tenant[whose]}"
        r = self.call(who, "DELETE", path) if clear else self.call(who, "PUT", path, {"usd": "0.01/d"})
        assert r.status_code == 403, r.text  # admins only
        assert self.budget_view() == self.budgets  # 5

    @precondition(lambda self: self.some("dlq") or self.some("jobs", {"dead"}))
    @rule(job=st.sampled_from(ALL_JOBS))
    def admin_replay(self, job):
        r = ctx.client.post(f"/api/dlq/{self.p}{job}/retry", headers=self.admin)
        assert r.status_code in (200, 400, 404, 409), r.text
        self.view = self.snapshot([job])

    @precondition(lambda self: self.some("dlq") or self.some("jobs", {"dead"}))
    @rule(job=st.sampled_from(ALL_JOBS))
    def admin_delete(self, job):
        r = ctx.client.delete(f"/api/dlq/{self.p}{job}", headers=self.admin)
        assert r.status_code in (200, 404), r.text
        self.view = self.snapshot([job])
        if self.view["jobs", job] is None and self.view["dlq", job] is None and self.owner.pop(job, None):
            self.freed.add(job)

    @precondition(lambda self: self.some("jobs", ACTIVE))
    @rule()
    def let_the_worker_drain(self):
        """Burst workers until no job of this example is queued, running or waiting for a retry."""

        def settled() -> bool:
            self.view = self.snapshot()
            busy = [v for (kind, _), v in self.view.items() if kind == "jobs" and v and v["status"] in ACTIVE]
            if any(
                v["status"] != "retrying"
                or not v["scheduled_at"]  # the mover's clock is whole seconds
                or datetime.fromisoformat(v["scheduled_at"]).timestamp() <= int(time.time())
                for v in busy
            ):
                assert run_cli(ctx.env, "worker", "--burst", "--simple", timeout=120).code == 0
            return not busy

        # Bounded by state, not by a budget a slow process exit can eat: each burst worker has its own limit.
        wait_for(settled, timeout=600, interval=0.1, message="the worker to drain")

    # -- what holds after every step --------------------------------------------------------------------------
    @invariant()
    def every_object_is_its_creators(self):
        for (kind, i), data in self.view.items():
            owner = self.owner.get(i)
            if owner is None:
                assert data is None, f"{kind} {i} exists, yet no tenant created it: {data}"
                continue
            text = json.dumps(data)
            assert self.tenant[OTHER[owner]] not in text, f"{owner}'s {kind} {i} carries another tenant: {text}"
            if kind == "runs" and data:
                assert data["tenant"] == self.tenant[owner], text
                assert not self.adopted(owner, i, data), f"{owner}'s run {i} adopted others' jobs: {text}"
            elif data:
                tenant = data["tenant"] if kind == "jobs" else data["options"].get("tenant")
                assert tenant == self.tenant[owner] and f"{tenant}-secret-" in text, f"{kind} {i}: {text}"

    @invariant()
    def credits_only_paid_by_their_owner(self):
        from genqueue.tenants import credits

        assert {a: credits.balance(ctx.conn, self.tenant[a]) for a in OTHER} == self.credits  # 4


@pytest.mark.timeout(1200)  # 40 examples x 12 steps with real burst workers: ~60 s alone, minutes on a loaded CI
def test_tenants_never_see_or_change_each_others_data(client, token, env, conn, queue_name, monkeypatch):
    monkeypatch.setenv("GENQUEUE_WEBHOOK_ALLOW", "127.0.0.1")  # the jobs' webhooks (never called: no relay)
    # A TRANSIENT budget of 0 dead-letters a 500 at once (reason exhausted), so dead items Continue may retry
    # cost no retry waits; RATE_LIMITED ("flaky") keeps its default budget.
    ctx.__dict__.update(
        client=client, token=token, conn=conn, queue=queue_name, env=dict(env, GENQUEUE_POLICY_TRANSIENT="max=0")
    )
    # ~60-80 s here (2 shared cores, bursts of ~0.5-1 s); no example database: replay with --hypothesis-seed
    run_state_machine_as_test(
        Isolation, settings=settings(max_examples=40, stateful_step_count=12, deadline=None, database=None)
    )
