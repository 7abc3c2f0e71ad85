"""The hostile-jobs property test: no job stops a worker, breaks a reader or leaks a secret.

Hypothesis draws batches mixing good jobs with hostile ones and pushes them into one queue served at once by a
forking, a `--simple` and a `--concurrency 4` worker (started once per test, not per example). What genqueue's
edge would refuse is written as an old or plain-RQ producer writes it: RQ's Job.create/Queue.enqueue_job with the
JSON serializer, raw job-hash fields, RQ's default (pickle) serializer, DLQ entries stored as an older version
stored them. After each example, for every job of it:

- no worker process exited;
- the job is in exactly one terminal place, finished or dead-lettered (polled with a deadline); good jobs finished;
- `genqueue jobs show` and `genqueue dlq show` exit with a documented status and at most one stderr line, never a
  traceback; `GET /api/jobs/{id}`, `GET /api/dlq/{id}` (admin) and the dashboard's job and entry pages answer
  something other than a 5xx (the API in-process, over the same server);
- a limit key's pause never outlasts the job's max_wait;
- the configured provider token appears nowhere in Redis (every key, every value by type, zlib-compressed job
  fields opened) nor in the workers' logs.

The problems of one example are gathered and reported together, each with its job's hostile kind, so a failure
says which kinds broke which promise.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from genqueue.backend import keys
from genqueue.dlq.entry import build_entry, encode
from genqueue.jobs.enqueue import enqueue_task
from tests.helpers import WorkerProcess, run_cli

TASKS = '''
import os

import genqueue


class Hostile(Exception):
    def __str__(self):
        raise RuntimeError("no str for you")

    def __repr__(self):
        raise RuntimeError("no repr either")


class ProviderError(Exception):
    """The shape the classifier reads from any HTTP client: .status_code and .response.headers."""

    def __init__(self, status_code, headers):
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code
        self.response = type("Response", (), {"status_code": status_code, "headers": headers})()


HEADERS = {
    "retry_after": {"retry-after": "3000000000"},
    "reset": {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "99999999h"},
}


@genqueue.task(max_retries=1)
def good(n: int) -> int:
    return n


@genqueue.task(limit_key="prov:{model}", max_retries=1)
def keyed(model: str) -> str:
    return model


@genqueue.task(max_retries=1)
def hostile() -> None:
    raise Hostile()


@genqueue.task(max_retries=1)
def not_json() -> object:
    return {"a": object()}


@genqueue.task(max_retries=1)
def measure(data: object) -> int:
    depth, node = 0, data  # a loop, not recursion: the task itself copes with deep data
    while isinstance(node, list) and node:
        depth, node = depth + 1, node[0]
    return depth or (len(data) if isinstance(data, str) else 0)


@genqueue.task(limit_key="rl:{model}", limits={"max_wait": 2}, policy={"RATE_LIMITED": {"cap": 0.5}}, max_retries=1)
def throttled(model: str, how: str) -> None:
    if how == "exception":
        raise genqueue.RateLimited("slow down", retry_after=3_000_000_000)
    raise ProviderError(429, HEADERS[how])


@genqueue.task(max_retries=1)
def leak() -> None:
    token = os.environ["GENQUEUE_PROVIDER_TOKEN"]
    raise RuntimeError(f"Illegal header value b'Bearer {token}'")
'''

CLASSES = {"fork": (), "simple": ("--simple",), "concurrent": ("--concurrency", "4")}
MAX_WAIT_S = 2.0  # throttled's declared max_wait: the cap on its key's pause
TERMINAL_DEADLINE_S = 45.0
SHOW_EXIT = {0, 1, 3}  # found / unreadable (one line) / not found: docs/reference/cli.md
BAD_ID_EXIT = {*SHOW_EXIT, 2}  # an id RQ refuses: looked up, or refused as invalid
DEAD, FINISHED = "dead", "finished"
EITHER = frozenset({DEAD, FINISHED})


@dataclass
class Pushed:
    job_id: str
    kind: str
    ends: frozenset[str]  # the terminal places the contract allows for this kind
    limit_key: str | None = None  # a key whose pause must stay within MAX_WAIT_S
    problems: list[str] = field(default_factory=list)  # found while pushing (an import that was accepted…)


@dataclass
class Rig:
    conn: Any
    store: Any
    queue: str
    module: str
    env: dict[str, str]
    secret: str
    workers: dict[str, WorkerProcess]
    client: Any
    admin: dict[str, str]
    tmp: Path
    idle_queue: str  # no worker serves it: the copies there keep their hostile job hash for the readers
    api_log: io.StringIO = field(default_factory=io.StringIO)  # the in-process API's log lines
    idle: list[Pushed] = field(default_factory=list)  # this example's copies in it


def new_id(kind: str) -> str:
    return f"h-{kind.replace('_', '-')}-{uuid.uuid4().hex[:10]}"


def push_raw(
    rig: Rig,
    queue_name: str,
    job_id: str,
    func: str,
    kwargs: dict,
    *,
    fields: dict[str, Any] | None = None,
    serializer: Any = JSONSerializer,
) -> None:
    """A job as a plain-RQ producer writes it: RQ's Job.create + enqueue_job, nothing of genqueue's enqueue
    checks; `fields` overwrite raw job-hash fields in the same MULTI, so no worker sees the job before them."""
    queue = Queue(queue_name, connection=rig.conn, serializer=serializer)
    job = Job.create(func=func, kwargs=kwargs, connection=rig.conn, serializer=serializer, id=job_id, origin=queue_name)
    with rig.conn.pipeline() as pipe:
        queue.enqueue_job(job, pipeline=pipe)  # RQ calls pipe.multi() on pipelines it is given
        if fields:
            pipe.hset(job.key, mapping=fields)
        pipe.execute()


def deep_json(depth: int) -> str:
    return "[" * depth + "]" * depth  # built as text: json.dumps itself would hit the recursion limit


def push_dlq(rig: Rig, kind: str, job_id: str, **corrupt: Any) -> Pushed:
    """An entry with corrupt fields: `dlq import` must refuse it (exit 2, its line named, nothing stored). Then
    the same entry as an older version stored it, replayed with `dlq retry`: refused in one line, or replayed
    and run to one terminal place."""
    entry = build_entry(
        job_id=job_id,
        queue=rig.queue,
        func=f"{rig.module}.good",
        args=[],
        kwargs={"n": 1},
        reason="exhausted",
        error={"kind": "TRANSIENT", "type": "ProviderError", "message": "HTTP 503", "traceback": "tb"},
        history=[{"n": 1, "kind": "TRANSIENT", "action": "dead"}],
        retry_count=1,
        crash_count=0,
        enqueued_at=None,
        failed_at=time.time(),
        retention_s=3600,
        options={"timeout": 60, "max_retries": 1},
    )
    entry.update(corrupt)
    pushed = Pushed(job_id, kind, EITHER)
    path = rig.tmp / f"{job_id.replace(' ', '_')}.jsonl"
    path.write_text(encode(entry) + "\n")
    imported = run_cli(rig.env, "dlq", "import", str(path))
    pushed.problems += cli_problems("dlq import", imported, {2})
    if imported.code != 2 or "line 1" not in imported.stderr:
        pushed.problems.append(f"dlq import of a corrupt entry: exit {imported.code}, {imported.stderr.strip()!r}")
    elif rig.store.exists(job_id):
        pushed.problems.append("dlq import refused the entry but stored it")
    rig.store.add(entry, raw=encode(entry), ttl_s=3600)  # as an older version (or a raw write) stored it
    replayed = run_cli(rig.env, "dlq", "retry", job_id)
    pushed.problems += cli_problems("dlq retry", replayed, {0, 1, 2, 3, 4})
    return pushed


def _deep_data(module: str) -> dict[str, bytes]:
    data = f'["{module}.measure", null, [], {{"data": {deep_json(1000)}}}]'  # RQ's JSON data: func, self, args, kwargs
    return {"data": zlib.compress(data.encode())}


# What genqueue's enqueue would refuse (or a plain-RQ producer writes): kind -> task, kwargs, raw hash fields,
# serializer (None: RQ's default, pickle), where the job may end.
RAW: dict[str, tuple[str, dict, Callable[[str], dict] | None, Any, frozenset[str]]] = {
    "key_space": ("keyed", {"model": "gpt 4o"}, None, JSONSerializer, frozenset({DEAD})),  # cannot render
    "key_long": ("keyed", {"model": "m" * 300}, None, JSONSerializer, frozenset({DEAD})),
    "deep_kwargs": ("measure", {"data": []}, _deep_data, JSONSerializer, EITHER),  # 1,000 levels
    "wide_kwargs": ("measure", {"data": "x" * 2_000_000}, None, JSONSerializer, EITHER),  # 2 MB
    "non_json_data": ("good", {"n": 1}, lambda m: {"data": b"\x00\xffnot json"}, JSONSerializer, frozenset({DEAD})),
    "pickled": ("good", {"n": 1}, None, None, frozenset({DEAD})),
    "timeout_negative": ("good", {"n": 1}, lambda m: {"timeout": "-5"}, JSONSerializer, EITHER),
    "timeout_huge": ("good", {"n": 1}, lambda m: {"timeout": "1e30"}, JSONSerializer, EITHER),
    "timeout_abc": ("good", {"n": 1}, lambda m: {"timeout": "abc"}, JSONSerializer, EITHER),
}
# Through genqueue's own enqueue (nothing at the edge refuses these): kind -> task, kwargs, where it may end.
TASK: dict[str, tuple[str, dict, frozenset[str]]] = {
    "good": ("good", {"n": 1}, frozenset({FINISHED})),
    "str_raises": ("hostile", {}, frozenset({DEAD})),
    "not_json_result": ("not_json", {}, frozenset({DEAD})),
    "secret": ("leak", {}, frozenset({DEAD})),
}
DLQ: dict[str, dict[str, Any]] = {  # kind -> the corrupt fields of the entry
    "dlq_history": {"history": "abc"},
    "dlq_options": {"options": {"timeout": "abc", "max_retries": -3}},
}


def push(rig: Rig, kind: str) -> Pushed:
    m, job_id = rig.module, new_id(kind)
    if kind in RAW:
        task, kwargs, fields, serializer, ends = RAW[kind]
        for queue, jid in ((rig.queue, job_id), (rig.idle_queue, f"{job_id}-idle")):
            push_raw(rig, queue, jid, f"{m}.{task}", kwargs, fields=fields and fields(m), serializer=serializer)
        rig.idle.append(Pushed(f"{job_id}-idle", f"{kind} (unserved copy)", frozenset()))
        return Pushed(job_id, kind, frozenset(ends))
    if kind in TASK:
        task, kwargs, ends = TASK[kind]
        enqueue_task(rig.conn, rig.queue, f"{m}.{task}", kwargs, job_id=job_id, check=False)
        return Pushed(job_id, kind, ends)
    if kind.startswith("throttle_"):  # a 429 saying "wait 95 years" (or 11,000): the key's pause is capped
        model = f"m{uuid.uuid4().hex[:10]}"
        how = kind.removeprefix("throttle_")
        enqueue_task(rig.conn, rig.queue, f"{m}.throttled", {"model": model, "how": how}, job_id=job_id, check=False)
        return Pushed(job_id, kind, frozenset({DEAD}), limit_key=f"rl:{model}")
    if kind == "dlq_bad_id":
        return push_dlq(rig, kind, f"bad id {uuid.uuid4().hex[:6]}!")
    return push_dlq(rig, kind, job_id, **DLQ[kind])


HOSTILE = (
    "key_space",
    "key_long",
    "str_raises",
    "deep_kwargs",
    "wide_kwargs",
    "non_json_data",
    "pickled",
    "not_json_result",
    "timeout_negative",
    "timeout_huge",
    "timeout_abc",
    "throttle_retry_after",
    "throttle_reset",
    "throttle_exception",
    "secret",
    "dlq_history",
    "dlq_options",
    "dlq_bad_id",
)

# A batch: one to five hostile jobs and one to three good ones, in any order.
batches = st.tuples(
    st.lists(st.sampled_from(HOSTILE), min_size=1, max_size=5), st.integers(min_value=1, max_value=3)
).flatmap(lambda hg: st.permutations([*hg[0], *["good"] * hg[1]]))


# --- where a job is -------------------------------------------------------------------------------------------


def places(rig: Rig, job_id: str) -> tuple[set[str], set[str]]:
    """(terminal places, other places) the job is in right now."""
    q, conn = rig.queue, rig.conn
    terminal, other = set(), set()
    if rig.store.exists(job_id):
        terminal.add(DEAD)
    if conn.zscore(f"rq:finished:{q}", job_id) is not None:
        terminal.add(FINISHED)
    if conn.lpos(f"rq:queue:{q}", job_id) is not None:
        other.add("queued")
    if conn.lpos(Queue(q, connection=conn).intermediate_queue_key, job_id) is not None:
        other.add("popped")
    for registry in ("scheduled", "failed", "deferred"):
        if conn.zscore(f"rq:{registry}:{q}", job_id) is not None:
            other.add(registry)
    if any(m.decode().split(":", 1)[0] == job_id for m in conn.zrange(f"rq:wip:{q}", 0, -1)):
        other.add("running")
    return terminal, other


def settle(rig: Rig, jobs: list[Pushed]) -> list[str]:
    """Poll until every job is in a terminal place (or the deadline), then check each is in exactly one."""
    deadline = time.monotonic() + TERMINAL_DEADLINE_S
    pending = list(jobs)
    while pending and time.monotonic() < deadline:
        pending = [p for p in pending if not places(rig, p.job_id)[0]]
        if pending:
            time.sleep(0.1)
    problems = []
    for p in jobs:
        terminal, other = places(rig, p.job_id)
        if not terminal:
            problems.append(f"{p.kind} {p.job_id}: in no terminal place after {TERMINAL_DEADLINE_S}s ({other})")
        elif len(terminal) > 1 or other:
            problems.append(f"{p.kind} {p.job_id}: in more than one place: {terminal | other}")
        elif not terminal <= p.ends:
            problems.append(f"{p.kind} {p.job_id}: {terminal.pop()}, expected {'/'.join(sorted(p.ends))}")
    return problems


def pause_problems(rig: Rig, jobs: list[Pushed]) -> list[str]:
    problems = []
    for p in jobs:
        if p.limit_key:
            pttl = rig.conn.pttl(keys.limit_prefix(p.limit_key) + "pause")
            if pttl > MAX_WAIT_S * 1000 + 500:
                problems.append(f"{p.kind}: {p.limit_key} paused for {pttl / 1000:.0f}s, over max_wait {MAX_WAIT_S}s")
    return problems


# --- readers --------------------------------------------------------------------------------------------------


def cli_problems(what: str, r: Any, codes: set[int]) -> list[str]:
    problems = []
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    if "Traceback (most recent call last)" in r.stderr:  # stdout may show a stored traceback: that is data
        problems.append(f"{what}: a traceback: {r.stderr[-600:]!r}")
    elif len(lines) > 1:
        problems.append(f"{what}: {len(lines)} stderr lines: {r.stderr[-600:]!r}")
    if r.code not in codes:
        problems.append(f"{what}: exit {r.code} (expected one of {sorted(codes)}): {r.stderr[-300:]!r}")
    return problems


# Many `genqueue … show` commands in one process: `genqueue.cli.main` as the console script runs it, each with
# its own stdout and stderr; an exception that escapes main() is what a user would see as a traceback. One
# process per example instead of one per command (~0.5 s of CPU each) keeps the test within its CI budget.
SHOW_DRIVER = """
import contextlib, io, json, sys, traceback
from genqueue.cli import main
out = []
for argv in json.load(sys.stdin):
    stdout, stderr, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = 1
    out.append({"code": code, "stdout": stdout.getvalue()[-2000:], "stderr": stderr.getvalue()})
