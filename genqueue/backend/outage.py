"""Server outages are weather: long-running processes wait for Redis to come back instead of dying.

redis-py retries a command that hit a connection error through the connection's `Retry` object (its
default: 3 tries in well under a second, then the error reaches the caller). A genqueue worker, the
scheduler and the RQ work loop around them would then exit — RQ's `monitor_work_horse` does not catch
`ConnectionError`, and under honcho one exiting process stops every other one. `PatientRetry` instead
keeps retrying, with capped exponential backoff and jitter, until the *outage* (not the single command)
has lasted `outage_s` (GENQUEUE_REDIS_OUTAGE_S, default 60 s). The outage is process-wide: it starts at
the first failed command of any thread and ends at the first command that succeeds, so a command issued
late in an outage does not get a fresh minute, and the log has one warning when the server goes away and
one info line when it is back — not one line per retried command.

Past the limit the command raises `OutageTooLong`. It is a `SystemExit` on purpose: RQ's work loop logs any
`Exception` with a traceback and carries on to the next job, but re-raises `SystemExit` (its cold-shutdown
path), so the worker ends cleanly and the CLI prints one line and exits 5. A job it was running is then
found abandoned by the sweep of a live worker, like any dead worker's.

Transactions stay safe while waiting: redis-py turns a connection error under WATCH into `WatchError`, so
every WATCH/MULTI in genqueue re-reads its claim after a reconnect instead of replaying a blind EXEC.

A failover is an outage too. The server answers `READONLY` (it was demoted to a replica), `NOREPLICAS`
(min-replicas-to-write is not met), `MASTERDOWN` (a replica lost its primary), `LOADING` (a restarted server
reading its data) or, to a blocked BLMOVE/BZPOPMIN, `UNBLOCKED ... (master -> replica)`. Each of these refuses
the whole command (a script fails at its first write, and every write fails alike, so nothing ran), so the
connection classes built in connection.py turn them into `PrimaryMoved`, a `ConnectionError`, after dropping
the socket: redis-py's retry, WATCH and pool logic then treat it as a lost connection, and the reconnect asks
the sentinels (or DNS, for a managed primary endpoint) where the primary is now.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import BusyLoadingError, ConnectionError, MasterDownError, ReadOnlyError, RedisError
from redis.retry import Retry

from ..support.logs import get_logger

log = get_logger("genqueue.outage")

DEFAULT_OUTAGE_S = 60.0
BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 2.0  # a restarted server is noticed within 2 s


class OutageTooLong(SystemExit):
    """The server stayed unreachable longer than the configured outage limit."""

    exit_code = 5

    def __init__(self, seconds: float, reason: str) -> None:
        super().__init__(self.exit_code)
        self.seconds = seconds
        self.reason = reason

    def __str__(self) -> str:
        return f"Redis unreachable for {self.seconds:.0f} s (limit GENQUEUE_REDIS_OUTAGE_S): {self.reason}"


# Error replies that mean "this server is not (or not yet) a writable primary"; the command did not run.
FAILOVER_REPLIES = ("READONLY", "NOREPLICAS", "MASTERDOWN", "LOADING", "UNBLOCKED force unblock")


class PrimaryMoved(ConnectionError):
    """The server refused a command because it is not a writable primary (any more): a failover."""


def primary_moved(error: BaseException) -> bool:
    """Is this reply one of a failover's (see FAILOVER_REPLIES)? redis-py maps some codes to their own classes
    and strips the code from the message; a script's error keeps it at the start of the message."""
    if isinstance(error, (ReadOnlyError, MasterDownError, BusyLoadingError)):
        return True
    return isinstance(error, RedisError) and str(error).lstrip().startswith(FAILOVER_REPLIES)


