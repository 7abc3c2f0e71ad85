"""The catalogue: the tasks the live workers registered, so a producer that cannot import them still checks
an enqueue by name (Dramatiq's broker knows its actors; here the workers tell Redis).

Each worker writes, when it starts, one hash of its tasks (`keys.worker_tasks`): per task its signature (the
parameters' names, kinds and whether they are required) and its declared options (queue, timeout, policy,
max_retries, result_ttl, api, limit_key). A reader takes the union over the workers whose alive key exists
(liveness.py), so a stopped or dead worker's tasks drop out as soon as its heartbeat does; the hash is deleted
when the worker stops and when the sweep prunes it.

The pure half (entry_of, signature_of, check_kwargs) has no Redis; publish/withdraw/read are its I/O.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.typing import EncodableT, FieldT

from ..backend import keys
from ..backend.replies import text
from ..errors import InvalidInput
from ..limits.rules import render_key
from .registry import TaskSpec

PARAMETER_KINDS = {kind.name: kind for kind in inspect._ParameterKind}


@dataclass(frozen=True, slots=True)
class CatalogueTask:
    """A task as the live workers published it: what a producer needs to check a call and apply defaults."""

    name: str
    parameters: tuple[dict[str, Any], ...]
    options: Mapping[str, Any]

    @property
    def timeout(self) -> int | None:
        return self.options.get("timeout")

    @property
    def queue(self) -> str | None:
        return self.options.get("queue")

    @property
    def max_retries(self) -> int | None:
        return self.options.get("max_retries")

    @property
    def policy(self) -> Mapping[str, Any] | None:
        return self.options.get("policy")

    @property
    def priority(self) -> str | None:
        return self.options.get("priority")

    @property
    def result_ttl(self) -> int | None:
        return self.options.get("result_ttl")

    @property
    def api(self) -> bool:
        return bool(self.options.get("api"))

    @property
    def limit_key(self) -> str | None:
        return self.options.get("limit_key")

    positional = False  # the built-in generate is always registered locally, never looked up here


def entry_of(spec: TaskSpec) -> dict[str, Any]:
    """What a worker publishes for one task (JSON-ready)."""
    try:
        params = list(inspect.signature(spec.fn).parameters.values())
    except (TypeError, ValueError):  # a callable without a signature: anything binds
        params = [inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)]
    parameters = [
        {"name": p.name, "kind": p.kind.name, "required": p.default is inspect.Parameter.empty} for p in params
    ]
    return {"parameters": parameters, "options": spec.options()}


def task_of(name: str, raw: str | bytes) -> CatalogueTask | None:
    """A published entry read back; None for one that cannot be read (another version's, or corrupt)."""
    try:
        data = json.loads(raw)
        parameters = tuple(dict(p) for p in data["parameters"])
        options = dict(data["options"])
        signature_of(parameters)
    except (ValueError, TypeError, KeyError):
        return None
    return CatalogueTask(name, parameters, options)


def signature_of(parameters: Iterable[Mapping[str, Any]]) -> inspect.Signature:
    return inspect.Signature(
        [
            inspect.Parameter(
                p["name"],
                PARAMETER_KINDS[p["kind"]],
                default=inspect.Parameter.empty if p.get("required") else None,
            )
            for p in parameters
        ]
    )


def check_kwargs(task: CatalogueTask, kwargs: Mapping[str, Any]) -> None:
    """InvalidInput naming what is wrong with a call of `task`, as registry.bind says it for a local task;
    its limit key rendered as the worker will (limits.rules.render_key)."""
    try:
        signature_of(task.parameters).bind(**kwargs)
    except TypeError as exc:
        raise InvalidInput(f"arguments for task {task.name}: {exc}") from None
    if task.limit_key:
        render_key(task.limit_key, kwargs)


def publish(connection: Redis, worker_name: str, specs: Iterable[TaskSpec]) -> None:
    """Write this worker's tasks (one hash, replaced as a whole)."""
    key = keys.worker_tasks(worker_name)
    mapping: dict[FieldT, EncodableT] = {
        spec.name: json.dumps(entry_of(spec), sort_keys=True) for spec in specs if not spec.positional
    }
    with connection.pipeline(transaction=True) as pipe:
        pipe.delete(key)
        if mapping:
            pipe.hset(key, mapping=mapping)
        pipe.execute()


def withdraw(connection: Redis, worker_name: str) -> None:
    connection.delete(keys.worker_tasks(worker_name))


def read(connection: Redis) -> dict[str, CatalogueTask]:
    """name → task, over the workers whose alive key exists (when two publish one name, the first wins)."""
    names = sorted(text(n) for n in connection.smembers(keys.WORKERS))
    if not names:
        return {}
    with connection.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.exists(keys.alive(name))
            pipe.hgetall(keys.worker_tasks(name))
        replies = pipe.execute()
    tasks: dict[str, CatalogueTask] = {}
    for alive, entries in zip(replies[::2], replies[1::2], strict=True):
        if not alive:
            continue
        for raw_name, raw in entries.items():
            name = raw_name.decode()
            if name not in tasks and (task := task_of(name, raw)) is not None:
                tasks[name] = task
    return tasks
