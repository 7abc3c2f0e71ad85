"""The retry decision: given a classified failure and the job's retry state, retry (with a delay) or die.

Pure: the worker gathers the inputs, this module decides, and the worker applies the decision to Redis in
one transaction. One retry budget per job across kinds (per-job `max_retries` overrides the kind's
maximum); crashes are counted separately against the crash budget and never charged to the job.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..support.logs import get_logger
from ..support.safe_text import safe_str
from ..support.secrets import scrub
from .classify import Classifier, Rule, retry_after_from, status_code_of
from .kinds import ErrorKind, Reason
from .policy import DEFAULT_POLICIES, RetryPolicy, merged_policies, override, scaled_policies

if TYPE_CHECKING:
    from ..settings import Settings

log = get_logger("genqueue.retry")

MESSAGE_MAX = 2000
DEFAULT_MAX_WAIT_S = 3600.0  # RATE_LIMITED: waiting is not failing, but it is bounded by time
TRACEBACK_MAX = 8000


@dataclass(frozen=True, slots=True)
class Failure:
    kind: ErrorKind
    type: str
    message: str
    status_code: int | None = None
    retry_after: float | None = None
    traceback: str = ""
    reason: Reason | None = None  # a PERMANENT failure's own reason (unknown_task); else non_retryable


@dataclass(frozen=True, slots=True)
class RetryState:
    """What the job has used so far (read from job.meta['genqueue'])."""

    retries: int = 0  # retries charged to the job's budget
    crashes: int = 0
    max_retries: int | None = None  # per-job override of the kind's maximum
    history_kinds: Sequence[str] = field(default_factory=tuple)  # kinds failed with since the budget began
    attempts_before: int = 0  # attempts made before the budget began (earlier lives, before a DLQ replay)
    policy_overrides: Mapping[str, Mapping[str, object]] = field(default_factory=dict)  # this job's own
    rate_limited_since: float | None = None  # start of its first RATE_LIMITED attempt in this budget (epoch s)
    max_wait_s: float = DEFAULT_MAX_WAIT_S  # how long rate limits may hold it back, in all

    @property
    def attempt(self) -> int:
        """The number of the attempt that just failed (counting across replays)."""
        return self.attempts_before + len(self.history_kinds) + 1


@dataclass(frozen=True, slots=True)
class Decision:
    action: str  # "retry" | "dead"
    kind: ErrorKind
    attempt: int
    delay: float | None = None
    retry_after: float | None = None
    clipped: bool = False
    charged: bool = False  # does this retry consume the job's retry budget?
    reason: Reason | None = None

    @property
    def is_retry(self) -> bool:
        return self.action == "retry"


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit // 2] + "\n…\n" + text[-limit // 2 :]


class RetryManager:
    def __init__(
        self,
        policies: Mapping[ErrorKind, RetryPolicy] | None = None,
        *,
        rules: Iterable[Rule] = (),
        scale: float = 1.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        base = dict(DEFAULT_POLICIES if policies is None else {**DEFAULT_POLICIES, **policies})
        self.scale = scale
        self.policies = scaled_policies(scale, base) if scale != 1.0 else base
        self._unscaled = base
        self.classifier = Classifier(rules)
        self.rand = rand

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> RetryManager:
        """Defaults ← GENQUEUE_POLICY_* overrides, then GENQUEUE_BACKOFF_SCALE; GENQUEUE_RETRY_RULES adds
        user rules (a callable or a list of them, named as "package.module:attribute")."""
        if settings.retry_rules and "rules" not in kwargs:
            kwargs["rules"] = load_rules(settings.retry_rules)
        return cls(merged_policies(settings.policy_overrides), scale=settings.backoff_scale, **kwargs)

    def policy_for(self, kind: ErrorKind, state: RetryState) -> RetryPolicy:
        """This job's policy for a kind: its own override (at enqueue) over the worker's policies."""
        changes = state.policy_overrides.get(str(kind)) if state.policy_overrides else None
        if not changes:
            return self.policies[kind]
        try:
            policy = override(self._unscaled[kind], changes)
        except ValueError:
            log.warning("retry.bad_job_policy", kind=str(kind), policy=str(changes)[:200])
            return self.policies[kind]
        return policy.scaled(self.scale) if self.scale != 1.0 else policy

    def rule(self, fn: Rule) -> Rule:
        """Decorator: register a classification rule that runs before the built-in ones."""
        return self.classifier.add_rule(fn)

    def failure_from_exception(self, exc: BaseException, traceback_text: str = "") -> Failure:
        """Classify: the kind from the first matching rule; the delay from that rule's Verdict, else from
        the exception (retry-after-ms, Retry-After, RetryInfo); the rule's note, if any, before the message."""
        verdict = self.classifier.verdict(exc)
        retry_after, bad = retry_after_from(exc)
        if verdict.retry_after is not None:
            retry_after = verdict.retry_after
        elif bad is not None:
            log.warning("retry.bad_retry_after", value=repr(bad)[:100], error_type=type(exc).__name__)
        message = safe_str(exc) if verdict.note is None else f"[{verdict.note}] {safe_str(exc)}"
        # Scrubbed, then cut: a secret cut in half would no longer be found, and its prefix would be stored.
        return Failure(
            kind=verdict.kind,
            type=type(exc).__name__,
            message=_truncate(scrub(message), MESSAGE_MAX),
            status_code=status_code_of(exc),
            retry_after=retry_after,
            traceback=_truncate(scrub(traceback_text), TRACEBACK_MAX),
            reason=_reason_of(exc),
        )

    @staticmethod
    def crash_failure(message: str) -> Failure:
        return Failure(kind=ErrorKind.CRASH, type="WorkHorseKilled", message=scrub(message))

    def decide(self, failure: Failure, state: RetryState, *, now: float | None = None) -> Decision:
        kind = failure.kind
        attempt = state.attempt
        if kind is ErrorKind.RATE_LIMITED:
            return self._rate_limited(failure, state, time.time() if now is None else now)
        if kind is ErrorKind.CRASH:
            crash = self.policy_for(ErrorKind.CRASH, state)
            if state.crashes >= crash.max_retries:
                return Decision("dead", kind, attempt, reason=Reason.CRASH_LOOP)
            delay, clipped = crash.delay_for(state.crashes + 1, rand=self.rand)
            return Decision("retry", kind, attempt, delay=delay, clipped=clipped, charged=False)
        if kind is ErrorKind.PERMANENT:
            return Decision(
                "dead", kind, attempt, retry_after=failure.retry_after, reason=failure.reason or Reason.NON_RETRYABLE
            )
        policy = self.policy_for(kind, state)
        limit = policy.max_retries if state.max_retries is None else state.max_retries
        if state.retries >= limit:
            return Decision("dead", kind, attempt, retry_after=failure.retry_after, reason=Reason.EXHAUSTED)
        n = 1 + sum(1 for k in state.history_kinds if k == kind)
        delay, clipped = policy.delay_for(n, retry_after=failure.retry_after, rand=self.rand)
        return Decision(
            "retry", kind, attempt, delay=delay, retry_after=failure.retry_after, clipped=clipped, charged=True
        )

    def _rate_limited(self, failure: Failure, state: RetryState, now: float) -> Decision:
        """A 429 says "wait", not "you failed": never charged to the retry budget (Sidekiq's limiters,
        BullMQ's RateLimitError), bounded instead by how long the job has been held back (max_wait)."""
        since = now if state.rate_limited_since is None else state.rate_limited_since
        if now - since >= state.max_wait_s:
            return Decision(
                "dead",
                ErrorKind.RATE_LIMITED,
                state.attempt,
                retry_after=failure.retry_after,
                reason=Reason.RATE_LIMIT_WAIT_EXCEEDED,
            )
        policy = self.policy_for(ErrorKind.RATE_LIMITED, state)
        if failure.retry_after is not None:
            # The provider said when: the job comes back then (capped), not after a backoff on top. Its key is
            # paused until then too (limits/), so the job parks rather than calling early if it is sooner.
            delay = min(policy.cap_s, max(0.0, failure.retry_after))
            return Decision(
                "retry",
                ErrorKind.RATE_LIMITED,
                state.attempt,
                delay=delay,
                retry_after=failure.retry_after,
                clipped=delay < failure.retry_after,
                charged=False,
            )
        n = 1 + sum(1 for k in state.history_kinds if k == ErrorKind.RATE_LIMITED)
        delay, clipped = policy.delay_for(n, rand=self.rand)
        return Decision(
            "retry",
            ErrorKind.RATE_LIMITED,
            state.attempt,
            delay=delay,
            retry_after=None,
            clipped=clipped,
            charged=False,
        )


