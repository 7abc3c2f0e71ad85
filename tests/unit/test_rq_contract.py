"""The RQ and redis-py surface genqueue leans on, pinned: an upgrade that changes it fails here, not in production.

genqueue subclasses RQ's Worker, SimpleWorker and Job and overrides some of their methods, and reads a few
private names. pyproject.toml pins rq and redis-py to the minors these tests ran against; to move the pin, run
this file against the new version, read each difference in RQ's source, adapt, then update PINNED below.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
import redis
import rq
import rq.scripts
from rq.job import Job

import genqueue

# (RQ class, attribute genqueue overrides) -> RQ's signature of it ("<property>" etc. for non-functions).
PINNED: dict[tuple[str, str], str] = {
    ("rq.job.Job", "_deserialize_data"): "(self)",
    ("rq.job.Job", "execute_failure_callback"): "(self, death_penalty_class: 'type[BaseDeathPenalty]', *exc_info)",
    ("rq.job.Job", "execute_stopped_callback"): "(self, death_penalty_class: 'type[BaseDeathPenalty]')",
    ("rq.job.Job", "execute_success_callback"): "(self, death_penalty_class: 'type[BaseDeathPenalty]', result: 'Any')",
    ("rq.job.Job", "failed_job_registry"): "<property>",
    ("rq.job.Job", "failure_callback"): "<property>",
    ("rq.job.Job", "finished_job_registry"): "<property>",
    ("rq.job.Job", "func"): "<property>",
    ("rq.job.Job", "restore"): "(self, raw_data) -> 'Any'",
    ("rq.job.Job", "send_webhooks"): "(self, status: 'str | JobStatus', *, exc_string: 'str | None' = None) -> 'None'",
    ("rq.job.Job", "started_job_registry"): "<property>",
    ("rq.job.Job", "stopped_callback"): "<property>",
    ("rq.job.Job", "success_callback"): "<property>",
    (
        "rq.worker.base.BaseWorker",
        "_pubsub_exception_handler",
    ): "(self, exc: 'Exception', pubsub: 'PubSub', pubsub_thread: 'PubSubWorkerThread') -> 'None'",
    ("rq.worker.base.BaseWorker", "_shutdown"): "(self)",
    ("rq.worker.base.BaseWorker", "clean_registries"): "(self)",
    (
        "rq.worker.base.BaseWorker",
        "dequeue_job_and_maintain_ttl",
    ): "(self, timeout: 'int | None', max_idle_time: 'int | None' = None) -> 'tuple[Job, Queue] | None'",
    ("rq.worker.base.BaseWorker", "dequeue_timeout"): "<property>",
    ("rq.worker.base.BaseWorker", "handle_exception"): "(self, job: 'Job', *exc_info)",
    ("rq.worker.base.BaseWorker", "handle_execution_ended"): "(self, job: 'Job', queue: 'Queue', heartbeat_ttl: 'int')",
    (
        "rq.worker.base.BaseWorker",
        "handle_job_failure",
    ): "(self, job: 'Job', queue: 'Queue', started_job_registry=None, exc_string='')",
    (
        "rq.worker.base.BaseWorker",
        "handle_job_success",
    ): "(self, job: 'Job', queue: 'Queue', started_job_registry: 'StartedJobRegistry')",
    (
        "rq.worker.base.BaseWorker",
        "heartbeat",
    ): "(self, timeout: 'int | None' = None, pipeline: 'Pipeline | None' = None)",
    ("rq.worker.base.BaseWorker", "job_class"): "<type>",
    ("rq.worker.base.BaseWorker", "main_work_horse"): "(self, job: 'Job', queue: 'Queue')",
    ("rq.worker.base.BaseWorker", "prepare_execution"): "(self, job: 'Job') -> 'Execution'",
    (
        "rq.worker.base.BaseWorker",
        "prepare_job_execution",
    ): "(self, job: 'Job', remove_from_intermediate_queue: 'bool' = False) -> 'None'",
    ("rq.worker.base.BaseWorker", "register_birth"): "(self)",
    ("rq.worker.base.BaseWorker", "register_death"): "(self)",
    ("rq.worker.base.BaseWorker", "request_force_stop"): "(self, signum: 'int', frame: 'FrameType | None')",
    (
        "rq.worker.base.BaseWorker",
        "set_current_job_id",
    ): "(self, job_id: 'str | None' = None, pipeline: 'Pipeline | None' = None)",
    (
        "rq.worker.base.BaseWorker",
        "set_current_job_working_time",
    ): "(self, current_job_working_time: 'float', pipeline: 'Pipeline | None' = None)",
    ("rq.worker.base.BaseWorker", "set_state"): "(self, state: 'str', pipeline: 'Pipeline | None' = None)",
    ("rq.worker.base.BaseWorker", "_install_signal_handlers"): "(self)",
    ("rq.worker.base.BaseWorker", "subscribe"): "(self)",
    ("rq.worker.base.BaseWorker", "teardown"): "(self)",
    ("rq.worker.base.BaseWorker", "unsubscribe"): "(self)",
    (
        "rq.worker.base.BaseWorker",
        "work",
    ): "(self, burst: 'bool' = False, logging_level: 'str | None' = None, date_format: 'str' = '%H:%M:%S', log_format: 'str' = '%(asctime)s %(message)s', max_jobs: 'int | None' = None, max_idle_time: 'int | None' = None, with_scheduler: 'bool' = False, dequeue_strategy: 'DequeueStrategy' = <DequeueStrategy.DEFAULT: 'default'>) -> 'bool'",
    ("rq.worker.worker_classes.SimpleWorker", "execute_job"): "(self, job: 'Job', queue: 'Queue')",
    ("rq.worker.worker_classes.Worker", "execute_job"): "(self, job: 'Job', queue: 'Queue')",
    ("rq.worker.worker_classes.Worker", "fork_work_horse"): "(self, job: 'Job', queue: 'Queue')",
}


def _genqueue_modules():
    for pkg in pkgutil.walk_packages(genqueue.__path__, "genqueue."):
        if pkg.name.startswith(("genqueue.api", "genqueue.cli", "genqueue.__main__")):
            continue  # faces: they subclass no RQ class, and the api needs its extra
        yield importlib.import_module(pkg.name)


def _describe(value: object) -> str:
    if isinstance(value, (staticmethod, classmethod)):
        value = value.__func__
    if inspect.isfunction(value):
        return str(inspect.signature(value))
    return f"<{type(value).__name__}>"


def overridden_rq_surface() -> dict[tuple[str, str], str]:
    """Every RQ attribute that a genqueue class defines again, with RQ's own signature of it."""
    found: dict[tuple[str, str], str] = {}
    for module in _genqueue_modules():
        for _, cls in inspect.getmembers(module, inspect.isclass):
            rq_bases = [b for b in cls.__mro__ if b.__module__.startswith("rq.")]
            if not cls.__module__.startswith("genqueue") or not rq_bases:
                continue
            for klass in cls.__mro__:
                if not klass.__module__.startswith("genqueue"):
                    continue
                for attr in vars(klass):
                    if attr.startswith("__"):
                        continue
                    owner = next((b for b in rq_bases if attr in vars(b)), None)
                    if owner is not None:
                        found[(f"{owner.__module__}.{owner.__qualname__}", attr)] = _describe(vars(owner)[attr])
    return found


