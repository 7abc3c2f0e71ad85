"""Close a provider's HTTP request in flight when its job is canceled, so the provider sees the connection go
(and, for most, stops the work and the billing) instead of finishing a generation nobody wants.

The `openai` and `http` providers build their httpx client on `abortable_transport()`: its connections'
network streams note which thread reads or writes them. A call runs inside `abort_on_cancel()`, whose watcher
thread asks `genqueue.current().cancelled` every WATCH_S and, once the job is canceled, shuts the calling
thread's socket down (`shutdown(SHUT_RDWR)`: the provider gets the FIN at once, and the call's blocked read
returns at once, which a `close()` from another thread would not do). The call then raises CallCanceled
and the job ends `canceled` as any canceled running job does (worker/cancel.py). Per
thread, so a concurrent worker's other jobs sharing the process's client keep their own requests. Outside a
job (no `current()`), nothing is watched.
"""

from __future__ import annotations

import importlib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import httpx

from ...support.logs import get_logger
from ..context import current

log = get_logger("genqueue.provider")
WATCH_S = 0.25  # how often a call in flight looks for its job's cancel (TaskContext.cancelled asks at most this often)


class CallCanceled(Exception):
    """A provider call closed because its job was canceled. The job ends `canceled` whatever the task raises
    (the move that ends the attempt finds the cancel request: worker/cancel.py), never retried."""


_in_flight: dict[int, _Stream] = {}  # thread ident -> the stream its call last read or wrote
_lock = threading.Lock()


class _Stream:
    """A network stream (httpcore's, or httpcore2's for the openai SDK's httpx2) that notes the thread using
    it, and can be shut down from another thread."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def _mark(self) -> None:
        with _lock:
            _in_flight[threading.get_ident()] = self

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self._mark()
        return self._inner.read(max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._mark()
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None) -> _Stream:
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)

    def __getattr__(self, name: str) -> Any:  # anything else a newer httpcore asks of a stream
        return getattr(self._inner, name)

    def abort(self) -> None:
        sock = self._inner.get_extra_info("socket")
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)


class _Backend:
    """A network backend whose streams are _Streams; the rest is the wrapped backend's."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def connect_tcp(self, *args: Any, **kwargs: Any) -> _Stream:
        return _Stream(self._inner.connect_tcp(*args, **kwargs))

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> _Stream:
        return _Stream(self._inner.connect_unix_socket(*args, **kwargs))

    def __getattr__(self, name: str) -> Any:  # sleep, …
        return getattr(self._inner, name)


def abortable_transport(http: ModuleType = httpx, **options: Any) -> Any:
    """`http.HTTPTransport` (httpx's, or httpx2's for the openai SDK), its connection pool on the noting
    backend: httpcore's constructor takes a network backend but httpx does not expose it, so it is set on
    the pool httpx built (tests/unit/tasks pins the attribute)."""
    transport = http.HTTPTransport(**options)
    transport._pool._network_backend = _Backend(transport._pool._network_backend)
    return transport


def httpx_of(client_class: type) -> ModuleType:
    """The httpx package (httpx, or the openai SDK's httpx2) a client class is built on."""
    for base in client_class.__mro__:
        root = base.__module__.split(".")[0]
        if base.__name__ == "Client" and root in ("httpx", "httpx2"):
            return importlib.import_module(root)
    return httpx


def abort_thread_call(ident: int) -> bool:
    """Shut down the socket the thread `ident` is using for its call; False when it has none."""
    with _lock:
        stream = _in_flight.get(ident)
    if stream is None:
        return False
    try:
        stream.abort()
    except OSError:
        return False  # closed already
    return True


@contextmanager
def abort_on_cancel() -> Iterator[None]:
    """Run a provider call so that its job's cancel closes the request (see the module docstring)."""
    ctx = current()
    if ctx is None:
        yield
        return
    ident, done, aborted = threading.get_ident(), threading.Event(), threading.Event()

    def watch() -> None:
        while not done.wait(WATCH_S):
            try:
                canceled = ctx.cancelled
            except Exception:  # noqa: BLE001 - the server away: look again; the worker's own watch still runs
                continue
            if canceled:
                if abort_thread_call(ident):
                    aborted.set()
                    log.info("provider.call_aborted", job_id=ctx.job_id)
                return

    watcher = threading.Thread(target=watch, name=f"abort-{ctx.job_id}", daemon=True)
    watcher.start()
    try:
        yield
    except Exception:
        if aborted.is_set():
            raise CallCanceled(f"job {ctx.job_id} was canceled: its provider request was closed") from None
        raise
    finally:
        done.set()
        with _lock:
            _in_flight.pop(ident, None)