def _reason_of(exc: BaseException) -> Reason | None:
    reason = getattr(exc, "genqueue_reason", None)
    try:
        return Reason(reason) if isinstance(reason, str) else None
    except ValueError:
        return None


def load_rules(spec: str) -> list[Rule]:
    import importlib

    from ..errors import InvalidInput

    module_name, _, attr = spec.partition(":")
    try:
        target = getattr(importlib.import_module(module_name), attr or "RULES")
    except (ImportError, AttributeError, ValueError) as exc:
        raise InvalidInput(f"GENQUEUE_RETRY_RULES={spec!r}: {exc}") from None
    rules = list(target) if isinstance(target, (list, tuple)) else [target]
    if not all(callable(r) for r in rules):
        raise InvalidInput(f"GENQUEUE_RETRY_RULES={spec!r} must name a callable or a list of callables")
    return rules


def decision_record(
    decision: Decision, failure: Failure, *, started_at: str | None, ended_at: str | None, worker: str
) -> dict[str, Any]:
    """The design's per-attempt history record (JSON-ready)."""
    return {
        "n": decision.attempt,
        "kind": str(decision.kind),
        "error": {
            "type": failure.type,
            "message": failure.message,
            "status_code": failure.status_code,
            "traceback": failure.traceback,
        },
        "started_at": started_at,
        "ended_at": ended_at,
        "worker": worker,
        "action": decision.action,
        "delay": None if decision.delay is None else round(decision.delay, 3),
        "retry_after": failure.retry_after,
        "clipped": decision.clipped,
        "charged": decision.charged,
        "reason": None if decision.reason is None else str(decision.reason),
    }


__all__ = ["Decision", "Failure", "RetryManager", "RetryState", "decision_record"]