class FollowsPrimary:
    """Connection mixin: a failover-shaped error reply drops the socket and becomes `PrimaryMoved`, so the
    next try reconnects (asking the sentinels again, for a Sentinel-managed connection)."""

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)  # type: ignore[misc]
        except RedisError as error:
            if isinstance(error, PrimaryMoved) or not primary_moved(error):
                raise
            self.disconnect()  # type: ignore[attr-defined]
            raise PrimaryMoved(f"the server is not a writable primary: {_reason(error)}") from error


class OutageClock:
    """When the current outage started (monotonic), shared by every thread of this process."""

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self._now = now
        self._lock = threading.Lock()
        self.started: float | None = None
        self.last_ended: float | None = None  # when this process last saw the server come back

    def failed(self, error: BaseException) -> float:
        """Record a failed command; returns how long the outage has lasted. Logs once per outage."""
        with self._lock:
            now = self._now()
            if self.started is None:
                self.started = now
                log.warning("redis.unreachable", error=_reason(error), pid=os.getpid())
            return now - self.started

    def succeeded(self) -> None:
        if self.started is None:  # the hot path: one attribute read, no lock
            return
        with self._lock:
            if self.started is None:
                return
            now = self._now()
            log.info("redis.reconnected", down_s=round(now - self.started, 2), pid=os.getpid())
            self.started = None
            self.last_ended = now

    def recently_back(self, within_s: float) -> bool:
        """Did this process see the server come back less than `within_s` ago (or is it still away)?"""
        if self.started is not None:
            return True
        return self.last_ended is not None and self._now() - self.last_ended < within_s


CLOCK = OutageClock()


def _after_fork_in_child() -> None:
    # A lock held by another thread at fork time would never be released in the child.
    CLOCK._lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _reason(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class PatientRetry(Retry):
    """A redis-py Retry that waits out an outage of up to `outage_s` seconds (see the module docstring)."""

    def __init__(
        self,
        outage_s: float = DEFAULT_OUTAGE_S,
        *,
        clock: OutageClock | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(ExponentialWithJitterBackoff(base=BACKOFF_BASE_S, cap=BACKOFF_CAP_S), retries=-1)
        self.outage_s = outage_s
        self._clock = clock
        self._sleep = sleep

    def __deepcopy__(self, memo: dict) -> PatientRetry:
        # redis-py deep-copies the Retry into each connection; the clock must stay the one shared object.
        return PatientRetry(self.outage_s, clock=self._clock, sleep=self._sleep)

    @property
    def clock(self) -> OutageClock:
        return self._clock or CLOCK

    def call_with_retry(
        self,
        do: Callable[[], Any],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> Any:
        self._backoff.reset()
        failures = 0
        while True:
            try:
                result = do()
            except self._supported_errors as error:
                if is_retryable and not is_retryable(error):
                    raise
                failures += 1
                down_for = self.clock.failed(error)
                fail(error, failures) if with_failure_count else fail(error)  # may raise WatchError
                left = self.outage_s - down_for
                if left <= 0:
                    raise OutageTooLong(down_for, _reason(error)) from error
                self._sleep(min(self._backoff.compute(failures), left))
                continue
            if failures or not _is_connect(do):
                self.clock.succeeded()
            return result


def _is_connect(do: Callable[[], Any]) -> bool:
    """redis-py's Connection.connect() wraps its handshake in the retry, and returns at once without
    talking to the server when the connection still holds a (possibly dead) socket: that is no sign the
    server is back, and counting it made the log flap between 'unreachable' and 'reconnected'."""
    name = getattr(do, "__qualname__", "")
    return ".connect.<locals>" in name or name.endswith("._connect_retry")  # the latter: a Sentinel connection


def quick_retry() -> Retry:
    """For one-shot commands and checks that decide something (is the server up?): one try, no waiting."""
    return Retry(NoBackoff(), 0)


def short_retry() -> Retry:
    """For CLI commands and HTTP requests: ride out a reconnect (stale pooled connection), not an outage."""
    return Retry(ExponentialWithJitterBackoff(base=BACKOFF_BASE_S, cap=0.5), 2)
