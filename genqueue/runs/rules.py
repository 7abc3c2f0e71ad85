"""Runs, the pure part: ids, the run file, status derivation and retry eligibility. No Redis here.

Seed rules (issue 7): a run is running while any item is queued/scheduled/retrying/running; then completed
(every item finished), failed (none did) or partially_failed. `retry-failed` retries every failed item
except PERMANENT ones (validation, auth: retrying cannot fix them); a CRASH (or reason crash_loop) is our
fault and is retried free; charged retries are capped per item (1-10, default 3), all or nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ..backend import keys
from ..errors import Conflict, GenqueueError, InvalidInput
from ..jobs.enqueue import RUN_ITEM_ID
from ..jobs.manual_retry import is_free
from ..jobs.status import RQ_TO_STATUS
from ..retry.kinds import ErrorKind, Reason
from ..tasks.generate import validate_payload
from ..tasks.registry import lookup

RUN_KEY_PREFIX = keys.RUN_PREFIX
# RQ 2.12 accepts job ids of [A-Za-z0-9_-] only (':' separates a job id from an execution id), so an item
# is `<run_id>-item-<index>`, not the seed's `<run_id>:item:<index>`; the index is digits only, so the
# last "-item-" splits an item id one way, and no two (run, index) pairs share an id.
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
MAX_ITEMS = 100_000
MAX_REPORTED = 20  # bad lines / offending items named in one error message
LIMIT_MIN, LIMIT_MAX, DEFAULT_LIMIT = 1, 10, 3  # charged manual retries per item (retry-failed)
ACTIVE = frozenset({"queued", "scheduled", "retrying", "running", "parked", "deferred"})
STATUS_ORDER = (
    "queued",
    "scheduled",
    "retrying",
    "running",
    "parked",
    "deferred",
    "finished",
    "failed",
    "stopped",
    "canceled",
    "dead",
    "missing",
)
CORRUPT = "corrupt_entry"
_RQ_STATUS = {status.value: shown for status, shown in RQ_TO_STATUS.items()}


class NothingToRetry(GenqueueError):
    code = "NOTHING_TO_RETRY"


class RetryLimitReached(Conflict):
    code = "RETRY_LIMIT_REACHED"


def run_key(run_id: str) -> str:
    return RUN_KEY_PREFIX + run_id


def item_id(run_id: str, index: int) -> str:
    return f"{run_id}-item-{index}"  # the shape jobs.enqueue.RUN_ITEM_ID reserves for runs


def run_of_item(job_id: str) -> str | None:
    """The run id an item id names, or None for an id that is not shaped like a run item."""
    match = RUN_ITEM_ID.fullmatch(job_id)
    return match["run"] if match and RUN_ID.fullmatch(match["run"]) else None


def check_run_id(run_id: str) -> str:
    # fullmatch, not match: `$` also matches before a final newline, and "nl\n" reached RQ's id check (a 500).
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
        raise InvalidInput(f"invalid run id {run_id!r}: 1-100 of A-Z a-z 0-9 _ -, starting with a letter or digit")
    return run_id


def check_limit(limit: int) -> int:
    if not isinstance(limit, int) or not LIMIT_MIN <= limit <= LIMIT_MAX:
        raise InvalidInput(f"the per-item retry limit must be {LIMIT_MIN}-{LIMIT_MAX}, not {limit!r}")
    return limit


def item_checker(task: str | None, published: Any = None) -> Callable[[Any], dict[str, Any]]:
    """How one line is checked: the generate task's payload rule, or a task's kwargs (its signature and limit
    key where it is registered in this process, or as the live workers `published` it: tasks/catalogue.py)."""
    local = lookup(task) if task is not None else None
    if task is None or (local is not None and local.positional):
        return validate_payload
    from ..jobs.enqueue import task_call

    catalogue = None if published is None else {published.name: published}

    def check(kwargs: Any) -> dict[str, Any]:
        task_call(task, kwargs, catalogue)  # InvalidInput unless a JSON object that fits the task's signature
        checked: dict[str, Any] = kwargs
        return checked

    return check


def parse_run_file(lines: Iterable[str], task: str | None = None) -> list[dict[str, Any]]:
    """One payload per line (a task's kwargs with `task`; blank lines skipped). All or nothing: any bad line
    → InvalidInput naming the line numbers, before anything is enqueued."""
    validate = item_checker(task)
    payloads: list[dict[str, Any]] = []
    bad: list[tuple[int, str]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            payloads.append(validate(json.loads(line)))
        except json.JSONDecodeError as exc:
            bad.append((number, f"not valid JSON ({exc.msg} at column {exc.colno})"))
        except (ValueError, RecursionError):  # over-long integers, absurd nesting: json raises these plainly
            bad.append((number, "not valid JSON (a number too long or nesting too deep)"))
        except InvalidInput as exc:
            bad.append((number, str(exc)))
    if bad:
        listed = "; ".join(f"line {n}: {why}" for n, why in bad[:MAX_REPORTED])
        more = f" (+{len(bad) - MAX_REPORTED} more)" if len(bad) > MAX_REPORTED else ""
        raise InvalidInput(f"{len(bad)} bad line(s) in the run file, nothing enqueued: {listed}{more}")
    if not payloads:
        raise InvalidInput("the run file has no items (one JSON payload per line)")
    if len(payloads) > MAX_ITEMS:
        raise InvalidInput(f"a run holds at most {MAX_ITEMS} items, not {len(payloads)}")
    return payloads


def run_digest(payloads: Sequence[Mapping[str, Any]], max_retries: int | None, task: str | None = None) -> str:
    """Identifies a submission: the same file with the same options (and task) gives the same digest."""
    h = hashlib.sha256(f"max_retries={max_retries}\n".encode() + (f"task={task}\n".encode() if task else b""))
    for payload in payloads:
        h.update(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode() + b"\n")
    return h.hexdigest()


def default_run_id(digest: str) -> str:
    # Derived from the content, not random: resubmitting the same file without --run-id is a no-op too.
    return f"run-{digest[:16]}"


def item_status(rq_status: str | None, has_history: bool, in_dlq: bool) -> str:
    """genqueue.jobs.status's vocabulary for one item, from what is stored: a dead job has no RQ hash left, only
    its DLQ entry; a scheduled job that has failed before is retrying."""
    if rq_status is None:
        return "dead" if in_dlq else "missing"
    shown = _RQ_STATUS.get(rq_status, rq_status)
    return "retrying" if shown == "scheduled" and has_history else shown


def run_status(counts: Mapping[str, int]) -> str:
    if any(counts.get(s) for s in ACTIVE):
        return "running"
    total, finished = sum(counts.values()), counts.get("finished", 0)
    if total and finished == total:
        return "completed"
    return "failed" if finished == 0 else "partially_failed"


class RetryClass(StrEnum):
    FREE = "free"  # our fault (a crash): retried without counting against the user
    CHARGED = "charged"
    NEVER = "never"  # the user's input (validation, auth): retrying cannot fix it


def retry_class(kind: str | None, reason: str | None) -> RetryClass:
    if reason in (Reason.NON_RETRYABLE.value, CORRUPT) or kind == ErrorKind.PERMANENT.value:
        return RetryClass.NEVER
    return RetryClass.FREE if is_free(kind, reason) else RetryClass.CHARGED


@dataclass(frozen=True, slots=True)
class FailedItem:
    index: int
    job_id: str
    status: str
    kind: str | None
    reason: str | None
    charged_retries: int

    @property
    def retry_class(self) -> RetryClass:
        return retry_class(self.kind, self.reason)


@dataclass(frozen=True)
class RetryPlan:
    free: tuple[FailedItem, ...]
    charged: tuple[FailedItem, ...]
    never: tuple[FailedItem, ...]
    over_limit: tuple[FailedItem, ...]  # charged items whose next retry would pass the limit

    @property
    def to_retry(self) -> tuple[FailedItem, ...]:
        return tuple(sorted(self.free + self.charged, key=lambda i: i.index))


def plan_retry(items: Iterable[FailedItem], limit: int) -> RetryPlan:
    by: dict[RetryClass, list[FailedItem]] = {c: [] for c in RetryClass}
    for item in items:
        by[item.retry_class].append(item)
    over = tuple(i for i in by[RetryClass.CHARGED] if i.charged_retries + 1 > limit)
    return RetryPlan(tuple(by[RetryClass.FREE]), tuple(by[RetryClass.CHARGED]), tuple(by[RetryClass.NEVER]), over)


def checked_plan(run_id: str, counts: Mapping[str, int], failed: Iterable[FailedItem], limit: int) -> RetryPlan:
    """The plan, or the error that stops it: Conflict while running, NothingToRetry, RetryLimitReached."""
    status = run_status(counts)
    if status == "running":
        active = ", ".join(f"{counts[s]} {s}" for s in counts if s in ACTIVE)
        raise Conflict(f"run {run_id} is running ({active}); retry its failed items once it has stopped")
    plan = plan_retry(failed, limit)
    if not plan.to_retry:
        why = f"run {run_id} is {status}"
        if plan.never:
            why += f"; {len(plan.never)} item(s) failed permanently (validation/auth) and are never retried"
        if counts.get("missing"):
            why += f"; {counts['missing']} item(s) are missing: resubmit the run file to create them"
        raise NothingToRetry(f"nothing to retry: {why}")
    if plan.over_limit:
        named = ", ".join(f"{i.job_id} ({i.charged_retries} charged)" for i in plan.over_limit[:MAX_REPORTED])
        more = f" (+{len(plan.over_limit) - MAX_REPORTED} more)" if len(plan.over_limit) > MAX_REPORTED else ""
        raise RetryLimitReached(
            f"retry limit reached: {len(plan.over_limit)} item(s) would pass {limit} charged "
            f"retries, so nothing was retried: {named}{more}"
        )
    return plan