sys.stdout.write(json.dumps(out))
"""


@dataclass
class Shown:
    code: int
    stdout: str
    stderr: str


def show_all(env: dict[str, str], commands: list[list[str]]) -> list[Shown]:
    proc = subprocess.run(
        [sys.executable, "-c", SHOW_DRIVER], env=env, input=json.dumps(commands), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [Shown(**r) for r in json.loads(proc.stdout)]


def reader_problems(rig: Rig, jobs: list[Pushed]) -> list[str]:
    commands = [(p, noun) for p in jobs for noun in ("jobs", "dlq")]
    shown = show_all(rig.env, [[noun, "show", p.job_id] for p, noun in commands])
    problems = []
    for (p, noun), r in zip(commands, shown, strict=True):
        codes = BAD_ID_EXIT if " " in p.job_id else SHOW_EXIT
        problems += cli_problems(f"{p.kind}: {noun} show {p.job_id}", r, codes)
    for p in jobs:
        quoted = p.job_id.replace(" ", "%20").replace("!", "%21")
        for route in (f"/api/jobs/{quoted}", f"/api/dlq/{quoted}", f"/ui/jobs?id={quoted}", f"/ui/dlq/{quoted}"):
            r = rig.client.get(route, headers=rig.admin if route.startswith("/api") else {})
            if r.status_code >= 500:
                problems.append(f"{p.kind}: GET {route} answered {r.status_code}: {r.text[:300]!r}")
            elif route.startswith("/api") and r.status_code >= 400 and "error" not in r.json():
                problems.append(f"{p.kind}: GET {route} answered {r.status_code} without the error envelope")
    return problems


# --- the secret -----------------------------------------------------------------------------------------------


def _opened(value: bytes) -> list[bytes]:
    """The value, and its zlib-decompressed text when it is compressed (RQ compresses job data and exc_info)."""
    try:
        return [value, zlib.decompress(value)]
    except zlib.error:
        return [value]


def redis_values(conn: Any) -> Any:
    """(key, value) for every value of every key in the database, read by type."""
    for batch in _batched(conn.scan_iter(count=500), 200):
        with conn.pipeline(transaction=False) as pipe:
            for key in batch:
                pipe.type(key)
            types = pipe.execute()
        with conn.pipeline(transaction=False) as pipe:
            for key, kind in zip(batch, types, strict=True):
                {
                    b"string": lambda k: pipe.get(k),
                    b"hash": lambda k: pipe.hgetall(k),
                    b"list": lambda k: pipe.lrange(k, 0, -1),
                    b"set": lambda k: pipe.smembers(k),
                    b"zset": lambda k: pipe.zrange(k, 0, -1),
                    b"stream": lambda k: pipe.xrange(k),
                }.get(kind, lambda k: pipe.exists(k))(key)
            replies = pipe.execute()
        for key, reply in zip(batch, replies, strict=True):
            yield key, key
            yield from ((key, v) for v in _flatten(reply))


def _flatten(reply: Any) -> Any:
    if isinstance(reply, bytes):
        yield reply
    elif isinstance(reply, dict):
        for k, v in reply.items():
            yield from _flatten(k)
            yield from _flatten(v)
    elif isinstance(reply, (list, tuple, set)):
        for item in reply:
            yield from _flatten(item)


def _batched(items: Any, n: int) -> Any:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def secret_problems(rig: Rig) -> list[str]:
    secret = rig.secret.encode()
    problems = [
        f"the provider token is in Redis at {key.decode(errors='replace')}"
        for key, value in redis_values(rig.conn)
        if any(secret in text for text in _opened(value))
    ]
    problems += [
        f"the provider token is in the {name} worker's log" for name, w in rig.workers.items() if rig.secret in w.log()
    ]
    return sorted(set(problems))


# --- the test -------------------------------------------------------------------------------------------------


@pytest.fixture
def rig(conn, settings, store, env, workers, tmp_path) -> Rig:
    from fastapi.testclient import TestClient

    from genqueue.api.app import create_app
    from genqueue.api.auth import mint
    from genqueue.api.config import ApiConfig
    from genqueue.api.ui import sessions
    from genqueue.support import logs
    from genqueue.tenants.tenancy import ADMIN_ROLE, Principal

    # The in-process API logs as a deployed one does (JSON lines), into a buffer searched for the secret too;
    # structlog's default console renderer would draw every 500's locals (minutes for a 2 MB or deep job).
    api_log = io.StringIO()
    logs.configure("json", stream=api_log)
    module = f"hostile_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(TASKS))
    secret = f"sk-test-{uuid.uuid4().hex}"
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    env["GENQUEUE_PROVIDER_TOKEN"] = secret  # a provider credential: scrubbed by value wherever it would land
    started = {name: workers(extra=("--tasks", module, *extra)) for name, extra in CLASSES.items()}
    jwt_secret = "hostile-test-secret-of-at-least-thirty-two-chars"
    config = ApiConfig("HS256", jwt_secret, jwt_secret, True, rate_limit="100000/minute")
    admin = {"Authorization": f"Bearer {mint(config, sub='root', admin=True)}"}
    with TestClient(create_app(settings, config, conn), raise_server_exceptions=False) as client:
        code = sessions.create_login(conn, Principal("root", "root", frozenset({ADMIN_ROLE})))
        assert client.get(f"/ui/login?code={code}", follow_redirects=False).status_code == 303
        yield Rig(
            conn,
            store,
            settings.queue,
            module,
            env,
            secret,
            started,
            client,
            admin,
            tmp_path,
            f"{settings.queue}-idle",
            api_log,
        )
    logs.configure("auto")


@hsettings(
    max_examples=6,
    deadline=None,
    database=None,
    phases=(Phase.explicit, Phase.generate),  # no shrinking: each example reports every problem by kind
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@example(kinds=[*HOSTILE, "good", "good"])  # every hostile kind, every run
@given(kinds=batches)
def test_no_hostile_job_stops_a_worker_breaks_a_reader_or_leaks_a_secret(rig: Rig, kinds: list[str]) -> None:
    rig.idle.clear()
    jobs = [push(rig, kind) for kind in kinds]
    problems = [f"{p.kind} {p.job_id}: {problem}" for p in jobs for problem in p.problems]
    problems += settle(rig, jobs)
    problems += pause_problems(rig, jobs)
    problems += [
        f"the {name} worker exited with status {w.proc.returncode}" for name, w in rig.workers.items() if not w.alive()
    ]
    problems += reader_problems(rig, [*jobs, *rig.idle])
    problems += secret_problems(rig)
    assert not problems, f"{len(problems)} problem(s) with kinds {sorted(set(kinds))}:\n" + "\n".join(problems)


def test_a_provider_token_with_a_trailing_newline_is_refused_at_worker_start(env, workers) -> None:
    """A credential with a newline (a Kubernetes secret file, a .env line) went out in every request's header and
    came back in every error: each worker class refuses to start, exit 2, naming the variable, never the value."""
    secret = f"sk-test-{uuid.uuid4().hex}"
    env["GENQUEUE_PROVIDER_TOKEN"] = secret + "\n"
    started = {name: workers(extra=extra) for name, extra in CLASSES.items()}
    deadline = time.monotonic() + 20
    while any(w.alive() for w in started.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    for name, w in started.items():
        log = w.log()
        assert not w.alive() and w.proc.returncode == 2, f"{name}: {'running' if w.alive() else w.proc.returncode}"
        assert "GENQUEUE_PROVIDER_TOKEN" in log and secret not in log, f"{name}: {log[-1000:]}"
