"""The task registry: the only functions a genqueue worker will call.

A task is a function registered under a name with its declared options (Dramatiq's actors are the model):
options are checked when the function is declared, so a typo is an error at import, not a surprise in a
worker. The RQ job's function name is the task name; a worker resolves it here and never through RQ's
`import_attribute`, which imports any dotted path (builtins included: `os.system`). A name not registered
in the worker is an UnknownTask, dead-lettered with reason `unknown_task`.

The built-in `generate` task is registered under the name every generation job has always been stored
with, `genqueue.jobs.generate`, and the short alias `generate`.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidInput
from ..limits.rules import Limits, template_fields
from ..retry.kinds import ErrorKind, Reason

BUILTIN_NAME = "genqueue.jobs.generate"
BUILTIN_ALIAS = "generate"
OPTIONS = (
    "queue",
    "max_retries",
    "timeout",
    "policy",
    "result_ttl",
    "api",
    "limit_key",
    "limits",
    "priority",
    "on_cancel",
    "estimate",
    "webhook",
    "webhook_events",
)
MAX_TIMEOUT_S = 7 * 86400


class UnknownTask(Exception):
    """A job whose function is not a registered task: never imported, never called, dead-lettered."""

    genqueue_kind = ErrorKind.PERMANENT
    genqueue_reason = Reason.UNKNOWN_TASK


@dataclass(frozen=True, slots=True)
class TaskSpec:
    name: str
    fn: Callable[..., Any] = field(repr=False, compare=False)
    queue: str | None = None  # None: the worker's / producer's default queue
    max_retries: int | None = None
    timeout: int | None = None  # seconds; None: the default job timeout
    policy: Mapping[str, Mapping[str, Any]] | None = None  # per-kind overrides, as --policy
    result_ttl: int | None = None
    api: bool = False  # may non-admins enqueue it over HTTP?
    limit_key: str | None = None  # "openai:{model}": jobs of one key share its limits (limits/)
    limits: Limits | None = None  # the key's default concurrency, rate and max_wait (Redis settings win)
    positional: bool = False  # the built-in generate(payload) takes one positional payload
    priority: str | None = None  # high, normal or low: its jobs' default priority (tenants/fairness.py)
    on_cancel: Callable[[Any], Any] | None = field(default=None, repr=False, compare=False)  # worker/cancel_hook.py
    # what one call will spend, reserved in its key's unit limits at start (tasks/estimates.py): a fixed
    # {"tokens": 500} or a function of the call's kwargs returning one
    estimate: Mapping[str, float] | Callable[[Mapping[str, Any]], Mapping[str, float]] | None = field(
        default=None, compare=False
    )
    webhook: str | None = None  # a URL its jobs call back (webhooks/); checked fully at each enqueue
    webhook_events: tuple[str, ...] | None = None  # which events (None: the terminal ones)

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.fn)

    def options(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "max_retries": self.max_retries,
            "timeout": self.timeout,
            "policy": dict(self.policy) if self.policy else None,
            "result_ttl": self.result_ttl,
            "api": self.api,
            "async": self.is_async,
            "limit_key": self.limit_key,
            "priority": self.priority,
            "on_cancel": None if self.on_cancel is None else default_name(self.on_cancel),
            "limits": None
            if self.limits is None
            else {
                "concurrency": self.limits.concurrency,
                "rate": None if self.limits.rate is None else str(self.limits.rate),
                "max_wait": self.limits.max_wait_s,
                **{unit: str(limit) for unit, limit in self.limits.units.items()},
            },
            "estimate": None
            if self.estimate is None
            else "function"
            if callable(self.estimate)
            else dict(self.estimate),
        }


_registry: dict[str, TaskSpec] = {}
_aliases: dict[str, str] = {BUILTIN_ALIAS: BUILTIN_NAME}


def default_name(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def declare(fn: Callable[..., Any], *, name: str | None = None, **options: Any) -> TaskSpec:
    """Check the options and register `fn`; InvalidInput for a bad or unknown option (raised at import)."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise InvalidInput(f"unknown task option(s) {', '.join(unknown)}; the options are {', '.join(OPTIONS)}")
    if not callable(fn):
        raise InvalidInput(f"a task must be a function, not {type(fn).__name__}")
    spec = TaskSpec(name or default_name(fn), fn, **_checked(options))
    if not spec.name or any(c.isspace() for c in spec.name) or len(spec.name) > 200:
        raise InvalidInput(f"invalid task name {spec.name!r}")
    existing = _registry.get(spec.name)
    if (
        existing is not None
        and existing.fn is not fn
        and getattr(existing.fn, "__code__", None) is not getattr(fn, "__code__", None)
    ):
        raise InvalidInput(f"task name {spec.name!r} is registered already, by {default_name(existing.fn)}")
    _registry[spec.name] = spec
    return spec


