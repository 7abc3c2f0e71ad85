"""Whose usage an attempt is: the tenant the budget check at enqueue charged (tenancy.job_tenant)."""

from __future__ import annotations

from types import SimpleNamespace

from genqueue.worker.limiting import _payer


class Unreadable(SimpleNamespace):
    @property
    def args(self):
        raise ValueError("payload cannot be read")


def job(meta_tenant=None, args=(), kwargs=None):
    meta = {"genqueue": {"tenant": meta_tenant}} if meta_tenant else {}
    return SimpleNamespace(meta=meta, args=list(args), kwargs=kwargs or {})


def test_the_payer_is_the_tenant_the_budget_check_charged():
    assert _payer(job("acme", args=[{"user_id": "u1"}])) == "acme"  # the job's tenant first
    assert _payer(job(args=[{"prompt": "p", "user_id": "u1"}])) == "u1"  # else the generate payload's user_id
    assert _payer(job(kwargs={"user_id": "u2", "n": 1})) == "u2"  # a task's kwargs
    assert _payer(job(args=[{"prompt": "p"}])) is None  # nobody: counted under "*"


def test_an_unreadable_payload_falls_back_to_the_jobs_own_tenant():
    broken = Unreadable(meta={"genqueue": {"tenant": "acme"}}, kwargs={})
    assert _payer(broken) == "acme"
    assert _payer(Unreadable(meta={}, kwargs={})) is None