def test_versions_are_the_pinned_minors():
    assert rq.__version__.startswith("2.12."), rq.__version__
    assert redis.__version__.startswith(("8.0.", "8.1.", "8.2.")), redis.__version__


def test_every_overridden_rq_method_keeps_its_signature():
    found = overridden_rq_surface()
    assert found, "no RQ override found: the discovery itself is broken"
    new = sorted(set(found) - set(PINNED))
    gone = sorted(set(PINNED) - set(found))
    changed = sorted(k for k in set(found) & set(PINNED) if found[k] != PINNED[k])
    assert not new, f"genqueue overrides RQ names not pinned here yet (add them to PINNED): {new}"
    assert not gone, f"pinned RQ overrides genqueue no longer defines (remove them from PINNED): {gone}"
    assert not changed, "RQ changed the signature of methods genqueue overrides: " + "; ".join(
        f"{k}: pinned {PINNED[k]} now {found[k]}" for k in changed
    )


@pytest.mark.parametrize(
    "owner, name",
    [
        (rq.scripts, "_build_hset_args"),  # jobs/submit.py writes a job hash exactly as RQ does
        (redis.client.Pipeline, "command_stack"),  # worker/transition.py and guarded.py read queued commands
    ],
)
def test_private_names_genqueue_reads_exist(owner, name):
    if inspect.isclass(owner) and name == "command_stack":
        pipe = redis.Redis().pipeline()  # no connection is made until execute
        assert isinstance(getattr(pipe, name), list)
    else:
        assert callable(getattr(owner, name))


def test_private_job_and_worker_state_genqueue_reads_exist():
    import fakeredis
    from rq import Worker

    conn = fakeredis.FakeRedis()
    job = Job.create(func="genqueue.tasks.generate.generate", connection=conn)
    assert hasattr(job, "_status")  # set without a round trip where a script already moved the job
    worker = Worker(["q"], connection=conn)
    for name in ("_ordered_queues", "_stop_requested", "_stopped_job_id", "_exc_handlers", "_state"):
        assert hasattr(worker, name), name