def _checked(options: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(options)
    for key in ("max_retries", "result_ttl"):
        value = out.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise InvalidInput(f"task option {key} must be a whole number ≥ 0, not {value!r}")
    _check_timeout_and_queue(out.get("timeout"), out.get("queue"))
    if out.get("policy") is not None:
        from ..retry.policy import checked_overrides

        out["policy"] = checked_overrides(out["policy"], "task option policy")
    if "api" in out and not isinstance(out["api"], bool):
        raise InvalidInput(f"task option api must be true or false, not {out['api']!r}")
    if out.get("priority") is not None:
        from ..tenants.fairness import check_priority

        try:
            out["priority"] = check_priority(out["priority"])
        except InvalidInput as exc:
            raise InvalidInput(f"task option {exc}") from None
    if out.get("on_cancel") is not None and not callable(out["on_cancel"]):
        raise InvalidInput(f"task option on_cancel must be a function, not {type(out['on_cancel']).__name__}")
    if out.get("limits") is not None:
        out["limits"] = Limits.parse(out["limits"])
        if not out.get("limit_key"):
            raise InvalidInput("task option limits needs a limit_key (the jobs that share them)")
    estimate = out.get("estimate")
    if estimate is not None and not callable(estimate):
        from ..limits.rules import check_amounts

        out["estimate"] = check_amounts(estimate, "task option estimate")
    if out.get("webhook") is not None or out.get("webhook_events") is not None:
        out["webhook"], out["webhook_events"] = _checked_webhook(out.get("webhook"), out.get("webhook_events"))
    if out.get("limit_key") is not None:
        if not isinstance(out["limit_key"], str):
            raise InvalidInput(f"task option limit_key must be a string, not {out['limit_key']!r}")
        template_fields(out["limit_key"])
    return out


def _check_timeout_and_queue(timeout: Any, queue: Any) -> None:
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int) or not 1 <= timeout <= MAX_TIMEOUT_S
    ):
        raise InvalidInput(f"task option timeout must be whole seconds from 1 to {MAX_TIMEOUT_S}, not {timeout!r}")
    if queue is not None and (not isinstance(queue, str) or not queue.strip()):
        raise InvalidInput(f"task option queue must be a queue name, not {queue!r}")


def _checked_webhook(url: Any, events: Any) -> tuple[str, tuple[str, ...] | None]:
    """The declaration's syntax (its host is checked, against GENQUEUE_WEBHOOK_ALLOW, at each enqueue)."""
    from ..backend.events import EVENTS

    if not isinstance(url, str) or not url.startswith(("https://", "http://")) or len(url) > 2000:
        raise InvalidInput("task option webhook must be an http(s) URL")
    if events is None:
        return url, None
    names = [events] if isinstance(events, str) else list(events) if isinstance(events, (list, tuple)) else None
    if not names or any(n not in EVENTS for n in names):
        raise InvalidInput(f"task option webhook_events must name events among {', '.join(EVENTS)}")
    return url, tuple(names)


def register(spec: TaskSpec) -> TaskSpec:
    """Register a spec as it is, unchecked: for genqueue's own tasks (and the bench's), whose calls take one
    positional payload as the built-in generate does. Your tasks use declare() / @genqueue.task."""
    _registry[spec.name] = spec
    return spec


def register_builtin(fn: Callable[..., Any]) -> TaskSpec:
    return register(TaskSpec(BUILTIN_NAME, fn, api=True, positional=True))


def lookup(name: str | None) -> TaskSpec | None:
    """The registered task of that name (or alias), or None. The built-in task registers itself on first use."""
    if name is None:
        return None
    name = _aliases.get(name, name)
    if name == BUILTIN_NAME and name not in _registry:
        from . import generate  # noqa: F401 - registers the built-in task

    return _registry.get(name)


def resolve_name(name: str) -> str:
    return _aliases.get(name, name)


def registered() -> list[TaskSpec]:
    lookup(BUILTIN_NAME)
    return sorted(_registry.values(), key=lambda s: s.name)


def bind(spec: TaskSpec, args: Iterable[Any], kwargs: Mapping[str, Any]) -> inspect.BoundArguments:
    """The call checked against the function's signature; InvalidInput naming what is wrong."""
    try:
        return inspect.signature(spec.fn).bind(*args, **kwargs)
    except TypeError as exc:
        raise InvalidInput(f"arguments for task {spec.name}: {exc}") from None


def import_task_modules(modules: Iterable[str], path: Iterable[str] = ()) -> list[str]:
    """Import the modules that declare tasks (`--tasks`, GENQUEUE_TASKS), with `path` and the working
    directory on the import path as `rq worker` does; InvalidInput for one that does not import."""
    import os

    for entry in [*path, os.getcwd()]:
        if entry and entry not in sys.path:
            sys.path.insert(0, entry)
    imported = []
    for module in (m.strip() for m in modules):
        if not module:
            continue
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - any import failure is the user's module: one clear line
            raise InvalidInput(f"cannot import task module {module!r}: {type(exc).__name__}: {exc}") from None
        imported.append(module)
    return imported
